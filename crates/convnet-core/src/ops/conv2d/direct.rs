//! Direct convolution: a GEMM micro-kernel whose B operand (the im2col matrix) is never
//! written, its columns read in place.
//!
//! Per (image, group), the group's input channels are copied once into the phase layout of
//! `phases.rs`, where tap `(c, p, q)` of an output vector is one contiguous load at a fixed
//! offset. A micro-tile of MR output channels by NV output vectors (MR * NV accumulators in
//! registers) then runs over the whole depth `C_g * kh * kw`: per tap, NV vector loads from the
//! layout and MR broadcasts of weights packed once per call (`microkernel::pack_a`). Outputs
//! are written once, straight from the registers, bias added. Output vectors run along output
//! rows; a row's last vector may be partial, and is stored masked.
//!
//! Tasks are (image, group, band of output rows): each lays out only the input rows its band
//! reads (sized to stay in L2, [`BAND_BYTES`]), then takes its output vectors a tile's worth
//! at a time and passes every weight panel over each group, so the input rows a group reads
//! stay in L1 across the panels. Thinner bands make more tasks when the batch is small.

use std::mem::MaybeUninit;

use super::microkernel::{
    DirectShape, DotVector, OuterShape, Taps, TileDst, direct, direct_run, dot, dot_dims, outer,
    pack_a, packed_a_len,
};
use super::params::Conv2dGeometry;
use super::phases::{PhasePlan, VectorCursor};
use crate::cpu::linalg::Mat;
use crate::cpu::parallel::{SharedOut, task_range};
use crate::cpu::prefetch::Prefetcher;
use crate::cpu::scratch::Scratch;
use crate::cpu::simd::{MAX_LANES, Simd, multiversion};

use rayon::prelude::*;

/// Forward: `y` (`[N, K, Ho, Wo]`) is overwritten. `g` must be canonical (zero padding,
/// cross-correlation).
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let len = y.len();
    forward_simd(g, x, w, b, SharedOut::new(y), len, usize::MAX)
}

/// [`forward`] into uninitialised memory: every value of `y` is written.
pub(crate) fn forward_uninit(
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let len = y.len();
    forward_simd(g, x, w, b, SharedOut::from_uninit(y), len, usize::MAX)
}

/// The stride-1 input gradient: the forward pass of [`transposed_problem`] (`gy` as its input,
/// [`transposed_weights`] as its weights), its depth summed in blocked runs.
pub(crate) fn input_grad_transposed(t: &Conv2dGeometry, gy: &[f32], wt: &[f32], gx: &mut [f32]) {
    let depth = t.in_per_group() * t.kernel[0] * t.kernel[1];
    let len = gx.len();
    forward_simd(t, gy, wt, None, SharedOut::new(gx), len, direct_run(depth))
}

/// [`input_grad_transposed`] into uninitialised memory: every value of `gx` is written.
pub(crate) fn input_grad_transposed_uninit(
    t: &Conv2dGeometry,
    gy: &[f32],
    wt: &[f32],
    gx: &mut [MaybeUninit<f32>],
) {
    let depth = t.in_per_group() * t.kernel[0] * t.kernel[1];
    let len = gx.len();
    forward_simd(
        t,
        gy,
        wt,
        None,
        SharedOut::from_uninit(gx),
        len,
        direct_run(depth),
    )
}

multiversion!(fn forward_simd(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, out: SharedOut, len: usize, run: usize) => forward_impl);

/// Target size of one band's input layout in bytes: it stays in L2 while every weight panel
/// passes over it.
const BAND_BYTES: usize = 160 * 1024;

/// Writes every value of the output (`len` values at `out`, which may be uninitialised:
/// each tile's first run writes without reading).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_impl<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    out: SharedOut,
    len: usize,
    run: usize,
) {
    let p = g.out_hw[0] * g.out_hw[1];
    assert_eq!(len, g.batch * g.out_channels * p);
    if p == 0 || g.batch == 0 {
        return;
    }
    if prefers_outer(g, S::LANES) {
        return forward_outer(s, g, x, w, b, out, run);
    }
    forward_rows(s, g, x, w, b, out, run)
}

