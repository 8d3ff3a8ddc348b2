//! Unit tests of the activations and PReLU: finite-difference gradient checks in f64,
//! hand-checked values at the kinks and extremes, and every error.

use super::prelu::{PreluLayout, prelu_forward, prelu_grads};
use super::*;

// Finite differences (crate::testing): truncation error < 1e-11 and rounding < 1e-8 here.
use crate::testing::{Rng, check_grad};

fn fwd(act: Activation, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    forward(x, &mut y, act);
    y
}

const ALL: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu {
        negative_slope: 0.01,
    },
    Activation::LeakyRelu {
        negative_slope: 0.3,
    },
    Activation::Elu { alpha: 1.0 },
    Activation::Tanh,
    Activation::Sigmoid,
];

#[test]
fn activation_gradients_match_finite_differences() {
    let acts = ALL.iter().copied().chain([Activation::Elu { alpha: 0.7 }]);
    for (seed, act) in acts.enumerate() {
        let mut rng = Rng(seed as u64 + 1);
        let x = rng.away_from_zero(200);
        let wts = rng.values(x.len());
        let y = fwd(act, &x);
        let mut gx = vec![0.0; x.len()];
        backward(&wts, &x, &y, &mut gx, act);
        check_grad(&format!("{act:?}"), &x, &wts, |x| fwd(act, x), &gx);
    }
}

#[test]
fn prelu_gradients_match_finite_differences() {
    // (input dims, number of slopes): shared slope on a 4-D and a 1-D input, per channel
    // on a 4-D and a 2-D input.
    let cases: [(&[usize], usize); 4] = [
        (&[2, 3, 4, 5], 1),
        (&[7], 1),
        (&[2, 3, 4, 5], 3),
        (&[5, 4], 4),
    ];
    for (seed, (dims, slopes)) in cases.into_iter().enumerate() {
        let mut rng = Rng(50 + seed as u64);
        let n: usize = dims.iter().product();
        let input = Tensor::zeros(dims.to_vec()).unwrap();
        let weight = Tensor::zeros([slopes]).unwrap();
        let layout = PreluLayout::new("test", &input, &weight).unwrap();
        let x = rng.away_from_zero(n);
        let w: Vec<f64> = (0..slopes).map(|_| 0.5 * rng.uniform()).collect();
        let wts = rng.values(n);
        let run = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; n];
            prelu_forward(layout, x, w, &mut y);
            y
        };
        let (mut gx, mut gw) = (vec![0.0; n], vec![0.0; slopes]);
        prelu_grads(layout, &wts, &x, &w, &mut gx, &mut gw);
        let name = format!("prelu {dims:?} with {slopes} slope(s)");
        check_grad(&format!("{name}: input"), &x, &wts, |x| run(x, &w), &gx);
        check_grad(&format!("{name}: weight"), &w, &wts, |w| run(&x, w), &gw);
    }
}

fn t(data: &[f32]) -> Tensor {
    Tensor::new([data.len()], data.to_vec()).unwrap()
}

fn grad(act: Activation, x: &[f32]) -> Vec<f32> {
    let x = t(x);
    let y = activation(&x, act);
    let g = Tensor::full([x.numel()], 1.0).unwrap();
    activation_backward(&g, &x, &y, act).unwrap().into_data()
}

#[test]
fn relu_family_values_and_gradients_at_hand_checked_points() {
    let x = [-2.0, -0.0, 0.0, 0.5];
    let relu = activation(&t(&x), Activation::Relu);
    assert_eq!(relu.data(), &[0.0, 0.0, 0.0, 0.5]);
    // clamp_min(-0.0, 0) keeps the sign, as PyTorch.
    assert!(relu.data()[1].is_sign_negative());
    // The gradient is 0 at 0 (PyTorch's threshold_backward).
    assert_eq!(grad(Activation::Relu, &x), [0.0, 0.0, 0.0, 1.0]);

    let leaky = Activation::leaky_relu();
    assert_eq!(
        leaky,
        Activation::LeakyRelu {
            negative_slope: 0.01
        }
    );
    assert_eq!(activation(&t(&[-2.0, 3.0]), leaky).data(), &[-0.02, 3.0]);
    assert_eq!(grad(leaky, &[-2.0, 0.0, 3.0]), [0.01, 0.01, 1.0]);

    let elu = Activation::elu();
    assert_eq!(elu, Activation::Elu { alpha: 1.0 });
    let y = activation(&t(&[-1.0, 0.0, 2.0]), elu);
    assert_eq!(y.data(), &[(-1.0f32).exp_m1(), 0.0, 2.0]);
    assert_eq!(grad(elu, &[-1.0, 0.0, 2.0]), [(-1.0f32).exp(), 1.0, 1.0]);
    let y = activation(&t(&[-1e-7]), Activation::Elu { alpha: 2.0 });
    // expm1 keeps the digits that exp(x) - 1 would lose.
    assert_eq!(y.data(), &[2.0 * (-1e-7f32).exp_m1()]);
}

