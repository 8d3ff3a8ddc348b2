//! ONNX models through the real binary: `convnet import`, every verb that opens a model
//! taking a `.onnx` file directly, the pretrained MobileNetV2 on real photos, and the errors
//! of graphs convnet cannot run.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_says, convnet, error, ok, repo, said_once, save_rgb, temp_dir};

fn fixture(name: &str) -> PathBuf {
    repo("crates/convnet-onnx/tests/fixtures").join(name)
}

/// A small CNN from torch.onnx's TorchScript exporter: input 3x9x9, 4 classes.
fn tiny() -> PathBuf {
    fixture("torch_legacy.onnx")
}

fn predict_json(checkpoint: &Path, image: &Path) -> serde_json::Value {
    let out = ok(convnet()
        .args(["predict", "--json", "--top", "4", "--checkpoint"])
        .arg(checkpoint)
        .arg(image)
        .output()
        .unwrap());
    serde_json::from_str(&out).unwrap()
}

#[test]
fn import_writes_a_checkpoint_that_predicts_as_the_onnx_file_does() {
    let dir = temp_dir("onnx-import");
    let out = dir.join("tiny");
    let said = ok(convnet()
        .arg("import")
        .arg(tiny())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap());
    assert_says("import", &said, &["layers", "output [4]"]);
    for file in [
        "model.toml",
        "weights.safetensors",
        "checkpoint.json",
        "onnx-names.tsv",
    ] {
        assert!(out.join(file).exists(), "no {file} in {}", out.display());
    }
    let names = std::fs::read_to_string(out.join("onnx-names.tsv")).unwrap();
    assert!(
        names.starts_with("layer\tonnx_node\tonnx_output\n"),
        "{names}"
    );
    let image = dir.join("x.png");
    save_rgb(&image, [9, 9], |x, y| [(x * 28) as u8, (y * 28) as u8, 90]);
    let folder = predict_json(&out, &image);
    let file = predict_json(&tiny(), &image);
    assert_eq!(folder[0]["top"], file[0]["top"]);
}

