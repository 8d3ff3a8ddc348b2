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
//!   loop (`cpu::reduce`, and the two element-wise kernels of `simd.rs`) chosen at run time
//!   for the CPU. Passes over a channel alternate direction, so each starts on the planes
//!   the previous one left in the cache.
//! - **Rows** (`[N, C]`, or planes shorter than 16): the input is `N` rows of `C * L` values;
//!   blocks of rows are summed column by column in parallel (partials added in order), and
//!   rows are transformed with one coefficient per position.
//!
//! Sums are accumulated in f64 on both paths, so results do not depend on the thread count.
//!
//! The kernels are generic over the float type so the finite-difference tests run in `f64`.
//!
//! # Files
//! This file holds the public functions and their checks; `layout.rs` the input's layout and
//! the two loop orders; `train.rs` and `eval.rs` the two modes' kernels, forward and
//! backward; `simd.rs` the element types and the vector loops; `tests.rs` the unit tests.

mod eval;
mod layout;
mod pool;
mod simd;
#[cfg(test)]
mod tests;
mod train;

use eval::{eval_backward, eval_forward};
use layout::Layout;
use simd::GradSums;
use train::{ReluAfter, Stats, train_backward, train_forward, train_output};

use crate::error::{Error, Result};
use crate::ops::pool::{
    MaxPool2x2Planes, Pool2dParams, max_pool2d_backward_from_input, max_pool2d_output,
};
use crate::tensor::{Tensor, check_same_shape};

const TRAIN_OP: &str = "batch_norm_train";
const EVAL_OP: &str = "batch_norm_eval";
const BACKWARD_OP: &str = "batch_norm_backward";
const EVAL_BACKWARD_OP: &str = "batch_norm_eval_backward";

/// What [`batch_norm_train`] computes: the output and the batch statistics, each `[C]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormTrainOutput {
    /// Same shape as the input.
    pub output: Tensor,
    /// `[C]`: the batch mean.
    pub mean: Tensor,
    /// `[C]`: `1 / sqrt(biased_var + eps)`.
    pub invstd: Tensor,
    /// `[C]`: the unbiased variance `biased_var * M / (M - 1)`, for the running estimate
    /// (`running_var = (1 - momentum) * running_var + momentum * var_unbiased`).
    pub var_unbiased: Tensor,
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
/// assert_eq!(bn.mean.data(), [2.5]);
/// assert_eq!(bn.var_unbiased.data(), [5.0 / 3.0]);
/// assert!((bn.output.data()[0] + 1.3416).abs() < 1e-4);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn batch_norm_train(
    input: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<BatchNormTrainOutput> {
    train(input, weight, bias, eps, After::Nothing)
}

/// [`batch_norm_train`] followed by ReLU (`relu(batch_norm(x))`, as
/// `nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())` in training), in the same passes over the
/// data: `output` is the ReLU's output, bit for bit what [`batch_norm_train`] and then
/// `activation(.., Activation::Relu)` give; the statistics are the batch norm's. Its gradient
/// is [`batch_norm_relu_backward`].
///
/// ```
/// use convnet_core::{Tensor, batch_norm_train_relu};
/// let x = Tensor::new([4, 1], vec![1.0, 2.0, 3.0, 4.0])?;
/// let bn = batch_norm_train_relu(&x, None, None, 1e-5)?;
/// assert_eq!(&bn.output.data()[..2], [0.0, 0.0]);
/// assert!((bn.output.data()[3] - 1.3416).abs() < 1e-4);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn batch_norm_train_relu(
    input: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<BatchNormTrainOutput> {
    train(input, weight, bias, eps, After::Relu)
}

/// [`batch_norm_train_relu`] followed by the max pooling `pool` (as
/// `nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(..))` in training): `output` is
/// the pooling's output, bit for bit what [`batch_norm_train_relu`] and then
/// [`max_pool2d_output`] give; the statistics are the batch norm's. Its gradient is
/// [`batch_norm_relu_max_pool2d_backward`].
///
/// A 2x2 pooling with stride 2 (`nn.MaxPool2d(2)`) runs inside the batch norm's passes over
/// each channel, so the ReLU's output, the size of the input, is never written; any other
/// pooling (and planes shorter than 16 values) runs after the batch norm.
///
/// ```
/// use convnet_core::{Pool2dParams, Tensor, batch_norm_train_relu_max_pool2d};
/// let x = Tensor::new([1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
/// let pool = Pool2dParams::builder([2, 2]).build()?;
/// let bn = batch_norm_train_relu_max_pool2d(&x, None, None, 1e-5, &pool)?;
/// assert_eq!(bn.output.dims(), [1, 1, 1, 1]);
/// assert!((bn.output.data()[0] - 1.3416).abs() < 1e-4);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn batch_norm_train_relu_max_pool2d(
    input: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
    pool: &Pool2dParams,
) -> Result<BatchNormTrainOutput> {
    train(input, weight, bias, eps, After::ReluMaxPool(pool))
}