/// The forward pass with the row tile ([`direct`]): vectors along output rows. (At least one
/// image and one output position.)
#[inline(always)]
fn forward_rows<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    out: SharedOut,
    run: usize,
) {
    let lanes = S::LANES;
    let (cg, kg) = (g.in_per_group(), g.out_per_group());
    let shape = DirectShape::for_channels(kg, lanes);
    let (mr, nv) = shape.dims(lanes);
    let crs = cg * g.kernel[0] * g.kernel[1];
    let [h, wd] = g.in_hw;
    let [ho, wo] = g.out_hw;
    let p = ho * wo;
    let panels = kg.div_ceil(mr);

    // Weights, packed once: per group, `panels` A panels over the whole depth.
    let a_len = packed_a_len(kg, crs, mr);
    let mut packed = Scratch::take(g.groups * a_len);
    for (grp, dst) in packed.chunks_exact_mut(a_len).enumerate() {
        pack_a(
            Mat::row_major(&w[grp * kg * crs..][..kg * crs], kg, crs),
            mr,
            dst,
        );
    }
    let packed = &*packed;

    let (band_rows, bands) = band_rows(g);
    let pairs = g.batch * g.groups;

    (0..pairs * bands).into_par_iter().for_each(|task| {
        s.vectorize(
            #[inline(always)]
            || {
                let (pair, band) = (task / bands, task % bands);
                let (n, grp) = (pair / g.groups, pair % g.groups);
                let rows = band * band_rows..((band + 1) * band_rows).min(ho);
                let (plan, first_row) = PhasePlan::band(g, cg, &rows);
                let mut layout = Scratch::take(plan.len());
                let x_g = &x[(n * g.in_channels + grp * cg) * h * wd + first_row * wd..];
                plan.fill_strided(s, x_g, h * wd, &mut layout);
                let all_vectors = VectorCursor::new(rows.len(), wo, lanes, false);
                let total = all_vectors.total();
                let taps = Taps::new(&plan.tap_offsets);
                let mut bases = [0usize; 8];
                let y_pair = (n * g.out_channels + grp * kg) * p + rows.start * wo;
                let mut vectors = all_vectors;
                // Every panel passes over one group of output vectors before the next group:
                // the input rows that group reads stay in L1 across the panels.
                for first in (0..total).step_by(nv) {
                    let mut cols = [0; 8];
                    let mut valid = [0; 8];
                    // A block tile narrows for the last group (a 14 x 14 plane is 14 vectors,
                    // not 15); a row tile repeats the final vector where the group runs out,
                    // and does not store it again.
                    let count = match shape {
                        DirectShape::Block => nv.min(total - first),
                        DirectShape::Row => nv,
                    };
                    for t in 0..nv {
                        let (i, j) = vectors.next_or_last();
                        bases[t] = plan.read_base(i, j);
                        cols[t] = i * wo + j;
                        valid[t] = if first + t < total {
                            lanes.min(wo - j)
                        } else {
                            0
                        };
                    }
                    for ip in 0..panels {
                        let rows_here = mr.min(kg - ip * mr);
                        let init: [f32; 8] = std::array::from_fn(|r| match b {
                            Some(b) if r < rows_here => b[grp * kg + ip * mr + r],
                            _ => 0.0,
                        });
                        let a = &packed[grp * a_len + ip * mr * crs..][..mr * crs];
                        let dst = TileDst {
                            // SAFETY: channel `ip * mr` of this group exists, inside `y`.
                            ptr: unsafe { out.at(y_pair + ip * mr * p) },
                            row_stride: p,
                            rows: rows_here,
                            cols,
                            valid,
                        };
                        // SAFETY: this task alone writes output rows `rows` of the channels
                        // of (image, group) `pair` (tasks are distinct (pair, band) pairs,
                        // bands are disjoint row ranges); `dst` names, in channels
                        // `ip * mr + r` for `r < rows_here`, positions `i * wo + j` to
                        // `+ valid` of rows `i` in the band, inside that channel's plane.
                        unsafe {
                            direct(
                                s,
                                shape,
                                run,
                                a,
                                &taps,
                                &layout,
                                &bases[..count],
                                &init[..mr],
                                &dst,
                            )
                        };
                    }
                }
            },
        )
    });
}

/// Output rows per task of the forward pass, and how many bands of them a plane has: bands
/// whose input layout fits [`BAND_BYTES`], thinner when there are too few tasks for the
/// threads. (Both tiles take the same bands.)
fn band_rows(g: &Conv2dGeometry) -> (usize, usize) {
    let (cg, ho) = (g.in_per_group(), g.out_hw[0]);
    let whole = PhasePlan::new(g, cg);
    let per_out_row = (cg * whole.phases.len() * whole.wps * 4)
        .saturating_mul(g.stride[0])
        .max(1);
    let mut band_rows = (BAND_BYTES / per_out_row).clamp(1, ho);
    let pairs = g.batch * g.groups;
    let threads = rayon::current_num_threads();
    while band_rows > 1 && pairs * ho.div_ceil(band_rows) < 2 * threads {
        band_rows = band_rows.div_ceil(2);
    }
    (band_rows, ho.div_ceil(band_rows))
}

/// Fewest taps (`C_g kh kw`) for [`forward_outer`]: each tile's results are transposed on
/// the way out, which a short depth does not repay (a 7x7 kernel over 3 channels, 147 taps,
/// ran 15% slower with a write-out one value at a time; 12% slower with the transposed one,
/// on AMD Zen 5).
const OUTER_MIN_DEPTH: usize = 256;

