//! Preprocessing stored with imported models, through the real binary: `convnet import`'s
//! `--resize`, `--crop`, `--mean`, `--std` and `--bgr` are stored in checkpoint.json and
//! applied by predict and gradcam with no flags (checked against an input built by hand and
//! run through `convnet run`), pictures show the crop the model sees, bad flags are refused
//! naming the flag, and the real MobileNetV2 is read as torchvision reads it.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_says, convnet, error, meta, ok, repo, said_once, save_rgb, temp_dir};

/// A small CNN from torch.onnx's TorchScript exporter: input 3x9x9, 4 classes.
fn tiny() -> PathBuf {
    repo("crates/convnet-onnx/tests/fixtures/torch_legacy.onnx")
}

fn import(out: &Path, flags: &[&str]) -> String {
    ok(convnet()
        .arg("import")
        .arg(tiny())
        .arg("-o")
        .arg(out)
        .args(flags)
        .output()
        .unwrap())
}

/// `predict --json`'s probabilities of the 4 classes, by class index.
fn probabilities(checkpoint: &Path, image: &Path) -> Vec<f64> {
    let out = ok(convnet()
        .args(["predict", "--json", "--top", "4", "--checkpoint"])
        .arg(checkpoint)
        .arg(image)
        .output()
        .unwrap());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut p = vec![f64::NAN; 4];
    for entry in json[0]["top"].as_array().unwrap() {
        p[entry["index"].as_u64().unwrap() as usize] = entry["probability"].as_f64().unwrap();
    }
    p
}

/// An 18x12 (W x H) picture of distinct colours: pixel (x, y) is (10x + 3, 20y + 1, 7x + 9y).
fn colours(x: u32, y: u32) -> [u8; 3] {
    [
        (10 * x + 3) as u8,
        (20 * y + 1) as u8,
        (7 * x + 9 * y) as u8,
    ]
}

#[test]
fn import_flags_are_stored_and_predict_applies_them_with_no_flags() {
    let dir = temp_dir("prep-import-flags");
    let image = dir.join("x.png");
    save_rgb(&image, [18, 12], colours);
    let ck = dir.join("bgr");
    let said = import(
        &ck,
        &[
            "--bgr",
            "--resize",
            "12",
            "--crop",
            "9",
            "--mean",
            "0.1,0.2,0.3",
            "--std",
            "0.5,0.25,2",
        ],
    );
    assert_says(
        "import",
        &said,
        &[
            "preprocessing: resize 12 (shorter side), crop 9x9, BGR",
            "mean [0.1, 0.2, 0.3], std [0.5, 0.25, 2.0]",
        ],
    );
    let stored = meta(&ck);
    assert_eq!(
        stored["preprocessing"],
        serde_json::json!({"resize": {"shorter_side": 12}, "crop": [9, 9], "channel_order": "bgr"})
    );
    assert_eq!(
        stored["normalization"],
        serde_json::json!({"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.25, 2.0]})
    );

    // The input those flags describe, built by hand: the shorter side is already 12 (no
    // resampling); the 9x9 crop starts at row round(3 / 2) = 2 and column round(9 / 2) = 4
    // (halves to even); planes B, G, R; (pixel / 255 - mean) / std in that order.
    let (mean, std) = ([0.1f32, 0.2, 0.3], [0.5f32, 0.25, 2.0]);
    let mut x = Vec::new();
    for (plane, rgb_channel) in [2usize, 1, 0].into_iter().enumerate() {
        for y in 2..11 {
            for col in 4..13 {
                let p = f32::from(colours(col, y)[rgb_channel]);
                x.push((p / 255.0 - mean[plane]) / std[plane]);
            }
        }
    }
    let input = dir.join("x.npy");
    let tensor = convnet::core::Tensor::new([1, 3, 9, 9], x).unwrap();
    std::fs::write(&input, convnet::npy::to_bytes(&tensor)).unwrap();
    let logits_file = dir.join("logits.npy");
    ok(convnet()
        .args(["run", "--model"])
        .arg(tiny())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&logits_file)
        .output()
        .unwrap());
    let logits = convnet::npy::read(&logits_file).unwrap();
    let top = logits.data().iter().fold(f32::MIN, |m, &v| m.max(v));
    let exp: Vec<f64> = logits
        .data()
        .iter()
        .map(|&v| f64::from((v - top).exp()))
        .collect();
    let want: Vec<f64> = exp.iter().map(|e| e / exp.iter().sum::<f64>()).collect();

    let got = probabilities(&ck, &image);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "predict {got:?}, by hand {want:?}");
    }
    // The flags matter: the default import (the picture squashed to 9x9, RGB, pixels in
    // [0, 1]) predicts other probabilities.
    let plain = dir.join("plain");
    import(&plain, &[]);
    let other = probabilities(&plain, &image);
    let apart = other
        .iter()
        .zip(&got)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(apart > 1e-4, "{other:?} vs {got:?}");
}

