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

use std::ops::Range;

use super::pad::source_index;
use super::params::{Conv2dGeometry, PaddingMode};
use super::phases::{PhasePlan as Plan, VectorCursor};
use crate::cpu::parallel::{SharedOut, Split, sum_over_parts};
use crate::cpu::scratch::Scratch;
use crate::cpu::simd::{Portable, Simd, multiversion};

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
    if plan.wo == 0 {
        return;
    }
    let lanes = S::LANES;
    let per_row = plan.wo.div_ceil(lanes);
    if per_row < BLOCK {
        return forward_short_rows(s, plan, phases, kernel, bias, out);
    }
    let max_off = plan.tap_offsets.iter().copied().max().unwrap_or(0);
    for (i, row) in out.chunks_exact_mut(plan.wo).enumerate().take(plan.ho) {
        let mut jv = 0;
        // Blocks of BLOCK consecutive vectors: every tap is BLOCK loads at fixed distances
        // from one address, into BLOCK independent accumulators.
        while jv + BLOCK <= per_row {
            let base = plan.read_base(i, jv * lanes);
            assert!(base + max_off + BLOCK * lanes <= phases.len());
            let mut acc = [s.splat(bias); BLOCK];
            for (&off, &wv) in plan.tap_offsets.iter().zip(kernel) {
                let wv = s.splat(wv);
                let at = phases[base + off..].as_ptr();
                for (b, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `base + off + b * lanes + lanes <= base + max_off + BLOCK * lanes`,
                    // which the assertion above keeps inside `phases`.
                    *acc = s.mul_add(wv, unsafe { s.load_ptr(at.add(b * lanes)) }, *acc);
                }
            }
            for (b, &v) in acc.iter().enumerate() {
                let j = (jv + b) * lanes;
                s.store_partial(&mut row[j..], v, lanes.min(plan.wo - j));
            }
            jv += BLOCK;
        }
    }
    // The vectors left at the end of each row, BLOCK at a time wherever they are; a last,
    // short group repeats its first vector.
    let tail = per_row % BLOCK;
    let mut left =
        (0..plan.ho).flat_map(|i| (per_row - tail..per_row).map(move |jv| (i, jv * lanes)));
    while let Some(first) = left.next() {
        let mut pos = [first; BLOCK];
        for p in pos.iter_mut().skip(1) {
            *p = left.next().unwrap_or(first);
        }
        forward_scattered(s, plan, phases, kernel, bias, out, &pos);
    }
}

/// Planes whose rows are shorter than a block: BLOCK vectors at a time in row-major order,
/// across rows; the last group repeats its final vector.
#[inline(always)]
fn forward_short_rows<S: Simd>(
    s: S,
    plan: &Plan,
    phases: &[f32],
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
) {
    let mut cursor = VectorCursor::new(plan.ho, plan.wo, S::LANES, false);
    for _ in (0..cursor.total()).step_by(BLOCK) {
        let pos: [(usize, usize); BLOCK] = std::array::from_fn(|_| cursor.next_or_last());
        forward_scattered(s, plan, phases, kernel, bias, out, &pos);
    }
}

