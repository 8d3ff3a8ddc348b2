//! Batch normalization, forward and backward, training and evaluation modes, as
//! `torch.nn.functional.batch_norm` (`nn.BatchNorm1d` / `nn.BatchNorm2d`) computes on the CPU.
//!
//! The input is `[N, C]`, `[N, C, L]` or `[N, C, H, W]`; each channel `c` is normalized with
//! statistics over every other axis, `M = N * L` (or `N * H * W`, or `N`) values. `weight`
//! (γ) and `bias` (β) are optional `[C]` tensors (absent: γ = 1, β = 0).
//!
//! | | formula (per channel) |
//! |---|---|
//! | training forward | `mean = Σx / M`, `var = Σ(x - mean)² / M` (biased), `invstd = 1 / sqrt(var + eps)`, `y = (x - mean) * invstd * γ + β` |
//! | running estimate | `var_unbiased = Σ(x - mean)² / (M - 1)` (what `nn.BatchNorm` blends into `running_var`) |
//! | training backward | `x̂ = (x - mean) * invstd`; `grad_input = γ invstd (g - mean(g) - x̂ mean(g x̂))`, `grad_weight = Σ g x̂`, `grad_bias = Σ g` |
//! | eval forward | `y = (x - running_mean) / sqrt(running_var + eps) * γ + β` |
//! | eval backward | `grad_input = g γ / sqrt(running_var + eps)`, `grad_weight = Σ g x̂`, `grad_bias = Σ g` |
//!
//! `grad_weight` and `grad_bias` are returned when (and only when) a weight is given.
//!
//! # PyTorch behaviour matched
//! - `eps` must be positive (PyTorch: "batch_norm eps must be positive during training"); it
//!   is checked in evaluation mode too, where PyTorch would accept 0.
//! - One value per channel in training (`M == 1`): `F.batch_norm` and `nn.BatchNorm*d` refuse
//!   it ("Expected more than 1 value per channel when training"), and so does
//!   [`batch_norm_train`] (the unbiased variance would be 0/0: `torch.native_batch_norm`, which
//!   skips that check, leaves `running_var` NaN). `M == 0` is an error too.
//! - The sums run in double precision as PyTorch's CPU kernel does (`acc_type<float>` is
//!   `double`): each plane of `L` or `H * W` values is summed in f32 vector lanes, the planes
//!   of a channel are added in f64, and the variance is the second pass over `x - mean` with
//!   the mean rounded to f32 (as PyTorch). The output is computed as `(x - mean) * a + β`
//!   rather than PyTorch's `x * a + (β - mean * a)`, which loses digits when `|mean| >> std`.
//!
//! # Speed
//! Two loop orders, both memory-bound, both writing the output once (into uninitialised
//! memory, not zeroed first):
//! - **Planes** (`L` or `H * W` of at least 16): channels run in parallel (rayon) and one task
//!   does everything for its channel (sums, then the output pass), each pass a vectorised
//!   loop ([`crate::cpu::reduce`], and two element-wise kernels here) chosen at run time for the
//!   CPU. Passes over a channel alternate direction, so each starts on the planes the
//!   previous one left in the cache.
//! - **Rows** (`[N, C]`, or planes shorter than 16): the input is `N` rows of `C * L` values;
//!   blocks of rows are summed column by column in parallel (partials added in order), and
//!   rows are transformed with one coefficient per position.
//!
//! Sums are accumulated in f64 on both paths, so results do not depend on the thread count.
//!
//! The kernels are generic over the float type so the finite-difference tests run in `f64`.

use std::mem::MaybeUninit;
use std::ops::Range;

use num_traits::Float;
use rayon::prelude::*;

use crate::cpu::reduce;
use crate::cpu::simd::{Simd, multiversion};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

const TRAIN_OP: &str = "batch_norm_train";
const EVAL_OP: &str = "batch_norm_eval";
const BACKWARD_OP: &str = "batch_norm_backward";
const EVAL_BACKWARD_OP: &str = "batch_norm_eval_backward";

/// Elements per rayon task, at least (small tensors stay on one thread).
const PARALLEL_MIN_WORK: usize = 1 << 15;
/// Planes shorter than this (`[N, C]`, short `[N, C, L]`) take the row path.
const SIMD_MIN_PLANE: usize = 16;

/// What [`batch_norm_train`] computes: the output and the batch statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormTrain {
    /// Same shape as the input.
    pub output: Tensor,
    /// Per channel: the batch mean.
    pub mean: Vec<f32>,
    /// Per channel: `1 / sqrt(biased_var + eps)`.
    pub invstd: Vec<f32>,
    /// Per channel: the unbiased variance `biased_var * M / (M - 1)`, for the running
    /// estimate (`running_var = (1 - momentum) * running_var + momentum * var_unbiased`).
    pub var_unbiased: Vec<f32>,
}

/// The gradients of a batch norm.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormGrads {
    /// Same shape as the input.
    pub grad_input: Tensor,
    /// `[C]`; present iff a weight was given.
    pub grad_weight: Option<Tensor>,
    /// `[C]`; present iff a weight was given.
    pub grad_bias: Option<Tensor>,
}

/// Batch normalization in training mode: normalizes each channel with the statistics of
/// this batch (biased variance), then scales by `weight` and shifts by `bias`.
///
/// Input `[N, C]`, `[N, C, L]` or `[N, C, H, W]` with at least 2 values per channel;
/// `weight` and `bias` `[C]`; `eps > 0`.
///
/// ```
/// use convnet_core::{Tensor, batch_norm_train};
/// let x = Tensor::new([4, 1], vec![1.0, 2.0, 3.0, 4.0])?;
/// let bn = batch_norm_train(&x, None, None, 1e-5)?;
/// assert_eq!(bn.mean, [2.5]);
/// assert_eq!(bn.var_unbiased, [5.0 / 3.0]);
/// assert!((bn.output.data()[0] + 1.3416).abs() < 1e-4);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn batch_norm_train(
    input: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<BatchNormTrain> {
    let l = Layout::new(TRAIN_OP, input)?;
    check_eps(TRAIN_OP, eps)?;
    check_per_channel(TRAIN_OP, "weight", weight, l, input)?;
    check_per_channel(TRAIN_OP, "bias", bias, l, input)?;
    check_batch_values(TRAIN_OP, l, input)?;
    if l.per_channel() == 1 {
        return Err(Error::shape(
            TRAIN_OP,
            format!(
                "expected more than 1 value per channel when training, got input {} (as \
                 PyTorch: the unbiased variance of one value is undefined)",
                input.shape()
            ),
        ));
    }
    let (y, stats) = train_forward(
        input.data(),
        l,
        weight.map(Tensor::data),
        bias.map(Tensor::data),
        f64::from(eps),
    );
    Ok(BatchNormTrain {
        output: Tensor::from_parts(input.dims().to_vec(), y),
        mean: stats.iter().map(|s| s.mean as f32).collect(),
        invstd: stats.iter().map(|s| s.invstd as f32).collect(),
        var_unbiased: stats.iter().map(|s| s.var_unbiased as f32).collect(),
    })
}

