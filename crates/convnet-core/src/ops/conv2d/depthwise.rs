//! Direct convolution for filters that see one input channel each: depthwise convolution
//! (groups = channels, any channel multiplier `m = K / C`) and single-channel inputs.
//!
//! Filter `k` reads input channel `k / m`. Per (image, channel), the input plane is copied once
//! into the zero-padded column-phase layout of `phases.rs`, where every kernel tap of an
//! output vector is one contiguous load, for every stride and dilation; the vector loops need
//! no scalar tail (lanes past the row end are computed and dropped, or masked).
//!
//! - forward: `y[i, j] = b + sum_pq w[p, q] * x~[i s_h + p d_h, j s_w + q d_w]`, with
//!   [`BLOCK`] output vectors accumulated in registers across all taps;
//! - input gradient: the same taps scattered back (`g~[...] += w[p, q] * dy[i, j]`), one tap at
//!   a time over the whole plane, into padded phases that are then copied onto the input;
//! - weight gradient: `dw[p, q] = sum_{n,i,j} dy[i, j] * x~[...]`, a dot product per tap with
//!   [`BLOCK`] independent accumulators.

use super::params::Conv2dGeometry;
use super::phases::{PhasePlan as Plan, VectorCursor};
use crate::parallel::{Split, sum_over_parts};
use crate::scratch::Scratch;
use crate::simd::{Simd, multiversion};

/// Output vectors computed together: enough independent FMA chains to hide the FMA latency.
const BLOCK: usize = 8;

#[inline(always)]
fn forward_plane_impl<S: Simd>(
    s: S,
    plan: &Plan,
    phases: &[f32],
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    let mut cursor = VectorCursor::new(plan.ho, plan.wo, S::LANES, false);
    for _ in (0..cursor.total()).step_by(BLOCK) {
        // The last block repeats its final vector where it runs out: same values, same place.
        let pos: [(usize, usize); BLOCK] = std::array::from_fn(|_| cursor.next_or_last());
        let base: [usize; BLOCK] = std::array::from_fn(|b| plan.read_base(pos[b].0, pos[b].1));
        let mut acc = [s.splat(bias); BLOCK];
        for (&off, &wv) in plan.tap_offsets.iter().zip(kernel) {
            let wv = s.splat(wv);
            for b in 0..BLOCK {
                acc[b] = s.mul_add(wv, s.load(&phases[base[b] + off..]), acc[b]);
            }
        }
        for (b, &(i, j)) in pos.iter().enumerate() {
            let row = &mut out[i * plan.wo..(i + 1) * plan.wo];
            let n = S::LANES.min(plan.wo - j);
            s.store_partial(&mut row[j..], acc[b], n);
        }
    }
}

multiversion!(fn forward_plane(plan: &Plan, phases: &[f32], kernel: &[f32], bias: f32, out: &mut [f32]) => forward_plane_impl);

#[inline(always)]
fn input_grad_plane_impl<S: Simd>(
    s: S,
    plan: &Plan,
    dy_rows: &[f32],
    kernel: &[f32],
    grad_phases: &mut [f32],
) {
    for (&off, &wv) in plan.tap_offsets.iter().zip(kernel) {
        let wv = s.splat(wv);
        for (i, dy_row) in dy_rows.chunks_exact(plan.wo_pad).enumerate() {
            for j in (0..plan.wo).step_by(S::LANES) {
                let at = plan.read_base(i, j) + off;
                let g = s.mul_add(wv, s.load(&dy_row[j..]), s.load(&grad_phases[at..]));
                s.store(&mut grad_phases[at..], g);
            }
        }
    }
}

multiversion!(fn input_grad_plane(plan: &Plan, dy_rows: &[f32], kernel: &[f32], grad_phases: &mut [f32]) => input_grad_plane_impl);

