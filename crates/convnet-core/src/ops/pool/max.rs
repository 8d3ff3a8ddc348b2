//! Max pooling kernels, windowed and adaptive (the global maximum is the adaptive one to 1x1),
//! and their gradient. Each walks the planes in parallel and one plane sequentially, taps in
//! PyTorch's order with its tie and NaN rule.

use num_traits::Float;
use rayon::prelude::*;

use super::plan::{Plan, adaptive_range, planes_per_task};

/// The maximum over the taps `rows x cols` (each `(first, end, step)`) of a plane of `width`
/// columns, PyTorch's rule: `v > max || v.is_nan()`, starting from -inf at the first tap.
#[inline]
pub(super) fn window_max<T: Float>(
    plane: &[T],
    width: usize,
    (r0, r1, dr): (usize, usize, usize),
    (c0, c1, dc): (usize, usize, usize),
) -> (T, usize) {
    let mut best = T::neg_infinity();
    let mut best_at = r0.saturating_mul(width).saturating_add(c0);
    for r in (r0..r1).step_by(dr) {
        let row = &plane[r * width..(r + 1) * width];
        for c in (c0..c1).step_by(dc) {
            let v = row[c];
            if v > best || v.is_nan() {
                best = v;
                best_at = r * width + c;
            }
        }
    }
    (best, best_at)
}

/// The common 2x2 window with stride 2 and no padding: each output row reads two input rows,
/// taps in PyTorch's order (row-major), with the same tie and NaN rule as [`window_max`].
pub(super) fn max_pool_2x2<T: Float>(
    x: &[T],
    width: usize,
    y: &mut [T],
    indices: &mut [usize],
    ow: usize,
) {
    for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
        let top = 2 * i * width;
        let (a, b) = (&x[top..top + width], &x[top + width..top + 2 * width]);
        for (j, (y, idx)) in y_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
            let c = 2 * j;
            let (mut best, mut at) = (a[c], top + c);
            // Selects, not branches: on real activations which tap wins is a coin toss, and
            // a mispredicted branch per tap cost more than the comparisons.
            for (v, pos) in [
                (a[c + 1], top + c + 1),
                (b[c], top + width + c),
                (b[c + 1], top + width + c + 1),
            ] {
                let take = v > best || v.is_nan();
                best = if take { v } else { best };
                at = if take { pos } else { at };
            }
            *y = best;
            *idx = at;
        }
    }
}

pub(super) fn max_pool_forward<T: Float + Send + Sync>(
    plan: &Plan,
    x: &[T],
    y: &mut [T],
    indices: &mut [usize],
) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(x.len() / in_plane, y.len() / out_plane);
    let [ah, aw] = plan.axes;
    let ow = plan.out_hw[1];
    // (With ceil_mode a last window may hang off the input: only whole windows qualify.)
    let two_by_two = [(ah, plan.out_hw[0]), (aw, ow)].iter().all(|(a, o)| {
        a.kernel == 2 && a.stride == 2 && a.pad == 0 && a.dilation == 1 && 2 * o <= a.input
    });
    y.par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|((y, indices), x)| {
            if two_by_two {
                max_pool_2x2(x, aw.input, y, indices, ow);
                return;
            }
            for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
                let (r0, r1) = ah.max_taps(i);
                for (j, (y, idx)) in y_row.iter_mut().zip(idx_row).enumerate() {
                    let (c0, c1) = aw.max_taps(j);
                    (*y, *idx) =
                        window_max(x, aw.input, (r0, r1, ah.dilation), (c0, c1, aw.dilation));
                }
            }
        });
}

/// `gx[plane][indices[i]] += gy[i]`; `gx` must be zeroed and every index below `in_plane`.
pub(super) fn max_pool_backward<T: Float + Send + Sync>(
    in_plane: usize,
    out_plane: usize,
    gy: &[T],
    indices: &[usize],
    gx: &mut [T],
) {
    if in_plane == 0 || out_plane == 0 {
        return;
    }
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .zip(indices.par_chunks(out_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|((gx, gy), indices)| {
            for (&g, &i) in gy.iter().zip(indices) {
                gx[i] = gx[i] + g;
            }
        });
}

pub(super) fn adaptive_max_forward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    x: &[T],
    y: &mut [T],
    indices: &mut [usize],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    y.par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|((y, indices), x)| {
            for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, (y, idx)) in y_row.iter_mut().zip(idx_row).enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    (*y, *idx) = window_max(x, w, (r0, r1, 1), (c0, c1, 1));
                }
            }
        });
}
