//! Models beyond one input and one output: further named inputs, any layers as outputs
//! (intermediate ones too), and layers that run inference only, whose lack of a backward pass
//! is named when a gradient would have to cross them and costs nothing where none does.

use convnet::inspect::{CamMethod, explain};
use convnet::layers::{
    Conv2dConfig, FlattenConfig, ForwardCtx, GlobalPoolConfig, Kind, Layer, LinearConfig, Module,
    Output, PoolKind,
};
use convnet::model::BackwardRequest;
use convnet::summary::summarize_spec;
use convnet::{Model, ModelSpec, Result};
use convnet_core::{Activation, Conv2dParams, Tensor, conv2d, linear};
use serde::{Deserialize, Serialize};

/// A conv whose output has a mask added (the second input), then a linear head; both the
/// head and the conv are outputs.
const TWO_INPUTS: &str = r#"
[model]
input = [1, 4, 4]
extra_inputs = [{ name = "mask", shape = [2, 2, 2] }]
outputs = ["fc", "conv"]

[[layer]]
name = "conv"
type = "conv2d"
out_channels = 2
kernel = 3

[[layer]]
name = "masked"
type = "add"
inputs = ["conv", "mask"]

[[layer]]
name = "flat"
type = "flatten"

[[layer]]
name = "fc"
type = "linear"
out_features = 3
"#;

fn ramp(dims: &[usize], scale: f32) -> Tensor {
    Tensor::from_fn(dims.to_vec(), |i| ((i * 7 % 11) as f32 - 5.0) * scale).unwrap()
}

fn param(model: &Model, name: &str) -> Tensor {
    let params = model.params();
    let (_, p) = params.iter().find(|(n, _)| n == name).unwrap();
    p.value.clone()
}

#[test]
fn extra_inputs_and_intermediate_outputs_run_as_their_layers_do() {
    let spec = ModelSpec::from_toml(TWO_INPUTS).unwrap();
    let again = ModelSpec::from_toml(&spec.to_toml().unwrap()).unwrap();
    assert_eq!(again, spec, "{}", spec.to_toml().unwrap());
    let mut model = Model::from_spec(&spec, 5).unwrap();
    let (x, mask) = (ramp(&[2, 1, 4, 4], 0.1), ramp(&[2, 2, 2, 2], 0.3));
    let (outputs, _) = model
        .forward_all(&[x.clone(), mask.clone()], ForwardCtx::eval(true), &[])
        .unwrap();
    assert_eq!(outputs.len(), 2);
    // The intermediate output is the conv's; the head reads it plus the mask.
    let weight = param(&model, "conv.weight");
    let bias = param(&model, "conv.bias");
    let conv = conv2d(&x, &weight, Some(&bias), &Conv2dParams::default()).unwrap();
    assert_eq!(outputs[1].data(), conv.data());
    let mut masked = conv.clone();
    for (v, m) in masked.data_mut().iter_mut().zip(mask.data()) {
        *v += m;
    }
    let head = linear(
        &masked.reshape([2, 8]).unwrap(),
        &param(&model, "fc.weight"),
        Some(&param(&model, "fc.bias")),
    )
    .unwrap();
    assert_eq!(outputs[0].data(), head.data());
    assert_eq!(model.output_shape(), [3]);
    // Backward from the first output reaches every parameter.
    let g = Tensor::full([2, 3], 1.0).unwrap();
    let request = BackwardRequest {
        input: true,
        params: true,
        ..BackwardRequest::default()
    };
    let back = model.backward_with(&g, &request).unwrap();
    assert_eq!(back.input.unwrap().dims(), x.dims());
    let grads = model.params();
    let (_, fc_bias) = grads.iter().find(|(n, _)| n == "fc.bias").unwrap();
    assert_eq!(fc_bias.grad.data(), [2.0, 2.0, 2.0]);
    // The mask's unit sees one position, the conv's 3x3: the sum sees 3x3.
    let summary = summarize_spec(&spec).unwrap();
    assert_eq!(summary.layers[1].receptive_field, Some([3, 3]));
}

#[test]
fn the_inputs_a_model_takes_are_named_when_they_do_not_fit() {
    let mut model = Model::from_spec(&ModelSpec::from_toml(TWO_INPUTS).unwrap(), 0).unwrap();
    let x = ramp(&[2, 1, 4, 4], 0.1);
    let err = model.forward(&x, ForwardCtx::eval(false)).unwrap_err();
    assert!(
        err.to_string()
            .contains("the model takes 2 input(s) (input, mask), got 1"),
        "{err}"
    );
    let err = model
        .forward_all(&[x, ramp(&[3, 2, 2, 2], 1.0)], ForwardCtx::eval(false), &[])
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "the model's input 'mask' is [N, 2, 2, 2] (N as the first input's), got [3, 2, 2, 2]"
        ),
        "{err}"
    );
}

