//! Direct convolution for filters that see one input channel each: depthwise convolution
//! (groups = channels, any channel multiplier `m = K / C`) and single-channel inputs.
//!
//! Filter `k` reads input channel `k / m`. Per (image, channel), the input plane is copied once
//! into a zero-padded scratch plane stored as `s_w` column *phases*: phase `ph` holds padded
//! columns `ph, ph + s_w, ph + 2 s_w, ...`. Kernel tap `(p, q)` of output row `i` then reads
//! padded row `i s_h + p d_h` of phase `(q d_w) mod s_w`, starting at column
//! `j + (q d_w) div s_w`: a contiguous run for every stride and dilation. Phase rows are long
//! enough to read whole vectors of [`LANES`] outputs past the end of a row, so the vector loops
//! need no scalar tail (lanes past the row end are computed and dropped).
//!
//! - forward: `y[i, j] = b + sum_pq w[p, q] * x~[i s_h + p d_h, j s_w + q d_w]`,
//! - input gradient: the same taps scattered back (`g~[...] += w[p, q] * dy[i, j]`) into a
//!   padded phase plane, then gathered onto the input,
//! - weight gradient: `dw[p, q] = sum_{n,i,j} dy[i, j] * x~[...]`, a dot product per tap.

use super::params::Conv2dGeometry;
use crate::parallel::{Split, sum_over_parts};
use crate::scratch::{with_scratch, with_zeroed_scratch};
use crate::simd::{LANES, axpy_lanes, madd, multiversion};

/// Sizes of one (image, channel) problem, shared by the three kernels.
struct Plan {
    h: usize,
    w: usize,
    pad_top: usize,
    pad_left: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    /// `wo` rounded up to whole vectors.
    wo_pad: usize,
    /// Row stride of a phase plane.
    wps: usize,
    /// Elements of one phase plane.
    phase_len: usize,
    /// For kernel column q: (phase, column offset) of its first read.
    col_taps: Vec<(usize, usize)>,
}

impl Plan {
    fn new(g: &Conv2dGeometry) -> Self {
        let [h, w] = g.in_hw;
        let [ho, wo] = g.out_hw;
        let [sh, sw] = g.stride;
        let [kh, kw] = g.kernel;
        let hp = h + g.pad[0] + g.pad[1];
        let wo_pad = wo.div_ceil(LANES) * LANES;
        let max_off = (kw - 1) * g.dilation[1] / sw;
        // One more column than any tap reads: gradients of padded columns past the last
        // window (when the stride skips them) land there and read back as zero.
        let wps = wo_pad + max_off + 1;
        let col_taps = (0..kw)
            .map(|q| {
                let c = q * g.dilation[1];
                (c % sw, c / sw)
            })
            .collect();
        Plan {
            h,
            w,
            pad_top: g.pad[0],
            pad_left: g.pad[2],
            sh,
            sw,
            dh: g.dilation[0],
            kh,
            kw,
            ho,
            wo,
            wo_pad,
            wps,
            phase_len: hp * wps,
            col_taps,
        }
    }

    fn phases_len(&self) -> usize {
        self.sw * self.phase_len
    }

    /// Start of the run read by tap `(p, q)` for output row `i` (column 0) in the phases.
    #[inline(always)]
    fn tap_start(&self, i: usize, p: usize, q: usize) -> usize {
        let (phase, off) = self.col_taps[q];
        phase * self.phase_len + (i * self.sh + p * self.dh) * self.wps + off
    }

    /// Padded column of phase `ph`, phase column `jj`, as an input column (if inside).
    #[inline(always)]
    fn input_col(&self, ph: usize, jj: usize) -> Option<usize> {
        (jj * self.sw + ph)
            .checked_sub(self.pad_left)
            .filter(|&c| c < self.w)
    }

