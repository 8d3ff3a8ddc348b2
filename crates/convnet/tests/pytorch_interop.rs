//! Weights move between PyTorch and convnet: the reference model's PyTorch `state_dict`
//! (tools/fashion_reference.py fixture) loads into convnet and gives PyTorch's logits, and
//! convnet's weights file has exactly PyTorch's names, shapes and dtypes.

use std::path::Path;

use convnet::ModelSpec;
use convnet::checkpoint::{load_weights, read_safetensors, weights_bytes};
use convnet::layers::ForwardCtx;
use safetensors::Dtype;

const FASHION: &str = include_str!("../../../models/fashion_cnn.toml");

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn pytorch_weights_give_pytorchs_logits() {
    let mut model = ModelSpec::from_toml(FASHION).unwrap().build(0).unwrap();
    load_weights(
        &mut model,
        &fixture("fashion_reference_weights.safetensors"),
    )
    .unwrap();
    let io = read_safetensors(&fixture("fashion_reference_io.safetensors")).unwrap();
    let (input, _) = &io["input"];
    let (want, _) = &io["logits"];
    let got = model.forward(input, ForwardCtx::eval(false)).unwrap();
    assert_eq!(got.dims(), want.dims());
    let mut worst = 0.0f32;
    for (g, w) in got.data().iter().zip(want.data()) {
        let err = (g - w).abs() / w.abs().max(1.0);
        worst = worst.max(err);
    }
    // Tolerance 1e-4 (relative above 1); the expected logits were computed in float64.
    assert!(worst <= 1e-4, "worst logit error {worst}");
}

#[test]
fn convnet_weights_have_pytorchs_names_shapes_and_dtypes() {
    let model = ModelSpec::from_toml(FASHION).unwrap().build(0).unwrap();
    let dir = std::env::temp_dir().join(format!("convnet-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("weights.safetensors");
    std::fs::write(&ours, weights_bytes(&model).unwrap()).unwrap();
    let ours = read_safetensors(&ours).unwrap();
    let theirs = read_safetensors(&fixture("fashion_reference_weights.safetensors")).unwrap();
    let names = |m: &std::collections::BTreeMap<String, (convnet_core::Tensor, Dtype)>| {
        m.iter()
            .map(|(k, (t, d))| format!("{k} {} {d:?}", t.shape()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ours), names(&theirs));
    let _ = std::fs::remove_dir_all(&dir);
}