/// The output vectors at `pos` (row, first column), each wherever it is.
#[inline(always)]
fn forward_scattered<S: Simd>(
    s: S,
    plan: &Plan,
    phases: &[f32],
    kernel: &[f32],
    bias: f32,
    out: &mut [f32],
    pos: &[(usize, usize); BLOCK],
) {
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
        s.store_partial(&mut row[j..], acc[b], S::LANES.min(plan.wo - j));
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

/// `grad_kernel[t] += sum over output positions of dy * x~[position + tap t]`, each sum an f64
/// dot product of exact products: the gradient of a plane is the f32 rounding of its exact
/// value, however many positions it sums (compiled per instruction set, so the f64 loop is
/// vectorised).
#[inline(always)]
fn weight_grad_plane_impl<S: Simd>(
    _s: S,
    plan: &Plan,
    dy: &[f32],
    phases: &[f32],
    grad_kernel: &mut [f32],
) {
    const LANES: usize = 8;
    for (&off, gk) in plan.tap_offsets.iter().zip(grad_kernel.iter_mut()) {
        let mut acc = [0.0f64; LANES];
        let mut rest = 0.0f64;
        for (i, dy_row) in dy.chunks_exact(plan.wo).enumerate() {
            let x_row = &phases[plan.read_base(i, 0) + off..][..plan.wo];
            let (dy_chunks, x_chunks) = (dy_row.chunks_exact(LANES), x_row.chunks_exact(LANES));
            rest += dy_chunks
                .remainder()
                .iter()
                .zip(x_chunks.remainder())
                .map(|(&d, &x)| f64::from(d) * f64::from(x))
                .sum::<f64>();
            for (d, x) in dy_chunks.zip(x_chunks) {
                for l in 0..LANES {
                    acc[l] += f64::from(d[l]) * f64::from(x[l]);
                }
            }
        }
        *gk += (acc.iter().sum::<f64>() + rest) as f32;
    }
}

multiversion!(fn weight_grad_plane(plan: &Plan, dy: &[f32], phases: &[f32], grad_kernel: &mut [f32]) => weight_grad_plane_impl);

/// Bytes of input layout a forward task works on: small enough to stay in L2 while every
/// filter of its channel passes over it.
const BAND_BYTES: usize = 768 * 1024;

/// Forward: `y` (`[N, K, Ho, Wo]`) is overwritten. `g` may have any padding mode (the border
/// is read straight from `x`, nothing is materialised); the kernel is applied as a
/// cross-correlation whatever `g.mode` says (the caller flips it for convolution).
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let (c, m, kk) = (g.in_channels, g.out_per_group(), g.kernel[0] * g.kernel[1]);
    let [ho, wo] = g.out_hw;
    let hw = g.in_hw[0] * g.in_hw[1];
    let border = Border::new(g);
    // Bands of output rows whose layout fits BAND_BYTES; thinner bands when there are too
    // few tasks for the threads (one large image).
    let per_out_row = (border.plan_for(g, 1).chan_len * 4)
        .saturating_mul(g.stride[0])
        .max(1);
    let mut band_rows = (BAND_BYTES / per_out_row).clamp(1, ho.max(1));
    let planes = g.batch * c;
    let threads = rayon::current_num_threads();
    while band_rows > 1 && planes * ho.div_ceil(band_rows) < 4 * threads {
        band_rows = band_rows.div_ceil(2);
    }
    let bands = ho.div_ceil(band_rows).max(1);
    let out = SharedOut::new(y);
    Split::new(planes * bands).run(planes * bands, |task| {
        let (plane, band) = (task / bands, task % bands);
        let channel = plane % c;
        let rows = band * band_rows..((band + 1) * band_rows).min(ho);
        let (plan, first_row) = border.band_plan(g, &rows);
        let mut phases = Scratch::take(plan.len());
        border.fill(&plan, first_row, &x[plane * hw..][..hw], &mut phases);
        for f in 0..m {
            let k = channel * m + f;
            let bias = b.map_or(0.0, |b| b[k]);
            let start = ((plane / c * g.out_channels + k) * ho + rows.start) * wo;
            // SAFETY: task (plane, band) writes rows `rows` of the output planes of its
            // channel's filters and nothing else; tasks differ in plane or band, so their
            // elements are disjoint, and `y` outlives the parallel loop.
            let out = unsafe { std::slice::from_raw_parts_mut(out.at(start), rows.len() * wo) };
            forward_plane(&plan, &phases, &w[k * kk..][..kk], bias, out);
        }
    });
}

/// Where every row and column of a padded plane reads from under `g`'s padding mode: the
/// forward pass builds each band's layout straight from the unpadded input.
struct Border {
    mode: PaddingMode,
    /// Input rows and padding rows above them.
    h: usize,
    top: usize,
    /// Input columns, the padding columns to their left, and all padded columns.
    w: usize,
    left: usize,
    wp: usize,
}

impl Border {
    fn new(g: &Conv2dGeometry) -> Self {
        let [h, w] = g.in_hw;
        Border {
            mode: g.padding_mode,
            h,
            top: g.pad[0],
            w,
            left: g.pad[2],
            wp: g.padded_hw()[1],
        }
    }

    /// Input column read by padded column `t` (`None`: zero, or past the padded width).
    #[inline]
    fn source_col(&self, t: usize) -> Option<usize> {
        if t >= self.wp {
            return None;
        }
        source_index(t as isize - self.left as isize, self.w, self.mode)
    }

    /// The layout of `rows` padded input rows, as a problem without padding.
    fn plan_for(&self, g: &Conv2dGeometry, rows: usize) -> Plan {
        let mut band = *g;
        band.in_hw = [rows, self.wp];
        band.pad = [0; 4];
        Plan::new(&band, 1)
    }

    /// The layout of the padded input rows that output rows `rows` read, and the first of
    /// those padded rows.
    fn band_plan(&self, g: &Conv2dGeometry, rows: &Range<usize>) -> (Plan, usize) {
        let span = g.dilation[0] * (g.kernel[0] - 1) + 1;
        let first = rows.start * g.stride[0];
        let end = if rows.is_empty() {
            first
        } else {
            (rows.end - 1) * g.stride[0] + span
        };
        let mut band = *g;
        band.out_hw[0] = rows.len();
        (self.plan_for(&band, end - first), first)
    }

