//! Weights move between PyTorch and convnet: the reference model's PyTorch `state_dict`
//! (tools/fashion_reference.py fixture) loads into convnet and gives PyTorch's logits, and
//! convnet's weights file has exactly PyTorch's names, shapes and dtypes.

mod common;
use common::reference::{FASHION, fixture, reference_model};

use convnet::checkpoint::{read_safetensors, weights_bytes};
use convnet::layers::ForwardCtx;
use convnet::{Model, ModelSpec};
use safetensors::Dtype;

#[test]
fn pytorch_weights_give_pytorchs_logits() {
    let mut model = reference_model();
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
    let model = Model::from_spec(&ModelSpec::from_toml(FASHION).unwrap(), 0).unwrap();
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
