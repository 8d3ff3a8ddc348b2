//! Input planes laid out so that every kernel tap of every output vector is one contiguous
//! load: the direct kernels' view of the input.
//!
//! Each input channel is copied once into a zero-padded plane stored as column *phases*:
//! phase `ph` holds padded columns `ph, ph + s_w, ph + 2 s_w, ...`. Tap `(c, p, q)` of output
//! element `(i, j)` reads padded row `i s_h + p d_h` of channel `c`, phase `(q d_w) mod s_w`,
//! column `j + (q d_w) div s_w`. So for consecutive `j` it reads consecutive addresses,
//! whatever the stride and dilation: an output vector reads a vector.
//!
//! Only the phases some tap reads are stored (at most `min(k_w, s_w)` of the `s_w`): the
//! layout is sized from the output row and the kernel, never from the stride, and a 1x1
//! kernel with stride 2 copies half the input.
//!
//! Phase rows are long enough to read whole vectors past the end of an output row; the lanes
//! past the row end read other columns and are dropped (or masked) by the kernels.

use std::ops::Range;

use super::params::Conv2dGeometry;
use crate::cpu::prefetch::prefetch;
use crate::cpu::simd::{MAX_LANES, Simd};

/// Sizes and tap offsets of the phase layout of `channels` input channels.
pub(crate) struct PhasePlan {
    pub h: usize,
    pub w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub sh: usize,
    pub sw: usize,
    pub ho: usize,
    pub wo: usize,
    /// `wo` rounded up to whole vectors of the widest instruction set.
    pub wo_pad: usize,
    /// Row stride of a phase plane.
    pub wps: usize,
    /// Elements of one phase plane.
    pub phase_len: usize,
    /// The phases stored, ascending: those some kernel column reads, `(q d_w) mod s_w`.
    pub phases: Vec<usize>,
    /// Elements of one channel (all its stored phases).
    pub chan_len: usize,
    /// Channels laid out.
    pub channels: usize,
    /// For tap `(c, p, q)` (flat, `c` slowest): its offset from the read position of its
    /// output element ([`PhasePlan::read_base`]).
    pub tap_offsets: Vec<usize>,
}

impl PhasePlan {
    /// The layout of `channels` input channels of the (canonical: zero padding) problem `g`.
    pub(crate) fn new(g: &Conv2dGeometry, channels: usize) -> Self {
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
        let mut phases: Vec<usize> = (0..kw).map(|q| q * g.dilation[1] % sw).collect();
        phases.sort_unstable();
        phases.dedup();
        let chan_len = phases.len() * phase_len;
        let slot = |col: usize| phases.partition_point(|&ph| ph < col % sw);
        // One channel's offsets, then each channel's the same plus its start (every task
        // builds its plan: per tap, the divisions cost 5% of a 64-channel forward pass).
        let channel_taps: Vec<usize> = (0..kh * kw)
            .map(|t| {
                let (p, q) = (t / kw, t % kw);
                let col = q * g.dilation[1];
                slot(col) * phase_len + p * g.dilation[0] * wps + col / sw
            })
            .collect();
        let mut tap_offsets = Vec::with_capacity(channels * channel_taps.len());
        for c in 0..channels {
            let start = c * chan_len;
            tap_offsets.extend(channel_taps.iter().map(|&off| start + off));
        }
        PhasePlan {
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
            phases,
            chan_len,
            channels,
            tap_offsets,
        }
    }