#[test]
fn sigmoid_and_tanh_saturate_without_nan() {
    let x = [
        -1000.0,
        -100.0,
        0.0,
        100.0,
        1000.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
    ];
    let s = activation(&t(&x), Activation::Sigmoid);
    assert_eq!(s.data(), &[0.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0]);
    assert_eq!(
        grad(Activation::Sigmoid, &x),
        [0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0]
    );
    let th = activation(&t(&x), Activation::Tanh);
    assert_eq!(th.data(), &[-1.0, -1.0, 0.0, 1.0, 1.0, -1.0, 1.0]);
    assert_eq!(
        grad(Activation::Tanh, &x),
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn nan_propagates_through_every_activation() {
    for act in ALL {
        let y = activation(&t(&[f32::NAN]), act);
        assert!(y.data()[0].is_nan(), "{act:?}");
    }
    // ReLU's backward keeps the gradient at NaN (relu(NaN) = NaN is not <= 0).
    assert_eq!(grad(Activation::Relu, &[f32::NAN]), [1.0]);
}

#[test]
fn slice_forms_match_tensor_forms_on_large_inputs() {
    // Longer than one parallel chunk.
    let n = 3 * CHUNK + 17;
    let x = Tensor::from_fn([n], |i| ((i * 7919) % 2001) as f32 * 0.003 - 3.0).unwrap();
    for act in ALL {
        let y = activation(&x, act);
        let mut y1 = vec![0.0; n];
        for (i, v) in y1.iter_mut().enumerate() {
            activation_into(&x.data()[i..=i], std::slice::from_mut(v), act);
        }
        assert_eq!(y.data(), y1.as_slice(), "{act:?}");
        let g = Tensor::from_fn([n], |i| (i % 13) as f32 - 6.0).unwrap();
        let gx = activation_backward(&g, &x, &y, act).unwrap();
        let mut gx1 = vec![0.0; n];
        activation_backward_into(g.data(), x.data(), y.data(), &mut gx1, act);
        assert_eq!(gx.data(), gx1.as_slice(), "{act:?}");
    }
}

#[test]
fn prelu_hand_checked() {
    // Per channel: input [1, 2, 2], slopes [0.5, 0.25].
    let x = Tensor::new([1, 2, 2], vec![-2.0, 3.0, -4.0, 0.0]).unwrap();
    let w = Tensor::new([2], vec![0.5, 0.25]).unwrap();
    let y = prelu(&x, &w).unwrap();
    assert_eq!(y.data(), &[-1.0, 3.0, -1.0, 0.0]);
    let g = Tensor::new([1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let grads = prelu_backward(&g, &x, &w).unwrap();
    assert_eq!(grads.grad_input.data(), &[0.5, 2.0, 0.75, 1.0]);
    // Channel 0: -2 * 1; channel 1: -4 * 3 + 0 * 4.
    assert_eq!(grads.grad_weight.dims(), &[2]);
    assert_eq!(grads.grad_weight.data(), &[-2.0, -12.0]);
    // One shared slope: the same input, every element.
    let w1 = Tensor::new([1], vec![0.5]).unwrap();
    assert_eq!(prelu(&x, &w1).unwrap().data(), &[-1.0, 3.0, -2.0, 0.0]);
    let grads = prelu_backward(&g, &x, &w1).unwrap();
    assert_eq!(grads.grad_weight.data(), &[-14.0]);
    // A scalar weight works too, and its gradient keeps its shape.
    let w0 = Tensor::new(Vec::new(), vec![0.5]).unwrap();
    assert_eq!(
        prelu_backward(&g, &x, &w0).unwrap().grad_weight.dims(),
        &[] as &[usize]
    );
}

#[test]
fn shape_mismatches_are_errors_naming_the_shapes() {
    let x = Tensor::zeros([2, 3]).unwrap();
    let bad = Tensor::zeros([3, 2]).unwrap();
    let err = activation_backward(&bad, &x, &x, Activation::Relu).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "activation_backward: Relu: grad_output [3, 2], input [2, 3] and output [2, 3] \
         must have the same shape"
    );
    let err = activation_backward(&x, &x, &bad, Activation::Tanh).unwrap_err();
    assert!(err.to_string().contains("output [3, 2]"), "{err}");
}

#[test]
fn prelu_weight_of_the_wrong_length_is_an_error() {
    let x = Tensor::zeros([2, 3, 4, 4]).unwrap();
    let err = prelu(&x, &Tensor::zeros([4]).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "prelu: weight [4] has 4 slopes but input [2, 3, 4, 4] has 3 channels (dimension \
         1); give 1 slope or one per channel"
    );
    let err = prelu(&Tensor::zeros([5]).unwrap(), &Tensor::zeros([5]).unwrap()).unwrap_err();
    assert!(err.to_string().contains("weight [5] has 5 slopes"), "{err}");
    assert!(err.to_string().contains("no channel dimension"), "{err}");
    let err = prelu(&x, &Tensor::zeros([3, 1]).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("weight must be a scalar or 1-D"),
        "{err}"
    );
    let g = Tensor::zeros([2, 3, 4, 5]).unwrap();
    let err = prelu_backward(&g, &x, &Tensor::zeros([3]).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "prelu_backward: grad_output has shape [2, 3, 4, 5] but the input has shape \
         [2, 3, 4, 4]"
    );
}

#[test]
fn in_place_forms_equal_the_out_of_place_ones() {
    let n = 3 * CHUNK + 17;
    let x = Tensor::from_fn([n], |i| ((i * 37 % 101) as f32 - 50.0) / 13.0).unwrap();
    let g = Tensor::from_fn([n], |i| ((i * 11 % 29) as f32 - 14.0) / 7.0).unwrap();
    for act in [
        Activation::Relu,
        Activation::LeakyRelu {
            negative_slope: 0.1,
        },
        Activation::Elu { alpha: 0.5 },
        Activation::Tanh,
        Activation::Sigmoid,
    ] {
        let y = activation(&x, act);
        let mut z = x.clone();
        activation_in_place(z.data_mut(), act);
        assert_eq!(z, y, "{act:?}");
        let mut gi = g.clone();
        let done = activation_backward_in_place(gi.data_mut(), y.data(), act);
        assert_eq!(done, gradient_from_output(act), "{act:?}");
        if done {
            assert_eq!(gi, activation_backward(&g, &x, &y, act).unwrap(), "{act:?}");
        } else {
            assert_eq!(gi, g, "{act:?}: left alone");
        }
    }
}
