//! Direct convolution for filters that see one input channel each: depthwise convolution
//! (groups = channels, any channel multiplier `m = K / C`) and single-channel inputs.
//!
//! Filter `k` reads input channel `k / m`. Per (image, channel), the input plane is copied once
//! into a zero-padded scratch plane stored as `s_w` column *phases*: phase `ph` holds padded
//! columns `ph, ph + s_w, ph + 2 s_w, ...`. Kernel tap `(p, q)` of output row `i` then reads
//! padded row `i s_h + p d_h` of phase `(q d_w) mod s_w`, starting at column
//! `j + (q d_w) div s_w`: a contiguous run for every stride and dilation. Phase rows are long
//! enough to read whole vectors past the end of an output row, so the vector loops need no
//! scalar tail (lanes past the row end are computed and dropped).
//!
//! - forward: `y[i, j] = b + sum_pq w[p, q] * x~[i s_h + p d_h, j s_w + q d_w]`, with
//!   [`BLOCK`] output vectors accumulated in registers across all taps;
//! - input gradient: the same taps scattered back (`g~[...] += w[p, q] * dy[i, j]`), one tap at
//!   a time over the whole plane, into padded phases that are then copied onto the input;
//! - weight gradient: `dw[p, q] = sum_{n,i,j} dy[i, j] * x~[...]`, a dot product per tap with
//!   [`BLOCK`] independent accumulators.

use super::params::Conv2dGeometry;
use crate::parallel::{Split, sum_over_parts};
use crate::scratch::{with_scratch, with_zeroed_scratch};
use crate::simd::{MAX_LANES, Simd, multiversion};

/// Output vectors computed together: enough independent FMA chains to hide the FMA latency.
const BLOCK: usize = 8;

/// Sizes of one (image, channel) problem, shared by the three kernels.
struct Plan {
    h: usize,
    w: usize,
    pad_top: usize,
    pad_left: usize,
    sh: usize,
    sw: usize,
    ho: usize,
    wo: usize,
    /// `wo` rounded up to whole vectors.
    wo_pad: usize,
    /// Row stride of a phase plane.
    wps: usize,
    /// Elements of one phase plane.
    phase_len: usize,
    /// Offset of tap `p * kw + q` from the read position of its output element.
    tap_offsets: Vec<usize>,
}

impl Plan {
    fn new(g: &Conv2dGeometry) -> Self {
        let [h, w] = g.in_hw;
        let [ho, wo] = g.out_hw;
        let [sh, sw] = g.stride;
        let [kh, kw] = g.kernel;
        let hp = h + g.pad[0] + g.pad[1];
        let wo_pad = wo.div_ceil(MAX_LANES) * MAX_LANES;
        let max_off = (kw - 1) * g.dilation[1] / sw;
        // One more column than any tap reads: gradients of padded columns past the last
        // window (when the stride skips them) land there and read back as zero.
        let wps = wo_pad + max_off + 1;
        let phase_len = hp * wps;
        let tap_offsets = (0..kh * kw)
            .map(|t| {
                let (p, q) = (t / kw, t % kw);
                let c = q * g.dilation[1];
                (c % sw) * phase_len + p * g.dilation[0] * wps + c / sw
            })
            .collect();
        Plan {
            h,
            w,
            pad_top: g.pad[0],
            pad_left: g.pad[2],
            sh,
            sw,
            ho,
            wo,
            wo_pad,
            wps,
            phase_len,
            tap_offsets,
        }
    }

    fn phases_len(&self) -> usize {
        self.sw * self.phase_len
    }

    /// Where output element `(i, j)` reads for tap 0, in phase coordinates.
    #[inline(always)]
    fn read_base(&self, i: usize, j: usize) -> usize {
        i * self.sh * self.wps + j
    }

    /// Phase columns `jj` of phase `ph` that hold input columns, and the input column of the
    /// first one.
    fn phase_cols(&self, ph: usize) -> (std::ops::Range<usize>, usize) {
        let lo = self.pad_left.saturating_sub(ph).div_ceil(self.sw);
        let hi = (self.w + self.pad_left)
            .saturating_sub(ph)
            .div_ceil(self.sw)
            .min(self.wps);
        let lo = lo.min(hi);
        // (When the range is empty the first column is clamped so that slices stay valid.)
        let first = (lo * self.sw + ph)
            .saturating_sub(self.pad_left)
            .min(self.w);
        (lo..hi, first)
    }

