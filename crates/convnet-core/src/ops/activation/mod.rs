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
//!
//! This file holds the element-wise activations (API and kernels); `prelu.rs` PReLU, whose
//! slopes are a weight; `tests.rs` the finite-difference checks, hand-checked values and
//! errors.

mod prelu;
#[cfg(test)]
mod tests;

pub use prelu::{PreluGrads, prelu, prelu_backward};

use num_traits::Float;
use rayon::prelude::*;

use super::elementwise::{CHUNK, zip_chunks};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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

fn cast<T: Float>(v: f32) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// `y[i] = f(x[i])`, in parallel chunks for large slices.
pub(super) fn map<T: Copy + Send + Sync>(x: &[T], y: &mut [T], f: impl Fn(T) -> T + Send + Sync) {
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
pub(super) fn map2<T: Copy + Send + Sync>(
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
#[inline(always)]
pub(crate) fn relu<T: Float>(x: T) -> T {
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
