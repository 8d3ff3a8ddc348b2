//! Element-wise activations and PReLU, forward and backward, computing what PyTorch's CPU
//! kernels compute (including the value at the kink and what NaN does).
//!
//! | activation | forward `y` | backward `grad_input` |
//! |---|---|---|
//! | ReLU | `x < 0 ? 0 : x` (NaN and `-0.0` pass through, as `clamp_min(x, 0)`) | `x <= 0 ? 0 : g` (0 at `x == 0`) |
//! | LeakyReLU | `x > 0 ? x : slope * x` | `x > 0 ? g : g * slope` |
//! | ELU | `x > 0 ? x : alpha * expm1(x)` | `x > 0 ? g : g * alpha * exp(x)` |
//! | Tanh | `tanh(x)` | `g * (1 - y^2)` |
//! | Sigmoid | `1 / (1 + exp(-x))` | `g * (1 - y) * y` |
//! | PReLU | `x > 0 ? x : w * x` | `x > 0 ? g : w * g`; `grad_weight = sum(x > 0 ? 0 : x * g)` |
//!
//! The sigmoid is PyTorch's formula, which is stable for any `x` in IEEE arithmetic: for
//! `x < -88` (f32) `exp(-x)` overflows to +inf and the result is exactly 0, never NaN; for
//! large `x` it is exactly 1. Tanh and sigmoid gradients read the output `y`, the others the
//! input `x` (as PyTorch's autograd does).
//!
//! PReLU's weight holds one slope for every element, or one per channel (dimension 1 of an
//! input of rank 2 or more), like `torch.nn.functional.prelu`. Its weight gradient is summed
//! in `f64`.
//!
//! Large tensors are split into chunks processed in parallel. The kernels are generic over
//! the float type so the finite-difference tests can run in `f64`.

use num_traits::Float;
use rayon::prelude::*;

use super::elementwise::{CHUNK, zip_chunks};
use crate::error::{Error, Result};
use crate::tensor::{Tensor, check_same_shape};

/// An element-wise activation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x > 0 ? x : negative_slope * x` (`torch.nn.LeakyReLU`).
    LeakyRelu { negative_slope: f32 },
    /// `x > 0 ? x : alpha * (exp(x) - 1)` (`torch.nn.ELU`).
    Elu { alpha: f32 },
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// PyTorch's default `negative_slope` of `LeakyReLU`.
    pub const LEAKY_RELU_DEFAULT_SLOPE: f32 = 0.01;

    /// LeakyReLU with PyTorch's default slope, 0.01.
    pub fn leaky_relu() -> Self {
        Activation::LeakyRelu {
            negative_slope: Self::LEAKY_RELU_DEFAULT_SLOPE,
        }
    }

    /// ELU with PyTorch's default `alpha`, 1.0.
    pub fn elu() -> Self {
        Activation::Elu { alpha: 1.0 }
    }

    /// Whether the gradient reads the output (tanh, sigmoid) rather than the input.
    fn grad_uses_output(self) -> bool {
        match self {
            Activation::Tanh | Activation::Sigmoid => true,
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Elu { .. } => false,
        }
    }
}

/// `act` applied to every element of `input` (any shape).
///
/// ```
/// use convnet_core::{Activation, Tensor, activation};
/// let x = Tensor::new([4], vec![-2.0, -0.5, 0.0, 3.0])?;
/// assert_eq!(activation(&x, Activation::Relu).data(), &[0.0, 0.0, 0.0, 3.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn activation(input: &Tensor, act: Activation) -> Tensor {
    let mut y = vec![0.0; input.numel()];
    activation_into(input.data(), &mut y, act);
    Tensor::from_parts(input.dims().to_vec(), y)
}

/// `grad_input` of [`activation`]: `grad_output`, `input` and `output` (the forward pass's
/// result) must all have the same shape. Tanh and sigmoid read `output`, the others `input`.
pub fn activation_backward(
    grad_output: &Tensor,
    input: &Tensor,
    output: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    if grad_output.dims() != input.dims() || output.dims() != input.dims() {
        return Err(Error::shape(
            "activation_backward",
            format!(
                "{act:?}: grad_output {}, input {} and output {} must have the same shape",
                grad_output.shape(),
                input.shape(),
                output.shape()
            ),
        ));
    }
    let mut gx = vec![0.0; input.numel()];
    activation_backward_into(
        grad_output.data(),
        input.data(),
        output.data(),
        &mut gx,
        act,
    );
    Ok(Tensor::from_parts(input.dims().to_vec(), gx))
}