/// What runs after a training batch norm, fused into its passes.
#[derive(Debug, Clone, Copy)]
enum After<'a> {
    Nothing,
    Relu,
    /// A ReLU, then this max pooling.
    ReluMaxPool(&'a Pool2dParams),
}

fn train(
    input: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
    after: After<'_>,
) -> Result<BatchNormTrainOutput> {
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
    let (w, b, eps) = (
        weight.map(Tensor::data),
        bias.map(Tensor::data),
        f64::from(eps),
    );
    let fused_pool = match after {
        After::ReluMaxPool(params) => {
            MaxPool2x2Planes::new(TRAIN_OP, params, input.dims4(TRAIN_OP, "input")?)?
                .filter(|_| !l.uses_rows())
        }
        _ => None,
    };
    let (output, stats) = if let Some(pool) = fused_pool {
        let (y, stats) = pool::train_forward_pool(input.data(), l, pool, w, b, eps);
        (
            Tensor::from_parts(pool.out_dims(l.n, l.c).to_vec(), y),
            stats,
        )
    } else {
        let relu = !matches!(after, After::Nothing);
        let (y, stats) = train_forward(input.data(), l, w, b, eps, relu);
        let y = Tensor::from_parts(input.dims().to_vec(), y);
        match after {
            After::ReluMaxPool(params) => (max_pool2d_output(&y, params)?, stats),
            _ => (y, stats),
        }
    };
    let per_channel = |v: fn(&Stats) -> f64| {
        Tensor::from_parts(vec![l.c], stats.iter().map(|s| v(s) as f32).collect())
    };
    Ok(BatchNormTrainOutput {
        output,
        mean: per_channel(|s| s.mean),
        invstd: per_channel(|s| s.invstd),
        var_unbiased: per_channel(|s| s.var_unbiased),
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
/// ([`BatchNormTrainOutput`], one value per channel) and its weight.
pub fn batch_norm_backward(
    grad_output: &Tensor,
    input: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
) -> Result<BatchNormGrads> {
    backward(grad_output, input, mean, invstd, weight, None)
}

/// The gradients of [`batch_norm_train_relu`], given `grad_output` (the gradient of the
/// ReLU's output), the forward pass's input, its `mean` and `invstd`, its weight and bias:
/// bit for bit what ReLU's backward and then [`batch_norm_backward`] give. The ReLU's mask is
/// recomputed from the input (the batch norm's output, `<= 0`, passes no gradient), so the
/// output need not be kept.
pub fn batch_norm_relu_backward(
    grad_output: &Tensor,
    input: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<BatchNormGrads> {
    backward(grad_output, input, mean, invstd, weight, Some(bias))
}

/// The training backward; `relu`: a ReLU followed, and this is its batch norm's bias.
fn backward(
    grad_output: &Tensor,
    input: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    relu: Option<Option<&Tensor>>,
) -> Result<BatchNormGrads> {
    let l = Layout::new(BACKWARD_OP, input)?;
    check_same_shape(
        BACKWARD_OP,
        ("grad_output", grad_output),
        ("the input", input),
    )?;
    check_stats(BACKWARD_OP, "mean", mean, l, input)?;
    check_stats(BACKWARD_OP, "invstd", invstd, l, input)?;
    check_per_channel(BACKWARD_OP, "weight", weight, l, input)?;
    check_per_channel(BACKWARD_OP, "bias", relu.flatten(), l, input)?;
    check_batch_values(BACKWARD_OP, l, input)?;
    let invstd = widen(invstd);
    let (gx, sums) = train_backward(
        grad_output.data(),
        input.data(),
        l,
        &widen(mean),
        &invstd,
        weight.map(Tensor::data),
        relu.map(|bias| ReluAfter {
            bias: bias.map(Tensor::data),
        }),
    );
    let (grad_weight, grad_bias) = param_grads(weight.is_some(), &sums, &invstd);
    Ok(BatchNormGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight,
        grad_bias,
    })
}

/// The gradients of [`batch_norm_train_relu_max_pool2d`], given `grad_output` (the gradient
/// of the pooling's output), the forward pass's input, its `mean` and `invstd`, its weight and
/// bias, and the pooling: bit for bit what the pooling's backward
/// ([`max_pool2d_backward_from_input`] of the ReLU's output), then
/// [`batch_norm_relu_backward`] give. The ReLU's output is recomputed from the input (as
/// [`batch_norm_train_output`]), so neither it nor the pooling's indices need be kept.
pub fn batch_norm_relu_max_pool2d_backward(
    grad_output: &Tensor,
    input: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    pool: &Pool2dParams,
) -> Result<BatchNormGrads> {
    let l = Layout::new(BACKWARD_OP, input)?;
    let dims = input.dims4(BACKWARD_OP, "input")?;
    let fused = MaxPool2x2Planes::new(BACKWARD_OP, pool, dims)?.filter(|_| !l.uses_rows());
    let Some(planes) = fused else {
        // Any other pooling: the three backward passes one after the other.
        let act = batch_norm_train_output(input, mean, invstd, weight, bias, true)?;
        let g = max_pool2d_backward_from_input(grad_output, &act, pool)?;
        return batch_norm_relu_backward(&g, input, mean, invstd, weight, bias);
    };
    let out_dims = planes.out_dims(l.n, l.c);
    if grad_output.dims() != out_dims {
        return Err(Error::shape(
            BACKWARD_OP,
            format!(
                "grad_output {} is not the [{}] output of pooling input {}",
                grad_output.shape(),
                out_dims.map(|d| d.to_string()).join(", "),
                input.shape()
            ),
        ));
    }
    check_stats(BACKWARD_OP, "mean", mean, l, input)?;
    check_stats(BACKWARD_OP, "invstd", invstd, l, input)?;
    check_per_channel(BACKWARD_OP, "weight", weight, l, input)?;
    check_per_channel(BACKWARD_OP, "bias", bias, l, input)?;
    check_batch_values(BACKWARD_OP, l, input)?;
    let (mean, invstd) = (widen(mean), widen(invstd));
    let (gx, sums) = pool::train_backward_pool(
        grad_output.data(),
        input.data(),
        l,
        planes,
        (&mean, &invstd),
        weight.map(Tensor::data),
        bias.map(Tensor::data),
    );
    let (grad_weight, grad_bias) = param_grads(weight.is_some(), &sums, &invstd);
    Ok(BatchNormGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight,
        grad_bias,
    })
}

/// The output of [`batch_norm_train`] (with `relu`, of [`batch_norm_train_relu`]) again, from
/// the input and the `mean` and `invstd` that pass returned, and the same weight and bias:
/// the same values, bit for bit (for a layer that did not keep its output).
pub fn batch_norm_train_output(
    input: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    relu: bool,
) -> Result<Tensor> {
    const OP: &str = TRAIN_OP;
    let l = Layout::new(OP, input)?;
    check_stats(OP, "mean", mean, l, input)?;
    check_stats(OP, "invstd", invstd, l, input)?;
    check_per_channel(OP, "weight", weight, l, input)?;
    check_per_channel(OP, "bias", bias, l, input)?;
    let y = train_output(
        input.data(),
        l,
        &widen(mean),
        &widen(invstd),
        weight.map(Tensor::data),
        bias.map(Tensor::data),
        relu,
    );
    Ok(Tensor::from_parts(input.dims().to_vec(), y))
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
    check_same_shape(
        EVAL_BACKWARD_OP,
        ("grad_output", grad_output),
        ("the input", input),
    )?;
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

/// A saved statistic (`mean`, `invstd`) in f64, as the kernels take it.
fn widen(v: &Tensor) -> Vec<f64> {
    v.data().iter().map(|&v| f64::from(v)).collect()
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

/// One statistic per channel (its shape is not checked: any tensor of `C` values will do).
fn check_stats(op: &'static str, what: &str, v: &Tensor, l: Layout, input: &Tensor) -> Result<()> {
    if v.numel() != l.c {
        return Err(Error::shape(
            op,
            format!(
                "{what} has {} values but input {} has {} channels",
                v.numel(),
                input.shape(),
                l.c
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
