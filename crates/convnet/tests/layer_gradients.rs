//! Finite-difference checks of every layer's backward pass, through the model API: input
//! gradients and every parameter gradient, in training mode (batch statistics, dropout with
//! its fixed mask) and in evaluation mode (running statistics, as Grad-CAM uses).
//!
//! The kernels' gradients are checked in f64 in convnet-core; these check each layer's
//! wiring (what it records, how it accumulates) in f32. Central differences with step
//! `H = 1e-3` on `L = sum(output * r)`, summed in f64: rounding noise is about `1e-3` of the
//! gradient scale, so gradients must agree within `TOL = 1e-2` relative to
//! `max(|analytic|, 0.1)`. Inputs of layers with kinks (ReLU, max pooling) keep away from them.

use convnet::layers::{
    AdaptiveAvgPool2dConfig, AddConfig, AvgPool2dConfig, BatchNormConfig, Conv2dConfig,
    DropoutConfig, FlattenConfig, ForwardCtx, GlobalPoolConfig, LinearConfig, MaxPool2dConfig,
    PReluConfig, PoolKind,
};
use convnet::model::BackwardRequest;
use convnet::{LayerKind, Model, ModelSpec};
use convnet_core::{Activation, ConvMode, Padding, PaddingMode, Tensor};

const H: f32 = 1e-3;
const TOL: f64 = 1e-2;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = convnet::rng::Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
}

/// Values at least 0.1 away from 0, and pairwise far apart (no ties for max pooling).
fn away_from_kinks(n: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|i| 0.1 + 2.0 * i as f32 / n as f32).collect();
    convnet::rng::Rng::new(seed).shuffle(&mut v);
    v.iter()
        .enumerate()
        .map(|(i, x)| if i % 3 == 0 { -x } else { *x })
        .collect()
}

fn loss(model: &mut Model, x: &Tensor, r: &[f32], ctx: ForwardCtx) -> f64 {
    let y = model.forward(x, ctx).unwrap();
    y.data()
        .iter()
        .zip(r)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

fn check_close(what: &str, numeric: f64, analytic: f64) {
    let scale = analytic.abs().max(0.1);
    assert!(
        (numeric - analytic).abs() <= TOL * scale,
        "{what}: numeric {numeric} vs analytic {analytic}"
    );
}

/// Check the input gradient and every parameter gradient of `spec` at input `x`.
fn check(spec: &ModelSpec, x: Tensor, training: bool) {
    let mut model = Model::from_spec(spec, 7).unwrap();
    let ctx = if training {
        ForwardCtx::train(11, 3)
    } else {
        ForwardCtx::eval(true)
    };
    let y = model.forward(&x, ctx).unwrap();
    let r = values(y.numel(), 5);
    let g = Tensor::new(y.dims().to_vec(), r.clone()).unwrap();
    model.zero_grad();
    let out = model
        .backward_with(
            &g,
            &BackwardRequest {
                input: true,
                capture: &[],
                params: true,
            },
        )
        .unwrap();
    let grad_input = out.input.unwrap();
    let analytic: Vec<(String, Vec<f32>)> = model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.grad.data().to_vec()))
        .collect();
    // Input gradient.
    let mut xp = x.clone();
    for i in 0..x.numel() {
        let orig = xp.data()[i];
        xp.data_mut()[i] = orig + H;
        let up = loss(&mut model, &xp, &r, ctx);
        xp.data_mut()[i] = orig - H;
        let down = loss(&mut model, &xp, &r, ctx);
        xp.data_mut()[i] = orig;
        check_close(
            &format!("{}: input[{i}]", spec.layers[0].kind.type_name()),
            (up - down) / (2.0 * f64::from(H)),
            f64::from(grad_input.data()[i]),
        );
    }
    // Every parameter.
    for (name, grads) in &analytic {
        for (i, &ana) in grads.iter().enumerate() {
            let bump = |model: &mut Model, delta: f32| {
                let mut params = model.params_mut();
                let (_, p) = params.iter_mut().find(|(n, _)| n == name).unwrap();
                p.value.data_mut()[i] += delta;
            };
            bump(&mut model, H);
            let up = loss(&mut model, &x, &r, ctx);
            bump(&mut model, -2.0 * H);
            let down = loss(&mut model, &x, &r, ctx);
            bump(&mut model, H);
            check_close(
                &format!("{name}[{i}]"),
                (up - down) / (2.0 * f64::from(H)),
                f64::from(ana),
            );
        }
    }
}

fn image_input(dims: [usize; 4], seed: u64) -> Tensor {
    Tensor::new(dims, away_from_kinks(dims.iter().product(), seed)).unwrap()
}