/// [`activation`] on slices, for layers that reuse their buffers: `y[i] = act(x[i])`.
///
/// `x` and `y` must have the same length (checked in debug builds; otherwise only the
/// common prefix is written).
pub fn activation_into(x: &[f32], y: &mut [f32], act: Activation) {
    forward(x, y, act);
}

/// [`activation_backward`] on slices: `grad_input` is overwritten. All four slices must have
/// the same length (checked in debug builds; otherwise only the common prefix is written).
/// `output` is only read by tanh and sigmoid, `input` only by the others.
pub fn activation_backward_into(
    grad_output: &[f32],
    input: &[f32],
    output: &[f32],
    grad_input: &mut [f32],
    act: Activation,
) {
    backward(grad_output, input, output, grad_input, act);
}

/// `act` applied in place to every element of `data`.
pub fn activation_in_place(data: &mut [f32], act: Activation) {
    let zero = 0.0f32;
    match act {
        Activation::Relu => map_in_place(data, relu),
        Activation::LeakyRelu { negative_slope } => {
            map_in_place(data, |x| if x > zero { x } else { x * negative_slope })
        }
        Activation::Elu { alpha } => {
            map_in_place(data, |x| if x > zero { x } else { x.exp_m1() * alpha })
        }
        Activation::Tanh => map_in_place(data, f32::tanh),
        Activation::Sigmoid => map_in_place(data, sigmoid),
    }
}

/// Whether the gradient of `act` is a function of its output alone (ReLU, tanh, sigmoid), so
/// that [`activation_backward_in_place`] applies and the input need not be kept.
pub fn gradient_from_output(act: Activation) -> bool {
    match act {
        Activation::Relu | Activation::Tanh | Activation::Sigmoid => true,
        Activation::LeakyRelu { .. } | Activation::Elu { .. } => false,
    }
}

/// In place on `grad` (the gradient w.r.t. the output, becoming the gradient w.r.t. the
/// input), for activations with [`gradient_from_output`]: `output` is the forward result.
/// Returns `false`, leaving `grad` alone, for the other activations.
pub fn activation_backward_in_place(grad: &mut [f32], output: &[f32], act: Activation) -> bool {
    if grad.len() != output.len() {
        return false;
    }
    let zero = 0.0f32;
    match act {
        // PyTorch: threshold_backward(g, relu(x), 0), i.e. `y <= 0 ? 0 : g`.
        Activation::Relu => zip_in_place(grad, output, |g, y| if y <= zero { zero } else { g }),
        Activation::Tanh => zip_in_place(grad, output, |g, y| g * (1.0 - y * y)),
        Activation::Sigmoid => zip_in_place(grad, output, |g, y| g * (1.0 - y) * y),
        // The gradient needs the input (`gradient_from_output` is false).
        Activation::LeakyRelu { .. } | Activation::Elu { .. } => return false,
    }
    true
}

/// `data[i] = f(data[i])`, in parallel chunks for large slices.
fn map_in_place(data: &mut [f32], f: impl Fn(f32) -> f32 + Send + Sync) {
    let run = |d: &mut [f32]| d.iter_mut().for_each(|v| *v = f(*v));
    if data.len() <= CHUNK {
        run(data);
    } else {
        data.par_chunks_mut(CHUNK).for_each(run);
    }
}

/// `a[i] = f(a[i], b[i])`, in parallel chunks for large slices.
fn zip_in_place(a: &mut [f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Send + Sync) {
    zip_chunks(a, b, |a, b| {
        a.iter_mut().zip(b).for_each(|(a, &b)| *a = f(*a, b));
    });
}

/// The gradients of [`prelu`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreluGrads {
    /// Same shape as the input.
    pub grad_input: Tensor,
    /// Same shape as the weight.
    pub grad_weight: Tensor,
}

/// PReLU, `torch.nn.functional.prelu`: `x > 0 ? x : w * x`.
///
/// `weight` holds one slope (shape `[1]`, or a scalar) shared by every element, or one slope
/// per channel (shape `[C]`, `C` = dimension 1 of an input of rank 2 or more).
pub fn prelu(input: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let layout = PreluLayout::new("prelu", input, weight)?;
    let mut y = vec![0.0; input.numel()];
    prelu_forward(layout, input.data(), weight.data(), &mut y);
    Ok(Tensor::from_parts(input.dims().to_vec(), y))
}