    /// Phase columns of phase `ph` (of stride `sw`, `wps` a row) that read input columns,
    /// and the input column of the first: phase column `t` is padded column `t sw + ph`.
    fn interior(&self, ph: usize, sw: usize, wps: usize) -> (Range<usize>, usize) {
        let lo = self.left.saturating_sub(ph).div_ceil(sw);
        let hi = (self.left + self.w)
            .saturating_sub(ph)
            .div_ceil(sw)
            .min(wps);
        let lo = lo.min(hi);
        // (Only read when the range is not empty, where it is an input column.)
        let first = lo.saturating_mul(sw).saturating_add(ph);
        (lo..hi, first.saturating_sub(self.left))
    }

    /// Fill `plan` (from [`Border::band_plan`]) with padded rows `first..` of `plane`
    /// (`[H, W]`); columns past the padded width are zero. Each row's interior is one
    /// (strided) copy; only the border columns go through the padding mode.
    fn fill(&self, plan: &Plan, first: usize, plane: &[f32], phases: &mut [f32]) {
        let (sw, wps) = (plan.sw, plan.wps);
        for (&ph, dst) in plan
            .phases
            .iter()
            .zip(phases.chunks_exact_mut(plan.phase_len))
        {
            let (interior, first_col) = self.interior(ph, sw, wps);
            // The border columns that read an input column, and which (the same for every
            // row; none with zero padding). The other border columns are zero.
            // (Past the padded width when the product overflows: zero.)
            let sourced: Vec<(usize, usize)> = (0..interior.start)
                .chain(interior.end..wps)
                .filter_map(|t| {
                    let col = t
                        .checked_mul(sw)
                        .map_or(usize::MAX, |c| c.saturating_add(ph));
                    self.source_col(col).map(|c| (t, c))
                })
                .collect();
            for (r, dst_row) in dst.chunks_exact_mut(wps).enumerate() {
                let padded_row = (first + r) as isize - self.top as isize;
                let Some(ir) = source_index(padded_row, self.h, self.mode) else {
                    dst_row.fill(0.0);
                    continue;
                };
                let src = &plane[ir * self.w..(ir + 1) * self.w];
                let (before, rest) = dst_row.split_at_mut(interior.start);
                let (dst_interior, after) = rest.split_at_mut(interior.len());
                before.fill(0.0);
                after.fill(0.0);
                copy_strided(src, first_col, sw, dst_interior);
                for &(t, c) in &sourced {
                    dst_row[t] = src[c];
                }
            }
        }
    }
}

/// `dst[t] = src[first + t * stride]` for every `t` of `dst` (which those reads fit).
fn copy_strided(src: &[f32], first: usize, stride: usize, dst: &mut [f32]) {
    let Some(last) = dst.len().checked_sub(1) else {
        // (An empty interior's first column may be past the row: not read.)
        return;
    };
    let src = &src[first..=first + last * stride];
    match stride {
        1 => dst.copy_from_slice(src),
        // Pairs: a loop the compiler turns into vector shuffles.
        2 => {
            for (d, pair) in dst.iter_mut().zip(src.chunks(2)) {
                *d = pair[0];
            }
        }
        _ => {
            for (d, &v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                *d = v;
            }
        }
    }
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
        // With several filters per channel, each filter's taps sum into a fresh plane that is
        // then added: blocked summation, no filter adds its products to the others' total.
        let mut filter_phases = Scratch::take(if m > 1 { plan.len() } else { 0 });
        let mut dy_rows = Scratch::take(plan.ho * plan.wo_pad);
        for f in 0..m {
            let k = channel * m + f;
            let dy = &gy[(n * g.out_channels + k) * out_plane..][..out_plane];
            plan.pad_rows(dy, &mut dy_rows);
            let kernel = &w[k * kk..][..kk];
            if m == 1 {
                input_grad_plane(&plan, &dy_rows, kernel, &mut grad_phases);
            } else {
                filter_phases.fill(0.0);
                input_grad_plane(&plan, &dy_rows, kernel, &mut filter_phases);
                for (total, v) in grad_phases.iter_mut().zip(filter_phases.iter()) {
                    *total += *v;
                }
            }
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
        for task in tasks {
            let (n, channel) = (task / c, task % c);
            plan.fill(Portable, &x[task * hw..][..hw], &mut phases);
            for f in 0..m {
                let k = channel * m + f;
                let dy = &gy[(n * g.out_channels + k) * out_plane..][..out_plane];
                weight_grad_plane(&plan, dy, &phases, &mut acc[k * kk..][..kk]);
            }
        }
    });
}