    /// The layout of the input rows that output rows `rows` read, and the first real input
    /// row among them: the band's own geometry, with the padding rows it contains.
    pub(crate) fn band(g: &Conv2dGeometry, channels: usize, rows: &Range<usize>) -> (Self, usize) {
        let span = g.dilation[0] * (g.kernel[0] - 1) + 1;
        let (pr0, pr1) = (
            rows.start * g.stride[0],
            (rows.end - 1) * g.stride[0] + span,
        );
        let h = g.in_hw[0];
        let (top, real0) = match pr0.checked_sub(g.pad[0]) {
            Some(r) => (0, r.min(h)),
            None => (g.pad[0] - pr0, 0),
        };
        let real1 = pr1.saturating_sub(g.pad[0]).min(h).max(real0);
        let top = top.min(pr1 - pr0);
        let bottom = pr1 - pr0 - top - (real1 - real0);
        let mut band = *g;
        band.in_hw[0] = real1 - real0;
        band.pad[0] = top;
        band.pad[1] = bottom;
        band.out_hw[0] = rows.len();
        (Self::new(&band, channels), real0)
    }

    /// Elements of the whole layout.
    pub(crate) fn len(&self) -> usize {
        self.channels * self.chan_len
    }

    /// Where output element `(i, j)` reads for tap offset 0.
    #[inline(always)]
    pub(crate) fn read_base(&self, i: usize, j: usize) -> usize {
        i * self.sh * self.wps + j
    }

    /// Phase columns of phase `ph` that hold input columns, and the input column of the first.
    fn phase_cols(&self, ph: usize) -> (Range<usize>, usize) {
        let lo = self.pad_left.saturating_sub(ph).div_ceil(self.sw);
        let hi = (self.w + self.pad_left)
            .saturating_sub(ph)
            .div_ceil(self.sw)
            .min(self.wps);
        let lo = lo.min(hi);
        // (When the range is empty the first column is clamped so that slices stay valid;
        // saturating, as a stride near usize::MAX puts it past every column.)
        let first = lo
            .saturating_mul(self.sw)
            .saturating_add(ph)
            .saturating_sub(self.pad_left)
            .min(self.w);
        (lo..hi, first)
    }

    /// Copy `channels` input planes (`[channels, H, W]`) into the zero-padded layout.
    #[inline(always)]
    pub(crate) fn fill<S: Simd>(&self, s: S, planes: &[f32], out: &mut [f32]) {
        self.fill_strided(s, planes, self.h * self.w, out);
    }

    /// Copy `channels` planes of `H x W` that start `plane_stride` apart in `x` (a band of
    /// rows of larger planes) into the zero-padded layout.
    #[inline(always)]
    pub(crate) fn fill_strided<S: Simd>(
        &self,
        s: S,
        x: &[f32],
        plane_stride: usize,
        out: &mut [f32],
    ) {
        let hw = self.h * self.w;
        for (c, chan) in out
            .chunks_exact_mut(self.chan_len)
            .take(self.channels)
            .enumerate()
        {
            let plane = if hw == 0 {
                &[][..]
            } else {
                &x[c * plane_stride..][..hw]
            };
            // The next plane's rows are requested while this one is copied: rows of a few
            // dozen values are too short for the hardware prefetchers to run ahead of.
            if hw > 0 && c + 1 < self.channels {
                prefetch(&x[(c + 1) * plane_stride..][..hw]);
            }
            self.fill_channel(s, plane, chan);
        }
    }