#[test]
fn model_inputs_and_outputs_that_collide_or_point_nowhere_are_refused() {
    // Each case: what replaces what in the model file, and the error.
    let cases = [
        (
            "name = \"masked\"\ntype = \"add\"\ninputs = [\"conv\", \"mask\"]",
            "name = \"mask\"\ntype = \"add\"",
            "layer 1 ('mask', add): a model input has this name",
        ),
        (
            "outputs = [\"fc\", \"conv\"]",
            "outputs = [\"head\"]",
            "[model]: outputs: 'head' is neither a layer nor a model input",
        ),
        (
            "shape = [2, 2, 2]",
            "shape = [2, 0, 2]",
            "model input 'mask' [2, 0, 2] must have sizes of at least 1",
        ),
        (
            "name = \"mask\"",
            "name = \"input\"",
            "[model]: extra input: invalid name 'input'",
        ),
        (
            "[\"conv\", \"mask\"]",
            "[\"conv\", \"masks\"]",
            "input 'masks' is not an earlier layer (nor 'input' or another model input)",
        ),
    ];
    for (from, to, want) in cases {
        assert!(TWO_INPUTS.contains(from), "{from}");
        let spec = ModelSpec::from_toml(&TWO_INPUTS.replace(from, to)).unwrap();
        let err = Model::from_spec(&spec, 0).unwrap_err().to_string();
        assert!(err.contains(want), "{to}: {err}");
    }
}

/// An identity that runs inference only, as an imported operator without a backward pass
/// would: a kind defined outside the crate, built from Rust.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrozenConfig {}

impl Kind for FrozenConfig {
    const NAMES: &'static [&'static str] = &["frozen"];

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        Ok(Output::new(inputs[0].to_vec()))
    }

    fn build(&self, _rng: &mut convnet::rng::Rng) -> Result<Layer> {
        Ok(Box::new(Frozen))
    }
}

#[derive(Debug, Clone)]
struct Frozen;

impl Module for Frozen {
    fn forward(&mut self, mut inputs: Vec<Tensor>, _ctx: &ForwardCtx) -> Result<Tensor> {
        Ok(inputs.pop().unwrap())
    }
    fn backward(&mut self, _: Tensor, _: bool) -> Result<Vec<Option<Tensor>>> {
        unreachable!("the model never asks a module without a backward pass")
    }
    fn has_backward(&self) -> bool {
        false
    }
}

fn frozen_model() -> Model {
    let spec = ModelSpec::new([1, 6, 6])
        .layer("conv1", Conv2dConfig::lazy(2, [3, 3]))
        .layer("frozen", FrozenConfig {})
        .layer("conv2", Conv2dConfig::lazy(3, [3, 3]))
        .layer("relu", Activation::Relu)
        .layer("gap", GlobalPoolConfig::new(PoolKind::Avg))
        .layer("flat", FlattenConfig {})
        .layer("fc", LinearConfig::lazy(2));
    Model::from_spec(&spec, 1).unwrap()
}

#[test]
fn a_gradient_that_would_cross_an_inference_only_layer_is_refused_naming_it() {
    let mut model = frozen_model();
    let x = ramp(&[2, 1, 6, 6], 0.2);
    let y = model.forward(&x, ForwardCtx::train(0, 0)).unwrap();
    let err = model.backward(&Tensor::full(y.dims().to_vec(), 1.0).unwrap());
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("layer frozen (frozen): runs inference only (it has no backward pass)"),
        "{err}"
    );
    let image = ramp(&[1, 1, 6, 6], 0.2);
    let err = explain(&mut model, &image, 1, CamMethod::Saliency, None).unwrap_err();
    assert!(err.to_string().contains("layer frozen (frozen)"), "{err}");
}

#[test]
fn grad_cam_after_an_inference_only_layer_goes_only_where_it_needs() {
    let mut model = frozen_model();
    let image = ramp(&[1, 1, 6, 6], 0.2);
    let conv2 = model.node_index("conv2").unwrap();
    let cam = explain(&mut model, &image, 1, CamMethod::GradCam, Some(conv2)).unwrap();
    assert_eq!(cam.map.dims(), [6, 6]);
    assert!(cam.map.data().iter().all(|v| v.is_finite()));
}
