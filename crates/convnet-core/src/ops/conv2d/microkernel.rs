//! The register-blocked micro-kernels of the direct conv paths.
//!
//! Both keep an `MR x NV`-vector block of accumulators in registers for a whole reduction,
//! loading one operand as vectors and broadcasting the other:
//!
//! - [`Tile::direct`] (forward, and the stride-1 input gradient): MR output channels by NV
//!   output vectors. A: weights packed once per call ([`pack_a`]: `[panels][depth][MR]`); B: the
//!   im2col matrix, never written, read in place from the phase layout (`ops/conv2d/phases.rs`)
//!   at one offset per tap.
//! - [`outer`] (weight gradient): MR taps by NV vectors of output channels, summed over output
//!   positions: the inputs are broadcasts read in place, `grad_output` transposed to
//!   `[position, channel]` gives the vectors.
//!
//! Tile sizes per instruction set keep 24 (AVX-512, of 32 registers) or 12 (AVX2, of 16)
//! accumulators: direct 8 x 48 / 4 x 24; outer 6 x 64, 8 x 48 or 12 x 32 / 3 x 32, 4 x 24 or
//! 6 x 16, chosen per layer to pad the fewest channels. Each kernel checks the furthest read
//! once, up front, and then loads without bounds checks.

use crate::cpu::linalg::Mat;
use crate::cpu::simd::{Portable, Simd};

/// The direct micro-tile's shape and kernel, per instruction set.
pub(crate) trait Tile: Simd {
    /// Output channels (rows of packed A) per tile.
    const MR: usize;
    /// Output positions per tile: a whole number of vectors.
    const NR: usize;

    /// `out[r * NR + v * LANES + l] = init[r] + sum_t a[t * MR + r] * src[bases[v] + offsets[t] + l]`
    /// for `t < offsets.len()`, `r < MR`, `v < NR / LANES` (`bases` has one entry per vector).
    fn direct(
        self,
        a: &[f32],
        offsets: &[usize],
        src: &[f32],
        bases: &[usize],
        init: &[f32],
        out: &mut [f32],
    );
}

#[inline(always)]
fn direct_impl<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    a: &[f32],
    offsets: &[usize],
    src: &[f32],
    bases: &[usize],
    init: &[f32],
    out: &mut [f32],
) {
    let base: [usize; NV] = std::array::from_fn(|v| bases[v]);
    // Every read is `src[base[v] + off .. + LANES]`: check the furthest once, here, so the
    // loop below has no bounds checks.
    let max_off = offsets.iter().copied().max().unwrap_or(0);
    for &b in &base {
        assert!(
            b + max_off + S::LANES <= src.len(),
            "direct tile reads past its input"
        );
    }
    let src = src.as_ptr();
    // Blocked summation over the depth: each run of DIRECT_RUN taps sums into fresh
    // registers, and runs add up in `total` (spilled to L1), so a deep sum (a gradient over
    // many channels) never adds products to a large running total.
    let mut total: [[S::V; NV]; MR] = std::array::from_fn(|r| [s.splat(init[r]); NV]);
    for (ak, offs) in a[..offsets.len() * MR]
        .chunks(DIRECT_RUN * MR)
        .zip(offsets.chunks(DIRECT_RUN))
    {
        let mut acc = [[s.splat(0.0); NV]; MR];
        for (ak, &off) in ak.chunks_exact(MR).zip(offs) {
            // SAFETY: base[v] + off + LANES <= src.len() for every v (asserted above).
            let bv: [S::V; NV] =
                std::array::from_fn(|v| unsafe { s.load_ptr(src.add(base[v] + off)) });
            for (row, &av) in acc.iter_mut().zip(ak) {
                let av = s.splat(av);
                for (acc, &bv) in row.iter_mut().zip(&bv) {
                    *acc = s.mul_add(av, bv, *acc);
                }
            }
        }
        for (sum, row) in total.iter_mut().zip(&acc) {
            for (sum, &value) in sum.iter_mut().zip(row) {
                *sum = s.add(*sum, value);
            }
        }
    }
    let nr = NV * S::LANES;
    for (r, row) in total.iter().enumerate() {
        for (v, &value) in row.iter().enumerate() {
            s.store(&mut out[r * nr + v * S::LANES..], value);
        }
    }
}

/// Taps a [`Tile::direct`] tile sums in registers before adding them to its total.
const DIRECT_RUN: usize = 16;

impl Tile for Portable {
    const MR: usize = 4;
    const NR: usize = 16;
    #[inline(always)]
    fn direct(
        self,
        a: &[f32],
        offsets: &[usize],
        src: &[f32],
        bases: &[usize],
        init: &[f32],
        out: &mut [f32],
    ) {
        direct_impl::<Self, 4, 2>(self, a, offsets, src, bases, init, out)
    }
}

#[cfg(target_arch = "x86_64")]
impl Tile for crate::cpu::simd::Avx512 {
    const MR: usize = 8;
    const NR: usize = 48;
    #[inline(always)]
    fn direct(
        self,
        a: &[f32],
        offsets: &[usize],
        src: &[f32],
        bases: &[usize],
        init: &[f32],
        out: &mut [f32],
    ) {
        direct_impl::<Self, 8, 3>(self, a, offsets, src, bases, init, out)
    }
}

