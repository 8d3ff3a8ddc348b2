//! Training mode: the batch statistics, the output, and the gradients through the statistics.

use num_traits::Float;

use super::layout::{
    Layout, affine, affine_rows, bias_of, column_sums, map_rows, per_channel, per_position,
    row_grad_sums, weight_of,
};
use super::simd::{BnFloat, GradSums, Relu, from_f64, through_relu, to_f64};

/// The batch statistics of one channel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stats {
    /// Rounded to the element type: the value the other passes subtract.
    pub(super) mean: f64,
    pub(super) invstd: f64,
    pub(super) var_unbiased: f64,
}

/// The training statistics of a channel from its sum and centred sum of squares, and the
/// coefficients `(a, b)` of its output `(x - mean) * a + b`.
fn train_coefficients<T: Float>(
    mean: T,
    sq_dev: f64,
    m: f64,
    eps: f64,
    weight: T,
    bias: T,
) -> (Stats, T, T) {
    let invstd = 1.0 / (sq_dev / m + eps).sqrt();
    let stats = Stats {
        mean: to_f64(mean),
        invstd,
        var_unbiased: sq_dev / (m - 1.0),
    };
    (stats, output_scale(invstd, weight), bias)
}

/// A channel's output scale `a = invstd * w`, from `invstd` rounded to the element type
/// (as PyTorch's `alpha`): what a backward pass with the saved `invstd` recomputes exactly.
pub(super) fn output_scale<T: Float>(invstd: f64, weight: T) -> T {
    from_f64::<T>(invstd) * weight
}

/// Channel `ch`'s scale `γ` in the element type (1 without a weight).
pub(super) fn weight_t<T: Float>(w: Option<&[T]>, ch: usize) -> T {
    w.map_or(T::one(), |w| w[ch])
}

/// The coefficients `(s, q, r)` of a channel's training `grad_input`,
/// `g * s + (x - mean) * q + r`: `s = w invstd`, `q = -s invstd² Σg(x - mean) / M`,
/// `r = -s Σg / M` (PyTorch's `w invstd (g - mean(g) - x̂ mean(g x̂))`).
pub(super) fn backward_coefficients<T: Float>(
    sums: GradSums,
    m: f64,
    invstd: f64,
    weight: f64,
) -> [T; 3] {
    let s = invstd * weight;
    let q = -s * invstd * invstd * sums.dot / m;
    let r = -s * sums.sum / m;
    [from_f64(s), from_f64(q), from_f64(r)]
}

/// Training forward: batch statistics, then `y = (x - mean) * invstd * w + b`, and
/// `relu(y)` if `relu`.
pub(super) fn train_forward<T: BnFloat>(
    x: &[T],
    l: Layout,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
    relu: bool,
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
                    weight_t(w, ch),
                    bias_of(b, ch),
                );
                (st, (a, beta))
            })
            .unzip();
        let a = coef.iter().map(|c| c.0);
        let beta = coef.iter().map(|c| c.1);
        let y = affine_rows(x, l, mean.iter().copied(), a, beta, relu);
        return (y, stats);
    }
    per_channel(l, |ch, planes| {
        let (stats, [mean, a, beta]) = plane_statistics(x, l, ch, w, b, eps);
        for (i, out) in planes.iter_mut().enumerate() {
            T::plane_affine(&x[l.plane(i, ch)], mean, a, beta, relu, out);
        }
        stats
    })
}

/// Channel `ch`'s batch statistics on the plane path, and its output coefficients `[mean, a,
/// b]` (the output is `(x - mean) * a + b`). Its first planes are left in the cache.
pub(super) fn plane_statistics<T: BnFloat>(
    x: &[T],
    l: Layout,
    ch: usize,
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
) -> (Stats, [T; 3]) {
    let m = l.per_channel() as f64;
    let sum: f64 = (0..l.n).map(|i| T::plane_sum(&x[l.plane(i, ch)])).sum();
    let mean: T = from_f64(sum / m);
    // Passes alternate direction, so each starts on the planes the previous one left in the
    // cache (a channel of a large batch does not fit in L2).
    let sq_dev: f64 = (0..l.n)
        .rev()
        .map(|i| T::plane_sq_dev(&x[l.plane(i, ch)], mean))
        .sum();
    let (stats, a, beta) =
        train_coefficients(mean, sq_dev, m, eps, weight_t(w, ch), bias_of(b, ch));
    (stats, [mean, a, beta])
}

