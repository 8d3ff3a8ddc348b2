//! Average pooling kernels, windowed, adaptive and global, and their gradients. Each walks the
//! planes in parallel and one plane sequentially, summing in PyTorch's order.

use num_traits::Float;
use rayon::prelude::*;

use super::plan::{Plan, adaptive_range, cast, planes_per_task};

pub(super) fn avg_pool_forward<T: Float + Send + Sync>(plan: &Plan, x: &[T], y: &mut [T]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(x.len() / in_plane, y.len() / out_plane);
    let [ah, aw] = plan.axes;
    let (w, ow) = (aw.input, plan.out_hw[1]);
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|(y, x)| {
            for (i, y_row) in y.chunks_mut(ow).enumerate() {
                let (r0, r1, pool_h) = ah.avg_taps(i);
                for (j, y) in y_row.iter_mut().enumerate() {
                    let (c0, c1, pool_w) = aw.avg_taps(j);
                    if r0 >= r1 || c0 >= c1 {
                        *y = T::zero();
                        continue;
                    }
                    let mut sum = T::zero();
                    for r in r0..r1 {
                        for &v in &x[r * w + c0..r * w + c1] {
                            sum = sum + v;
                        }
                    }
                    *y = sum / plan.divisor::<T>(pool_h * pool_w, (r1 - r0) * (c1 - c0));
                }
            }
        });
}

/// `gx` (zeroed) gets, for every output, `gy / divisor` on each input of its clipped window.
pub(super) fn avg_pool_backward<T: Float + Send + Sync>(plan: &Plan, gy: &[T], gx: &mut [T]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(gx.len() / in_plane, gy.len() / out_plane);
    let [ah, aw] = plan.axes;
    let (w, ow) = (aw.input, plan.out_hw[1]);
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|(gx, gy)| {
            for (i, gy_row) in gy.chunks(ow).enumerate() {
                let (r0, r1, pool_h) = ah.avg_taps(i);
                for (j, &g) in gy_row.iter().enumerate() {
                    let (c0, c1, pool_w) = aw.avg_taps(j);
                    if r0 >= r1 || c0 >= c1 {
                        continue;
                    }
                    let delta = g / plan.divisor::<T>(pool_h * pool_w, (r1 - r0) * (c1 - c0));
                    for r in r0..r1 {
                        for v in &mut gx[r * w + c0..r * w + c1] {
                            *v = *v + delta;
                        }
                    }
                }
            }
        });
}

pub(super) fn adaptive_avg_forward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    x: &[T],
    y: &mut [T],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|(y, x)| {
            for (i, y_row) in y.chunks_mut(ow).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, y) in y_row.iter_mut().enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    let mut sum = T::zero();
                    for r in r0..r1 {
                        for &v in &x[r * w + c0..r * w + c1] {
                            sum = sum + v;
                        }
                    }
                    *y = sum / cast::<T>(r1 - r0) / cast::<T>(c1 - c0);
                }
            }
        });
}

pub(super) fn adaptive_avg_backward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    gy: &[T],
    gx: &mut [T],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|(gx, gy)| {
            for (i, gy_row) in gy.chunks(ow).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, &g) in gy_row.iter().enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    let delta = g / cast::<T>(r1 - r0) / cast::<T>(c1 - c0);
                    for r in r0..r1 {
                        for v in &mut gx[r * w + c0..r * w + c1] {
                            *v = *v + delta;
                        }
                    }
                }
            }
        });
}

/// `y[plane] = sum(x[plane]) / plane_len`, the sum accumulated in `f64`.
pub(super) fn global_avg_forward<T: Float + Send + Sync>(plane_len: usize, x: &[T], y: &mut [T]) {
    let divisor = cast::<T>(plane_len);
    y.par_iter_mut()
        .zip(x.par_chunks(plane_len))
        .with_min_len(planes_per_task(plane_len))
        .for_each(|(y, x)| {
            let sum: f64 = x.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum();
            *y = T::from(sum).unwrap_or_else(T::nan) / divisor;
        });
}

/// Every input of plane `p` gets `gy[p] / plane_len`.
pub(super) fn global_avg_backward<T: Float + Send + Sync>(
    plane_len: usize,
    gy: &[T],
    gx: &mut [T],
) {
    let divisor = cast::<T>(plane_len);
    gx.par_chunks_mut(plane_len)
        .zip(gy.par_iter())
        .with_min_len(planes_per_task(plane_len))
        .for_each(|(gx, &g)| gx.fill(g / divisor));
}
