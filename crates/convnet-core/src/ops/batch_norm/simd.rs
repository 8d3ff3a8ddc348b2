//! The element types the kernels run on ([`BnFloat`]: `f32`, vectorised, and `f64`, for the
//! finite-difference tests) and the vector loops of the plane path, compiled per instruction
//! set and chosen at run time.

use std::mem::MaybeUninit;

use num_traits::Float;

use crate::cpu::reduce;
use crate::cpu::simd::{Simd, multiversion};
use crate::ops::activation;

/// The two sums of a backward pass over one channel: `Σ g` and `Σ g (x - mean)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct GradSums {
    pub(super) sum: f64,
    pub(super) dot: f64,
}

impl GradSums {
    pub(super) const ZERO: GradSums = GradSums { sum: 0.0, dot: 0.0 };

    pub(super) fn add(self, other: GradSums) -> GradSums {
        GradSums {
            sum: self.sum + other.sum,
            dot: self.dot + other.dot,
        }
    }
}

pub(super) fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

pub(super) fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// The element types the plane path runs on: `f32` (vector loops chosen at run time) and
/// `f64` (finite-difference tests). The provided methods are the plain loops, sums in f64.
///
/// The two element-wise methods write every element of their output (`y.len()` must equal
/// the input lengths; they panic otherwise): [`Output`] relies on it.
pub(super) trait BnFloat: Float + Send + Sync {
    /// `Σ x`.
    fn plane_sum(x: &[Self]) -> f64 {
        x.iter().map(|&v| to_f64(v)).sum()
    }

    /// `Σ (x - mean)²`.
    fn plane_sq_dev(x: &[Self], mean: Self) -> f64 {
        x.iter()
            .map(|&v| {
                let d = v - mean;
                to_f64(d * d)
            })
            .sum()
    }

    /// `(Σ g, Σ g (x - mean))`, of `g` through the ReLU `relu` names (see [`Relu`]).
    fn plane_grad_sums(g: &[Self], x: &[Self], mean: Self, relu: Relu<Self>) -> GradSums {
        let mut s = GradSums::ZERO;
        for (&g, &x) in g.iter().zip(x) {
            let g = through_relu(g, x, mean, relu);
            s.sum += to_f64(g);
            s.dot += to_f64(g * (x - mean));
        }
        s
    }

    /// `y = (x - mean) * a + b`, then ReLU if `relu`.
    fn plane_affine(
        x: &[Self],
        mean: Self,
        a: Self,
        b: Self,
        relu: bool,
        y: &mut [MaybeUninit<Self>],
    ) {
        affine_loop(x, mean, a, b, relu, y);
    }

    /// `gx = g * s + ((x - mean) * q + r)` with `coef = [s, q, r]`, `g` through `relu`.
    fn plane_grad_input(
        g: &[Self],
        x: &[Self],
        mean: Self,
        coef: [Self; 3],
        relu: Relu<Self>,
        gx: &mut [MaybeUninit<Self>],
    ) {
        grad_input_loop(g, x, mean, coef, relu, gx);
    }
}

/// A ReLU after the batch norm's output, fused into its passes: `Some((a, b))`, the
/// coefficients of the channel's output `y = (x - mean) * a + b`, which the backward pass
/// recomputes (the same operations as the forward pass: the same bits) to mask the gradient
/// as ReLU's backward does, `if y <= 0 { 0 } else { g }`. `None`: no ReLU.
pub(super) type Relu<T> = Option<(T, T)>;

/// The gradient `g` at `x` that passes the ReLU `relu` to the batch norm.
#[inline(always)]
pub(super) fn through_relu<T: Float>(g: T, x: T, mean: T, relu: Relu<T>) -> T {
    match relu {
        Some((a, b)) if (x - mean) * a + b <= T::zero() => T::zero(),
        _ => g,
    }
}

impl BnFloat for f64 {}

impl BnFloat for f32 {
    fn plane_sum(x: &[f32]) -> f64 {
        f64::from(reduce::sum(x))
    }

    fn plane_sq_dev(x: &[f32], mean: f32) -> f64 {
        f64::from(reduce::sum_sq_dev(x, mean))
    }