/// Batch normalization in evaluation mode: the per-channel affine map
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`.
///
/// Input `[N, C]`, `[N, C, L]` or `[N, C, H, W]`; `running_mean`, `running_var`, `weight` and
/// `bias` `[C]`; `eps > 0`.
pub fn batch_norm_eval(
    input: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let l = Layout::new(EVAL_OP, input)?;
    check_eps(EVAL_OP, eps)?;
    check_per_channel(EVAL_OP, "running_mean", Some(running_mean), l, input)?;
    check_per_channel(EVAL_OP, "running_var", Some(running_var), l, input)?;
    check_per_channel(EVAL_OP, "weight", weight, l, input)?;
    check_per_channel(EVAL_OP, "bias", bias, l, input)?;
    let y = eval_forward(
        input.data(),
        l,
        running_mean.data(),
        running_var.data(),
        weight.map(Tensor::data),
        bias.map(Tensor::data),
        f64::from(eps),
    );
    Ok(Tensor::from_parts(input.dims().to_vec(), y))
}

/// The gradients of [`batch_norm_train`] (training mode: the batch statistics are functions
/// of the input), given `grad_output`, the forward pass's input, its `mean` and `invstd`
/// ([`BatchNormTrain`]) and its weight.
pub fn batch_norm_backward(
    grad_output: &Tensor,
    input: &Tensor,
    mean: &[f32],
    invstd: &[f32],
    weight: Option<&Tensor>,
) -> Result<BatchNormGrads> {
    let l = Layout::new(BACKWARD_OP, input)?;
    check_grad_output(BACKWARD_OP, grad_output, input)?;
    check_stats(BACKWARD_OP, "mean", mean, l, input)?;
    check_stats(BACKWARD_OP, "invstd", invstd, l, input)?;
    check_per_channel(BACKWARD_OP, "weight", weight, l, input)?;
    check_batch_values(BACKWARD_OP, l, input)?;
    let widen = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    let invstd = widen(invstd);
    let (gx, sums) = train_backward(
        grad_output.data(),
        input.data(),
        l,
        &widen(mean),
        &invstd,
        weight.map(Tensor::data),
    );
    let (grad_weight, grad_bias) = param_grads(weight.is_some(), &sums, &invstd);
    Ok(BatchNormGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight,
        grad_bias,
    })
}

/// The gradients of [`batch_norm_eval`] (evaluation mode: a fixed affine map per channel).
pub fn batch_norm_eval_backward(
    grad_output: &Tensor,
    input: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    eps: f32,
) -> Result<BatchNormGrads> {
    let l = Layout::new(EVAL_BACKWARD_OP, input)?;
    check_eps(EVAL_BACKWARD_OP, eps)?;
    check_grad_output(EVAL_BACKWARD_OP, grad_output, input)?;
    check_per_channel(
        EVAL_BACKWARD_OP,
        "running_mean",
        Some(running_mean),
        l,
        input,
    )?;
    check_per_channel(EVAL_BACKWARD_OP, "running_var", Some(running_var), l, input)?;
    check_per_channel(EVAL_BACKWARD_OP, "weight", weight, l, input)?;
    let (gx, invstd, sums) = eval_backward(
        grad_output.data(),
        input.data(),
        l,
        running_mean.data(),
        running_var.data(),
        weight.map(Tensor::data),
        f64::from(eps),
    );
    let (grad_weight, grad_bias) = param_grads(weight.is_some(), &sums, &invstd);
    Ok(BatchNormGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight,
        grad_bias,
    })
}

/// `grad_weight = Σ g (x - mean) * invstd`, `grad_bias = Σ g`, when there is a weight.
fn param_grads(
    has_weight: bool,
    sums: &[GradSums],
    invstd: &[f64],
) -> (Option<Tensor>, Option<Tensor>) {
    if !has_weight {
        return (None, None);
    }
    let c = sums.len();
    let gw = sums
        .iter()
        .zip(invstd)
        .map(|(s, &inv)| (s.dot * inv) as f32)
        .collect();
    let gb = sums.iter().map(|s| s.sum as f32).collect();
    (
        Some(Tensor::from_parts(vec![c], gw)),
        Some(Tensor::from_parts(vec![c], gb)),
    )
}

// ---------------------------------------------------------------------------------------------
// Checks

/// The input as `n` images of `c` channel planes of `s` values each.
#[derive(Debug, Clone, Copy)]
struct Layout {
    n: usize,
    c: usize,
    s: usize,
}

impl Layout {
    fn new(op: &'static str, input: &Tensor) -> Result<Layout> {
        match *input.dims() {
            [n, c] => Ok(Layout { n, c, s: 1 }),
            [n, c, l] => Ok(Layout { n, c, s: l }),
            [n, c, h, w] => Ok(Layout { n, c, s: h * w }),
            _ => Err(Error::shape(
                op,
                format!(
                    "input must be [N, C], [N, C, L] or [N, C, H, W], got shape {} ({}-D)",
                    input.shape(),
                    input.rank()
                ),
            )),
        }
    }

    /// `M`: the values of one channel.
    fn per_channel(self) -> usize {
        self.n * self.s
    }

    /// The elements of image `img`, channel `ch`.
    fn plane(self, img: usize, ch: usize) -> Range<usize> {
        let start = (img * self.c + ch) * self.s;
        start..start + self.s
    }

    /// Channels per rayon task.
    fn channels_per_task(self) -> usize {
        PARALLEL_MIN_WORK.div_ceil(self.per_channel().max(1))
    }
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if eps > 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(Error::param(
            op,
            "eps",
            format!("must be positive and finite, got {eps}"),
        ))
    }
}

/// A `[C]` tensor (weight, bias, running statistics), if given.
fn check_per_channel(
    op: &'static str,
    what: &str,
    t: Option<&Tensor>,
    l: Layout,
    input: &Tensor,
) -> Result<()> {
    match t {
        Some(t) if t.dims() != [l.c] => Err(Error::shape(
            op,
            format!(
                "{what} must have shape [{}] (one per channel of input {}), got {}",
                l.c,
                input.shape(),
                t.shape()
            ),
        )),
        _ => Ok(()),
    }
}

fn check_stats(op: &'static str, what: &str, v: &[f32], l: Layout, input: &Tensor) -> Result<()> {
    if v.len() != l.c {
        return Err(Error::shape(
            op,
            format!(
                "{what} has {} values but input {} has {} channels",
                v.len(),
                input.shape(),
                l.c
            ),
        ));
    }
    Ok(())
}

fn check_grad_output(op: &'static str, grad_output: &Tensor, input: &Tensor) -> Result<()> {
    if grad_output.dims() != input.dims() {
        return Err(Error::shape(
            op,
            format!(
                "grad_output has shape {} but the input has shape {}",
                grad_output.shape(),
                input.shape()
            ),
        ));
    }
    Ok(())
}

/// Batch statistics need at least one value per channel.
fn check_batch_values(op: &'static str, l: Layout, input: &Tensor) -> Result<()> {
    if l.per_channel() == 0 {
        return Err(Error::shape(
            op,
            format!(
                "input {} has no values per channel (N * spatial = 0): the batch statistics \
                 are undefined",
                input.shape()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// The batch statistics of one channel.
#[derive(Debug, Clone, Copy)]
struct Stats {
    /// Rounded to the element type: the value the other passes subtract.
    mean: f64,
    invstd: f64,
    var_unbiased: f64,
}

/// The two sums of a backward pass over one channel: `Σ g` and `Σ g (x - mean)`.
#[derive(Debug, Clone, Copy)]
struct GradSums {
    sum: f64,
    dot: f64,
}

impl GradSums {
    const ZERO: GradSums = GradSums { sum: 0.0, dot: 0.0 };

    fn add(self, other: GradSums) -> GradSums {
        GradSums {
            sum: self.sum + other.sum,
            dot: self.dot + other.dot,
        }
    }
}

fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// The element types the plane path runs on: `f32` (vector loops chosen at run time) and
/// `f64` (finite-difference tests). The provided methods are the plain loops, sums in f64.
///
/// The two element-wise methods write every element of their output (`y.len()` must equal
/// the input lengths; they panic otherwise): [`Output`] relies on it.
trait BnFloat: Float + Send + Sync {
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

    /// `(Σ g, Σ g (x - mean))`.
    fn plane_grad_sums(g: &[Self], x: &[Self], mean: Self) -> GradSums {
        let mut s = GradSums::ZERO;
        for (&g, &x) in g.iter().zip(x) {
            s.sum += to_f64(g);
            s.dot += to_f64(g * (x - mean));
        }
        s
    }

    /// `y = (x - mean) * a + b`.
    fn plane_affine(x: &[Self], mean: Self, a: Self, b: Self, y: &mut [MaybeUninit<Self>]) {
        affine_loop(x, mean, a, b, y);
    }

    /// `gx = g * s + ((x - mean) * q + r)`.
    #[allow(clippy::too_many_arguments)]
    fn plane_grad_input(
        g: &[Self],
        x: &[Self],
        mean: Self,
        s: Self,
        q: Self,
        r: Self,
        gx: &mut [MaybeUninit<Self>],
    ) {
        grad_input_loop(g, x, mean, s, q, r, gx);
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

    fn plane_grad_sums(g: &[f32], x: &[f32], mean: f32) -> GradSums {
        let (sum, dot) = reduce::sum_and_centered_dot(g, x, mean);
        GradSums {
            sum: f64::from(sum),
            dot: f64::from(dot),
        }
    }

    fn plane_affine(x: &[f32], mean: f32, a: f32, b: f32, y: &mut [MaybeUninit<f32>]) {
        affine_f32(x, mean, a, b, y);
    }

    fn plane_grad_input(
        g: &[f32],
        x: &[f32],
        mean: f32,
        s: f32,
        q: f32,
        r: f32,
        gx: &mut [MaybeUninit<f32>],
    ) {
        grad_input_f32(g, x, mean, s, q, r, gx);
    }
}

// The element-wise passes are plain loops that the compiler vectorizes; `multiversion!`
// compiles them once per instruction set (inside `#[target_feature]` functions) and picks
// the best at run time. They write into uninitialised memory (`MaybeUninit`), which the
// `Simd` trait's stores do not take; memory bandwidth, not arithmetic, bounds them.
multiversion!(
    fn affine_f32(x: &[f32], mean: f32, a: f32, b: f32, y: &mut [MaybeUninit<f32>])
        => affine_f32_impl
);
multiversion!(
    fn grad_input_f32(
        g: &[f32],
        x: &[f32],
        mean: f32,
        s: f32,
        q: f32,
        r: f32,
        gx: &mut [MaybeUninit<f32>],
    ) => grad_input_f32_impl
);