#[test]
fn bgr_keeps_a_given_mean_and_a_resize_alone_is_cropped_to_the_input() {
    let dir = temp_dir("prep-bgr-defaults");
    let ck = dir.join("ck");
    import(&ck, &["--bgr", "--mean", "0.1,0.2,0.3"]);
    let stored = meta(&ck);
    assert_eq!(stored["preprocessing"]["channel_order"], "bgr");
    // Not an ImageNet model: the default std is 1 per channel; the given mean is kept as is.
    assert_eq!(
        stored["normalization"]["mean"],
        serde_json::json!([0.1, 0.2, 0.3])
    );
    assert_eq!(
        stored["normalization"]["std"],
        serde_json::json!([1.0, 1.0, 1.0])
    );
    // Without --crop, a resize to other sizes than the input is cropped to the input.
    let ck = dir.join("resized");
    import(&ck, &["--resize", "11x13"]);
    assert_eq!(
        meta(&ck)["preprocessing"],
        serde_json::json!({"resize": {"size": [11, 13]}, "crop": [9, 9], "channel_order": "rgb"})
    );
}

#[test]
fn bad_import_flags_are_refused_naming_the_flag_and_nothing_is_written() {
    let dir = temp_dir("prep-bad-flags");
    let out = dir.join("out");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--resize", "0"], &["--resize '0'", "1 to 16384"]),
        (
            &["--resize", "abc"],
            &["--resize 'abc'", "'abc' is not a size"],
        ),
        (&["--resize", "20x"], &["--resize '20x'", "is not a size"]),
        (
            &["--crop", "5"],
            &["--crop 5x5", "model's input, which is 9x9"],
        ),
        (
            &["--resize", "8", "--crop", "9"],
            &["--crop 9x9 is larger than the resized image (a shorter side of 8)"],
        ),
        (
            &["--resize", "8x20"],
            &[
                "--crop 9x9 is larger than the resized image (8x20)",
                "give --crop",
            ],
        ),
        (
            &["--mean", "0.1,0.2"],
            &["--mean '0.1,0.2'", "2 value(s)", "3-channel"],
        ),
        (
            &["--mean", "0.1,x,0.3"],
            &["--mean '0.1,x,0.3'", "'x' is not a number"],
        ),
        (
            &["--mean", "nan,0,0"],
            &["--mean 'nan,0,0'", "not a finite number"],
        ),
        (
            &["--std", "1,inf,1"],
            &["--std '1,inf,1'", "not a finite number"],
        ),
        (
            &["--std", "1,0,1"],
            &["--std '1,0,1'", "channel 1 is 0", "positive"],
        ),
        (&["--std", "1,1,-2"], &["--std '1,1,-2'", "channel 2 is -2"]),
    ];
    for (flags, says) in cases {
        let err = error(
            convnet()
                .arg("import")
                .arg(tiny())
                .arg("-o")
                .arg(&out)
                .args(*flags)
                .output()
                .unwrap(),
        );
        assert_says(&format!("{flags:?}"), said_once(&err), says);
        assert!(!out.exists(), "{flags:?} left {}", out.display());
    }
}

/// Pixels of exactly `rgb` in a picture.
fn count(picture: &image::RgbImage, rgb: [u8; 3]) -> usize {
    picture.pixels().filter(|p| p.0 == rgb).count()
}

#[test]
fn gradcam_draws_the_crop_the_model_sees() {
    let dir = temp_dir("prep-gradcam-crop");
    // 18x12: the 9x9 crop (rows 2..11, columns 4..13) teal, the rest magenta.
    let (teal, magenta) = ([0, 160, 160], [255, 0, 255]);
    let image = dir.join("x.png");
    save_rgb(&image, [18, 12], |x, y| {
        if (2..11).contains(&y) && (4..13).contains(&x) {
            teal
        } else {
            magenta
        }
    });
    let ck = dir.join("cropped");
    import(&ck, &["--resize", "12", "--crop", "9"]);
    let draw = |checkpoint: &Path, name: &str| {
        let (png, raw) = (
            dir.join(format!("{name}.png")),
            dir.join(format!("{name}.npy")),
        );
        ok(convnet()
            .args(["gradcam", "--alpha", "0", "--checkpoint"])
            .arg(checkpoint)
            .arg(&image)
            .arg("-o")
            .arg(&png)
            .arg("--raw")
            .arg(&raw)
            .output()
            .unwrap());
        let map = convnet::npy::read(&raw).unwrap();
        (image::open(&png).unwrap().to_rgb8(), map.dims().to_vec())
    };
    // The map is the model input's size (9x9); the picture (the input tile and, at alpha 0,
    // the overlay) shows the crop: teal, and none of the magenta border.
    let (picture, map) = draw(&ck, "cropped");
    assert_eq!(map, [9, 9]);
    assert_eq!(
        count(&picture, magenta),
        0,
        "the border outside the crop is drawn"
    );
    assert!(
        count(&picture, teal) > 224 * 224 / 2,
        "the crop is not drawn"
    );
    // The same image opened without a crop (the .onnx: squashed to 9x9) shows the border:
    // the check above can fail.
    let (squashed, _) = draw(&tiny(), "squashed");
    assert!(count(&squashed, magenta) > 1000);
}