/// Whether the forward pass runs [`forward_outer`] (vectors along output channels) rather
/// than [`forward_rows`] (vectors along output rows): with AVX-512, where rows are not whole
/// vectors (14, 28 or 56 wide: an eighth of the row tile's lanes idle), a group's output
/// channels fill exactly one outer tile (32, 48 or 64: with more, each tile's inputs are
/// broadcast once per block of channels, and 128 channels ran 5% slower on Zen 4; on Zen 5,
/// with the transposed write-out, the input gradient of res-128 ran 21% slower), and the depth is
/// long enough. Measured on AMD Zen 4, interleaved: 10-14% faster forward on 14-, 28- and
/// 56-wide layers of 32 and 64 channels; AVX2 not measured, so not taken there.
fn prefers_outer(g: &Conv2dGeometry, lanes: usize) -> bool {
    let kg = g.out_per_group();
    let (_, nv) = OuterShape::for_channels(kg, lanes).dims(lanes);
    lanes >= 16
        && !g.out_hw[1].is_multiple_of(lanes)
        && kg == nv * lanes
        && g.in_per_group() * g.kernel[0] * g.kernel[1] >= OUTER_MIN_DEPTH
}

/// The forward pass (or the stride-1 input gradient) with the weight gradient's outer-product
/// tile ([`outer`]): MR consecutive output positions (flattened row-major, so a tile may cross
/// rows) by NR output channels, the positions' inputs broadcast from the phase layout, the
/// weights packed as `[tap, channel]` rows read as vectors. No lane is idle wherever the row
/// tile leaves an eighth of them so. Each output is the same chain of FMAs over the taps as
/// in the row tile (from zero, in tap order, in runs of `run` taps added to the bias), so
/// the results are the same to the bit. The tile is written out transposed to `[channel,
/// position]` a block of `LANES x LANES` at a time ([`Simd::transpose`]), each channel's
/// positions with one masked store.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_outer<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    out: SharedOut,
    run: usize,
) {
    let (cg, kg) = (g.in_per_group(), g.out_per_group());
    let shape = OuterShape::for_channels(kg, S::LANES);
    let (mr, nv) = shape.dims(S::LANES);
    // A tile's positions fit one vector (the transposed write-out).
    debug_assert!(mr <= S::LANES);
    let nr = nv * S::LANES;
    let crs = cg * g.kernel[0] * g.kernel[1];
    let [h, wd] = g.in_hw;
    let [ho, wo] = g.out_hw;
    let p = ho * wo;
    let run = run.clamp(1, crs.max(1));

    // Weights per group as `[tap, channel]`: a tap's output channels are whole vectors.
    let mut packed = Scratch::take(g.groups * crs * kg);
    for grp in 0..g.groups {
        let dst = &mut packed[grp * crs * kg..][..crs * kg];
        // Sixteen channels at a time, so each tap's writes share a cache line (one channel
        // at a time wrote one value per line, and the lines left the cache in between).
        for k0 in (0..kg).step_by(16) {
            let ks = k0..(k0 + 16).min(kg);
            for t in 0..crs {
                for k in ks.clone() {
                    dst[t * kg + k] = w[(grp * kg + k) * crs + t];
                }
            }
        }
    }
    let packed = &*packed;

    let (band_rows, bands) = band_rows(g);
    let pairs = g.batch * g.groups;

    (0..pairs * bands).into_par_iter().for_each(|task| {
        s.vectorize(
            #[inline(always)]
            || {
                let (pair, band) = (task / bands, task % bands);
                let (n, grp) = (pair / g.groups, pair % g.groups);
                let rows = band * band_rows..((band + 1) * band_rows).min(ho);
                let (plan, first_row) = PhasePlan::band(g, cg, &rows);
                let mut layout = Scratch::take(plan.len());
                let x_g = &x[(n * g.in_channels + grp * cg) * h * wd + first_row * wd..];
                plan.fill_strided(s, x_g, h * wd, &mut layout);
                let positions = rows.len() * wo;
                let y_pair = (n * g.out_channels + grp * kg) * p + rows.start * wo;
                let w_g = &packed[grp * crs * kg..][..crs * kg];
                let runs: Vec<Taps> = plan.tap_offsets.chunks(run).map(Taps::new).collect();
                let mut tile = [0.0f32; OUTER_TILE];
                for p0 in (0..positions).step_by(mr) {
                    let count = mr.min(positions - p0);
                    // Where each position reads; a short last tile repeats its last position
                    // and drops those rows.
                    let mut bases = [0usize; 16];
                    for (r, base) in bases.iter_mut().enumerate().take(mr) {
                        let q = p0 + r.min(count - 1);
                        *base = plan.read_base(q / wo, q % wo);
                    }
                    for kb in 0..kg / nr {
                        let c = &mut tile[..mr * nr];
                        // Each row starts from the bias (vector stores: no call to the C
                        // library's memset or memcpy per row).
                        let mut init = [s.splat(0.0); 4];
                        if let Some(b) = b {
                            for (v, init) in init.iter_mut().enumerate().take(nv) {
                                *init = s.load(&b[grp * kg + kb * nr + v * S::LANES..]);
                            }
                        }
                        for row in c.chunks_exact_mut(nr) {
                            for (v, &init) in init.iter().enumerate().take(nv) {
                                s.store(&mut row[v * S::LANES..], init);
                            }
                        }
                        for (i, taps) in runs.iter().enumerate() {
                            let t0 = i * run;
                            outer(
                                s,
                                shape,
                                taps,
                                &bases[..mr],
                                &layout,
                                &w_g[t0 * kg + kb * nr..],
                                kg,
                                c,
                                nr,
                            );
                        }
                        // Written out transposed, a vector of channels at a time: its
                        // MR rows (positions) become one vector per channel, whose first
                        // `count` lanes are that channel's positions `p0 ..`. Where the
                        // band has a whole vector of positions left, the vector is stored
                        // whole: its lanes past `count` land on the positions of the next
                        // tiles, which store theirs after (masked stores to memory out of
                        // cache run at half speed or worse on AMD Zen 5).
                        let whole = p0 + S::LANES <= positions;
                        for v in 0..nv {
                            let mut m = [s.splat(0.0); MAX_LANES];
                            for (r, row) in m.iter_mut().enumerate().take(mr) {
                                *row = s.load(&c[r * nr + v * S::LANES..]);
                            }
                            s.transpose(&mut m);
                            for (l, column) in m.iter().enumerate().take(S::LANES) {
                                let j = v * S::LANES + l;
                                // SAFETY: this task alone writes output rows `rows` of the
                                // channels of (image, group) `pair` (tasks are distinct
                                // (pair, band) pairs, bands are disjoint row ranges);
                                // channel `kb * nr + j < kg` of the group, positions
                                // `p0 .. p0 + count` (or `.. p0 + LANES` when `whole`) of
                                // the band's `positions`, lie inside that channel's plane.
                                unsafe {
                                    let dst = out.at(y_pair + (kb * nr + j) * p + p0);
                                    if whole {
                                        s.store_ptr(dst, *column);
                                    } else {
                                        s.store_partial_ptr(dst, *column, count);
                                    }
                                }
                            }
                        }
                    }
                }
            },
        )
    });
}

