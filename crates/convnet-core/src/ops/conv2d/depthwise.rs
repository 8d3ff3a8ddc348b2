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
use super::phases::PhasePlan as Plan;
use crate::parallel::{Split, sum_over_parts};
use crate::scratch::Scratch;
use crate::simd::{MAX_LANES, Simd, multiversion};

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
    let per_row = plan.wo.div_ceil(S::LANES);
    let total = plan.ho * per_row;
    let mut spill = [0.0f32; MAX_LANES];
    for first in (0..total).step_by(BLOCK) {
        // The last block repeats its final vector where it runs out: same values, same place.
        let pos: [(usize, usize); BLOCK] = std::array::from_fn(|b| {
            let v = (first + b).min(total - 1);
            (v / per_row, (v % per_row) * S::LANES)
        });
        let base: [usize; BLOCK] = std::array::from_fn(|b| plan.read_base(pos[b].0, pos[b].1));
        let mut acc = [s.splat(bias); BLOCK];
        for (&off, &wv) in plan.tap_offsets.iter().zip(kernel) {
            let wv = s.splat(wv);
            for b in 0..BLOCK {
                acc[b] = s.mul_add(wv, s.load(&phases[base[b] + off..]), acc[b]);
            }
        }
        for b in 0..BLOCK {
            let (i, j) = pos[b];
            let row = &mut out[i * plan.wo..(i + 1) * plan.wo];
            if j + S::LANES <= plan.wo {
                s.store(&mut row[j..], acc[b]);
            } else {
                s.store(&mut spill, acc[b]);
                row[j..].copy_from_slice(&spill[..plan.wo - j]);
            }
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
    // row is masked, so columns no output reads (they may hold anything, even inf) add nothing.
    let full_per_row = plan.wo / S::LANES;
    let tail = plan.wo % S::LANES;
    let full = plan.ho * full_per_row;
    let blocked = full / BLOCK * BLOCK;
    let at = |v: usize| {
        let (i, j) = (v / full_per_row, (v % full_per_row) * S::LANES);
        (i * plan.wo_pad + j, plan.read_base(i, j))
    };
    let mut masked = [0.0f32; MAX_LANES];
    for (&off, gk) in plan.tap_offsets.iter().zip(grad_kernel.iter_mut()) {
        let mut acc = [s.splat(0.0); BLOCK];
        for first in (0..blocked).step_by(BLOCK) {
            for (b, a) in acc.iter_mut().enumerate() {
                let (d, x) = at(first + b);
                *a = s.mul_add(s.load(&dy_rows[d..]), s.load(&phases[x + off..]), *a);
            }
        }
        for v in blocked..full {
            let (d, x) = at(v);
            acc[0] = s.mul_add(s.load(&dy_rows[d..]), s.load(&phases[x + off..]), acc[0]);
        }
        if tail > 0 {
            let j = full_per_row * S::LANES;
            for i in 0..plan.ho {
                let x = plan.read_base(i, j) + off;
                masked[..tail].copy_from_slice(&phases[x..x + tail]);
                let dy = s.load(&dy_rows[i * plan.wo_pad + j..]);
                acc[1] = s.mul_add(dy, s.load(&masked), acc[1]);
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
