//! Losses and softmax, as PyTorch computes them: `F.cross_entropy` (fused log-softmax +
//! negative log-likelihood, with `label_smoothing`), `F.mse_loss`, `F.softmax` and
//! `F.log_softmax` along the class dimension. Both losses use `reduction='mean'` and return
//! the loss with its gradient w.r.t. the input.
//!
//! # Cross-entropy
//! For logits `x` `[N, K]` and targets `y_i < K`, with `log p_ij = x_ij - logsumexp_j(x_ij)`
//! and label smoothing `e ∈ [0, 1]`:
//!
//! - `loss = (1/N) Σ_i [ (1 - e) (-log p_{i,y_i}) + (e/K) Σ_j (-log p_ij) ]`
//!   (PyTorch: `(1 - e) * nll + e * smooth_loss / K`, each averaged over the batch);
//! - `grad_ij = (p_ij - q_ij) / N` with the target distribution
//!   `q_ij = (1 - e) [j == y_i] + e / K`.
//!
//! `logsumexp` shifts by the row maximum and runs in f64, so logits of any finite size
//! (±1e4, ±1e30) give finite results; NaN or infinite logits give NaN, as in PyTorch.
//!
//! # MSE
//! `loss = Σ (x - t)² / numel` (summed in f64), `grad = 2 (x - t) / numel`.
//!
//! # Deviations from PyTorch
//! An empty batch is an error (PyTorch returns NaN, the mean of nothing), for both losses.
//! The kernels are generic over the float type so the finite-difference tests run in `f64`;
//! everything inside a row is computed in f64 and rounded once.

use num_traits::Float;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

const CE_OP: &str = "cross_entropy";
const MSE_OP: &str = "mse_loss";
const SOFTMAX_OP: &str = "softmax";
const LOG_SOFTMAX_OP: &str = "log_softmax";

/// Elements per rayon task, at least (small inputs stay on one thread).
const PARALLEL_MIN_WORK: usize = 1 << 15;

/// A loss value and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct LossOutput {
    /// The loss, averaged as PyTorch's `reduction='mean'`.
    pub loss: f32,
    /// `d loss / d input`, same shape as the input.
    pub grad_input: Tensor,
}

/// Cross-entropy of `logits` `[N, K]` against class indices `targets` (`N` of them, each
/// `< K`), averaged over the batch, with PyTorch's `label_smoothing` (in `[0, 1]`; 0 for
/// none). Returns the loss and `d loss / d logits`.
///
/// ```
/// use convnet_core::{Tensor, cross_entropy};
/// // Two equal logits: p = 1/2, loss = ln 2.
/// let logits = Tensor::new([1, 2], vec![3.0, 3.0])?;
/// let out = cross_entropy(&logits, &[0], 0.0)?;
/// assert!((out.loss - 2f32.ln()).abs() < 1e-6);
/// assert_eq!(out.grad_input.data(), &[-0.5, 0.5]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn cross_entropy(
    logits: &Tensor,
    targets: &[usize],
    label_smoothing: f32,
) -> Result<LossOutput> {
    let [n, k] = dims2(CE_OP, "logits", logits)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::param(
            CE_OP,
            "label_smoothing",
            format!("must be in [0, 1], got {label_smoothing}"),
        ));
    }
    if n == 0 {
        return Err(Error::shape(
            CE_OP,
            format!(
                "logits {} hold an empty batch: the mean over no samples is undefined",
                logits.shape()
            ),
        ));
    }
    if targets.len() != n {
        return Err(Error::shape(
            CE_OP,
            format!(
                "{} targets given for logits {} ({n} samples)",
                targets.len(),
                logits.shape()
            ),
        ));
    }
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= k) {
        return Err(Error::param(
            CE_OP,
            "targets",
            format!(
                "targets[{i}] = {t} is out of range for {k} classes (logits {})",
                logits.shape()
            ),
        ));
    }
    let mut grad = vec![0.0; n * k];
    let loss = cross_entropy_kernel(
        logits.data(),
        k,
        targets,
        f64::from(label_smoothing),
        &mut grad,
    );
    Ok(LossOutput {
        loss: loss as f32,
        grad_input: Tensor::from_parts(vec![n, k], grad),
    })
}

/// Mean squared error between `input` and `target` (same shape, not empty), averaged over
/// every element. Returns the loss and `d loss / d input`.
pub fn mse_loss(input: &Tensor, target: &Tensor) -> Result<LossOutput> {
    if input.dims() != target.dims() {
        return Err(Error::shape(
            MSE_OP,
            format!(
                "input {} and target {} must have the same shape",
                input.shape(),
                target.shape()
            ),
        ));
    }
    if input.numel() == 0 {
        return Err(Error::shape(
            MSE_OP,
            format!(
                "input {} is empty: the mean over no elements is undefined",
                input.shape()
            ),
        ));
    }
    let mut grad = vec![0.0; input.numel()];
    let loss = mse_kernel(input.data(), target.data(), &mut grad);
    Ok(LossOutput {
        loss: loss as f32,
        grad_input: Tensor::from_parts(input.dims().to_vec(), grad),
    })
}