/// The largest outer tile, MR x NR values ([`OuterShape::dims`]).
const OUTER_TILE: usize = 384;

/// The stride-1 input gradient as a forward convolution: `grad_input` is `grad_output`
/// (`[N, K, Ho, Wo]`) convolved with the flipped kernels, input and output channels swapped
/// within each group, and padding `d (k - 1) - pad` on each side. `None` when the problem has a
/// stride, or padding wider than the dilated kernel (the transposed padding would be negative).
pub(crate) fn transposed_problem(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    if g.stride != [1, 1] {
        return None;
    }
    let span = [
        g.dilation[0] * (g.kernel[0] - 1),
        g.dilation[1] * (g.kernel[1] - 1),
    ];
    Some(Conv2dGeometry {
        batch: g.batch,
        in_channels: g.out_channels,
        in_hw: g.out_hw,
        out_channels: g.in_channels,
        kernel: g.kernel,
        groups: g.groups,
        stride: [1, 1],
        dilation: g.dilation,
        pad: [
            span[0].checked_sub(g.pad[0])?,
            span[0].checked_sub(g.pad[1])?,
            span[1].checked_sub(g.pad[2])?,
            span[1].checked_sub(g.pad[3])?,
        ],
        padding_mode: g.padding_mode,
        mode: g.mode,
        out_hw: g.in_hw,
    })
}

/// The weights of [`transposed_problem`]: `w'[g C_g + c, k, p, q] = w[g K_g + k, c, kh-1-p, kw-1-q]`.
pub(crate) fn transposed_weights(g: &Conv2dGeometry, w: &[f32], out: &mut [f32]) {
    let (cg, kg) = (g.in_per_group(), g.out_per_group());
    let kk = g.kernel[0] * g.kernel[1];
    for grp in 0..g.groups {
        for c in 0..cg {
            for k in 0..kg {
                let src = &w[((grp * kg + k) * cg + c) * kk..][..kk];
                let dst = &mut out[((grp * cg + c) * kg + k) * kk..][..kk];
                for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *v;
                }
            }
        }
    }
}