fn one_layer(input: [usize; 3], kind: impl Into<LayerKind>) -> ModelSpec {
    ModelSpec::new(input).layer("layer", kind)
}

#[test]
fn conv2d_gradients() {
    let kind = Conv2dConfig::lazy(3, [3, 2])
        .with_stride([2, 1])
        .with_padding(Padding::Explicit {
            top: 1,
            bottom: 0,
            left: 1,
            right: 1,
        })
        .with_dilation([1, 2])
        .with_padding_mode(PaddingMode::Reflect)
        .with_mode(ConvMode::Convolution);
    check(
        &one_layer([2, 5, 6], kind),
        image_input([2, 2, 5, 6], 1),
        true,
    );
}

#[test]
fn linear_gradients() {
    let spec = ModelSpec::new([2, 2, 2])
        .layer("flat", FlattenConfig {})
        .layer("fc", LinearConfig::lazy(3));
    check(&spec, image_input([3, 2, 2, 2], 2), true);
}

#[test]
fn batch_norm_gradients_in_training_and_evaluation() {
    let bn2 = one_layer([3, 3, 2], BatchNormConfig::lazy_2d());
    check(&bn2, image_input([2, 3, 3, 2], 3), true);
    check(&bn2, image_input([2, 3, 3, 2], 3), false);
    let bn1 = ModelSpec::new([3, 1, 1])
        .layer("flat", FlattenConfig {})
        .layer("bn", BatchNormConfig::lazy_1d());
    check(&bn1, image_input([4, 3, 1, 1], 4), true);
}

#[test]
fn activation_gradients() {
    for act in [
        Activation::Relu,
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
        Activation::Elu { alpha: 0.7 },
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        check(
            &one_layer([2, 3, 3], act),
            image_input([2, 2, 3, 3], 5),
            true,
        );
    }
}

#[test]
fn prelu_gradients_with_one_slope_and_per_channel() {
    for slopes in [PReluConfig::new(1), PReluConfig::per_channel()] {
        let spec = one_layer([3, 2, 3], slopes.with_init(0.3));
        check(&spec, image_input([2, 3, 2, 3], 6), true);
    }
}

#[test]
fn pooling_gradients() {
    let kinds: [LayerKind; 5] = [
        MaxPool2dConfig::new([2, 3])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_ceil_mode(true)
            .into(),
        AvgPool2dConfig::new([3, 3])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .with_count_include_pad(false)
            .into(),
        AdaptiveAvgPool2dConfig::new([2, 3]).into(),
        GlobalPoolConfig::new(PoolKind::Avg).into(),
        GlobalPoolConfig::new(PoolKind::Max).into(),
    ];
    for kind in kinds {
        check(
            &one_layer([2, 5, 6], kind),
            image_input([2, 2, 5, 6], 7),
            true,
        );
    }
}

#[test]
fn dropout_gradients_use_the_forward_mask() {
    let spec = ModelSpec::new([2, 3, 3])
        .layer("drop", DropoutConfig::new(0.4))
        .layer("flat", FlattenConfig {})
        .layer("fc", LinearConfig::lazy(2));
    check(&spec, image_input([2, 2, 3, 3], 8), true);
    check(&spec, image_input([2, 2, 3, 3], 8), false);
}

#[test]
fn residual_add_accumulates_both_branches() {
    // The block input feeds both the conv branch and the add: its gradient is the sum.
    let spec = ModelSpec::new([2, 4, 4])
        .layer(
            "conv",
            Conv2dConfig::lazy(2, [3, 3])
                .with_padding(Padding::Same)
                .with_groups(2)
                .with_bias(false),
        )
        .layer("act", Activation::Tanh)
        .layer_from("add", &["act", "input"], AddConfig {})
        .layer("bn", BatchNormConfig::lazy_2d());
    check(&spec, image_input([2, 2, 4, 4], 9), true);
}

#[test]
fn a_whole_smooth_network_in_training_mode() {
    let spec = ModelSpec::new([1, 6, 6])
        .layer("c1", Conv2dConfig::lazy(3, [3, 3]))
        .layer("bn", BatchNormConfig::lazy_2d())
        .layer("act", Activation::Elu { alpha: 1.0 })
        .layer("pool", AvgPool2dConfig::new([2, 2]).with_stride([2, 2]))
        .layer("flat", FlattenConfig {})
        .layer("fc", LinearConfig::lazy(4))
        .layer("drop", DropoutConfig::new(0.5))
        .layer("out", LinearConfig::lazy(3));
    check(&spec, image_input([3, 1, 6, 6], 10), true);
}
