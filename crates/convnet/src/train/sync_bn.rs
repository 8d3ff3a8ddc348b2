//! Batch norm over the whole global batch, as `torch.nn.SyncBatchNorm`: each worker holds its
//! shard of the batch, and the per-channel sums the statistics (forward) and the two
//! reductions of the input gradient (backward) are made of are summed across workers.
//!
//! The formulas are those of `convnet_core::batch_norm_train` and `batch_norm_backward` with
//! `M` the global number of values per channel, and the same precision: sums in f64, the
//! variance as a second pass over `x - mean` with the mean rounded to f32. Slower than the
//! single-process kernels (plain loops, two exchanges per pass), which it never replaces:
//! only a run with `--sync-bn` over several workers comes here.

use convnet_core::{BatchNormGrads, BatchNormTrainOutput, Tensor};

use super::Workers;
use crate::error::{Error, Result};

/// `[N, C, rest...]` as `(N, C, values per sample and channel)`.
fn layout(x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.dims() {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        dims => Err(Error::model(format!(
            "batch norm expects [N, C, ...], got {dims:?}"
        ))),
    }
}

/// The planes of `data` (laid out as `(n, c, s)`), each with its channel.
fn planes(data: &[f32], (_, c, s): (usize, usize, usize)) -> impl Iterator<Item = (usize, &[f32])> {
    data.chunks(s.max(1))
        .enumerate()
        .map(move |(k, p)| (k % c, p))
}

/// `Σ f(plane value)` per channel, in f64.
fn channel_sums(data: &[f32], l: (usize, usize, usize), f: impl Fn(usize, f32) -> f64) -> Vec<f64> {
    let mut sums = vec![0.0f64; l.1];
    for (ch, plane) in planes(data, l) {
        sums[ch] += plane.iter().map(|&v| f(ch, v)).sum::<f64>();
    }
    sums
}

/// Training forward over the workers' shards: the output of this worker's shard and the
/// statistics of the global batch.
pub(crate) fn forward(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
    workers: &dyn Workers,
) -> Result<BatchNormTrainOutput> {
    let l @ (n, c, s) = layout(x)?;
    // The sums and the count in one exchange.
    let mut sums = channel_sums(x.data(), l, |_, v| f64::from(v));
    sums.push((n * s) as f64);
    workers.sum_f64(&mut sums)?;
    let m = sums.pop().unwrap_or(0.0);
    if m < 2.0 {
        return Err(Error::model(format!(
            "batch norm over the workers needs more than 1 value per channel, got {m}"
        )));
    }
    let mean: Vec<f32> = sums.iter().map(|t| (t / m) as f32).collect();
    let mut squares = channel_sums(x.data(), l, |ch, v| {
        let d = f64::from(v - mean[ch]);
        d * d
    });
    workers.sum_f64(&mut squares)?;
    let invstd: Vec<f32> = (squares.iter())
        .map(|q| (1.0 / (q / m + f64::from(eps)).sqrt()) as f32)
        .collect();
    let var_unbiased: Vec<f32> = squares.iter().map(|q| (q / (m - 1.0)) as f32).collect();
    let gamma = |ch: usize| weight.map_or(1.0, |w| w.data()[ch]);
    let beta = |ch: usize| bias.map_or(0.0, |b| b.data()[ch]);
    let mut y = x.data().to_vec();
    for (k, plane) in y.chunks_mut(s.max(1)).enumerate() {
        let ch = k % c;
        let a = invstd[ch] * gamma(ch);
        for v in plane {
            *v = (*v - mean[ch]) * a + beta(ch);
        }
    }
    Ok(BatchNormTrainOutput {
        output: Tensor::new(x.dims().to_vec(), y)?,
        mean: Tensor::new([c], mean)?,
        invstd: Tensor::new([c], invstd)?,
        var_unbiased: Tensor::new([c], var_unbiased)?,
    })
}

/// The gradients of [`forward`]: `grad_input` of this worker's shard (from the sums over
/// every worker), `grad_weight` and `grad_bias` of this shard alone (summed across workers
/// with the other parameters' gradients).
pub(crate) fn backward(
    grad_output: &Tensor,
    x: &Tensor,
    mean: &Tensor,
    invstd: &Tensor,
    weight: Option<&Tensor>,
    workers: &dyn Workers,
) -> Result<BatchNormGrads> {
    let l @ (n, c, s) = layout(x)?;
    let (mean, invstd) = (mean.data(), invstd.data());
    let xhat = |ch: usize, v: f32| (v - mean[ch]) * invstd[ch];
    let g = grad_output.data();
    let mut local = channel_sums(g, l, |_, v| f64::from(v));
    let mut dot = vec![0.0f64; c];
    for ((ch, gp), (_, xp)) in planes(g, l).zip(planes(x.data(), l)) {
        dot[ch] += gp
            .iter()
            .zip(xp)
            .map(|(&gv, &xv)| f64::from(gv) * f64::from(xhat(ch, xv)))
            .sum::<f64>();
    }
    let (grad_bias, grad_weight) = (local.clone(), dot.clone());
    local.extend_from_slice(&dot);
    local.push((n * s) as f64);
    workers.sum_f64(&mut local)?;
    let m = local[2 * c];
    let gamma = |ch: usize| weight.map_or(1.0, |w| w.data()[ch]);
    let mut grad_input = g.to_vec();
    for ((k, gi), xp) in grad_input
        .chunks_mut(s.max(1))
        .enumerate()
        .zip(x.data().chunks(s.max(1)))
    {
        let ch = k % c;
        let mean_g = (local[ch] / m) as f32;
        let mean_gx = (local[c + ch] / m) as f32;
        let a = gamma(ch) * invstd[ch];
        for (v, &xv) in gi.iter_mut().zip(xp) {
            *v = a * (*v - mean_g - xhat(ch, xv) * mean_gx);
        }
    }
    let per_channel = |v: Vec<f64>| Tensor::new([c], v.into_iter().map(|t| t as f32).collect());
    Ok(BatchNormGrads {
        grad_input: Tensor::new(x.dims().to_vec(), grad_input)?,
        grad_weight: weight.map(|_| per_channel(grad_weight)).transpose()?,
        grad_bias: weight.map(|_| per_channel(grad_bias)).transpose()?,
    })
}