#[inline(always)]
fn affine_f32_impl<S: Simd>(
    _: S,
    x: &[f32],
    mean: f32,
    a: f32,
    b: f32,
    y: &mut [MaybeUninit<f32>],
) {
    affine_loop(x, mean, a, b, y);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_input_f32_impl<S: Simd>(
    _: S,
    g: &[f32],
    x: &[f32],
    mean: f32,
    s: f32,
    q: f32,
    r: f32,
    gx: &mut [MaybeUninit<f32>],
) {
    grad_input_loop(g, x, mean, s, q, r, gx);
}

/// `y = (x - mean) * a + b`, every element of `y` written.
#[inline(always)]
fn affine_loop<T: Float>(x: &[T], mean: T, a: T, b: T, y: &mut [MaybeUninit<T>]) {
    assert_eq!(x.len(), y.len(), "batch_norm: plane lengths differ");
    for (y, &x) in y.iter_mut().zip(x) {
        y.write((x - mean) * a + b);
    }
}

/// `gx = g * s + ((x - mean) * q + r)`, every element of `gx` written.
#[inline(always)]
fn grad_input_loop<T: Float>(
    g: &[T],
    x: &[T],
    mean: T,
    s: T,
    q: T,
    r: T,
    gx: &mut [MaybeUninit<T>],
) {
    assert!(
        g.len() == gx.len() && x.len() == gx.len(),
        "batch_norm: plane lengths differ"
    );
    for ((gx, &g), &x) in gx.iter_mut().zip(g).zip(x) {
        gx.write(g * s + ((x - mean) * q + r));
    }
}

/// Fills a new output of `l`'s shape channel by channel, in parallel, without zeroing it
/// first (zeroing a 12.8 MB activation costs as much as a batch-norm pass): `f(channel,
/// planes)` gets every plane of its channel (`planes[img]`, `s` values each) and must write
/// every value of each, which it does through [`BnFloat::plane_affine`] or
/// [`BnFloat::plane_grad_input`]. Returns the output and the channels' results in order.
fn per_channel<T: BnFloat, R: Send>(
    l: Layout,
    f: impl Fn(usize, &mut [&mut [MaybeUninit<T>]]) -> R + Sync + Send,
) -> (Vec<T>, Vec<R>) {
    let len = l.n * l.c * l.s;
    let mut out: Vec<T> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let mut by_channel: Vec<Vec<&mut [MaybeUninit<T>]>> =
        (0..l.c).map(|_| Vec::with_capacity(l.n)).collect();
    if l.s > 0 && l.c > 0 {
        for (p, plane) in spare.chunks_exact_mut(l.s).enumerate() {
            by_channel[p % l.c].push(plane);
        }
    }
    let results = by_channel
        .into_par_iter()
        .enumerate()
        .with_min_len(l.channels_per_task())
        .map(|(ch, mut planes)| f(ch, &mut planes))
        .collect();
    // SAFETY: the `n * c` planes of `s` values partition `out[..len]`; each went to the task
    // of its channel, which wrote every value of every plane (the kernels' contract; every
    // caller below runs one over each plane of `planes`). A panic in a task propagates out of
    // `collect` before this line, leaving `out` empty.
    unsafe { out.set_len(len) };
    (out, results)
}

// Rows: for planes shorter than `SIMD_MIN_PLANE` (`[N, C]`, short `[N, C, L]`), the input is
// `N` rows of `C * s` values, summed column by column and transformed row by row with one
// coefficient per position (a channel's coefficient repeated `s` times).

/// Rows per rayon task on the row path.
fn rows_per_task(l: Layout) -> usize {
    PARALLEL_MIN_WORK.div_ceil((l.c * l.s).max(1))
}

/// Each channel's sums of `k` quantities: `add(row, acc)` adds row `row`'s contribution to
/// `acc` (`k` blocks of `C * s` position sums). Blocks of rows run in parallel; their sums
/// are added in order (deterministic). Returns `k` blocks of `C` channel sums.
fn column_sums(l: Layout, k: usize, add: impl Fn(usize, &mut [f64]) + Sync + Send) -> Vec<f64> {
    let width = k * l.c * l.s;
    let per = rows_per_task(l);
    let partials: Vec<Vec<f64>> = (0..l.n.div_ceil(per))
        .into_par_iter()
        .map(|block| {
            let mut acc = vec![0.0; width];
            for row in block * per..((block + 1) * per).min(l.n) {
                add(row, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for part in partials {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total.chunks_exact(l.s).map(|c| c.iter().sum()).collect()
}

/// One value per channel, repeated for each of the channel's `s` positions in a row.
fn per_position<T: Copy>(per_channel: impl Iterator<Item = T>, s: usize) -> Vec<T> {
    per_channel
        .flat_map(|v| std::iter::repeat_n(v, s))
        .collect()
}

/// `out[row] = f(row, out row)` for every row, rows in parallel; `out` has `l`'s shape.
fn map_rows<T: BnFloat>(l: Layout, f: impl Fn(usize, &mut [T]) + Sync + Send) -> Vec<T> {
    let row_len = l.c * l.s;
    let mut out = vec![T::zero(); l.n * row_len];
    if row_len > 0 {
        let per = rows_per_task(l);
        out.par_chunks_mut(per * row_len)
            .enumerate()
            .for_each(|(block, rows)| {
                for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
                    f(block * per + i, row);
                }
            });
    }
    out
}

impl Layout {
    /// Whether the row path runs this layout (short planes).
    fn uses_rows(self) -> bool {
        (1..SIMD_MIN_PLANE).contains(&self.s)
    }

    /// The row `row` of `x`.
    fn row<T>(self, x: &[T], row: usize) -> &[T] {
        let len = self.c * self.s;
        &x[row * len..(row + 1) * len]
    }
}

/// The training statistics of a channel from its sum and centred sum of squares, and the
/// coefficients `(a, b)` of its output `(x - mean) * a + b`.
fn train_coefficients<T: Float>(
    mean: T,
    sq_dev: f64,
    m: f64,
    eps: f64,
    weight: f64,
    bias: T,
) -> (Stats, T, T) {
    let invstd = 1.0 / (sq_dev / m + eps).sqrt();
    let stats = Stats {
        mean: to_f64(mean),
        invstd,
        var_unbiased: sq_dev / (m - 1.0),
    };
    (stats, from_f64(invstd * weight), bias)
}

/// The coefficients `(s, q, r)` of a channel's training `grad_input`,
/// `g * s + (x - mean) * q + r`: `s = w invstd`, `q = -s invstd² Σg(x - mean) / M`,
/// `r = -s Σg / M` (PyTorch's `w invstd (g - mean(g) - x̂ mean(g x̂))`).
fn backward_coefficients<T: Float>(sums: GradSums, m: f64, invstd: f64, weight: f64) -> [T; 3] {
    let s = invstd * weight;
    let q = -s * invstd * invstd * sums.dot / m;
    let r = -s * sums.sum / m;
    [from_f64(s), from_f64(q), from_f64(r)]
}

fn weight_of<T: Float>(w: Option<&[T]>, ch: usize) -> f64 {
    w.map_or(1.0, |w| to_f64(w[ch]))
}

fn bias_of<T: Float>(b: Option<&[T]>, ch: usize) -> T {
    b.map_or(T::zero(), |b| b[ch])
}

fn eval_invstd<T: Float>(running_var: &[T], ch: usize, eps: f64) -> f64 {
    1.0 / (to_f64(running_var[ch]) + eps).sqrt()
}

/// Training forward: batch statistics, then `y = (x - mean) * invstd * w + b`.
fn train_forward<T: BnFloat>(
    x: &[T],
    l: Layout,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
) -> (Vec<T>, Vec<Stats>) {
    let m = l.per_channel() as f64;
    if l.uses_rows() {
        let sums = column_sums(l, 1, |row, acc| {
            for (a, &v) in acc.iter_mut().zip(l.row(x, row)) {
                *a += to_f64(v);
            }
        });
        let mean: Vec<T> = sums.iter().map(|&s| from_f64(s / m)).collect();
        let mean_pos = per_position(mean.iter().copied(), l.s);
        let sq_devs = column_sums(l, 1, |row, acc| {
            for ((a, &v), &mu) in acc.iter_mut().zip(l.row(x, row)).zip(&mean_pos) {
                let d = v - mu;
                *a += to_f64(d * d);
            }
        });
        let (stats, coef): (Vec<Stats>, Vec<(T, T)>) = (0..l.c)
            .map(|ch| {
                let (st, a, beta) = train_coefficients(
                    mean[ch],
                    sq_devs[ch],
                    m,
                    eps,
                    weight_of(w, ch),
                    bias_of(b, ch),
                );
                (st, (a, beta))
            })
            .unzip();
        let a_pos = per_position(coef.iter().map(|c| c.0), l.s);
        let b_pos = per_position(coef.iter().map(|c| c.1), l.s);
        let y = map_rows(l, |row, out| {
            for ((((y, &x), &mu), &a), &b) in out
                .iter_mut()
                .zip(l.row(x, row))
                .zip(&mean_pos)
                .zip(&a_pos)
                .zip(&b_pos)
            {
                *y = (x - mu) * a + b;
            }
        });
        return (y, stats);
    }
    per_channel(l, |ch, planes| {
        let sum: f64 = (0..l.n).map(|i| T::plane_sum(&x[l.plane(i, ch)])).sum();
        let mean: T = from_f64(sum / m);
        // Passes alternate direction, so each starts on the planes the previous one left in
        // the cache (a channel of a large batch does not fit in L2).
        let sq_dev: f64 = (0..l.n)
            .rev()
            .map(|i| T::plane_sq_dev(&x[l.plane(i, ch)], mean))
            .sum();
        let (stats, a, beta) =
            train_coefficients(mean, sq_dev, m, eps, weight_of(w, ch), bias_of(b, ch));
        for (i, out) in planes.iter_mut().enumerate() {
            T::plane_affine(&x[l.plane(i, ch)], mean, a, beta, out);
        }
        stats
    })
}

/// Evaluation forward: `y = (x - rm) / sqrt(rv + eps) * w + b`.
fn eval_forward<T: BnFloat>(
    x: &[T],
    l: Layout,
    running_mean: &[T],
    running_var: &[T],
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
) -> Vec<T> {
    let coefficient = |ch| -> T { from_f64(eval_invstd(running_var, ch, eps) * weight_of(w, ch)) };
    if l.uses_rows() {
        let mean_pos = per_position(running_mean.iter().copied(), l.s);
        let a_pos = per_position((0..l.c).map(coefficient), l.s);
        let b_pos = per_position((0..l.c).map(|ch| bias_of(b, ch)), l.s);
        return map_rows(l, |row, out| {
            for ((((y, &x), &mu), &a), &b) in out
                .iter_mut()
                .zip(l.row(x, row))
                .zip(&mean_pos)
                .zip(&a_pos)
                .zip(&b_pos)
            {
                *y = (x - mu) * a + b;
            }
        });
    }
    per_channel(l, |ch, planes| {
        let (a, beta) = (coefficient(ch), bias_of(b, ch));
        for (i, out) in planes.iter_mut().enumerate() {
            T::plane_affine(&x[l.plane(i, ch)], running_mean[ch], a, beta, out);
        }
    })
    .0
}

/// Each channel's `(Σ g, Σ g (x - mean))` on the row path.
fn row_grad_sums<T: BnFloat>(gy: &[T], x: &[T], l: Layout, mean_pos: &[T]) -> Vec<GradSums> {
    let width = l.c * l.s;
    let sums = column_sums(l, 2, |row, acc| {
        let (sum, dot) = acc.split_at_mut(width);
        for ((((s, d), &g), &x), &mu) in sum
            .iter_mut()
            .zip(dot)
            .zip(l.row(gy, row))
            .zip(l.row(x, row))
            .zip(mean_pos)
        {
            *s += to_f64(g);
            *d += to_f64(g * (x - mu));
        }
    });
    let (sum, dot) = sums.split_at(l.c);
    sum.iter()
        .zip(dot)
        .map(|(&sum, &dot)| GradSums { sum, dot })
        .collect()
}

/// Training backward: `grad_input` (see [`backward_coefficients`]) and each channel's sums
/// (for `grad_weight` and `grad_bias`).
fn train_backward<T: BnFloat>(
    gy: &[T],
    x: &[T],
    l: Layout,
    mean: &[f64],
    invstd: &[f64],
    w: Option<&[T]>,
) -> (Vec<T>, Vec<GradSums>) {
    let m = l.per_channel() as f64;
    if l.uses_rows() {
        let mean_pos = per_position(mean.iter().map(|&v| from_f64::<T>(v)), l.s);
        let sums = row_grad_sums(gy, x, l, &mean_pos);
        let coef: Vec<[T; 3]> = (0..l.c)
            .map(|ch| backward_coefficients(sums[ch], m, invstd[ch], weight_of(w, ch)))
            .collect();
        let [s_pos, q_pos, r_pos] = [0, 1, 2].map(|k| per_position(coef.iter().map(|c| c[k]), l.s));
        let gx = map_rows(l, |row, out| {
            let n = out.len();
            let (g, x) = (&l.row(gy, row)[..n], &l.row(x, row)[..n]);
            let (mu, s, q, r) = (&mean_pos[..n], &s_pos[..n], &q_pos[..n], &r_pos[..n]);
            for j in 0..n {
                out[j] = g[j] * s[j] + ((x[j] - mu[j]) * q[j] + r[j]);
            }
        });
        return (gx, sums);
    }
    per_channel(l, |ch, planes| {
        let mu: T = from_f64(mean[ch]);
        let sums = (0..l.n).fold(GradSums::ZERO, |acc, i| {
            let p = l.plane(i, ch);
            acc.add(T::plane_grad_sums(&gy[p.clone()], &x[p], mu))
        });
        let [s, q, r] = backward_coefficients(sums, m, invstd[ch], weight_of(w, ch));
        // Last planes first: the ones the sums left in the cache.
        for (i, out) in planes.iter_mut().enumerate().rev() {
            let p = l.plane(i, ch);
            T::plane_grad_input(&gy[p.clone()], &x[p], mu, s, q, r, out);
        }
        sums
    })
}

/// Evaluation backward: `gx = g * w / sqrt(rv + eps)`; with a weight, also each channel's
/// sums against `x - running_mean`. Returns `grad_input`, each channel's `invstd` and the
/// sums (zero without a weight).
#[allow(clippy::too_many_arguments)]
fn eval_backward<T: BnFloat>(
    gy: &[T],
    x: &[T],
    l: Layout,
    running_mean: &[T],
    running_var: &[T],
    w: Option<&[T]>,
    eps: f64,
) -> (Vec<T>, Vec<f64>, Vec<GradSums>) {
    let invstd: Vec<f64> = (0..l.c)
        .map(|ch| eval_invstd(running_var, ch, eps))
        .collect();
    let scale = |ch: usize| -> T { from_f64(invstd[ch] * weight_of(w, ch)) };
    if l.uses_rows() {
        let s_pos = per_position((0..l.c).map(scale), l.s);
        let gx = map_rows(l, |row, out| {
            for ((gx, &g), &s) in out.iter_mut().zip(l.row(gy, row)).zip(&s_pos) {
                *gx = g * s;
            }
        });
        let sums = if w.is_some() {
            let mean_pos = per_position(running_mean.iter().copied(), l.s);
            row_grad_sums(gy, x, l, &mean_pos)
        } else {
            vec![GradSums::ZERO; l.c]
        };
        return (gx, invstd, sums);
    }
    let (gx, sums) = per_channel(l, |ch, planes| {
        let s = scale(ch);
        let mut sums = GradSums::ZERO;
        for (i, out) in planes.iter_mut().enumerate() {
            let p = l.plane(i, ch);
            T::plane_affine(&gy[p.clone()], T::zero(), s, T::zero(), out);
            if w.is_some() {
                sums = sums.add(T::plane_grad_sums(&gy[p.clone()], &x[p], running_mean[ch]));
            }
        }
        sums
    });
    (gx, invstd, sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::Portable;

    // Finite differences (crate::testing): with inputs in [-1, 1), `invstd` stays below ~5 on
    // these shapes and |f'''| below ~1e3, so truncation error < 1e-9; rounding < 1e-8.
    use crate::testing::{Rng, check_grad};

    fn layout(dims: &[usize]) -> Layout {
        Layout::new("test", &Tensor::zeros(dims.to_vec()).unwrap()).unwrap()
    }

    /// Row path (`s < 16`) and plane path (`s >= 16`), each with 2-D, 3-D and 4-D inputs.
    const SHAPES: [&[usize]; 8] = [
        &[5, 3],
        &[2, 3],
        &[3, 2, 4],
        &[2, 3, 2, 3],
        &[1, 2, 3, 3],
        &[2, 2, 17],
        &[2, 2, 4, 4],
        &[1, 3, 4, 5],
    ];

    fn train_fwd(x: &[f64], l: Layout, w: Option<&[f64]>, b: Option<&[f64]>) -> Vec<f64> {
        train_forward(x, l, w, b, 1e-3).0
    }

    fn eval_fwd(x: &[f64], l: Layout, rm: &[f64], rv: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
        eval_forward(x, l, rm, rv, Some(w), Some(b), 0.1)
    }

    #[test]
    fn training_gradients_match_finite_differences() {
        for (seed, dims) in SHAPES.into_iter().enumerate() {
            let l = layout(dims);
            let numel: usize = dims.iter().product();
            let mut rng = Rng(seed as u64 + 1);
            let x = rng.values(numel);
            let w: Vec<f64> = rng.values(l.c).iter().map(|v| v + 1.5).collect();
            let b = rng.values(l.c);
            let wts = rng.values(numel);
            for affine in [true, false] {
                let (wo, bo) = if affine {
                    (Some(w.as_slice()), Some(b.as_slice()))
                } else {
                    (None, None)
                };
                let (_, stats) = train_forward(&x, l, wo, bo, 1e-3);
                let mean: Vec<f64> = stats.iter().map(|s| s.mean).collect();
                let invstd: Vec<f64> = stats.iter().map(|s| s.invstd).collect();
                let (gx, sums) = train_backward(&wts, &x, l, &mean, &invstd, wo);
                let name = format!("batch_norm_train {dims:?} affine={affine}");
                check_grad(
                    &format!("{name}: input"),
                    &x,
                    &wts,
                    |x| train_fwd(x, l, wo, bo),
                    &gx,
                );
                if affine {
                    let gw: Vec<f64> = sums
                        .iter()
                        .zip(&stats)
                        .map(|(s, st)| s.dot * st.invstd)
                        .collect();
                    let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
                    check_grad(
                        &format!("{name}: weight"),
                        &w,
                        &wts,
                        |w| train_fwd(&x, l, Some(w), bo),
                        &gw,
                    );
                    check_grad(
                        &format!("{name}: bias"),
                        &b,
                        &wts,
                        |b| train_fwd(&x, l, wo, Some(b)),
                        &gb,
                    );
                }
            }
        }
    }

    #[test]
    fn eval_gradients_match_finite_differences() {
        for (seed, dims) in SHAPES.into_iter().enumerate() {
            let l = layout(dims);
            let numel: usize = dims.iter().product();
            let mut rng = Rng(20 + seed as u64);
            let x = rng.values(numel);
            let rm = rng.values(l.c);
            let rv: Vec<f64> = rng.values(l.c).iter().map(|v| v + 1.2).collect();
            let w = rng.values(l.c);
            let b = rng.values(l.c);
            let wts = rng.values(numel);
            let (gx, invstd, sums) = eval_backward(&wts, &x, l, &rm, &rv, Some(&w), 0.1);
            let gw: Vec<f64> = sums.iter().zip(&invstd).map(|(s, i)| s.dot * i).collect();
            let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
            let name = format!("batch_norm_eval {dims:?}");
            let f = |x: &[f64], w: &[f64], b: &[f64]| eval_fwd(x, l, &rm, &rv, w, b);
            check_grad(&format!("{name}: input"), &x, &wts, |x| f(x, &w, &b), &gx);
            check_grad(&format!("{name}: weight"), &w, &wts, |w| f(&x, w, &b), &gw);
            check_grad(&format!("{name}: bias"), &b, &wts, |b| f(&x, &w, b), &gb);
        }
    }

    /// The element-wise kernels of every instruction set against the scalar loops, on every
    /// length around the vector widths (the reductions are tested in `reduce.rs`).
    #[test]
    fn vector_kernels_match_scalar_loops_on_every_instruction_set() {
        type Affine<'a> = &'a dyn Fn(&[f32], f32, f32, f32, &mut [MaybeUninit<f32>]);
        type GradIn<'a> = &'a dyn Fn(&[f32], &[f32], f32, f32, f32, f32, &mut [MaybeUninit<f32>]);
        // SAFETY: every element was initialised by `MaybeUninit::new` (and maybe rewritten).
        let read = |v: &[MaybeUninit<f32>]| -> Vec<f32> {
            v.iter().map(|v| unsafe { v.assume_init() }).collect()
        };
        let check = |name: &str, affine: Affine<'_>, grad_in: GradIn<'_>| {
            for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 100] {
                let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0).collect();
                let g: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5).collect();
                let (mean, a, b, q, r) = (0.37f32, 1.7f32, -0.2f32, 0.45f32, -0.05f32);
                // One extra slot: nothing past the end is written.
                let mut y = vec![MaybeUninit::new(f32::NAN); n + 1];
                affine(&x, mean, a, b, &mut y[..n]);
                let y = read(&y);
                for i in 0..n {
                    let exact = (f64::from(x[i]) - f64::from(mean)) * f64::from(a) + f64::from(b);
                    assert!(
                        (f64::from(y[i]) - exact).abs() < 1e-6,
                        "{name} affine n={n} i={i}"
                    );
                }
                assert!(y[n].is_nan(), "{name} affine wrote past the end");
                let mut gx = vec![MaybeUninit::new(f32::NAN); n + 1];
                grad_in(&g, &x, mean, a, q, r, &mut gx[..n]);
                let gx = read(&gx);
                for i in 0..n {
                    let exact = f64::from(g[i]) * f64::from(a)
                        + ((f64::from(x[i]) - f64::from(mean)) * f64::from(q) + f64::from(r));
                    assert!(
                        (f64::from(gx[i]) - exact).abs() < 1e-6,
                        "{name} grad n={n} i={i}"
                    );
                }
                assert!(gx[n].is_nan(), "{name} grad_input wrote past the end");
            }
        };
        check(
            "portable",
            &|x, m, a, b, y| affine_f32_impl(Portable, x, m, a, b, y),
            &|g, x, m, s, q, r, gx| grad_input_f32_impl(Portable, g, x, m, s, q, r, gx),
        );
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(t) = crate::cpu::simd::Avx512::detect() {
                check(
                    "avx512",
                    &|x, m, a, b, y| {
                        t.vectorize(
                            #[inline(always)]
                            || affine_f32_impl(t, x, m, a, b, y),
                        )
                    },
                    &|g, x, m, s, q, r, gx| {
                        t.vectorize(
                            #[inline(always)]
                            || grad_input_f32_impl(t, g, x, m, s, q, r, gx),
                        )
                    },
                );
            }
            if let Some(t) = crate::cpu::simd::Avx2::detect() {
                check(
                    "avx2",
                    &|x, m, a, b, y| {
                        t.vectorize(
                            #[inline(always)]
                            || affine_f32_impl(t, x, m, a, b, y),
                        )
                    },
                    &|g, x, m, s, q, r, gx| {
                        t.vectorize(
                            #[inline(always)]
                            || grad_input_f32_impl(t, g, x, m, s, q, r, gx),
                        )
                    },
                );
            }
        }
    }

    fn tensor(dims: &[usize], v: &[f64]) -> Tensor {
        Tensor::new(dims.to_vec(), v.iter().map(|&v| v as f32).collect()).unwrap()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= tol * w.abs().max(1.0),
                "{what} at {i}: {g} vs {w}"
            );
        }
    }

    /// The public f32 API (vector loops for planes of 16+ values, parallel channels) against
    /// the f64 kernels on the same (f32-representable) data, with inputs far from zero mean.
    #[test]
    fn f32_api_matches_f64_kernels() {
        let shapes: [&[usize]; 5] = [
            &[64, 40],
            &[5, 7, 9, 11],
            &[3, 4, 33],
            &[8, 32, 28, 28],
            &[2, 3, 5],
        ];
        for (seed, dims) in shapes.into_iter().enumerate() {
            let l = layout(dims);
            let numel: usize = dims.iter().product();
            let mut rng = Rng(40 + seed as u64);
            let round = |v: Vec<f64>| v.iter().map(|&v| f64::from(v as f32)).collect::<Vec<_>>();
            let x = round(rng.values(numel).iter().map(|v| 3.0 + 2.0 * v).collect());
            let gy = round(rng.values(numel));
            let w = round(rng.values(l.c).iter().map(|v| v + 1.5).collect());
            let b = round(rng.values(l.c));
            let (xt, gyt, wt, bt) = (
                tensor(dims, &x),
                tensor(dims, &gy),
                tensor(&[l.c], &w),
                tensor(&[l.c], &b),
            );
            let name = format!("{dims:?}");
            // Training.
            let bn = batch_norm_train(&xt, Some(&wt), Some(&bt), 1e-5).unwrap();
            let (y, stats) = train_forward(&x, l, Some(&w), Some(&b), f64::from(1e-5f32));
            assert_close(&format!("{name} output"), bn.output.data(), &y, 1e-5);
            let mean: Vec<f64> = stats.iter().map(|s| s.mean).collect();
            let invstd: Vec<f64> = stats.iter().map(|s| s.invstd).collect();
            let var_unbiased: Vec<f64> = stats.iter().map(|s| s.var_unbiased).collect();
            assert_close(&format!("{name} mean"), &bn.mean, &mean, 1e-6);
            assert_close(&format!("{name} invstd"), &bn.invstd, &invstd, 1e-6);
            assert_close(
                &format!("{name} var_unbiased"),
                &bn.var_unbiased,
                &var_unbiased,
                1e-6,
            );
            let grads = batch_norm_backward(&gyt, &xt, &bn.mean, &bn.invstd, Some(&wt)).unwrap();
            let (gx, sums) = train_backward(&gy, &x, l, &mean, &invstd, Some(&w));
            assert_close(
                &format!("{name} grad_input"),
                grads.grad_input.data(),
                &gx,
                1e-5,
            );
            let gw: Vec<f64> = sums.iter().zip(&invstd).map(|(s, i)| s.dot * i).collect();
            let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
            assert_close(
                &format!("{name} grad_weight"),
                grads.grad_weight.unwrap().data(),
                &gw,
                1e-5,
            );
            assert_close(
                &format!("{name} grad_bias"),
                grads.grad_bias.unwrap().data(),
                &gb,
                1e-5,
            );
            // Evaluation, with the batch statistics as running statistics.
            let rm = tensor(&[l.c], &mean);
            let rv = tensor(&[l.c], &var_unbiased);
            let ye = batch_norm_eval(&xt, &rm, &rv, Some(&wt), Some(&bt), 1e-3).unwrap();
            let (rm64, rv64) = (round(mean.clone()), round(var_unbiased.clone()));
            let y = eval_forward(&x, l, &rm64, &rv64, Some(&w), Some(&b), f64::from(1e-3f32));
            assert_close(&format!("{name} eval output"), ye.data(), &y, 1e-5);
            let ge = batch_norm_eval_backward(&gyt, &xt, &rm, &rv, Some(&wt), 1e-3).unwrap();
            let (gx, inv, sums) =
                eval_backward(&gy, &x, l, &rm64, &rv64, Some(&w), f64::from(1e-3f32));
            assert_close(
                &format!("{name} eval grad_input"),
                ge.grad_input.data(),
                &gx,
                1e-5,
            );
            let gw: Vec<f64> = sums.iter().zip(&inv).map(|(s, i)| s.dot * i).collect();
            assert_close(
                &format!("{name} eval grad_weight"),
                ge.grad_weight.unwrap().data(),
                &gw,
                1e-5,
            );
        }
    }

    #[test]
    fn statistics_are_the_textbook_formulas() {
        // One channel of 4 values: mean 2.5, biased var 1.25, unbiased 5/3.
        let x = Tensor::new([2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let bn = batch_norm_train(&x, None, None, 0.75).unwrap();
        assert_eq!(bn.mean, [2.5]);
        assert_eq!(bn.invstd, [(1.0f64 / 2.0f64.sqrt()) as f32]);
        assert_eq!(bn.var_unbiased, [(5.0f64 / 3.0) as f32]);
        let s = 1.0 / 2.0f32.sqrt();
        assert_eq!(bn.output.data(), &[-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]);
        // The smallest batch PyTorch accepts: M = 2.
        let x = Tensor::new([2, 2], vec![1.0, 5.0, 3.0, 5.0]).unwrap();
        let bn = batch_norm_train(&x, None, None, 1e-5).unwrap();
        assert_eq!(bn.mean, [2.0, 5.0]);
        assert_eq!(bn.var_unbiased, [2.0, 0.0]);
        // A constant channel: output 0 (not NaN), invstd 1/sqrt(eps).
        assert_eq!(bn.output.data()[1], 0.0);
        assert_eq!(bn.invstd[1], (1.0 / f64::from(1e-5f32).sqrt()) as f32);
        // Without weight there are no parameter gradients; with one, both.
        let g = Tensor::new([2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let grads = batch_norm_backward(&g, &x, &bn.mean, &bn.invstd, None).unwrap();
        assert!(grads.grad_weight.is_none() && grads.grad_bias.is_none());
        let w = Tensor::new([2], vec![1.0, 1.0]).unwrap();
        let with_w = batch_norm_backward(&g, &x, &bn.mean, &bn.invstd, Some(&w)).unwrap();
        assert_eq!(with_w.grad_input, grads.grad_input);
        assert_eq!(with_w.grad_bias.unwrap().data(), &[4.0, 6.0]);
        let rm = Tensor::new([2], vec![0.0, 1.0]).unwrap();
        let rv = Tensor::new([2], vec![3.0, 0.0]).unwrap();
        let ge = batch_norm_eval_backward(&g, &x, &rm, &rv, None, 1.0).unwrap();
        assert_eq!(ge.grad_input.data(), &[0.5, 2.0, 1.5, 4.0]);
        assert!(ge.grad_weight.is_none() && ge.grad_bias.is_none());
        let y = batch_norm_eval(&x, &rm, &rv, None, None, 1.0).unwrap();
        assert_eq!(y.data(), &[0.5, 4.0, 1.5, 4.0]);
    }

    #[test]
    fn bad_inputs_are_errors_naming_what_is_wrong() {
        let x = Tensor::zeros([4, 3, 2, 2]).unwrap();
        let c3 = Tensor::zeros([3]).unwrap();
        let c4 = Tensor::zeros([4]).unwrap();
        let msg = |r: Result<BatchNormTrain>| r.unwrap_err().to_string();
        assert_eq!(
            msg(batch_norm_train(
                &Tensor::zeros([6]).unwrap(),
                None,
                None,
                1e-5
            )),
            "batch_norm_train: input must be [N, C], [N, C, L] or [N, C, H, W], got shape [6] (1-D)"
        );
        assert!(
            msg(batch_norm_train(
                &Tensor::zeros([1, 2, 3, 4, 5]).unwrap(),
                None,
                None,
                1e-5
            ))
            .contains("got shape [1, 2, 3, 4, 5] (5-D)")
        );
        for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
            let err = batch_norm_train(&x, None, None, eps).unwrap_err();
            assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
            assert_eq!(
                err.to_string(),
                format!("batch_norm_train: invalid eps: must be positive and finite, got {eps}")
            );
        }
        assert_eq!(
            msg(batch_norm_train(&x, Some(&c4), None, 1e-5)),
            "batch_norm_train: weight must have shape [3] (one per channel of input \
             [4, 3, 2, 2]), got [4]"
        );
        assert!(
            msg(batch_norm_train(&x, Some(&c3), Some(&c4), 1e-5))
                .contains("bias must have shape [3]")
        );
        assert_eq!(
            msg(batch_norm_train(
                &Tensor::zeros([1, 3]).unwrap(),
                None,
                None,
                1e-5
            )),
            "batch_norm_train: expected more than 1 value per channel when training, got input \
             [1, 3] (as PyTorch: the unbiased variance of one value is undefined)"
        );
        assert!(
            msg(batch_norm_train(
                &Tensor::zeros([1, 3, 1, 1]).unwrap(),
                None,
                None,
                1e-5
            ))
            .contains("more than 1 value per channel")
        );
        assert_eq!(
            msg(batch_norm_train(
                &Tensor::zeros([0, 3, 2, 2]).unwrap(),
                None,
                None,
                1e-5
            )),
            "batch_norm_train: input [0, 3, 2, 2] has no values per channel (N * spatial = 0): \
             the batch statistics are undefined"
        );
        assert!(
            msg(batch_norm_train(
                &Tensor::zeros([2, 3, 0]).unwrap(),
                None,
                None,
                1e-5
            ))
            .contains("no values per channel")
        );
        // Evaluation.
        let err = batch_norm_eval(&x, &c4, &c3, None, None, 1e-5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch_norm_eval: running_mean must have shape [3] (one per channel of input \
             [4, 3, 2, 2]), got [4]"
        );
        let err = batch_norm_eval(&x, &c3, &Tensor::zeros([3, 1]).unwrap(), None, None, 1e-5)
            .unwrap_err();
        assert!(
            err.to_string().contains("running_var must have shape [3]"),
            "{err}"
        );
        let err = batch_norm_eval(&x, &c3, &c3, None, None, 0.0).unwrap_err();
        assert!(
            err.to_string().starts_with("batch_norm_eval: invalid eps"),
            "{err}"
        );
        // Backward.
        let g = Tensor::zeros([4, 3, 2, 2]).unwrap();
        let err = batch_norm_backward(
            &Tensor::zeros([4, 3, 4]).unwrap(),
            &x,
            &[0.0; 3],
            &[1.0; 3],
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch_norm_backward: grad_output has shape [4, 3, 4] but the input has shape \
             [4, 3, 2, 2]"
        );
        let err = batch_norm_backward(&g, &x, &[0.0; 2], &[1.0; 3], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch_norm_backward: mean has 2 values but input [4, 3, 2, 2] has 3 channels"
        );
        let err = batch_norm_backward(&g, &x, &[0.0; 3], &[1.0; 4], None).unwrap_err();
        assert!(err.to_string().contains("invstd has 4 values"), "{err}");
        let err = batch_norm_backward(&g, &x, &[0.0; 3], &[1.0; 3], Some(&c4)).unwrap_err();
        assert!(
            err.to_string().contains("weight must have shape [3]"),
            "{err}"
        );
        let e = Tensor::zeros([0, 3]).unwrap();
        let err = batch_norm_backward(&e, &e, &[0.0; 3], &[1.0; 3], None).unwrap_err();
        assert!(err.to_string().contains("no values per channel"), "{err}");
        let err = batch_norm_eval_backward(&g, &x, &c3, &c3, None, -1.0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("batch_norm_eval_backward: invalid eps"),
            "{err}"
        );
        let err = batch_norm_eval_backward(&x, &x, &c3, &c4, None, 1e-5).unwrap_err();
        assert!(
            err.to_string().contains("running_var must have shape [3]"),
            "{err}"
        );
        // An empty batch is fine in evaluation mode.
        let y = batch_norm_eval(&e, &c3, &c3, None, None, 1e-5).unwrap();
        assert_eq!(y.dims(), &[0, 3]);
    }
}