#[inline(always)]
fn weight_grad_plane_impl<S: Simd>(
    s: S,
    plan: &Plan,
    dy_rows: &[f32],
    phases: &[f32],
    grad_kernel: &mut [f32],
) {
    // Whole vectors inside a row go through the blocked loop; the last, partial vector of each
    // row is a masked load, so columns no output reads (they may hold anything, even inf) add
    // nothing.
    let whole = VectorCursor::new(plan.ho, plan.wo, S::LANES, true);
    let full = whole.total();
    let blocked = full / BLOCK * BLOCK;
    let tail = plan.wo % S::LANES;
    let tail_col = plan.wo - tail;
    for (&off, gk) in plan.tap_offsets.iter().zip(grad_kernel.iter_mut()) {
        let mut acc = [s.splat(0.0); BLOCK];
        let mut cursor = whole;
        let step = |acc: &mut S::V, cursor: &mut VectorCursor| {
            let (i, j) = cursor.next_or_last();
            let dy = s.load(&dy_rows[i * plan.wo_pad + j..]);
            *acc = s.mul_add(dy, s.load(&phases[plan.read_base(i, j) + off..]), *acc);
        };
        for _ in (0..blocked).step_by(BLOCK) {
            for a in acc.iter_mut() {
                step(a, &mut cursor);
            }
        }
        for _ in blocked..full {
            step(&mut acc[0], &mut cursor);
        }
        if tail > 0 {
            for i in 0..plan.ho {
                let x = s.load_partial(&phases[plan.read_base(i, tail_col) + off..], tail);
                let dy = s.load(&dy_rows[i * plan.wo_pad + tail_col..]);
                let a = &mut acc[1 + i % (BLOCK - 1)];
                *a = s.mul_add(dy, x, *a);
            }
        }
        let sum = acc.iter().fold(s.splat(0.0), |a, &b| s.add(a, b));
        *gk += s.reduce_sum(sum);
    }
}

multiversion!(fn weight_grad_plane(plan: &Plan, dy_rows: &[f32], phases: &[f32], grad_kernel: &mut [f32]) => weight_grad_plane_impl);

/// Forward: `y` (`[N, K, Ho, Wo]`) is overwritten.
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let plan = Plan::new(g, 1);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    let split = Split::new(g.batch * c);
    // Task t = n * C + channel owns the m output planes of that channel.
    split.run_chunks(y, m * out_plane, |task, y_c| {
        let channel = task % c;
        let mut phases = Scratch::take(plan.len());
        plan.fill(&x[task * hw..][..hw], &mut phases);
        for (f, out) in y_c.chunks_exact_mut(out_plane).enumerate() {
            let k = channel * m + f;
            let bias = b.map_or(0.0, |b| b[k]);
            forward_plane(&plan, &phases, &w[k * kk..][..kk], bias, out);
        }
    });
}

/// Input gradient: `gx` (`[N, C, H, W]`) is overwritten.
pub(crate) fn input_grad(g: &Conv2dGeometry, gy: &[f32], w: &[f32], gx: &mut [f32]) {
    let plan = Plan::new(g, 1);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    let split = Split::new(g.batch * c);
    split.run_chunks(gx, hw, |task, gx_c| {
        let (n, channel) = (task / c, task % c);
        let mut grad_phases = Scratch::zeroed(plan.len());
        let mut dy_rows = Scratch::take(plan.ho * plan.wo_pad);
        for f in 0..m {
            let k = channel * m + f;
            let dy = &gy[(n * g.out_channels + k) * out_plane..][..out_plane];
            plan.pad_rows(dy, &mut dy_rows);
            input_grad_plane(&plan, &dy_rows, &w[k * kk..][..kk], &mut grad_phases);
        }
        plan.gather_channel(&grad_phases, gx_c);
    });
}

/// Weight gradient: `gw` (`[K, 1, kh, kw]`) is overwritten.
pub(crate) fn weight_grad(g: &Conv2dGeometry, gy: &[f32], x: &[f32], gw: &mut [f32]) {
    let plan = Plan::new(g, 1);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    sum_over_parts(g.batch * c, gw, |tasks, acc, _| {
        let mut phases = Scratch::take(plan.len());
        let mut dy_rows = Scratch::take(plan.ho * plan.wo_pad);
        for task in tasks {
            let (n, channel) = (task / c, task % c);
            plan.fill(&x[task * hw..][..hw], &mut phases);
            for f in 0..m {
                let k = channel * m + f;
                let dy = &gy[(n * g.out_channels + k) * out_plane..][..out_plane];
                plan.pad_rows(dy, &mut dy_rows);
                weight_grad_plane(&plan, &dy_rows, &phases, &mut acc[k * kk..][..kk]);
            }
        }
    });
}