/// The training output again, from the statistics the forward pass saved (`mean` and `invstd`
/// rounded to the element type, as [`Stats`] is returned): the same operations on the same
/// coefficients, so the same bits.
pub(super) fn train_output<T: BnFloat>(
    x: &[T],
    l: Layout,
    mean: &[f64],
    invstd: &[f64],
    w: Option<&[T]>,
    b: Option<&[T]>,
    relu: bool,
) -> Vec<T> {
    let [mean, a, beta] = saved_coefficients(mean, invstd, w, b);
    affine(x, l, [&mean, &a, &beta], relu)
}

/// Each channel's output coefficients `[mean, a, b]` from the saved statistics (see
/// [`train_output`]).
pub(super) fn saved_coefficients<T: BnFloat>(
    mean: &[f64],
    invstd: &[f64],
    w: Option<&[T]>,
    b: Option<&[T]>,
) -> [Vec<T>; 3] {
    let c = mean.len();
    [
        mean.iter().map(|&v| from_f64(v)).collect(),
        (0..c)
            .map(|ch| output_scale(invstd[ch], weight_t(w, ch)))
            .collect(),
        (0..c).map(|ch| bias_of(b, ch)).collect(),
    ]
}

/// Where a ReLU follows the batch norm (fused into its passes): its bias, if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReluAfter<'a, T> {
    pub(super) bias: Option<&'a [T]>,
}

/// Training backward: `grad_input` (see [`backward_coefficients`]) and each channel's sums
/// (for `grad_weight` and `grad_bias`). With `relu`, `gy` is the gradient of the ReLU's
/// output, masked where the recomputed batch-norm output is `<= 0`.
pub(super) fn train_backward<T: BnFloat>(
    gy: &[T],
    x: &[T],
    l: Layout,
    mean: &[f64],
    invstd: &[f64],
    w: Option<&[T]>,
    relu: Option<ReluAfter<'_, T>>,
) -> (Vec<T>, Vec<GradSums>) {
    let m = l.per_channel() as f64;
    // Each channel's ReLU: the coefficients `(a, b)` its forward pass computed the output with.
    let relu_of = |ch: usize| -> Relu<T> {
        relu.map(|r| {
            (
                output_scale(invstd[ch], weight_t(w, ch)),
                bias_of(r.bias, ch),
            )
        })
    };
    if l.uses_rows() {
        let mean_pos = per_position(mean.iter().map(|&v| from_f64::<T>(v)), l.s);
        let relu_pos = relu.map(|_| {
            let coef: Vec<(T, T)> = (0..l.c).filter_map(relu_of).collect();
            (
                per_position(coef.iter().map(|c| c.0), l.s),
                per_position(coef.iter().map(|c| c.1), l.s),
            )
        });
        let relu_pos = relu_pos.as_ref().map(|(a, b)| (a.as_slice(), b.as_slice()));
        let sums = row_grad_sums(gy, x, l, &mean_pos, relu_pos);
        let coef: Vec<[T; 3]> = (0..l.c)
            .map(|ch| backward_coefficients(sums[ch], m, invstd[ch], weight_of(w, ch)))
            .collect();
        let [s_pos, q_pos, r_pos] = [0, 1, 2].map(|k| per_position(coef.iter().map(|c| c[k]), l.s));
        let gx = map_rows(l, |row, out| {
            let n = out.len();
            let (g, x) = (&l.row(gy, row)[..n], &l.row(x, row)[..n]);
            let (mu, s, q, r) = (&mean_pos[..n], &s_pos[..n], &q_pos[..n], &r_pos[..n]);
            for j in 0..n {
                let g = through_relu(g[j], x[j], mu[j], relu_pos.map(|(a, b)| (a[j], b[j])));
                out[j] = g * s[j] + ((x[j] - mu[j]) * q[j] + r[j]);
            }
        });
        return (gx, sums);
    }
    per_channel(l, |ch, planes| {
        let mu: T = from_f64(mean[ch]);
        let relu = relu_of(ch);
        let sums = (0..l.n).fold(GradSums::ZERO, |acc, i| {
            let p = l.plane(i, ch);
            acc.add(T::plane_grad_sums(&gy[p.clone()], &x[p], mu, relu))
        });
        let coef = backward_coefficients(sums, m, invstd[ch], weight_of(w, ch));
        // Last planes first: the ones the sums left in the cache.
        for (i, out) in planes.iter_mut().enumerate().rev() {
            let p = l.plane(i, ch);
            T::plane_grad_input(&gy[p.clone()], &x[p], mu, coef, relu, out);
        }
        sums
    })
}