/// The gradients of [`prelu`] w.r.t. its input and its weight. `grad_output` must have the
/// input's shape.
pub fn prelu_backward(grad_output: &Tensor, input: &Tensor, weight: &Tensor) -> Result<PreluGrads> {
    const OP: &str = "prelu_backward";
    let layout = PreluLayout::new(OP, input, weight)?;
    check_same_shape(OP, ("grad_output", grad_output), ("the input", input))?;
    let mut gx = vec![0.0; input.numel()];
    let mut gw = vec![0.0; weight.numel()];
    prelu_grads(
        layout,
        grad_output.data(),
        input.data(),
        weight.data(),
        &mut gx,
        &mut gw,
    );
    Ok(PreluGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight: Tensor::from_parts(weight.dims().to_vec(), gw),
    })
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels

fn cast<T: Float>(v: f32) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// `y[i] = f(x[i])`, in parallel chunks for large slices.
fn map<T: Copy + Send + Sync>(x: &[T], y: &mut [T], f: impl Fn(T) -> T + Send + Sync) {
    debug_assert_eq!(x.len(), y.len(), "input and output lengths differ");
    let run = |y: &mut [T], x: &[T]| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = f(x);
        }
    };
    if y.len() <= CHUNK {
        run(y, x);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| run(y, x));
    }
}

/// `out[i] = f(a[i], b[i])`, in parallel chunks for large slices.
fn map2<T: Copy + Send + Sync>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    f: impl Fn(T, T) -> T + Send + Sync,
) {
    debug_assert!(
        a.len() == out.len() && b.len() == out.len(),
        "slice lengths differ"
    );
    let run = |out: &mut [T], a: &[T], b: &[T]| {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    };
    if out.len() <= CHUNK {
        run(out, a, b);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, a), b)| run(o, a, b));
    }
}

/// PyTorch's `clamp_min(x, 0)`: `-0.0` and NaN pass through.
#[inline]
fn relu<T: Float>(x: T) -> T {
    if x < T::zero() { T::zero() } else { x }
}

#[inline]
fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn forward<T: Float + Send + Sync>(x: &[T], y: &mut [T], act: Activation) {
    let zero = T::zero();
    match act {
        Activation::Relu => map(x, y, relu),
        Activation::LeakyRelu { negative_slope } => {
            let slope = cast::<T>(negative_slope);
            map(x, y, |x| if x > zero { x } else { x * slope });
        }
        Activation::Elu { alpha } => {
            let alpha = cast::<T>(alpha);
            map(x, y, |x| if x > zero { x } else { x.exp_m1() * alpha });
        }
        Activation::Tanh => map(x, y, T::tanh),
        Activation::Sigmoid => map(x, y, sigmoid),
    }
}

fn backward<T: Float + Send + Sync>(g: &[T], x: &[T], y: &[T], gx: &mut [T], act: Activation) {
    let (zero, one) = (T::zero(), T::one());
    let src = if act.grad_uses_output() { y } else { x };
    match act {
        // PyTorch: threshold_backward(g, relu(x), 0), i.e. `y <= 0 ? 0 : g`.
        Activation::Relu => map2(g, src, gx, |g, x| if x <= zero { zero } else { g }),
        Activation::LeakyRelu { negative_slope } => {
            let slope = cast::<T>(negative_slope);
            map2(g, src, gx, |g, x| if x > zero { g } else { g * slope });
        }
        Activation::Elu { alpha } => {
            let alpha = cast::<T>(alpha);
            map2(
                g,
                src,
                gx,
                |g, x| if x > zero { g } else { g * alpha * x.exp() },
            );
        }
        Activation::Tanh => map2(g, src, gx, |g, y| g * (one - y * y)),
        Activation::Sigmoid => map2(g, src, gx, |g, y| g * (one - y) * y),
    }
}

// ---------------------------------------------------------------------------------------------
// PReLU

/// How PReLU's slopes map onto the input.
#[derive(Debug, Clone, Copy)]
enum PreluLayout {
    /// One slope for every element.
    Shared,
    /// One slope per channel: the input is `outer` blocks of `channels` planes of `inner`
    /// elements each.
    PerChannel { channels: usize, inner: usize },
}

