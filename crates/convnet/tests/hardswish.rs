//! `hardswish` equals `torch.nn.Hardswish` bit for bit, forward and backward, with PyTorch's
//! gradient at the kinks (the flat side's slope: 0 at -3, 1 at 3), and reads, writes and
//! plans as every kind does.

use convnet::layers::{ForwardCtx, HardSwishConfig};
use convnet::model::BackwardRequest;
use convnet::spec::shorthand_model;
use convnet::summary::summarize_spec;
use convnet::{Model, ModelSpec};
use convnet_core::Tensor;

/// `(x, hardswish(x), g, g * hardswish'(x))` from PyTorch 2.15 (float32, CPU):
/// `x = torch.tensor(X, requires_grad=True); y = F.hardswish(x); y.backward(G)` with
/// `G = torch.linspace(-1.5, 2.0, 22)`.
const PYTORCH: [(f32, f32, f32, f32); 22] = [
    (-4.0, -0.0, -1.5, 0.0),
    (-3.0001, -0.0, -1.3333334, 0.0),
    (-3.0, -0.0, -1.1666666, 0.0),
    (-2.9999, -4.994703e-5, -1.0, 0.49996668),
    (-2.5, -0.20833333, -0.8333333, 0.27777776),
    (-1.0, -0.33333334, -0.6666666, -0.1111111),
    (-0.1, -0.048333336, -0.49999997, -0.23333332),
    (0.0, 0.0, -0.3333333, -0.16666666),
    (0.1, 0.051666666, -0.16666663, -0.08888887),
    (1.0, 0.6666667, 4.4703484e-8, 3.7252903e-8),
    (1.7, 1.3316666, 0.16666672, 0.17777783),
    (2.5, 2.2916667, 0.33333328, 0.44444436),
    (2.9999, 2.99985, 0.49999994, 0.74998325),
    (3.0, 3.0, 0.6666666, 0.6666666),
    (3.0001, 3.0001, 0.8333333, 0.8333333),
    (4.0, 4.0, 1.0, 1.0),
    (-1.0e-8, -5.0e-9, 1.1666666, 0.5833333),
    (0.333, 0.18498151, 1.3333333, 0.8146666),
    (-0.777, -0.2878785, 1.5, 0.3615),
    (0.0055, 0.002755042, 1.6666666, 0.8363888),
    (-2.123456, -0.3102171, 1.8333334, -0.38100094),
    (2.654321, 2.501397, 2.0, 2.7695475),
];

#[test]
fn hardswish_equals_pytorch_bit_for_bit_with_its_gradient_at_the_kinks() {
    let n = PYTORCH.len();
    let column =
        |f: fn(&(f32, f32, f32, f32)) -> f32| -> Vec<f32> { PYTORCH.iter().map(f).collect() };
    let spec = ModelSpec::new([1, 1, n]).layer("act", HardSwishConfig {});
    let mut model = Model::from_spec(&spec, 0).unwrap();
    let x = Tensor::new([1, 1, 1, n], column(|r| r.0)).unwrap();
    let y = model.forward(&x, ForwardCtx::eval(true)).unwrap();
    let g = Tensor::new([1, 1, 1, n], column(|r| r.2)).unwrap();
    let request = BackwardRequest {
        input: true,
        ..BackwardRequest::default()
    };
    let grad = model.backward_with(&g, &request).unwrap().input.unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(y.data()), bits(&column(|r| r.1)), "{:?}", y.data());
    assert_eq!(
        bits(grad.data()),
        bits(&column(|r| r.3)),
        "{:?}",
        grad.data()
    );
}

#[test]
fn hardswish_reads_writes_plans_and_has_a_shorthand() {
    let text = "[model]\ninput = [2, 4, 4]\n[[layer]]\nname = \"hs\"\ntype = \"hardswish\"\n";
    let spec = ModelSpec::from_toml(text).unwrap();
    assert_eq!(
        ModelSpec::from_toml(&spec.to_toml().unwrap()).unwrap(),
        spec
    );
    let summary = summarize_spec(&spec).unwrap();
    assert_eq!(summary.layers[0].kind, "hardswish");
    assert_eq!(summary.layers[0].output_shape, [2, 4, 4]);
    assert_eq!(summary.layers[0].receptive_field, Some([1, 1]));
    let err = ModelSpec::from_toml(&format!("{text}slope = 1\n")).unwrap_err();
    assert!(
        err.to_string()
            .contains("layer 0 ('hs', hardswish): unknown field `slope`"),
        "{err}"
    );
    let spec = shorthand_model([1, 8, 8], &["conv:4:3x3".into(), "hardswish".into()]).unwrap();
    assert_eq!(spec.layers[1].kind.type_name(), "hardswish");
}
