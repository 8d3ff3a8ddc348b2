//! Evaluation mode: a fixed affine map per channel from the running statistics, and its
//! gradients.

use num_traits::Float;

use super::layout::{
    Layout, affine, bias_of, map_rows, per_channel, per_position, row_grad_sums, weight_of,
};
use super::simd::{BnFloat, GradSums, from_f64, to_f64};

/// Channel `ch`'s `1 / sqrt(running_var + eps)`.
fn eval_invstd<T: Float>(running_var: &[T], ch: usize, eps: f64) -> f64 {
    1.0 / (to_f64(running_var[ch]) + eps).sqrt()
}

/// Evaluation forward: `y = (x - rm) / sqrt(rv + eps) * w + b`.
pub(super) fn eval_forward<T: BnFloat>(
    x: &[T],
    l: Layout,
    running_mean: &[T],
    running_var: &[T],
    w: Option<&[T]>,
    b: Option<&[T]>,
    eps: f64,
) -> Vec<T> {
    let a: Vec<T> = (0..l.c)
        .map(|ch| from_f64(eval_invstd(running_var, ch, eps) * weight_of(w, ch)))
        .collect();
    let beta: Vec<T> = (0..l.c).map(|ch| bias_of(b, ch)).collect();
    affine(x, l, [running_mean, &a, &beta], false)
}

/// Evaluation backward: `gx = g * w / sqrt(rv + eps)`; with a weight, also each channel's
/// sums against `x - running_mean`. Returns `grad_input`, each channel's `invstd` and the
/// sums (zero without a weight).
#[allow(clippy::too_many_arguments)]
pub(super) fn eval_backward<T: BnFloat>(
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
            row_grad_sums(gy, x, l, &mean_pos, None)
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
            T::plane_affine(&gy[p.clone()], T::zero(), s, T::zero(), false, out);
            if w.is_some() {
                sums = sums.add(T::plane_grad_sums(
                    &gy[p.clone()],
                    &x[p],
                    running_mean[ch],
                    None,
                ));
            }
        }
        sums
    });
    (gx, invstd, sums)
}