/// The real ImageNet MobileNetV2 (weights from tools/fetch_pretrained.py), opened and
/// imported with no flags: torchvision's resize 256 / crop 224 / ImageNet normalization are
/// stored, and predict and gradcam need no flags (gradcam's map is the 224x224 crop).
#[test]
fn pretrained_mobilenet_v2_needs_no_flags() {
    let model = repo("models/mobilenet_v2.onnx");
    if !model.with_extension("onnx.data").exists() {
        eprintln!(
            "skipped: {}.data is absent (python3 tools/fetch_pretrained.py fetches it)",
            model.display()
        );
        return;
    }
    let dir = temp_dir("prep-mobilenet");
    let ck = dir.join("mobilenet_v2");
    let said = ok(convnet()
        .arg("import")
        .arg(&model)
        .arg("-o")
        .arg(&ck)
        .output()
        .unwrap());
    assert_says(
        "import",
        &said,
        &["preprocessing: resize 256 (shorter side), crop 224x224, RGB"],
    );
    let stored = meta(&ck);
    assert_eq!(
        stored["preprocessing"],
        serde_json::json!({"resize": {"shorter_side": 256}, "crop": [224, 224], "channel_order": "rgb"})
    );
    let out = ok(convnet()
        .args(["predict", "--json", "--checkpoint"])
        .arg(&ck)
        .arg(repo("data/chelsea.png"))
        .arg(repo("data/coffee.png"))
        .output()
        .unwrap());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let top: Vec<&str> = (0..3)
        .map(|k| json[0]["top"][k]["class"].as_str().unwrap())
        .collect();
    assert_eq!(top[0], "Egyptian cat", "{out}");
    assert!(top.contains(&"tabby"), "{out}");
    assert_eq!(json[1]["top"][0]["class"], "espresso", "{out}");
    let raw = dir.join("cam.npy");
    ok(convnet()
        .args(["gradcam", "--checkpoint"])
        .arg(&ck)
        .arg(repo("data/chelsea.png"))
        .arg("-o")
        .arg(dir.join("cam.png"))
        .arg("--raw")
        .arg(&raw)
        .output()
        .unwrap());
    assert_eq!(convnet::npy::read(&raw).unwrap().dims(), [224, 224]);
    // --bgr alone: ImageNet's mean and std, per colour, so in BGR order.
    let bgr = dir.join("bgr");
    ok(convnet()
        .arg("import")
        .arg(&model)
        .args(["--bgr", "-o"])
        .arg(&bgr)
        .output()
        .unwrap());
    let stored = meta(&bgr);
    assert_eq!(stored["preprocessing"]["channel_order"], "bgr");
    assert_eq!(
        stored["normalization"],
        serde_json::json!({"mean": [0.406, 0.456, 0.485], "std": [0.225, 0.224, 0.229]})
    );
}

/// Activation maximization on a BGR model: the `--start` picture enters in the model's
/// order (red in the last plane: its start activation is the logit `convnet run` gives for
/// that input, not for the picture in RGB order) and is drawn back in RGB (a red picture
/// stays red).
#[test]
fn maximize_starts_from_the_picture_in_the_models_order_and_draws_it_in_rgb() {
    let dir = temp_dir("prep-maximize-bgr");
    let ck = dir.join("bgr");
    import(&ck, &["--bgr"]);
    let red = dir.join("red.png");
    save_rgb(&red, [9, 9], |_, _| [255, 0, 0]);
    let picture = dir.join("m.png");
    let said = ok(convnet()
        .args([
            "maximize",
            "--layer",
            "fc",
            "--channel",
            "0",
            "--steps",
            "0",
        ])
        .arg("--checkpoint")
        .arg(&ck)
        .arg("--start")
        .arg(&red)
        .arg("-o")
        .arg(&picture)
        .output()
        .unwrap());
    // The logit of class 0 on a red picture in BGR order (plane 2 all ones) and in RGB order.
    let mut planes = vec![0f32; 2 * 3 * 81];
    planes[2 * 81..3 * 81].fill(1.0);
    planes[3 * 81..4 * 81].fill(1.0);
    let input = dir.join("red.npy");
    let tensor = convnet::core::Tensor::new([2, 3, 9, 9], planes).unwrap();
    std::fs::write(&input, convnet::npy::to_bytes(&tensor)).unwrap();
    let logits_file = dir.join("logits.npy");
    ok(convnet()
        .args(["run", "--model"])
        .arg(tiny())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&logits_file)
        .output()
        .unwrap());
    let logits = convnet::npy::read(&logits_file).unwrap();
    let (bgr, rgb) = (logits.data()[0], logits.data()[4]);
    assert!((bgr - rgb).abs() > 1e-3, "{bgr} {rgb}");
    let start: f32 = said
        .split("mean activation ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (start - bgr).abs() < 1e-4,
        "{said}: start {start}, BGR logit {bgr}"
    );
    let drawn = image::open(&picture).unwrap().to_rgb8();
    assert!(
        count(&drawn, [255, 0, 0]) > 1000,
        "the red start is not drawn red"
    );
    assert_eq!(count(&drawn, [0, 0, 255]), 0, "the start is drawn blue");
}