    /// Copy the input plane `[H, W]` into zero-padded phases.
    fn fill_phases(&self, plane: &[f32], phases: &mut [f32]) {
        for (ph, dst) in phases.chunks_exact_mut(self.phase_len).enumerate() {
            for (r, dst_row) in dst.chunks_exact_mut(self.wps).enumerate() {
                let Some(ir) = r.checked_sub(self.pad_top).filter(|&r| r < self.h) else {
                    dst_row.fill(0.0);
                    continue;
                };
                let src_row = &plane[ir * self.w..][..self.w];
                for (jj, d) in dst_row.iter_mut().enumerate() {
                    *d = self.input_col(ph, jj).map_or(0.0, |c| src_row[c]);
                }
            }
        }
    }

    /// Add the gradient held in padded phases onto the input plane `[H, W]` (overwritten).
    fn gather_phases(&self, phases: &[f32], plane: &mut [f32]) {
        for (ir, row) in plane.chunks_exact_mut(self.w).enumerate() {
            let r = ir + self.pad_top;
            for (ic, v) in row.iter_mut().enumerate() {
                let col = ic + self.pad_left;
                *v = phases[(col % self.sw) * self.phase_len + r * self.wps + col / self.sw];
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
fn forward_plane_impl<const FMA: bool>(
    plan: &Plan,
    phases: &[f32],
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    for (i, out_row) in out.chunks_exact_mut(plan.wo).enumerate() {
        for j in (0..plan.wo).step_by(LANES) {
            let mut acc = [bias; LANES];
            for p in 0..plan.kh {
                for q in 0..plan.kw {
                    let src = &phases[plan.tap_start(i, p, q) + j..];
                    axpy_lanes::<FMA>(&mut acc, kernel[p * plan.kw + q], src);
                }
            }
            let n = (plan.wo - j).min(LANES);
            out_row[j..j + n].copy_from_slice(&acc[..n]);
        }
    }
}

multiversion!(fn forward_plane(plan: &Plan, phases: &[f32], kernel: &[f32], bias: f32, out: &mut [f32]) => forward_plane_impl);

#[inline(always)]
fn input_grad_plane_impl<const FMA: bool>(
    plan: &Plan,
    dy_rows: &[f32],
    kernel: &[f32],
    grad_phases: &mut [f32],
) {
    for (i, dy_row) in dy_rows.chunks_exact(plan.wo_pad).enumerate() {
        for j in (0..plan.wo).step_by(LANES) {
            let dy: &[f32; LANES] = dy_row[j..j + LANES].try_into().expect("LANES elements");
            for p in 0..plan.kh {
                for q in 0..plan.kw {
                    let wv = kernel[p * plan.kw + q];
                    let start = plan.tap_start(i, p, q) + j;
                    let dst: &mut [f32; LANES] = (&mut grad_phases[start..start + LANES])
                        .try_into()
                        .expect("LANES elements");
                    for l in 0..LANES {
                        dst[l] = madd::<FMA>(wv, dy[l], dst[l]);
                    }
                }
            }
        }
    }
}

multiversion!(fn input_grad_plane(plan: &Plan, dy_rows: &[f32], kernel: &[f32], grad_phases: &mut [f32]) => input_grad_plane_impl);

#[inline(always)]
fn weight_grad_plane_impl<const FMA: bool>(
    plan: &Plan,
    dy_rows: &[f32],
    phases: &[f32],
    grad_kernel: &mut [f32],
) {
    for p in 0..plan.kh {
        for q in 0..plan.kw {
            let mut acc = [0.0f32; LANES];
            for (i, dy_row) in dy_rows.chunks_exact(plan.wo_pad).enumerate() {
                let src = &phases[plan.tap_start(i, p, q)..][..plan.wo_pad];
                for (dy, x) in dy_row.chunks_exact(LANES).zip(src.chunks_exact(LANES)) {
                    for l in 0..LANES {
                        acc[l] = madd::<FMA>(dy[l], x[l], acc[l]);
                    }
                }
            }
            grad_kernel[p * plan.kw + q] += acc.iter().sum::<f32>();
        }
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