#[test]
fn import_refuses_a_folder_that_is_not_empty() {
    let dir = temp_dir("onnx-import-exists");
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let err = error(
        convnet()
            .arg("import")
            .arg(tiny())
            .arg("-o")
            .arg(&dir)
            .output()
            .unwrap(),
    );
    assert_says(
        "existing folder",
        said_once(&err),
        &["not empty", "new folder"],
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(!dir.join("model.toml").exists());
}

#[test]
fn every_verb_that_opens_a_model_takes_an_onnx_file() {
    let dir = temp_dir("onnx-verbs");
    let image = dir.join("x.png");
    save_rgb(&image, [12, 10], |x, y| {
        [(x * 20) as u8, (y * 25) as u8, 128]
    });
    let model = tiny();
    let m = model.to_str().unwrap();
    let img = image.to_str().unwrap();
    let pic = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let runs: Vec<Vec<String>> = vec![
        vec!["summary".into(), "--model".into(), m.into()],
        vec![
            "predict".into(),
            "--checkpoint".into(),
            m.into(),
            img.into(),
        ],
        vec![
            "features".into(),
            "--checkpoint".into(),
            m.into(),
            img.into(),
            "--resize".into(),
            "--layer".into(),
            "dw".into(),
            "-o".into(),
            pic("f.png"),
        ],
        vec![
            "kernels".into(),
            "--checkpoint".into(),
            m.into(),
            "-o".into(),
            pic("k.png"),
        ],
        vec![
            "gradcam".into(),
            "--checkpoint".into(),
            m.into(),
            img.into(),
            "--resize".into(),
            "-o".into(),
            pic("g.png"),
        ],
        vec![
            "maximize".into(),
            "--checkpoint".into(),
            m.into(),
            "--layer".into(),
            "fc".into(),
            "--channel".into(),
            "1".into(),
            "--steps".into(),
            "3".into(),
            "-o".into(),
            pic("m.png"),
        ],
    ];
    for args in runs {
        ok(convnet().args(&args).output().unwrap());
    }
    for name in ["f.png", "k.png", "g.png", "m.png"] {
        assert!(dir.join(name).exists(), "{name} not written");
    }
}

#[test]
fn unsupported_operator_is_refused_naming_the_operator_the_node_and_the_supported_ones() {
    let dir = temp_dir("onnx-unsupported");
    // The same graph with "Relu" renamed "Selu" everywhere, in its operator and value names
    // (same length: the protobuf stays valid).
    let mut changed = std::fs::read(tiny()).unwrap();
    for i in 0..changed.len().saturating_sub(3) {
        if &changed[i..i + 4] == b"Relu" {
            changed[i..i + 4].copy_from_slice(b"Selu");
        }
    }
    let model = dir.join("selu.onnx");
    std::fs::write(&model, changed).unwrap();
    let out = dir.join("out");
    let err = error(
        convnet()
            .arg("import")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap(),
    );
    let line = said_once(&err);
    assert_says(
        "unsupported op",
        line,
        &[
            "selu.onnx",
            "(Selu)",
            "operator Selu is not supported",
            "supported: Add",
            "Conv",
        ],
    );
    assert!(!out.exists(), "a failed import left {}", out.display());
}

#[test]
fn onnx_without_its_external_data_file_is_refused_naming_the_file() {
    let dir = temp_dir("onnx-no-data");
    let model = dir.join("torch_dynamo.onnx");
    std::fs::copy(fixture("torch_dynamo.onnx"), &model).unwrap();
    let err = error(
        convnet()
            .args(["predict", "--checkpoint"])
            .arg(&model)
            .arg(repo("data/chelsea.png"))
            .output()
            .unwrap(),
    );
    assert_says(
        "missing data",
        said_once(&err),
        &["torch_dynamo.onnx.data", "keep it beside the model"],
    );
}

#[test]
fn onnx_of_free_input_size_asks_for_the_input_shape() {
    let model = fixture("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let err = error(
        convnet()
            .args(["summary", "--model"])
            .arg(&model)
            .output()
            .unwrap(),
    );
    assert_says(
        "free input size",
        said_once(&err),
        &["[?, 3, ?, ?]", "--input-shape"],
    );
}

/// The real ImageNet MobileNetV2 (its weights fetched by tools/fetch_pretrained.py) sees a
/// cat in chelsea.png and an espresso in coffee.png.
#[test]
fn pretrained_mobilenet_v2_classifies_chelsea_as_a_cat_and_coffee_as_espresso() {
    let model = repo("models/mobilenet_v2.onnx");
    if !model.with_extension("onnx.data").exists() {
        eprintln!(
            "skipped: {}.data is absent (python3 tools/fetch_pretrained.py fetches it)",
            model.display()
        );
        return;
    }
    for (photo, index, class) in [
        ("chelsea", 285, "Egyptian cat"),
        ("coffee", 967, "espresso"),
    ] {
        let got = predict_json(&model, &repo(&format!("data/{photo}.png")));
        let top = &got[0]["top"][0];
        assert_eq!(top["index"], index, "{photo}: {got}");
        assert_eq!(top["class"], class, "{photo}: {got}");
    }
}

#[test]
fn bench_times_an_onnx_model_at_each_batch_size() {
    let dir = temp_dir("onnx-bench");
    let report = dir.join("bench.json");
    ok(convnet()
        .args(["bench", "--batch", "1,3", "--model"])
        .arg(tiny())
        .arg("--json")
        .arg(&report)
        .output()
        .unwrap());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let batches: Vec<u64> = json["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, [1, 3]);
    assert!(json["timings"][0]["ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_refuses_a_batch_size_beyond_its_bound() {
    let err = error(
        convnet()
            .args(["bench", "--batch", "1,100000", "--model"])
            .arg(tiny())
            .output()
            .unwrap(),
    );
    assert_says(
        "batch",
        said_once(&err),
        &["--batch '1,100000'", "1 to 1024"],
    );
}