/// `dst[j * ld + i] = src[i * cols + j]` for `i < rows`, and zero for `rows <= i < ld`
/// (`j < cols`; `ld` a multiple of `LANES`, at least `rows`): `LANES x LANES` blocks are
/// transposed in registers ([`Simd::transpose`]), the last `cols % LANES` columns one value
/// at a time.
#[inline(always)]
pub(crate) fn transpose_padded<S: Simd>(
    s: S,
    src: &[f32],
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    ld: usize,
) {
    let lanes = S::LANES;
    assert!(ld.is_multiple_of(lanes) && ld >= rows && src.len() >= rows * cols);
    let dst = &mut dst[..cols * ld];
    let whole = cols - cols % lanes;
    let zero = s.splat(0.0);
    for j0 in (0..whole).step_by(lanes) {
        for i0 in (0..ld).step_by(lanes) {
            let mut r = [zero; MAX_LANES];
            for (i, r) in r.iter_mut().enumerate().take(lanes) {
                if i0 + i < rows {
                    *r = s.load(&src[(i0 + i) * cols + j0..]);
                }
            }
            s.transpose(&mut r);
            for (j, r) in r.iter().enumerate().take(lanes) {
                s.store(&mut dst[(j0 + j) * ld + i0..], *r);
            }
        }
    }
    for j in whole..cols {
        let row = &mut dst[j * ld..][..ld];
        for (i, v) in row.iter_mut().enumerate() {
            *v = if i < rows { src[i * cols + j] } else { 0.0 };
        }
    }
}

/// Weight gradient: `gw` (`[K, C_g, kh, kw]`) is overwritten. `g` must be canonical.
///
/// `dW^T[tap, k] = sum over images and output positions of x~[position + tap] * dy[k, position]`:
/// per (image, group) the input goes into the phase layout and `grad_output` is transposed to
/// `[position, K_g]`, so a micro-tile of MR taps by NR output channels reads NR channels with
/// vector loads and its MR inputs as broadcasts, for every position (no partial vectors). Each
/// thread sums its images into its own `[tap, k]` partial; partials are added in order.
///
/// With `gb` (`[K]`, overwritten), also the bias gradient: each task sums its `grad_output`
/// planes in f64 (see [`super::sum_f64`]) while they are in cache from the transposition, so
/// `grad_output` is read from memory once for both gradients. Each value is the f32 rounding
/// of the f64 total, as [`super::grad_bias_into`] computes it.
pub(crate) fn weight_grad(
    g: &Conv2dGeometry,
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    weight_grad_simd(g, gy, x, gw, gb)
}

multiversion!(fn weight_grad_simd(g: &Conv2dGeometry, gy: &[f32], x: &[f32], gw: &mut [f32], gb: Option<&mut [f32]>) => weight_grad_impl);

/// Output positions per block of the weight gradient, for `p` positions per image: each
/// block sums into fresh registers and is added to the gradient once (blocked summation), and
/// its rows of transposed `grad_output` (positions x tile width) stay in L1 while every tap
/// tile passes over them. Small planes get shorter blocks (at least 32 positions, about a
/// quarter of the plane), large ones 128.
fn position_block(p: usize) -> usize {
    (p / 4).clamp(32, 128)
}

#[inline(always)]
fn weight_grad_impl<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    if uses_dot(g, S::LANES) {
        return weight_grad_dot_impl(s, g, gy, x, gw, gb);
    }
    let (cg, kg) = (g.in_per_group(), g.out_per_group());
    let shape = OuterShape::for_channels(kg, S::LANES);
    let (mr, nv) = shape.dims(S::LANES);
    let nr = nv * S::LANES;
    let crs = cg * g.kernel[0] * g.kernel[1];
    let [h, wd] = g.in_hw;
    let [ho, wo] = g.out_hw;
    let p = ho * wo;
    let plan = PhasePlan::new(g, cg);
    let (crs_pad, kg_pad) = (crs.div_ceil(mr) * mr, kg.div_ceil(nr) * nr);
    // Taps past the last (padding rows of the tile) read offset 0 and are dropped.
    let mut taps = plan.tap_offsets.clone();
    taps.resize(crs_pad, 0);
    let bases: Vec<usize> = (0..p)
        .map(|pos| plan.read_base(pos / wo, pos % wo))
        .collect();
    let position_block = position_block(p);
    let acc_len = g.groups * crs_pad * kg_pad;
    let bias_len = if gb.is_some() { g.out_channels } else { 0 };
    let (sum, bias) = sum_per_thread(g.batch * g.groups, acc_len, bias_len, |tasks, acc, bias| {
        s.vectorize(
            #[inline(always)]
            || {
                let mut layout = Scratch::take(plan.len());
                let mut dyt = Scratch::take(p * kg_pad);
                let task_data = |task: usize| {
                    let (n, grp) = (task / g.groups, task % g.groups);
                    (
                        &x[(n * g.in_channels + grp * cg) * h * wd..][..cg * h * wd],
                        &gy[(n * g.out_channels + grp * kg) * p..][..kg * p],
                    )
                };
                let calls = p.div_ceil(position_block) * (crs_pad / mr) * (kg_pad / nr);
                for task in tasks.clone() {
                    let grp = task % g.groups;
                    let (x_g, dy) = task_data(task);
                    plan.fill(s, x_g, &mut layout);
                    transpose_padded(s, dy, kg, p, &mut dyt, kg_pad);
                    add_plane_sums(s, dy, p, bias, grp * kg);
                    // The next task's input and grad_output come into cache while this one
                    // computes (its copies would otherwise wait on memory).
                    let mut next = match task + 1 < tasks.end {
                        true => {
                            let (x_next, dy_next) = task_data(task + 1);
                            Prefetcher::new([x_next, dy_next], calls)
                        }
                        false => Prefetcher::none(),
                    };
                    let acc_g = &mut acc[grp * crs_pad * kg_pad..][..crs_pad * kg_pad];
                    for first in (0..p).step_by(position_block) {
                        let block = first..(first + position_block).min(p);
                        let block_bases = Taps::new(&bases[block]);
                        let dy_block = &dyt[first * kg_pad..];
                        for tb in 0..crs_pad / mr {
                            for kb in 0..kg_pad / nr {
                                next.step();
                                outer(
                                    s,
                                    shape,
                                    &block_bases,
                                    &taps[tb * mr..][..mr],
                                    &layout,
                                    &dy_block[kb * nr..],
                                    kg_pad,
                                    &mut acc_g[tb * mr * kg_pad + kb * nr..],
                                    kg_pad,
                                );
                            }
                        }
                    }
                }
            },
        )
    });
    write_transposed(&sum, gw, kg, crs, [crs_pad, kg_pad]);
    write_bias(gb, &bias);
}

