//! Max pooling kernels, windowed and adaptive (the global maximum is the adaptive one to 1x1),
//! and their gradient. Each walks the planes in parallel and one plane sequentially, taps in
//! PyTorch's order with its tie and NaN rule.

use num_traits::Float;
use rayon::prelude::*;

use super::max2x2;
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
    let two_by_two = plan.is_2x2_stride_2();
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

/// [`max_pool_forward`] on `f32`, the 2x2 stride-2 windows vectorised ([`max2x2`]).
pub(super) fn max_pool_forward_f32(plan: &Plan, x: &[f32], y: &mut [f32], indices: &mut [usize]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    if !plan.is_2x2_stride_2() || out_plane == 0 || in_plane > max2x2::MAX_PLANE {
        return max_pool_forward(plan, x, y, indices);
    }
    let (width, ow) = (plan.axes[1].input, plan.out_hw[1]);
    y.par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|((y, indices), x)| max2x2::forward_plane(x, width, y, Some(indices), ow));
}

/// [`max_pool_forward_f32`] without the indices: the maxima only (the 2x2 stride-2 windows
/// write no index at all).
pub(super) fn max_pool_values_f32(plan: &Plan, x: &[f32], y: &mut [f32]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    if !plan.is_2x2_stride_2() || out_plane == 0 || in_plane > max2x2::MAX_PLANE {
        let mut indices = vec![0; y.len()];
        return max_pool_forward(plan, x, y, &mut indices);
    }
    let (width, ow) = (plan.axes[1].input, plan.out_hw[1]);
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|(y, x)| max2x2::forward_plane(x, width, y, None, ow));
}

/// The gradient of the max pooling `plan` of `x`, with `gy` one value per output: each
/// window's maximum found again by the forward scan receives its gradient (the 2x2 stride-2
/// windows in one pass that writes every input position once; others through the indices
/// and the scatter).
pub(super) fn max_pool_backward_from_input_f32(plan: &Plan, gy: &[f32], x: &[f32]) -> Vec<f32> {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    if !plan.is_2x2_stride_2() || out_plane == 0 || in_plane > max2x2::MAX_PLANE {
        let (mut y, mut indices) = (vec![0.0; gy.len()], vec![0; gy.len()]);
        max_pool_forward_f32(plan, x, &mut y, &mut indices);
        let mut gx = vec![0.0; x.len()];
        if out_plane > 0 {
            max_pool_backward(in_plane, out_plane, gy, &indices, &mut gx);
        }
        return gx;
    }
    let (hw, ow) = ([plan.axes[0].input, plan.axes[1].input], plan.out_hw[1]);
    let mut gx = Vec::with_capacity(x.len());
    gx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|((gx, gy), x)| max2x2::backward_from_input_plane(gy, x, hw, ow, gx));
    // SAFETY: `backward_from_input_plane` writes every value of its plane, and the planes
    // cover `gx[..x.len()]` (`x` holds whole planes, one per `gy` plane).
    unsafe { gx.set_len(x.len()) };
    gx
}

/// The gradient of a max pooling whose every index lies in its own output's 2x2 block
/// (rows `2i, 2i + 1`, columns `2j, 2j + 1` of an `[h, w]` plane), as a 2x2 stride-2
/// pooling's do: each input value written once ([`max2x2`]). `None` for any other indices.
pub(super) fn max_pool_backward_blocks(
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    gy: &[f32],
    indices: &[usize],
) -> Option<Vec<f32>> {
    let (in_plane, out_plane) = (h * w, ho * wo);
    if out_plane == 0 || 2 * ho > h || 2 * wo > w || indices.len() != gy.len() {
        return None;
    }
    let numel = gy.len() / out_plane * in_plane;
    let mut gx = Vec::with_capacity(numel);
    let written = gx.spare_capacity_mut()[..numel]
        .par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .zip(indices.par_chunks(out_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .all(|((gx, gy), indices)| max2x2::backward_plane(gy, indices, [h, w], wo, gx));
    if !written {
        return None;
    }
    // SAFETY: every plane's `backward_plane` returned true, which it does only after
    // writing every value of its plane, and the planes cover `gx[..numel]`.
    unsafe { gx.set_len(numel) };
    Some(gx)
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