impl PreluLayout {
    fn new(op: &'static str, input: &Tensor, weight: &Tensor) -> Result<Self> {
        if weight.rank() > 1 {
            return Err(Error::shape(
                op,
                format!(
                    "weight must be a scalar or 1-D (one slope, or one per channel), got shape {}",
                    weight.shape()
                ),
            ));
        }
        let slopes = weight.numel();
        if slopes == 1 {
            return Ok(PreluLayout::Shared);
        }
        match input.dims() {
            [_, channels, rest @ ..] if *channels == slopes => Ok(PreluLayout::PerChannel {
                channels: slopes,
                inner: rest.iter().product(),
            }),
            [_, channels, ..] => Err(Error::shape(
                op,
                format!(
                    "weight {} has {slopes} slopes but input {} has {channels} channels \
                     (dimension 1); give 1 slope or one per channel",
                    weight.shape(),
                    input.shape()
                ),
            )),
            _ => Err(Error::shape(
                op,
                format!(
                    "weight {} has {slopes} slopes but input {} has no channel dimension \
                     (rank < 2), so it takes exactly 1 slope",
                    weight.shape(),
                    input.shape()
                ),
            )),
        }
    }
}

/// Planes per parallel task for PReLU's per-channel loops over planes of `inner` elements.
fn planes_per_task(inner: usize) -> usize {
    CHUNK.div_ceil(inner.max(1))
}

fn prelu_forward<T: Float + Send + Sync>(layout: PreluLayout, x: &[T], w: &[T], y: &mut [T]) {
    let zero = T::zero();
    match layout {
        PreluLayout::Shared => {
            let w = w[0];
            map(x, y, |x| if x > zero { x } else { w * x });
        }
        PreluLayout::PerChannel { channels, inner } => {
            if inner == 0 {
                return;
            }
            y.par_chunks_mut(inner)
                .zip(x.par_chunks(inner))
                .enumerate()
                .with_min_len(planes_per_task(inner))
                .for_each(|(p, (y, x))| {
                    let w = w[p % channels];
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if x > zero { x } else { w * x };
                    }
                });
        }
    }
}

/// `gx = x > 0 ? g : w * g`; `gw[c] = sum over channel c of (x > 0 ? 0 : x * g)`, in `f64`.
fn prelu_grads<T: Float + Send + Sync>(
    layout: PreluLayout,
    g: &[T],
    x: &[T],
    w: &[T],
    gx: &mut [T],
    gw: &mut [T],
) {
    let zero = T::zero();
    let slope_term = |x: T, g: T| -> f64 {
        if x > zero {
            0.0
        } else {
            (x * g).to_f64().unwrap_or(f64::NAN)
        }
    };
    match layout {
        PreluLayout::Shared => {
            let w0 = w[0];
            map2(g, x, gx, |g, x| if x > zero { g } else { w0 * g });
            let sum: f64 = x.iter().zip(g).map(|(&x, &g)| slope_term(x, g)).sum();
            gw[0] = T::from(sum).unwrap_or_else(T::nan);
        }
        PreluLayout::PerChannel { channels, inner } => {
            if inner == 0 {
                gw.fill(zero);
                return;
            }
            gx.par_chunks_mut(inner)
                .zip(g.par_chunks(inner))
                .zip(x.par_chunks(inner))
                .enumerate()
                .with_min_len(planes_per_task(inner))
                .for_each(|(p, ((gx, g), x))| {
                    let w = w[p % channels];
                    for ((gx, &g), &x) in gx.iter_mut().zip(g).zip(x) {
                        *gx = if x > zero { g } else { w * g };
                    }
                });
            // Channel by channel, each summing its planes in order: deterministic.
            let block = channels * inner;
            gw.par_iter_mut().enumerate().for_each(|(c, gw)| {
                let mut sum = 0.0f64;
                for (g, x) in g.chunks_exact(block).zip(x.chunks_exact(block)) {
                    let plane = c * inner..(c + 1) * inner;
                    let (g, x) = (&g[plane.clone()], &x[plane]);
                    sum += x
                        .iter()
                        .zip(g)
                        .map(|(&x, &g)| slope_term(x, g))
                        .sum::<f64>();
                }
                *gw = T::from(sum).unwrap_or_else(T::nan);
            });
        }
    }
}

#[cfg(test)]
mod tests {
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
}