/// `gw[grp][k][t] = acc[grp][t][k]`: each group's `[tap, channel]` sums (`[crs_pad, kg_pad]`
/// values) transposed into the weight gradient's `[channel, tap]` layout, blocks of 16 output
/// channels in parallel, each reading a cache line of its channels per tap. (One thread,
/// a column of `acc` at a time, took 0.85 ms of res-256's 6.1 ms weight gradient on Zen 5.)
fn write_transposed(
    acc: &[f32],
    gw: &mut [f32],
    kg: usize,
    crs: usize,
    [crs_pad, kg_pad]: [usize; 2],
) {
    const ROWS: usize = 16;
    if crs == 0 {
        return;
    }
    gw.par_chunks_mut(ROWS * crs)
        .enumerate()
        .for_each(|(block, out)| {
            // Where each row's channel sits in `acc`: its group's sums, its column.
            let mut at = [0usize; ROWS];
            for (r, at) in at.iter_mut().enumerate().take(out.len() / crs) {
                let row = block * ROWS + r;
                *at = (row / kg) * crs_pad * kg_pad + row % kg;
            }
            let at = &at[..out.len() / crs];
            for t in 0..crs {
                for (r, &at) in at.iter().enumerate() {
                    out[r * crs + t] = acc[at + t * kg_pad];
                }
            }
        });
}

/// Adds the f64 sum of each `p`-value plane of `dy` to `bias` from `first` on (one value per
/// plane); nothing when `bias` is empty (no bias gradient asked for).
#[inline(always)]
fn add_plane_sums<S: Simd>(s: S, dy: &[f32], p: usize, bias: &mut [f64], first: usize) {
    if bias.is_empty() || p == 0 {
        return;
    }
    for (b, plane) in bias[first..].iter_mut().zip(dy.chunks_exact(p)) {
        *b += super::sum_f64_impl(s, plane);
    }
}

/// `gb` (when asked for) gets the f32 rounding of the f64 totals.
fn write_bias(gb: Option<&mut [f32]>, totals: &[f64]) {
    if let Some(gb) = gb {
        for (b, &t) in gb.iter_mut().zip(totals) {
            *b = t as f32;
        }
    }
}

/// The sum over `tasks` (images x groups) of what `add(range, acc, bias)` adds for a
/// contiguous range of them into a zeroed accumulator of `acc_len` values and a zeroed f64 one
/// of `bias_len` (the bias gradient's totals; empty when not asked for): one range and one
/// pair of accumulators per thread, added in order afterwards (deterministic for a thread
/// count). The sums are the returned buffer's first `acc_len` values and the f64 totals.
fn sum_per_thread(
    tasks: usize,
    acc_len: usize,
    bias_len: usize,
    add: impl Fn(std::ops::Range<usize>, &mut [f32], &mut [f64]) + Sync + Send,
) -> (Scratch, Vec<f64>) {
    let parts = rayon::current_num_threads().min(tasks).max(1);
    let mut partials = Scratch::zeroed(parts * acc_len);
    // One f64 slot per part even without a bias, so both buffers split into `parts` chunks.
    let mut bias = vec![0.0f64; parts * bias_len.max(1)];
    partials
        .par_chunks_mut(acc_len.max(1))
        .zip(bias.par_chunks_mut(bias_len.max(1)))
        .enumerate()
        .for_each(|(part, (acc, bias))| {
            add(task_range(tasks, parts, part), acc, &mut bias[..bias_len])
        });
    // The parts added in order (the same sums for a thread count), stretches of them in
    // parallel: res-256's sums are 2.4 MB per part.
    const STRETCH: usize = 1 << 14;
    let (first, rest) = partials.split_at_mut(acc_len);
    first
        .par_chunks_mut(STRETCH)
        .enumerate()
        .for_each(|(i, sums)| {
            for part in rest.chunks_exact(acc_len.max(1)) {
                for (a, b) in sums.iter_mut().zip(&part[i * STRETCH..]) {
                    *a += *b;
                }
            }
        });
    // (Without a bias, `total` is empty and this adds nothing.)
    let (total, rest) = bias.split_at_mut(bias_len);
    for part in rest.chunks_exact(bias_len.max(1)) {
        for (a, b) in total.iter_mut().zip(part) {
            *a += *b;
        }
    }
    bias.truncate(bias_len);
    (partials, bias)
}

