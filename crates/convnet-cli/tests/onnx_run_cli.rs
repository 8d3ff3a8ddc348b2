//! `run` and `eval` on ONNX models through the real binary, and imports of several outputs:
//! `run` gives ONNX Runtime's numbers (fixtures of tools/gen_onnx_run_fixtures.py), a
//! multi-output import (MTCNN's PNet) loads back and runs every output, and `eval` agrees
//! with `predict` image by image or says why it cannot read a data set for the model.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_says, convnet, error, ok, repo, said_once, save_rgb, temp_dir};

fn onnx_fixture(name: &str) -> PathBuf {
    repo("crates/convnet-onnx/tests/fixtures").join(name)
}

fn run_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx_run")
        .join(name)
}

/// A small CNN from torch.onnx's TorchScript exporter: input 3x9x9, 4 classes.
fn tiny() -> PathBuf {
    onnx_fixture("torch_legacy.onnx")
}

/// The largest difference of `got` from `want` relative to `want`'s largest magnitude.
fn relative_difference(got: &Path, want: &Path) -> f32 {
    let (got, want) = (
        convnet::npy::read(got).unwrap(),
        convnet::npy::read(want).unwrap(),
    );
    assert_eq!(got.dims(), want.dims());
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .data()
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

#[test]
fn run_on_an_onnx_file_gives_onnx_runtimes_numbers() {
    let dir = temp_dir("onnx-run-ort");
    let out = dir.join("logits.npy");
    let said = ok(convnet()
        .args(["run", "--model"])
        .arg(tiny())
        .arg("--input")
        .arg(run_fixture("tiny_input.npy"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap());
    let _ = said;
    let diff = relative_difference(&out, &run_fixture("tiny_ort.npy"));
    assert!(diff <= 1e-4, "{diff}");
}

/// MTCNN's PNet: two outputs (box offsets [4, h, w], face probabilities [2, h, w]), imported
/// at 24x24 (`--input-shape`).
fn import_pnet(dir: &Path) -> PathBuf {
    let ck = dir.join("pnet");
    let said = ok(convnet()
        .arg("import")
        .arg(onnx_fixture("nets/mtcnn_pnet.onnx"))
        .args(["--input-shape", "24x24x3", "-o"])
        .arg(&ck)
        .output()
        .unwrap());
    assert_says("import", &said, &["output [4, 7, 7], [2, 7, 7]"]);
    ck
}

#[test]
fn a_multi_output_import_loads_back_and_runs_every_output_as_onnx_runtime() {
    let dir = temp_dir("onnx-multi-output");
    let ck = import_pnet(&dir);
    // The folder loads (no classes: they name the scores of a single output [K]).
    let loaded = convnet::checkpoint::load(&ck).unwrap();
    assert!(loaded.meta.classes.is_empty());
    assert_eq!(loaded.model.outputs().len(), 2);

    // run: one file per output, named after its layer, each ONNX Runtime's numbers.
    let out = dir.join("maps.npy");
    let said = ok(convnet()
        .args(["run", "--model"])
        .arg(&ck)
        .arg("--input")
        .arg(run_fixture("pnet_input.npy"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap());
    let _ = said;
    for (file, want) in [
        ("maps-conv4_2.npy", "pnet_ort_boxes.npy"),
        ("maps-_softmax4_1_Softmax.npy", "pnet_ort_probabilities.npy"),
    ] {
        let diff = relative_difference(&dir.join(file), &run_fixture(want));
        assert!(diff <= 1e-4, "{file}: {diff}");
    }
    assert!(
        !out.exists(),
        "a model of two outputs wrote {}",
        out.display()
    );

    // features: an inner layer's maps of a photograph (resized to 24x24, as stored).
    let said = ok(convnet()
        .args(["features", "--checkpoint"])
        .arg(&ck)
        .arg(repo("data/astronaut.png"))
        .args(["--layer", "conv1", "-o"])
        .arg(dir.join("f.png"))
        .output()
        .unwrap());
    assert_says("features", &said, &["10 maps of 22x22 from conv1"]);

    // Verbs that rank classes say they need a classifier.
    for verb in [
        vec!["predict", "--checkpoint"],
        vec!["gradcam", "-o", "g.png", "--checkpoint"],
    ] {
        let err = error(
            convnet()
                .current_dir(&dir)
                .args(&verb)
                .arg(&ck)
                .arg(repo("data/astronaut.png"))
                .output()
                .unwrap(),
        );
        assert_says(
            verb[0],
            said_once(&err),
            &[
                &format!("{} needs a classifier", verb[0]),
                "2 output(s), the first [4, 7, 7]",
            ],
        );
    }
    let err = error(
        convnet()
            .args(["eval", "--checkpoint"])
            .arg(&ck)
            .output()
            .unwrap(),
    );
    assert_says("eval", said_once(&err), &["eval needs a classifier"]);
}

/// A data folder `train/` + `test/` of 4 classes (`0`..`3`) of 12x10 RGB pictures of
/// different colours.
fn image_folder(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    for split in ["train", "test"] {
        for class in 0..4u32 {
            for k in 0..3u32 {
                let path = data.join(format!("{split}/{class}/{k}.png"));
                save_rgb(&path, [12, 10], |x, y| {
                    [
                        (40 * class + 20 * x) as u8,
                        (60 * k + 9 * y) as u8,
                        (25 * x + 25 * y + 50 * class) as u8,
                    ]
                });
            }
        }
    }
    data
}

/// `eval --json`'s confusion matrix and mean loss of `checkpoint` on `data` (with `flags`).
fn eval_report(checkpoint: &Path, data: &Path, flags: &[&str]) -> (serde_json::Value, f64) {
    let out = ok(convnet()
        .args(["eval", "--json", "--checkpoint"])
        .arg(checkpoint)
        .arg("--data")
        .arg(data)
        .args(flags)
        .output()
        .unwrap());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    (json["confusion"].clone(), json["loss"].as_f64().unwrap())
}

/// The confusion matrix and mean cross-entropy `predict` gives on the test images of `data`,
/// image by image.
fn predict_report(checkpoint: &Path, data: &Path) -> (serde_json::Value, f64) {
    let mut confusion = vec![vec![0u64; 4]; 4];
    let mut loss = 0.0;
    for (class, row) in confusion.iter_mut().enumerate() {
        for k in 0..3 {
            let out = ok(convnet()
                .args(["predict", "--json", "--top", "4", "--checkpoint"])
                .arg(checkpoint)
                .arg(data.join(format!("test/{class}/{k}.png")))
                .output()
                .unwrap());
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            let top = json[0]["top"].as_array().unwrap();
            row[top[0]["index"].as_u64().unwrap() as usize] += 1;
            let p = top.iter().find(|t| t["index"] == class).unwrap()["probability"]
                .as_f64()
                .unwrap();
            loss -= p.ln() / 12.0;
        }
    }
    (serde_json::json!(confusion), loss)
}

/// Eval's report equals predict's, image by image: the same confusion matrix and the same
/// mean cross-entropy (within 1e-5, relative: predict prints f32 probabilities).
fn assert_agree(eval: &(serde_json::Value, f64), predict: &(serde_json::Value, f64)) {
    assert_eq!(eval.0, predict.0);
    assert!(
        (eval.1 - predict.1).abs() <= 1e-5 * predict.1.abs(),
        "eval's loss {} but predict's {}",
        eval.1,
        predict.1
    );
}

#[test]
fn eval_on_an_onnx_model_agrees_with_predict_on_an_image_folder() {
    let dir = temp_dir("onnx-eval");
    let data = image_folder(&dir);
    // The .onnx itself: images resized to its 9x9 input.
    let plain = eval_report(&tiny(), &data, &[]);
    assert_agree(&plain, &predict_report(&tiny(), &data));
    // An import that resizes to 11x13 and crops the 9x9 center, in BGR: eval crops and
    // orders the channels as predict does.
    let ck = dir.join("cropped");
    ok(convnet()
        .arg("import")
        .arg(tiny())
        .args(["--resize", "11x13", "--bgr", "-o"])
        .arg(&ck)
        .output()
        .unwrap());
    let cropped = eval_report(&ck, &data, &[]);
    assert_agree(&cropped, &predict_report(&ck, &data));
    // (The crop and the order change what the model sees, so the checks above are not the
    // same check twice.)
    assert!((cropped.1 - plain.1).abs() > 1e-4, "{cropped:?} {plain:?}");
}

#[test]
fn eval_says_why_it_cannot_read_a_data_set_for_the_model() {
    let dir = temp_dir("onnx-eval-errors");
    let data = image_folder(&dir);
    // A resize of each image's shorter side: a data set is read at one size.
    let ck = dir.join("shorter");
    ok(convnet()
        .arg("import")
        .arg(tiny())
        .args(["--resize", "12", "-o"])
        .arg(&ck)
        .output()
        .unwrap());
    let err = error(
        convnet()
            .args(["eval", "--checkpoint"])
            .arg(&ck)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap(),
    );
    assert_says(
        "shorter side",
        said_once(&err),
        &["resize 12 (shorter side)", "pass --resize 9x9"],
    );
    // ... which --resize overrides.
    let squashed = eval_report(&ck, &data, &["--resize", "9x9"]);
    assert_eq!(squashed, eval_report(&tiny(), &data, &[]));
    // The embedded Fashion-MNIST sample (IDX, 10 classes of 1x28x28) is not for this model.
    let err = error(
        convnet()
            .args(["eval", "--checkpoint"])
            .arg(tiny())
            .output()
            .unwrap(),
    );
    assert_says(
        "fashion",
        said_once(&err),
        &["the checkpoint knows 4 classes", "has 10"],
    );
}
