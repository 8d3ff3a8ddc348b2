//! Batch norm in training, the ReLU after it and a 2x2 stride-2 max pooling after that, in
//! the batch norm's passes over each channel (`nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(),
//! nn.MaxPool2d(2))`): neither the ReLU's output nor its gradient is written out as a
//! tensor the size of the input.
//!
//! - Forward: the statistics as [`train_forward`](super::train::train_forward) computes
//!   them; then each plane's ReLU output goes to a scratch plane (in L1) and is pooled from
//!   there into the output (0.74-0.78 ms against 0.97-1.09 ms for the batch norm with ReLU
//!   and then the pooling, on the reference model's 128x32x28x28 batch).
//! - Backward: each plane's ReLU output is computed again into a scratch plane, and the
//!   pooling's gradient from it (as [`max_pool2d_backward_from_input`]) into the channel's
//!   scratch (`N` planes, 401 KB for 128 images of 28x28: it stays in L2), which the batch
//!   norm's two passes (through the ReLU's mask) read: the sums right after each plane is
//!   written, then `grad_input`. Recomputing both planes for the second pass instead was
//!   slower: 2.1 ms against 1.56 ms for the reference model's first pooling, where the
//!   three layers one after the other take 1.85-1.96 ms.
//!
//! Every value is the one the three layers give run one after the other, bit for bit: the
//! same kernels run on the same values in the same order; only where their planes live
//! differs.
//!
//! [`max_pool2d_backward_from_input`]: crate::max_pool2d_backward_from_input

use std::mem::MaybeUninit;

use super::layout::{Layout, bias_of, per_channel, per_channel_planes, weight_of};
use super::simd::{BnFloat, GradSums, from_f64};
use super::train::{Stats, backward_coefficients, output_scale, plane_statistics, weight_t};
use crate::cpu::scratch::Scratch;
use crate::ops::pool::MaxPool2x2Planes;

/// The pooled ReLU output of the batch norm (`[N, C, Ho, Wo]`, flat) and each channel's
/// statistics. The plane path only (`l` does not use rows).
pub(super) fn train_forward_pool(
    x: &[f32],
    l: Layout,
    pool: MaxPool2x2Planes,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f64,
) -> (Vec<f32>, Vec<Stats>) {
    debug_assert!(!l.uses_rows());
    per_channel_planes(l, pool.out_plane(), |ch, planes| {
        let (stats, [mean, a, beta]) = plane_statistics(x, l, ch, w, b, eps);
        let (mut act, mut pooled) = (Scratch::take(l.s), Scratch::take(pool.out_plane()));
        for (i, out) in planes.iter_mut().enumerate() {
            f32::plane_affine(&x[l.plane(i, ch)], mean, a, beta, true, uninit(&mut act));
            pool.forward(&act, &mut pooled);
            for (o, &v) in out.iter_mut().zip(pooled.iter()) {
                o.write(v);
            }
        }
        stats
    })
}

/// `grad_input` of [`train_forward_pool`] from the gradient of its pooled output `gy`
/// (`[N, C, Ho, Wo]`, flat), and each channel's sums.
pub(super) fn train_backward_pool(
    gy: &[f32],
    x: &[f32],
    l: Layout,
    pool: MaxPool2x2Planes,
    (mean, invstd): (&[f64], &[f64]),
    w: Option<&[f32]>,
    b: Option<&[f32]>,
) -> (Vec<f32>, Vec<GradSums>) {
    debug_assert!(!l.uses_rows());
    let m = l.per_channel() as f64;
    let out_plane = pool.out_plane();
    per_channel(l, |ch, planes| {
        let mu: f32 = from_f64(mean[ch]);
        let (a, beta) = (output_scale(invstd[ch], weight_t(w, ch)), bias_of(b, ch));
        // The channel's gradient at the ReLU's output, every plane, for both passes.
        let (mut act, mut g) = (Scratch::take(l.s), Scratch::take(l.n * l.s));
        let relu = Some((a, beta));
        let mut sums = GradSums::ZERO;
        for (i, g) in g.chunks_exact_mut(l.s).enumerate() {
            let x = &x[l.plane(i, ch)];
            f32::plane_affine(x, mu, a, beta, true, uninit(&mut act));
            let p = (i * l.c + ch) * out_plane;
            pool.backward(&gy[p..p + out_plane], &act, uninit(g));
            sums = sums.add(f32::plane_grad_sums(g, x, mu, relu));
        }
        let coef = backward_coefficients(sums, m, invstd[ch], weight_of(w, ch));
        // Last planes first: the ones the sums left in the cache.
        for (i, out) in planes.iter_mut().enumerate().rev() {
            let g = &g[i * l.s..(i + 1) * l.s];
            f32::plane_grad_input(g, &x[l.plane(i, ch)], mu, coef, relu, out);
        }
        sums
    })
}

/// `v` as memory for a kernel that writes every value of its output.
fn uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the kernels given this slice
    // only ever write initialised values into it (nothing uninitialised can be stored through
    // it and then read as `f32`).
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}