/// Softmax of each row of `logits` `[N, K]` (PyTorch's `F.softmax(logits, dim=1)`).
pub fn softmax(logits: &Tensor) -> Result<Tensor> {
    let [_, k] = dims2(SOFTMAX_OP, "logits", logits)?;
    let mut y = vec![0.0; logits.numel()];
    rows_kernel(logits.data(), k, &mut y, |v, lse| (v - lse).exp());
    Ok(Tensor::from_parts(logits.dims().to_vec(), y))
}

/// Log-softmax of each row of `logits` `[N, K]` (PyTorch's `F.log_softmax(logits, dim=1)`).
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let [_, k] = dims2(LOG_SOFTMAX_OP, "logits", logits)?;
    let mut y = vec![0.0; logits.numel()];
    rows_kernel(logits.data(), k, &mut y, |v, lse| v - lse);
    Ok(Tensor::from_parts(logits.dims().to_vec(), y))
}

fn dims2(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 2]> {
    match *t.dims() {
        [n, k] => Ok([n, k]),
        _ => Err(Error::shape(
            op,
            format!(
                "{what} must be 2-D [N, K], got shape {} ({}-D)",
                t.shape(),
                t.rank()
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Rows of `k` elements per rayon task.
fn rows_per_task(k: usize) -> usize {
    PARALLEL_MIN_WORK.div_ceil(k.max(1))
}

/// `log Σ exp(row)`, shifted by the row's maximum, in f64.
fn log_sum_exp<T: Float>(row: &[T]) -> f64 {
    let max = row
        .iter()
        .map(|&v| to_f64(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|&v| (to_f64(v) - max).exp()).sum();
    max + sum.ln()
}

/// `y[i, j] = f(x[i, j], logsumexp(x[i, .]))`, in f64, rows in parallel.
fn rows_kernel<T: Float + Send + Sync>(
    x: &[T],
    k: usize,
    y: &mut [T],
    f: impl Fn(f64, f64) -> f64 + Sync + Send,
) {
    if k == 0 {
        return;
    }
    y.par_chunks_mut(k)
        .zip(x.par_chunks(k))
        .with_min_len(rows_per_task(k))
        .for_each(|(y, x)| {
            let lse = log_sum_exp(x);
            for (y, &v) in y.iter_mut().zip(x) {
                *y = from_f64(f(to_f64(v), lse));
            }
        });
}

/// The mean cross-entropy of the rows of `x` (`targets.len()` rows of `k >= 1`), with label
/// smoothing `e`; `grad` is overwritten with its gradient. Per-row losses are added in row
/// order, so the result does not depend on the thread count.
fn cross_entropy_kernel<T: Float + Send + Sync>(
    x: &[T],
    k: usize,
    targets: &[usize],
    e: f64,
    grad: &mut [T],
) -> f64 {
    let n = targets.len() as f64;
    let smooth = e / k as f64;
    let losses: Vec<f64> = grad
        .par_chunks_mut(k)
        .zip(x.par_chunks(k))
        .zip(targets.par_iter())
        .with_min_len(rows_per_task(k))
        .map(|((g, x), &target)| {
            let lse = log_sum_exp(x);
            let mut sum_neg_log_p = 0.0;
            for (j, (g, &v)) in g.iter_mut().zip(x).enumerate() {
                let log_p = to_f64(v) - lse;
                sum_neg_log_p -= log_p;
                let q = if j == target {
                    1.0 - e + smooth
                } else {
                    smooth
                };
                *g = from_f64((log_p.exp() - q) / n);
            }
            let nll = lse - to_f64(x[target]);
            (1.0 - e) * nll + smooth * sum_neg_log_p
        })
        .collect();
    losses.iter().sum::<f64>() / n
}

/// `Σ (x - t)² / numel` (in f64, chunks added in order); `grad = 2 (x - t) / numel`.
fn mse_kernel<T: Float + Send + Sync>(x: &[T], t: &[T], grad: &mut [T]) -> f64 {
    let numel = x.len() as f64;
    let scale = 2.0 / numel;
    let partials: Vec<f64> = grad
        .par_chunks_mut(PARALLEL_MIN_WORK)
        .zip(x.par_chunks(PARALLEL_MIN_WORK))
        .zip(t.par_chunks(PARALLEL_MIN_WORK))
        .map(|((g, x), t)| {
            let mut sum = 0.0;
            for ((g, &x), &t) in g.iter_mut().zip(x).zip(t) {
                let d = to_f64(x) - to_f64(t);
                sum += d * d;
                *g = from_f64(d * scale);
            }
            sum
        })
        .collect();
    partials.iter().sum::<f64>() / numel
}

#[cfg(test)]
mod tests {
    use super::*;

    // Finite differences (crate::testing), on the scalar loss (one output, weight 1): both
    // losses are smooth with small third derivatives on these inputs (logits in [-3, 3)), so
    // the truncation error H² |f'''| / 6 is < 1e-11 and the rounding error ~1e-16 |loss| / H
    // < 1e-9: the tolerance of 1e-6 leaves a wide margin and still catches any wrong term.
    use crate::testing::{Rng, check_grad};

    /// `n` values uniform in `[-scale, scale)`.
    fn values(rng: &mut Rng, n: usize, scale: f64) -> Vec<f64> {
        rng.values(n).iter().map(|v| scale * v).collect()
    }

    /// Compares `analytic` with central differences of the scalar `loss(v)`.
    fn check_loss_grad(name: &str, v: &[f64], loss: impl Fn(&[f64]) -> f64, analytic: &[f64]) {
        check_grad(name, v, &[1.0], |v| vec![loss(v)], analytic);
    }

    fn ce64(x: &[f64], k: usize, targets: &[usize], e: f64) -> (f64, Vec<f64>) {
        let mut g = vec![f64::NAN; x.len()];
        let loss = cross_entropy_kernel(x, k, targets, e, &mut g);
        (loss, g)
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        for (seed, (n, k)) in [(1, 1), (1, 4), (3, 5), (6, 2), (4, 10)]
            .into_iter()
            .enumerate()
        {
            let mut rng = Rng(seed as u64 + 1);
            let x = values(&mut rng, n * k, 3.0);
            let targets: Vec<usize> = (0..n)
                .map(|_| (rng.next_u64() % k as u64) as usize)
                .collect();
            for e in [0.0, 0.1, 0.3, 1.0] {
                let (_, g) = ce64(&x, k, &targets, e);
                let name = format!("cross_entropy [{n}, {k}] label_smoothing={e}");
                check_loss_grad(&name, &x, |x| ce64(x, k, &targets, e).0, &g);
            }
        }
    }

    #[test]
    fn cross_entropy_matches_the_definition() {
        // loss_i = (1-e)(-log p_y) + (e/K) sum_j (-log p_j), mean over the batch.
        let x = [1.0f64, 2.0, 0.5, -1.0, 0.0, 3.0];
        let targets = [2, 0];
        let e = 0.3;
        let mut want = 0.0;
        for (row, &t) in x.chunks(3).zip(&targets) {
            let z: f64 = row.iter().map(|v| v.exp()).sum();
            let neg_log_p: Vec<f64> = row.iter().map(|v| z.ln() - v).collect();
            want += (1.0 - e) * neg_log_p[t] + e / 3.0 * neg_log_p.iter().sum::<f64>();
        }
        want /= 2.0;
        let (loss, g) = ce64(&x, 3, &targets, e);
        assert!((loss - want).abs() < 1e-14, "{loss} vs {want}");
        // Each gradient row sums to 0 (softmax and target distribution both sum to 1).
        for row in g.chunks(3) {
            assert!(row.iter().sum::<f64>().abs() < 1e-15);
        }
    }

    #[test]
    fn huge_logits_give_finite_loss_and_gradient() {
        for scale in [1e4f32, 1e30] {
            let logits = Tensor::new([2, 3], vec![scale, -scale, 0.0, -scale, 0.0, scale]).unwrap();
            for e in [0.0, 0.1, 0.3] {
                let out = cross_entropy(&logits, &[1, 2], e).unwrap();
                assert!(out.loss.is_finite(), "scale {scale} e {e}: {}", out.loss);
                assert!(out.grad_input.data().iter().all(|g| g.is_finite()));
                // Sample 0 puts all mass on class 0 but wants class 1: -log p_1 = 2 scale;
                // sample 1 is right: 0. Smoothing adds e/K * (2 scale + scale + 0) + ...
                let s = f64::from(scale);
                let e64 = f64::from(e);
                let want = ((1.0 - e64) * 2.0 * s
                    + e64 / 3.0 * (0.0 + 2.0 * s + s)
                    + e64 / 3.0 * (2.0 * s + s + 0.0))
                    / 2.0;
                assert!(
                    (f64::from(out.loss) - want).abs() <= 1e-6 * want,
                    "scale {scale} e {e}: {} vs {want}",
                    out.loss
                );
            }
            let p = softmax(&logits).unwrap();
            assert_eq!(p.data(), &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
            let lp = log_softmax(&logits).unwrap();
            assert_eq!(lp.data()[0], 0.0);
            assert_eq!(lp.data()[1], -2.0 * scale);
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_log_softmax_is_its_log() {
        let mut rng = Rng(9);
        let x: Vec<f32> = values(&mut rng, 5 * 7, 4.0)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let logits = Tensor::new([5, 7], x).unwrap();
        let p = softmax(&logits).unwrap();
        let lp = log_softmax(&logits).unwrap();
        for (row, lrow) in p.data().chunks(7).zip(lp.data().chunks(7)) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            for (&p, &lp) in row.iter().zip(lrow) {
                assert!((p.ln() - lp).abs() < 1e-5, "{p} {lp}");
            }
        }
        // Shift invariance.
        let shifted = Tensor::from_fn([5, 7], |i| logits.data()[i] + 100.0).unwrap();
        assert!(softmax(&shifted).unwrap().max_abs_diff(&p) < 1e-6);
        // Empty shapes are fine.
        assert_eq!(
            softmax(&Tensor::zeros([0, 3]).unwrap()).unwrap().dims(),
            &[0, 3]
        );
        assert_eq!(
            log_softmax(&Tensor::zeros([2, 0]).unwrap()).unwrap().dims(),
            &[2, 0]
        );
    }

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let mut rng = Rng(3);
        for n in [1, 6, 40] {
            let x = values(&mut rng, n, 2.0);
            let t = values(&mut rng, n, 2.0);
            let mut g = vec![f64::NAN; n];
            mse_kernel(&x, &t, &mut g);
            let loss = |x: &[f64]| {
                let mut g = vec![0.0; n];
                mse_kernel(x, &t, &mut g)
            };
            check_loss_grad(&format!("mse_loss n={n}"), &x, loss, &g);
        }
    }

    #[test]
    fn mse_hand_checked_and_large_inputs_sum_every_chunk() {
        let x = Tensor::new([2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let t = Tensor::new([2, 2], vec![1.0, 0.0, 3.0, 5.0]).unwrap();
        let out = mse_loss(&x, &t).unwrap();
        assert_eq!(out.loss, 1.25);
        assert_eq!(out.grad_input.data(), &[0.0, 1.0, 0.0, -0.5]);
        let n = 3 * PARALLEL_MIN_WORK + 5;
        let x = Tensor::full([n], 1.5).unwrap();
        let t = Tensor::full([n], 0.5).unwrap();
        let out = mse_loss(&x, &t).unwrap();
        assert_eq!(out.loss, 1.0);
        assert!(
            out.grad_input
                .data()
                .iter()
                .all(|&g| g == (2.0 / n as f64) as f32)
        );
    }

    #[test]
    fn bad_inputs_are_errors_naming_what_is_wrong() {
        let logits = Tensor::zeros([3, 4]).unwrap();
        let err = cross_entropy(&logits, &[0, 4, 1], 0.0).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "cross_entropy: invalid targets: targets[1] = 4 is out of range for 4 classes \
             (logits [3, 4])"
        );
        for e in [-0.1, 1.5, f32::NAN] {
            let err = cross_entropy(&logits, &[0, 1, 2], e).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("cross_entropy: invalid label_smoothing: must be in [0, 1], got {e}")
            );
        }
        let err = cross_entropy(&logits, &[0, 1], 0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cross_entropy: 2 targets given for logits [3, 4] (3 samples)"
        );
        let err = cross_entropy(&Tensor::zeros([0, 4]).unwrap(), &[], 0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cross_entropy: logits [0, 4] hold an empty batch: the mean over no samples is \
             undefined"
        );
        let err = cross_entropy(&Tensor::zeros([12]).unwrap(), &[0], 0.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cross_entropy: logits must be 2-D [N, K], got shape [12] (1-D)"
        );
        let err = softmax(&Tensor::zeros([2, 3, 4]).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "softmax: logits must be 2-D [N, K], got shape [2, 3, 4] (3-D)"
        );
        let err = log_softmax(&Tensor::zeros([2]).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("log_softmax: logits must be 2-D"),
            "{err}"
        );
        let err = mse_loss(&logits, &Tensor::zeros([4, 3]).unwrap()).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "mse_loss: input [3, 4] and target [4, 3] must have the same shape"
        );
        let empty = Tensor::zeros([0, 2]).unwrap();
        let err = mse_loss(&empty, &empty).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mse_loss: input [0, 2] is empty: the mean over no elements is undefined"
        );
    }
}