#[cfg(target_arch = "x86_64")]
impl Tile for crate::cpu::simd::Avx2 {
    const MR: usize = 4;
    const NR: usize = 24;
    #[inline(always)]
    fn direct(
        self,
        a: &[f32],
        offsets: &[usize],
        src: &[f32],
        bases: &[usize],
        init: &[f32],
        out: &mut [f32],
    ) {
        direct_impl::<Self, 4, 3>(self, a, offsets, src, bases, init, out)
    }
}

/// Shapes of the outer-product tile: MR taps by `NV` vectors of output channels, all with the
/// same number of accumulators, so a layer can pick the width that wastes fewest channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OuterShape {
    /// 4 vectors wide (AVX-512: 6 x 64).
    Wide,
    /// 3 vectors wide (AVX-512: 8 x 48).
    Mid,
    /// 2 vectors wide (AVX-512: 12 x 32).
    Narrow,
}

impl OuterShape {
    /// (MR, vectors) of this shape for an instruction set of `lanes` lanes.
    pub(crate) fn dims(self, lanes: usize) -> (usize, usize) {
        match (lanes >= 16, self) {
            (true, OuterShape::Wide) => (6, 4),
            (true, OuterShape::Mid) => (8, 3),
            (true, OuterShape::Narrow) => (12, 2),
            (false, OuterShape::Wide) => (3, 4),
            (false, OuterShape::Mid) => (4, 3),
            (false, OuterShape::Narrow) => (6, 2),
        }
    }

    /// The shape whose width, a multiple of which `k` output channels are padded to, wastes
    /// fewest channels (the widest among equals).
    pub(crate) fn for_channels(k: usize, lanes: usize) -> Self {
        [OuterShape::Wide, OuterShape::Mid, OuterShape::Narrow]
            .into_iter()
            .min_by_key(|shape| {
                let nr = shape.dims(lanes).1 * lanes;
                k.div_ceil(nr) * nr
            })
            .expect("three shapes")
    }
}

/// The weight-gradient tile, an outer product over positions:
/// `c[r][j] += sum_t src[bases[t] + taps[r]] * b[t * ldb + j]` for `t < bases.len()`, `r < MR`,
/// `j < NR`; `c` holds MR rows of NR values with row stride `ldc`. MR and NR per `shape`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn outer<S: Simd>(
    s: S,
    shape: OuterShape,
    bases: &[usize],
    taps: &[usize],
    src: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    match (S::LANES >= 16, shape) {
        (true, OuterShape::Wide) => outer_impl::<S, 6, 4>(s, bases, taps, src, b, ldb, c, ldc),
        (true, OuterShape::Mid) => outer_impl::<S, 8, 3>(s, bases, taps, src, b, ldb, c, ldc),
        (true, OuterShape::Narrow) => outer_impl::<S, 12, 2>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Wide) => outer_impl::<S, 3, 4>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Mid) => outer_impl::<S, 4, 3>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Narrow) => outer_impl::<S, 6, 2>(s, bases, taps, src, b, ldb, c, ldc),
    }
}

/// Positions an [`outer`] tile sums in registers before adding them to its block's total.
const OUTER_RUN: usize = 8;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn outer_impl<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    bases: &[usize],
    taps: &[usize],
    src: &[f32],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let nr = NV * S::LANES;
    let tap: [usize; MR] = std::array::from_fn(|r| taps[r]);
    // Check the furthest reads once, so the loop below has no bounds checks.
    let depth = bases.len();
    if depth > 0 {
        let far = bases.iter().copied().max().unwrap_or(0) + tap.iter().copied().max().unwrap_or(0);
        assert!(far < src.len(), "outer tile reads past its input");
        assert!((depth - 1) * ldb + nr <= b.len(), "outer tile reads past B");
    }
    let (src, bp) = (src.as_ptr(), b.as_ptr());
    // Blocked summation: each run of OUTER_RUN positions sums into fresh registers, runs add
    // up in `block` (spilled to L1), and the block is added to `c` once. No product is ever
    // added to a large running total, which keeps weight gradients as precise as a pairwise
    // sum at the speed of a register-blocked one.
    let zero = [[s.splat(0.0); NV]; MR];
    let mut block = zero;
    for (run, run_bases) in bases.chunks(OUTER_RUN).enumerate() {
        let mut acc = zero;
        for (i, &base) in run_bases.iter().enumerate() {
            let t = run * OUTER_RUN + i;
            // SAFETY: t * ldb + nr <= b.len() and base + tap[r] < src.len() (asserted above).
            let bv: [S::V; NV] =
                std::array::from_fn(|v| unsafe { s.load_ptr(bp.add(t * ldb + v * S::LANES)) });
            for (row, &off) in acc.iter_mut().zip(&tap) {
                let av = s.splat(unsafe { *src.add(base + off) });
                for (acc, &bv) in row.iter_mut().zip(&bv) {
                    *acc = s.mul_add(av, bv, *acc);
                }
            }
        }
        for (sum, row) in block.iter_mut().zip(&acc) {
            for (sum, &value) in sum.iter_mut().zip(row) {
                *sum = s.add(*sum, value);
            }
        }
    }
    for (r, row) in block.iter().enumerate() {
        for (v, &value) in row.iter().enumerate() {
            let at = &mut c[r * ldc + v * S::LANES..];
            s.store(at, s.add(s.load(at), value));
        }
    }
}