    #[inline(always)]
    fn fill_channel<S: Simd>(&self, s: S, plane: &[f32], phases: &mut [f32]) {
        for (&ph, dst) in self
            .phases
            .iter()
            .zip(phases.chunks_exact_mut(self.phase_len))
        {
            let (cols, first) = self.phase_cols(ph);
            for (r, dst_row) in dst.chunks_exact_mut(self.wps).enumerate() {
                let Some(ir) = r.checked_sub(self.pad_top).filter(|&r| r < self.h) else {
                    zero(s, dst_row);
                    continue;
                };
                let src = &plane[ir * self.w + first..(ir + 1) * self.w];
                zero(s, &mut dst_row[..cols.start]);
                zero(s, &mut dst_row[cols.end..]);
                let dst_cols = &mut dst_row[cols.clone()];
                match self.sw {
                    1 => copy(s, &src[..dst_cols.len()], dst_cols),
                    2 => every_other(s, src, dst_cols),
                    _ => {
                        for (d, v) in dst_cols.iter_mut().zip(src.iter().step_by(self.sw)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }

    /// Copy one channel of the layout back onto an input plane `[H, W]` (overwritten): the
    /// adjoint's last step, for gradients accumulated in the layout. Columns of phases no
    /// tap reads get zero.
    pub(crate) fn gather_channel(&self, phases: &[f32], plane: &mut [f32]) {
        if self.phases.len() < self.sw {
            plane.fill(0.0);
        }
        for (&ph, src) in self.phases.iter().zip(phases.chunks_exact(self.phase_len)) {
            let (cols, first) = self.phase_cols(ph);
            for (ir, row) in plane.chunks_exact_mut(self.w).enumerate() {
                let src_cols = &src[(ir + self.pad_top) * self.wps..][cols.clone()];
                for (d, v) in row[first..].iter_mut().step_by(self.sw).zip(src_cols) {
                    *d = *v;
                }
            }
        }
    }

    /// Copy an output-shaped plane `[Ho, Wo]` into rows of `wo_pad` with zero tails.
    pub(crate) fn pad_rows(&self, plane: &[f32], out: &mut [f32]) {
        for (src, dst) in plane
            .chunks_exact(self.wo)
            .zip(out.chunks_exact_mut(self.wo_pad))
        {
            dst[..self.wo].copy_from_slice(src);
            dst[self.wo..].fill(0.0);
        }
    }
}

/// `dst.fill(0.0)` in vector stores. A row's padding is a few values, and `fill` compiles to a
/// call into the C library's `memset` (behind a `vzeroupper`) for each. (LLVM still turns some
/// of these loops into `memset` calls; hiding the zero behind `black_box` to stop it made the
/// forward pass of fmnist-c4 and vgg-64 20-25% slower, so it does not.)
#[inline(always)]
fn zero<S: Simd>(s: S, dst: &mut [f32]) {
    let z = s.splat(0.0);
    let mut chunks = dst.chunks_exact_mut(S::LANES);
    for chunk in &mut chunks {
        s.store(chunk, z);
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    if n > 0 {
        s.store_partial(rest, z, n);
    }
}

/// `dst.copy_from_slice(src)` in vector loads and stores, for the same reason as [`zero`]
/// (`memcpy` per input row: with `memset`, 2.3% of a reference-model training step).
#[inline(always)]
fn copy<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "copy: lengths differ");
    let mut chunks = dst.chunks_exact_mut(S::LANES);
    for (d, v) in (&mut chunks).zip(src.chunks_exact(S::LANES)) {
        s.store(d, s.load(v));
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    if n > 0 {
        let v = s.load_partial(&src[src.len() - n..], n);
        s.store_partial(rest, v, n);
    }
}

/// `dst[k] = src[2 k]` for every `k < dst.len()` (`src` holds at least `2 dst.len() - 1`
/// values): whole vectors pairs split into even and odd lanes, the rest one at a time. (A
/// stride-2 layer's layout copy, one value at a time, was 14% of its time in `convnet bench`.)
#[inline(always)]
fn every_other<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let lanes = S::LANES;
    let mut k = 0;
    while k + lanes <= dst.len() && 2 * (k + lanes) <= src.len() {
        let (even, _) = s.deinterleave(s.load(&src[2 * k..]), s.load(&src[2 * k + lanes..]));
        s.store(&mut dst[k..], even);
        k += lanes;
    }
    for (d, v) in dst[k..].iter_mut().zip(src[2 * k..].iter().step_by(2)) {
        *d = *v;
    }
}

/// The output vectors of a plane in row-major order, walked without divisions: vector
/// `(i, jv)` covers output columns `jv * lanes .. (jv + 1) * lanes` of row `i` (the last of a
/// row may be partial).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VectorCursor {
    rows: usize,
    per_row: usize,
    lanes: usize,
    i: usize,
    jv: usize,
}

impl VectorCursor {
    /// The vectors of `rows` rows of `cols` columns, `lanes` wide; `whole_only` skips each row's
    /// partial last vector.
    pub(crate) fn new(rows: usize, cols: usize, lanes: usize, whole_only: bool) -> Self {
        let per_row = if whole_only {
            cols / lanes
        } else {
            cols.div_ceil(lanes)
        };
        VectorCursor {
            rows: if per_row == 0 { 0 } else { rows },
            per_row,
            lanes,
            i: 0,
            jv: 0,
        }
    }

    /// How many vectors there are.
    pub(crate) fn total(&self) -> usize {
        self.rows * self.per_row
    }

    /// The next vector's (row, first column); past the end, the last vector again.
    #[inline(always)]
    pub(crate) fn next_or_last(&mut self) -> (usize, usize) {
        let here = (self.i, self.jv * self.lanes);
        if self.i + 1 < self.rows || self.jv + 1 < self.per_row {
            self.jv += 1;
            if self.jv == self.per_row {
                self.jv = 0;
                self.i += 1;
            }
        }
        here
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_every_other<S: Simd>(s: S) {
        for n in 0..3 * S::LANES + 3 {
            for src_len in [(2 * n).saturating_sub(1), 2 * n, 2 * n + 5] {
                let src: Vec<f32> = (0..src_len).map(|v| v as f32).collect();
                let mut dst = vec![f32::NAN; n];
                s.vectorize(|| every_other(s, &src, &mut dst));
                let want: Vec<f32> = (0..n).map(|k| (2 * k) as f32).collect();
                assert_eq!(dst, want, "{n} values from {src_len}");
            }
        }
    }

    /// `zero` and `copy` write exactly their slice (whole vectors and a masked tail), on
    /// every instruction set; the values around it are untouched.
    #[test]
    fn row_copies_and_fills_write_exactly_their_values() {
        crate::testing::for_each_simd!(|name, s| {
            for n in 0..3 * 16 + 3 {
                let src: Vec<f32> = (0..n).map(|v| v as f32 + 1.0).collect();
                let mut row = vec![-1.0f32; n + 4];
                s.vectorize(|| copy(s, &src, &mut row[2..2 + n]));
                assert_eq!(&row[2..2 + n], &src[..], "{name}: copy {n}");
                s.vectorize(|| zero(s, &mut row[1..1 + n]));
                assert!(row[1..1 + n].iter().all(|&v| v == 0.0), "{name}: zero {n}");
                assert_eq!(
                    [row[0], row[n + 2], row[n + 3]],
                    [-1.0; 3],
                    "{name}: around {n}"
                );
                if n > 0 {
                    assert_eq!(row[n + 1], n as f32, "{name}: zero {n} went past its end");
                }
            }
        });
    }

    #[test]
    fn every_other_value_is_copied_on_every_instruction_set() {
        check_every_other(crate::cpu::simd::Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = crate::cpu::simd::Avx512::detect() {
                check_every_other(s);
            }
            if let Some(s) = crate::cpu::simd::Avx2::detect() {
                check_every_other(s);
            }
        }
    }

    #[test]
    fn the_cursor_walks_rows_and_repeats_the_last_vector() {
        let mut c = VectorCursor::new(2, 20, 8, false);
        assert_eq!(c.total(), 6);
        let seen: Vec<_> = (0..8).map(|_| c.next_or_last()).collect();
        assert_eq!(
            seen,
            [
                (0, 0),
                (0, 8),
                (0, 16),
                (1, 0),
                (1, 8),
                (1, 16),
                (1, 16),
                (1, 16)
            ]
        );
        let mut whole = VectorCursor::new(2, 20, 8, true);
        assert_eq!(whole.total(), 4);
        let seen: Vec<_> = (0..4).map(|_| whole.next_or_last()).collect();
        assert_eq!(seen, [(0, 0), (0, 8), (1, 0), (1, 8)]);
        assert_eq!(VectorCursor::new(3, 5, 8, true).total(), 0);
    }
}