    fn plane_grad_sums(g: &[f32], x: &[f32], mean: f32, relu: Relu<f32>) -> GradSums {
        let (sum, dot) = match relu {
            Some((a, b)) => reduce::sum_and_centered_dot_relu(g, x, mean, a, b),
            None => reduce::sum_and_centered_dot(g, x, mean),
        };
        GradSums {
            sum: f64::from(sum),
            dot: f64::from(dot),
        }
    }

    fn plane_affine(x: &[f32], mean: f32, a: f32, b: f32, relu: bool, y: &mut [MaybeUninit<f32>]) {
        affine_f32(x, mean, a, b, relu, y);
    }

    fn plane_grad_input(
        g: &[f32],
        x: &[f32],
        mean: f32,
        coef: [f32; 3],
        relu: Relu<f32>,
        gx: &mut [MaybeUninit<f32>],
    ) {
        grad_input_f32(g, x, mean, coef, relu, gx);
    }
}

// The element-wise passes are plain loops that the compiler vectorizes; `multiversion!`
// compiles them once per instruction set (inside `#[target_feature]` functions) and picks
// the best at run time. They write into uninitialised memory (`MaybeUninit`), which the
// `Simd` trait's stores do not take; memory bandwidth, not arithmetic, bounds them.
multiversion!(
    fn affine_f32(x: &[f32], mean: f32, a: f32, b: f32, relu: bool, y: &mut [MaybeUninit<f32>])
        => affine_f32_impl
);
multiversion!(
    fn grad_input_f32(
        g: &[f32],
        x: &[f32],
        mean: f32,
        coef: [f32; 3],
        relu: Relu<f32>,
        gx: &mut [MaybeUninit<f32>],
    ) => grad_input_f32_impl
);

#[inline(always)]
pub(super) fn affine_f32_impl<S: Simd>(
    _: S,
    x: &[f32],
    mean: f32,
    a: f32,
    b: f32,
    relu: bool,
    y: &mut [MaybeUninit<f32>],
) {
    affine_loop(x, mean, a, b, relu, y);
}

#[inline(always)]
pub(super) fn grad_input_f32_impl<S: Simd>(
    _: S,
    g: &[f32],
    x: &[f32],
    mean: f32,
    coef: [f32; 3],
    relu: Relu<f32>,
    gx: &mut [MaybeUninit<f32>],
) {
    grad_input_loop(g, x, mean, coef, relu, gx);
}

/// `y = (x - mean) * a + b`, then ReLU if `relu`, every element of `y` written.
#[inline(always)]
fn affine_loop<T: Float>(x: &[T], mean: T, a: T, b: T, relu: bool, y: &mut [MaybeUninit<T>]) {
    assert_eq!(x.len(), y.len(), "batch_norm: plane lengths differ");
    // Two loops, so each vectorises without a test per element.
    if relu {
        for (y, &x) in y.iter_mut().zip(x) {
            y.write(activation::relu((x - mean) * a + b));
        }
    } else {
        for (y, &x) in y.iter_mut().zip(x) {
            y.write((x - mean) * a + b);
        }
    }
}

/// `gx = g * s + ((x - mean) * q + r)` with `[s, q, r] = coef` and `g` through `relu`, every
/// element of `gx` written.
#[inline(always)]
fn grad_input_loop<T: Float>(
    g: &[T],
    x: &[T],
    mean: T,
    coef: [T; 3],
    relu: Relu<T>,
    gx: &mut [MaybeUninit<T>],
) {
    let [s, q, r] = coef;
    assert!(
        g.len() == gx.len() && x.len() == gx.len(),
        "batch_norm: plane lengths differ"
    );
    if let Some(mask) = relu {
        for ((gx, &g), &x) in gx.iter_mut().zip(g).zip(x) {
            let g = through_relu(g, x, mean, Some(mask));
            gx.write(g * s + ((x - mean) * q + r));
        }
    } else {
        for ((gx, &g), &x) in gx.iter_mut().zip(g).zip(x) {
            gx.write(g * s + ((x - mean) * q + r));
        }
    }
}