/// Length of `rows x depth` packed as A panels of `mr` rows.
pub(crate) fn packed_a_len(rows: usize, depth: usize, mr: usize) -> usize {
    rows.div_ceil(mr) * mr * depth
}

/// Pack `src` (`rows x depth`, any strides) into A panels of `mr` rows, zero-padding the last.
pub(crate) fn pack_a(src: Mat<'_>, mr: usize, dst: &mut [f32]) {
    let (rows, depth) = (src.rows(), src.cols());
    let dst = &mut dst[..packed_a_len(rows, depth, mr)];
    for (panel, out) in dst.chunks_exact_mut(mr * depth.max(1)).enumerate() {
        for (k, col) in out.chunks_exact_mut(mr).enumerate() {
            for (r, v) in col.iter_mut().enumerate() {
                let row = panel * mr + r;
                *v = if row < rows { src.get(row, k) } else { 0.0 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers: every sum below is exact, so comparisons can be exact.
    fn ints(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 3) % 11) as f32 - 5.0)
            .collect()
    }

    fn check_direct<S: Tile>(s: S) {
        let (mr, nr, lanes) = (S::MR, S::NR, S::LANES);
        let nv = nr / lanes;
        let depth = 13;
        let src = ints(500, 1);
        let offsets: Vec<usize> = (0..depth).map(|t| (t * 17) % 150).collect();
        let bases: Vec<usize> = (0..nv).map(|v| 200 + v * 37).collect();
        let a = ints(depth * mr, 2);
        let init = ints(mr, 3);
        let mut out = vec![f32::NAN; mr * nr];
        s.vectorize(|| s.direct(&a, &offsets, &src, &bases, &init, &mut out));
        for r in 0..mr {
            for v in 0..nv {
                for l in 0..lanes {
                    let want = init[r]
                        + (0..depth)
                            .map(|t| a[t * mr + r] * src[bases[v] + offsets[t] + l])
                            .sum::<f32>();
                    assert_eq!(out[r * nr + v * lanes + l], want, "({r}, {v}, {l})");
                }
            }
        }
    }

    fn check_outer<S: Simd>(s: S) {
        for shape in [OuterShape::Wide, OuterShape::Mid, OuterShape::Narrow] {
            let (mr, nv) = shape.dims(S::LANES);
            let nr = nv * S::LANES;
            let (depth, ldb, ldc) = (9, nr + 5, nr + 3);
            let src = ints(400, 4);
            let bases: Vec<usize> = (0..depth).map(|t| 100 + t * 11).collect();
            let taps: Vec<usize> = (0..mr).map(|r| r * 13).collect();
            let b = ints(depth * ldb, 5);
            let start = ints(mr * ldc, 6);
            let mut c = start.clone();
            s.vectorize(|| outer(s, shape, &bases, &taps, &src, &b, ldb, &mut c, ldc));
            for r in 0..mr {
                for j in 0..ldc {
                    let want = if j < nr {
                        start[r * ldc + j]
                            + (0..depth)
                                .map(|t| src[bases[t] + taps[r]] * b[t * ldb + j])
                                .sum::<f32>()
                    } else {
                        start[r * ldc + j]
                    };
                    assert_eq!(c[r * ldc + j], want, "{shape:?} ({r}, {j})");
                }
            }
        }
    }

    #[test]
    fn kernels_match_naive_sums_on_every_instruction_set() {
        check_direct(Portable);
        check_outer(Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = crate::cpu::simd::Avx512::detect() {
                check_direct(s);
                check_outer(s);
            }
            if let Some(s) = crate::cpu::simd::Avx2::detect() {
                check_direct(s);
                check_outer(s);
            }
        }
    }

    #[test]
    fn the_outer_shape_pads_the_fewest_channels() {
        assert_eq!(OuterShape::for_channels(64, 16), OuterShape::Wide);
        assert_eq!(OuterShape::for_channels(96, 16), OuterShape::Mid);
        assert_eq!(OuterShape::for_channels(32, 16), OuterShape::Narrow);
        assert_eq!(OuterShape::for_channels(128, 16), OuterShape::Wide);
        assert_eq!(OuterShape::for_channels(24, 8), OuterShape::Mid);
    }

    #[test]
    fn pack_a_zero_pads_the_last_panel() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 x 2
        let mut out = vec![f32::NAN; packed_a_len(3, 2, 2)];
        pack_a(Mat::row_major(&m, 3, 2), 2, &mut out);
        assert_eq!(out, [1.0, 3.0, 2.0, 4.0, 5.0, 0.0, 6.0, 0.0]);
    }
}