    /// Copy the input plane `[H, W]` into zero-padded phases.
    fn fill_phases(&self, plane: &[f32], phases: &mut [f32]) {
        for (ph, dst) in phases.chunks_exact_mut(self.phase_len).enumerate() {
            let (cols, first) = self.phase_cols(ph);
            for (r, dst_row) in dst.chunks_exact_mut(self.wps).enumerate() {
                let Some(ir) = r.checked_sub(self.pad_top).filter(|&r| r < self.h) else {
                    dst_row.fill(0.0);
                    continue;
                };
                let src = &plane[ir * self.w + first..(ir + 1) * self.w];
                dst_row[..cols.start].fill(0.0);
                dst_row[cols.end..].fill(0.0);
                let dst_cols = &mut dst_row[cols.clone()];
                if self.sw == 1 {
                    dst_cols.copy_from_slice(&src[..dst_cols.len()]);
                } else {
                    for (d, v) in dst_cols.iter_mut().zip(src.iter().step_by(self.sw)) {
                        *d = *v;
                    }
                }
            }
        }
    }

    /// Copy the gradient held in padded phases onto the input plane `[H, W]` (overwritten).
    fn gather_phases(&self, phases: &[f32], plane: &mut [f32]) {
        for (ph, src) in phases.chunks_exact(self.phase_len).enumerate() {
            let (cols, first) = self.phase_cols(ph);
            for (ir, row) in plane.chunks_exact_mut(self.w).enumerate() {
                let src_cols = &src[(ir + self.pad_top) * self.wps..][cols.clone()];
                for (d, v) in row[first..].iter_mut().step_by(self.sw).zip(src_cols) {
                    *d = *v;
                }
            }
        }
    }

    /// Copy `dy` `[Ho, Wo]` into rows of `wo_pad` with zero tails.
    fn pad_rows(&self, dy: &[f32], out: &mut [f32]) {
        for (src, dst) in dy
            .chunks_exact(self.wo)
            .zip(out.chunks_exact_mut(self.wo_pad))
        {
            dst[..self.wo].copy_from_slice(src);
            dst[self.wo..].fill(0.0);
        }
    }
}

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
    let plan = Plan::new(g);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    let split = Split::new(g.batch * c);
    // Task t = n * C + channel owns the m output planes of that channel.
    split.run_chunks(y, m * out_plane, |task, y_c| {
        let channel = task % c;
        with_scratch(plan.phases_len(), |phases| {
            plan.fill_phases(&x[task * hw..][..hw], phases);
            for (f, out) in y_c.chunks_exact_mut(out_plane).enumerate() {
                let k = channel * m + f;
                let bias = b.map_or(0.0, |b| b[k]);
                forward_plane(&plan, phases, &w[k * kk..][..kk], bias, out);
            }
        });
    });
}

/// Input gradient: `gx` (`[N, C, H, W]`) is overwritten.
pub(crate) fn input_grad(g: &Conv2dGeometry, gy: &[f32], w: &[f32], gx: &mut [f32]) {
    let plan = Plan::new(g);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    let split = Split::new(g.batch * c);
    split.run_chunks(gx, hw, |task, gx_c| {
        let (n, channel) = (task / c, task % c);
        with_zeroed_scratch(plan.phases_len(), |grad_phases| {
            with_scratch(plan.ho * plan.wo_pad, |dy_rows| {
                for f in 0..m {
                    let k = channel * m + f;
                    plan.pad_rows(
                        &gy[(n * g.out_channels + k) * out_plane..][..out_plane],
                        dy_rows,
                    );
                    input_grad_plane(&plan, dy_rows, &w[k * kk..][..kk], grad_phases);
                }
            });
            plan.gather_phases(grad_phases, gx_c);
        });
    });
}

/// Weight gradient: `gw` (`[K, 1, kh, kw]`) is overwritten.
pub(crate) fn weight_grad(g: &Conv2dGeometry, gy: &[f32], x: &[f32], gw: &mut [f32]) {
    let plan = Plan::new(g);
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let (hw, out_plane) = (plan.h * plan.w, plan.ho * plan.wo);
    sum_over_parts(g.batch * c, gw, |tasks, acc, _| {
        with_scratch(plan.phases_len(), |phases| {
            with_scratch(plan.ho * plan.wo_pad, |dy_rows| {
                for task in tasks {
                    let (n, channel) = (task / c, task % c);
                    plan.fill_phases(&x[task * hw..][..hw], phases);
                    for f in 0..m {
                        let k = channel * m + f;
                        let dy = &gy[(n * g.out_channels + k) * out_plane..][..out_plane];
                        plan.pad_rows(dy, dy_rows);
                        weight_grad_plane(&plan, dy_rows, phases, &mut acc[k * kk..][..kk]);
                    }
                }
            });
        });
    });
}