/// Depths (taps `C_g kh kw`) up to which the weight gradient sums per lane over output
/// positions ([`dot`]) rather than over transposed `grad_output` ([`outer`]): with so few
/// taps, transposing `grad_output` would cost more than the products.
const DOT_MAX_DEPTH: usize = 32;

/// Largest per-thread accumulator of the dot weight gradient, in values (one vector per
/// output channel and tap).
const DOT_MAX_ACC: usize = 1 << 18;

/// Whether the weight gradient of `g` takes the dot path.
fn uses_dot(g: &Conv2dGeometry, lanes: usize) -> bool {
    let (mr, nt) = dot_dims(lanes);
    let crs = g.in_per_group() * g.kernel[0] * g.kernel[1];
    let acc = g.groups * g.out_per_group().div_ceil(mr) * mr * crs.div_ceil(nt) * nt * lanes;
    crs <= DOT_MAX_DEPTH && acc <= DOT_MAX_ACC
}

/// The weight gradient for small depths: per (image, group), tiles of MR output channels by NT
/// taps keep one vector of sums each, over the output rows' vectors (the last of a row
/// partial, its other lanes adding nothing); each thread's vectors are summed over its images,
/// partials are added in order, and lanes are added (in f64) at the end.
#[inline(always)]
fn weight_grad_dot_impl<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
    gb: Option<&mut [f32]>,
) {
    let lanes = S::LANES;
    let (mr, nt) = dot_dims(lanes);
    let (cg, kg) = (g.in_per_group(), g.out_per_group());
    let crs = cg * g.kernel[0] * g.kernel[1];
    let (kg_pad, crs_pad) = (kg.div_ceil(mr) * mr, crs.div_ceil(nt) * nt);
    let [h, wd] = g.in_hw;
    let [ho, wo] = g.out_hw;
    let p = ho * wo;
    let plan = PhasePlan::new(g, cg);
    // Taps past the last (padding of the tile) read offset 0 and are dropped.
    let mut taps = plan.tap_offsets.clone();
    taps.resize(crs_pad, 0);
    let vectors: Vec<DotVector> = (0..ho)
        .flat_map(|i| (0..wo).step_by(lanes).map(move |j| (i, j)))
        .map(|(i, j)| DotVector {
            dy: i * wo + j,
            base: plan.read_base(i, j),
            valid: lanes.min(wo - j),
        })
        .collect();
    let group_len = kg_pad * crs_pad * lanes;
    let acc_len = g.groups * group_len;
    let bias_len = if gb.is_some() { g.out_channels } else { 0 };
    let (sum, bias) = sum_per_thread(g.batch * g.groups, acc_len, bias_len, |tasks, acc, bias| {
        s.vectorize(
            #[inline(always)]
            || {
                let mut layout = Scratch::take(plan.len());
                for task in tasks.clone() {
                    let (n, grp) = (task / g.groups, task % g.groups);
                    let x_g = &x[(n * g.in_channels + grp * cg) * h * wd..][..cg * h * wd];
                    plan.fill(s, x_g, &mut layout);
                    let dy = &gy[(n * g.out_channels + grp * kg) * p..][..kg * p];
                    add_plane_sums(s, dy, p, bias, grp * kg);
                    let acc_g = &mut acc[grp * group_len..][..group_len];
                    for kt in 0..kg_pad / mr {
                        // Rows past the last channel repeat it; their sums are dropped.
                        let mut rows = [0usize; 8];
                        for (r, row) in rows[..mr].iter_mut().enumerate() {
                            *row = (kt * mr + r).min(kg - 1) * p;
                        }
                        for tt in 0..crs_pad / nt {
                            dot(
                                s,
                                &rows[..mr],
                                &taps[tt * nt..][..nt],
                                &vectors,
                                dy,
                                &layout,
                                &mut acc_g[(kt * mr * crs_pad + tt * nt) * lanes..],
                                crs_pad,
                            );
                        }
                    }
                }
            },
        )
    });
    for grp in 0..g.groups {
        let acc_g = &sum[grp * group_len..];
        for k in 0..kg {
            for (t, v) in gw[(grp * kg + k) * crs..][..crs].iter_mut().enumerate() {
                let lanes_of = &acc_g[(k * crs_pad + t) * lanes..][..lanes];
                *v = lanes_of.iter().map(|&l| f64::from(l)).sum::<f64>() as f32;
            }
        }
    }
    write_bias(gb, &bias);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d::params::{Conv2dParams, Padding};
    use crate::testing::for_each_simd;

    /// The outer-product forward and the row tile give the same outputs to the bit (the same
    /// chains of FMAs), with bias or none, in one run or several (the input gradient's), over
    /// strides, dilations, groups, crossing rows and a short last tile.
    #[test]
    fn outer_and_row_forward_passes_agree_to_the_bit() {
        // (input, weight, stride, pad, dilation, groups)
        let cases = [
            ([2, 32, 14, 14], [64, 32, 3, 3], 1, 1, 1, 1),
            ([1, 16, 9, 13], [32, 16, 3, 3], 1, 2, 2, 1),
            ([1, 24, 15, 15], [48, 24, 3, 3], 2, 1, 1, 1),
            ([2, 64, 7, 11], [64, 32, 3, 3], 1, 1, 1, 2),
        ];
        for (input, weight, stride, pad, dilation, groups) in cases {
            let g = Conv2dParams::builder()
                .with_stride([stride; 2])
                .with_padding(Padding::symmetric([pad; 2]))
                .with_dilation([dilation; 2])
                .with_groups(groups)
                .build()
                .unwrap()
                .geometry(input, weight)
                .unwrap();
            let value =
                |i: usize, seed: usize| ((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0 - 1.0;
            let x: Vec<f32> = (0..input.iter().product()).map(|i| value(i, 1)).collect();
            let w: Vec<f32> = (0..weight.iter().product()).map(|i| value(i, 2)).collect();
            let b: Vec<f32> = (0..weight[0]).map(|i| value(i, 3)).collect();
            let len = g.batch * g.out_channels * g.out_hw[0] * g.out_hw[1];
            let depth = g.in_per_group() * g.kernel[0] * g.kernel[1];
            for (bias, run) in [(Some(&b[..]), usize::MAX), (None, direct_run(depth))] {
                for_each_simd!(|name, s| {
                    let mut rows = vec![f32::NAN; len];
                    let mut outer = vec![f32::NAN; len];
                    forward_rows(s, &g, &x, &w, bias, SharedOut::new(&mut rows), run);
                    forward_outer(s, &g, &x, &w, bias, SharedOut::new(&mut outer), run);
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert!(
                        outer.iter().all(|v| !v.is_nan()),
                        "{name} {input:?}: all written"
                    );
                    assert_eq!(bits(&outer), bits(&rows), "{name} {input:?} run {run}");
                });
            }
        }
    }

    #[test]
    fn the_outer_forward_is_taken_where_rows_leave_lanes_idle() {
        let geometry = |input: [usize; 4], weight: [usize; 4]| {
            Conv2dParams::builder()
                .with_padding(Padding::symmetric([1, 1]))
                .build()
                .unwrap()
                .geometry(input, weight)
                .unwrap()
        };
        // 14 wide, 64 channels, depth 576: yes; 32 wide (whole vectors): no.
        assert!(prefers_outer(
            &geometry([1, 64, 14, 14], [64, 64, 3, 3]),
            16
        ));
        assert!(!prefers_outer(
            &geometry([1, 64, 32, 32], [64, 64, 3, 3]),
            16
        ));
        // 128 channels (two tiles), a short depth, AVX2: no.
        assert!(!prefers_outer(
            &geometry([1, 64, 14, 14], [128, 64, 3, 3]),
            16
        ));
        assert!(!prefers_outer(&geometry([1, 1, 28, 28], [32, 1, 3, 3]), 16));
        assert!(!prefers_outer(
            &geometry([1, 64, 14, 14], [64, 64, 3, 3]),
            8
        ));
    }

    fn check_transpose<S: Simd>(s: S) {
        let lanes = S::LANES;
        for (rows, cols) in [
            (1, 1),
            (5, 37),
            (lanes, 2 * lanes),
            (2 * lanes + 3, 3 * lanes + 5),
        ] {
            let ld = rows.div_ceil(lanes) * lanes + lanes;
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![f32::NAN; cols * ld];
            s.vectorize(|| transpose_padded(s, &src, rows, cols, &mut dst, ld));
            for j in 0..cols {
                for i in 0..ld {
                    let want = if i < rows { src[i * cols + j] } else { 0.0 };
                    assert_eq!(dst[j * ld + i], want, "{rows}x{cols} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn transpose_padded_matches_the_definition_on_every_instruction_set() {
        check_transpose(crate::cpu::simd::Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = crate::cpu::simd::Avx512::detect() {
                check_transpose(s);
            }
            if let Some(s) = crate::cpu::simd::Avx2::detect() {
                check_transpose(s);
            }
        }
    }
}
