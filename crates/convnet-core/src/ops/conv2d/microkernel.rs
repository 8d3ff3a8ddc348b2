//! The register-blocked micro-kernels of the direct conv paths.
//!
//! Each keeps a block of vector accumulators in registers for a reduction, loading one
//! operand as vectors and broadcasting the other (or, for [`dot`], loading both):
//!
//! - [`direct`] (forward, and the stride-1 input gradient): MR output channels by NV output
//!   vectors. A: weights packed once per call ([`pack_a`]: `[panels][depth][MR]`); B: the
//!   im2col matrix, never written, read in place from the phase layout (`ops/conv2d/phases.rs`)
//!   at one offset per tap. A [`DirectShape::Row`] tile (one channel, 8 vectors) serves
//!   problems with too few channels per group for a block.
//! - [`outer`] (weight gradient): MR taps by NV vectors of output channels, summed over output
//!   positions: the inputs are broadcasts read in place, `grad_output` transposed to
//!   `[position, channel]` gives the vectors.
//! - [`dot`] (weight gradient of small depths): MR output channels by NT taps, each a vector of
//!   per-lane sums over output vectors, `grad_output` and the input both loaded in place.
//!
//! Tile sizes per instruction set keep 20 to 24 (AVX-512, of 32 registers) or up to 12 (AVX2,
//! of 16) accumulators, and leave registers for the loaded operands: on AVX2 a tile needing
//! all 16 makes the compiler spill an accumulator to the stack on every step, which halves its
//! speed. Direct 8 x 48 / 6 x 16; outer 6 x 64, 8 x 48 or 10 x 32 / 2 x 32, 3 x 24 or 6 x 16,
//! chosen per layer to pad the fewest channels; dot 8 x 3 / 3 x 3.
//!
//! Sums are blocked: a kernel sums a run of its reduction in fresh registers and adds the run
//! to its output once, so no product is added to a large running total (gradients over many
//! positions or channels stay as precise as float32 allows). Each kernel checks the furthest
//! read once, up front, and then loads without bounds checks.

use crate::cpu::linalg::Mat;
use crate::cpu::simd::Simd;

/// Shapes of the direct tile: MR output channels by NV output vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectShape {
    /// Several output channels share each input load (AVX-512: 8 x 3 vectors; AVX2: 6 x 2).
    Block,
    /// One output channel, more vectors (8): for problems with fewer output channels per
    /// group than half a block, whose other rows would be padding.
    Row,
}

impl DirectShape {
    /// (MR, vectors) of this shape for an instruction set of `lanes` lanes.
    pub(crate) fn dims(self, lanes: usize) -> (usize, usize) {
        match (lanes >= 16, self) {
            (true, DirectShape::Block) => (8, 3),
            (false, DirectShape::Block) => (6, 2),
            (_, DirectShape::Row) => (1, 8),
        }
    }

    /// The shape for `k` output channels per group.
    pub(crate) fn for_channels(k: usize, lanes: usize) -> Self {
        if 2 * k < DirectShape::Block.dims(lanes).0 {
            DirectShape::Row
        } else {
            DirectShape::Block
        }
    }
}

/// The taps of a [`direct`] tile: one offset per step of its depth, and their maximum
/// (computed once per call site, not once per tile: the tile checks its furthest read
/// against it).
pub(crate) struct Taps<'a> {
    offsets: &'a [usize],
    max: usize,
}

impl<'a> Taps<'a> {
    pub(crate) fn new(offsets: &'a [usize]) -> Self {
        let max = offsets.iter().copied().max().unwrap_or(0);
        Taps { offsets, max }
    }
}

/// Where a [`direct`] tile's results go: vector `v` of row `r` (`r < rows`) is the
/// `valid[v]` values from `ptr + r * row_stride + cols[v]`; vectors with `valid[v] == 0`
/// and rows from `rows` on (a panel's padding) are not written.
pub(crate) struct TileDst {
    pub(crate) ptr: *mut f32,
    pub(crate) row_stride: usize,
    pub(crate) rows: usize,
    pub(crate) cols: [usize; 8],
    pub(crate) valid: [usize; 8],
}

/// The direct tile, MR x NV per `shape`:
/// `out[r][v][l] = init[r] + sum_t a[t * MR + r] * src[bases[v] + offsets[t] + l]`
/// for `t < offsets.len()`, `r < MR`, `v < NV`, summed in runs of `run` taps (see
/// [`direct_run`]), written straight to `dst` (partial vectors with masked stores: no round
/// trip through a buffer). `bases` has one entry per vector: NV of the shape, or, for a
/// [`DirectShape::Block`], fewer (the last tile of a band), which runs a narrower tile
/// instead of computing vectors nobody stores.
///
/// # Safety
/// Every value `dst` names (see [`TileDst`]) must be valid for writes, and no other thread
/// may access it during the call. The values may be uninitialised: the first run writes them
/// without reading them (later runs read what it wrote).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn direct<S: Simd>(
    s: S,
    shape: DirectShape,
    run: usize,
    a: &[f32],
    taps: &Taps<'_>,
    src: &[f32],
    bases: &[usize],
    init: &[f32],
    dst: &TileDst,
) {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match (S::LANES >= 16, shape, bases.len()) {
            (true, DirectShape::Block, 3..) => {
                direct_blocked::<S, 8, 3>(s, run, a, taps, src, bases, init, dst)
            }
            (true, DirectShape::Block, 2) => {
                direct_blocked::<S, 8, 2>(s, run, a, taps, src, bases, init, dst)
            }
            (true, DirectShape::Block, _) => {
                direct_blocked::<S, 8, 1>(s, run, a, taps, src, bases, init, dst)
            }
            (false, DirectShape::Block, 2..) => {
                direct_blocked::<S, 6, 2>(s, run, a, taps, src, bases, init, dst)
            }
            (false, DirectShape::Block, _) => {
                direct_blocked::<S, 6, 1>(s, run, a, taps, src, bases, init, dst)
            }
            (_, DirectShape::Row, _) => {
                direct_blocked::<S, 1, 8>(s, run, a, taps, src, bases, init, dst)
            }
        }
    }
}

/// Blocked summation over the depth: each run of `run` taps sums into fresh registers and is
/// then added to the output (the first run to `init`), so a deep sum (a gradient over many
/// channels) never adds products to a large running total.
///
/// # Safety
/// As [`direct`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn direct_blocked<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    run: usize,
    a: &[f32],
    taps: &Taps<'_>,
    src: &[f32],
    bases: &[usize],
    init: &[f32],
    dst: &TileDst,
) {
    let base: [usize; NV] = std::array::from_fn(|v| bases[v]);
    // Every read is `src[base[v] + off .. + LANES]`: check the furthest once, here, so the
    // loop below has no bounds checks.
    for &b in &base {
        assert!(
            b + taps.max + S::LANES <= src.len(),
            "direct tile reads past its input"
        );
    }
    let offsets = taps.offsets;
    let src = src.as_ptr();
    let zero = s.splat(0.0);
    let mut acc: [[S::V; NV]; MR] = [[zero; NV]; MR];
    let run = run.max(1);
    let mut first = true;
    for (ak, offs) in a[..offsets.len() * MR]
        .chunks(run.saturating_mul(MR))
        .zip(offsets.chunks(run))
    {
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
        // A copy, stored from memory: the stores' branches and masks must not keep `acc`
        // itself out of registers.
        let sums = acc;
        acc = [[zero; NV]; MR];
        // SAFETY: the caller's contract, passed on.
        unsafe { store_tile(s, &sums, first.then_some(init), dst) };
        first = false;
    }
    if first {
        // No taps: every output is its `init`.
        // SAFETY: as above.
        unsafe { store_tile(s, &acc, Some(init), dst) };
    }
}

/// Adds `sums` to what `dst` names, or to `init` (one value per row) where given.
///
/// # Safety
/// As [`direct`].
#[inline(always)]
unsafe fn store_tile<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    sums: &[[S::V; NV]; MR],
    init: Option<&[f32]>,
    dst: &TileDst,
) {
    // No closures (`Option::map`, `unwrap_or_else`) around vector operations: see
    // ARCHITECTURE.md, "Speed techniques".
    for (r, row) in sums.iter().enumerate().take(dst.rows) {
        let start = init.map(|init| init[r]);
        for (v, &sum) in row.iter().enumerate() {
            let n = dst.valid[v].min(S::LANES);
            if n == 0 {
                continue;
            }
            // SAFETY: `dst` names these `n` values, ours alone (caller's contract).
            let at = unsafe { dst.ptr.add(r * dst.row_stride + dst.cols[v]) };
            let value = match start {
                // The first run: the values may be uninitialised, and are not read.
                Some(v) => s.add(s.splat(v), sum),
                None => {
                    // SAFETY: as above; the first run wrote them.
                    let out = unsafe { std::slice::from_raw_parts(at, n) };
                    let old = if n == S::LANES {
                        s.load(out)
                    } else {
                        s.load_partial(out, n)
                    };
                    s.add(old, sum)
                }
            };
            // SAFETY: as above.
            unsafe {
                if n == S::LANES {
                    s.store_ptr(at, value);
                } else {
                    s.store_partial_ptr(at, value, n);
                }
            }
        }
    }
}

/// The run length for a gradient summed over `depth` taps by [`direct`]: runs of at least
/// 16 taps, and at most 3 runs. Each run ends with its tile added into the output, which
/// costs: with 8 runs the input gradients of the reference model's 3x3 layers took 30% longer
/// than in one run (AMD Zen 5), with 3 runs 5-8%. One run was not precise enough
/// (`tests/conv2d_precision.rs`: 2.02x PyTorch float32's error on one problem, where the
/// limit is 2x); 3 runs give the same worst case there as 8 (1.28x). (A forward pass, which
/// no precision test compares with float64, takes the whole depth as one run.)
pub(crate) fn direct_run(depth: usize) -> usize {
    depth.div_ceil(3).max(16)
}

/// Shapes of the outer-product tile: MR taps by `NV` vectors of output channels, so a layer can
/// pick the width that wastes fewest channels. On AVX-512 all three keep 20 to 24 accumulators;
/// AVX2's 16 registers hold accumulators, B vectors and a broadcast only up to 6 x 2 (15), so
/// its wider shapes have fewer accumulators (a spilled accumulator halves the kernel's speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OuterShape {
    /// 4 vectors wide (AVX-512: 6 x 64; AVX2: 2 x 32).
    Wide,
    /// 3 vectors wide (AVX-512: 8 x 48; AVX2: 3 x 24).
    Mid,
    /// 2 vectors wide (AVX-512: 10 x 32, so that its 20 accumulators, 10 broadcasts and 2
    /// loads fit the 32 registers however the compiler schedules them; AVX2: 6 x 16).
    Narrow,
}

impl OuterShape {
    /// (MR, vectors) of this shape for an instruction set of `lanes` lanes.
    pub(crate) fn dims(self, lanes: usize) -> (usize, usize) {
        match (lanes >= 16, self) {
            (true, OuterShape::Wide) => (6, 4),
            (true, OuterShape::Mid) => (8, 3),
            (true, OuterShape::Narrow) => (10, 2),
            (false, OuterShape::Wide) => (2, 4),
            (false, OuterShape::Mid) => (3, 3),
            (false, OuterShape::Narrow) => (6, 2),
        }
    }

    /// The shape whose width, a multiple of which `k` output channels are padded to, wastes
    /// fewest channels; among equals, the one with most accumulators, then the widest.
    pub(crate) fn for_channels(k: usize, lanes: usize) -> Self {
        [OuterShape::Wide, OuterShape::Mid, OuterShape::Narrow]
            .into_iter()
            .min_by_key(|shape| {
                let (mr, nv) = shape.dims(lanes);
                let nr = nv * lanes;
                (k.div_ceil(nr) * nr, std::cmp::Reverse(mr * nv))
            })
            .expect("three shapes")
    }
}

/// The outer-product tile (the weight gradient's, over positions; the forward pass's, over
/// taps): `c[r][j] += sum_t src[bases[t] + taps[r]] * b[t * ldb + j]` for `t` over the
/// offsets of `bases` (their maximum computed once by the caller, [`Taps::new`]), `r < MR`,
/// `j < NR`; `c` holds MR rows of NR values with row stride `ldc`. MR and NR per `shape`. The
/// sum starts from zero in registers and is added to `c` once.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn outer<S: Simd>(
    s: S,
    shape: OuterShape,
    bases: &Taps<'_>,
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
        (true, OuterShape::Narrow) => outer_impl::<S, 10, 2>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Wide) => outer_impl::<S, 2, 4>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Mid) => outer_impl::<S, 3, 3>(s, bases, taps, src, b, ldb, c, ldc),
        (false, OuterShape::Narrow) => outer_impl::<S, 6, 2>(s, bases, taps, src, b, ldb, c, ldc),
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn outer_impl<S: Simd, const MR: usize, const NV: usize>(
    s: S,
    bases: &Taps<'_>,
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
    let depth = bases.offsets.len();
    if depth > 0 {
        let far = bases.max + tap.iter().copied().max().unwrap_or(0);
        assert!(far < src.len(), "outer tile reads past its input");
        assert!((depth - 1) * ldb + nr <= b.len(), "outer tile reads past B");
    }
    let (src, bp) = (src.as_ptr(), b.as_ptr());
    // A fresh tile for this block of positions, added to `c` once at the end: the caller
    // blocks the sum over positions, so no product is added to a large running total.
    let mut acc: [[S::V; NV]; MR] = [[s.splat(0.0); NV]; MR];
    for (t, &base) in bases.offsets.iter().enumerate() {
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
    for (r, row) in acc.iter().enumerate() {
        for (v, &value) in row.iter().enumerate() {
            let at = &mut c[r * ldc + v * S::LANES..];
            s.store(at, s.add(s.load(at), value));
        }
    }
}

/// One output vector of a [`dot`] tile: where it reads `grad_output` (offset within each
/// channel's plane) and the input (read base in the phase layout), and how many of its lanes
/// are output positions (the others add nothing).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DotVector {
    pub dy: usize,
    pub base: usize,
    pub valid: usize,
}

/// (MR output channels, NT taps) of the [`dot`] tile for `lanes` lanes.
pub(crate) fn dot_dims(lanes: usize) -> (usize, usize) {
    if lanes >= 16 { (8, 3) } else { (3, 3) }
}

/// The weight-gradient tile for small depths, a dot product over output positions kept per
/// lane (no transposed `grad_output`, no lanes past a row's end):
/// `out[(r * ldo + t) * LANES + l] += sum_v dy[rows[r] + vectors[v].dy + l] *
/// src[vectors[v].base + taps[t] + l]` over lanes `l < vectors[v].valid`, for `r < MR`,
/// `t < NT` (per [`dot_dims`]). `out` holds vectors: the caller reduces lanes at the end.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn dot<S: Simd>(
    s: S,
    rows: &[usize],
    taps: &[usize],
    vectors: &[DotVector],
    dy: &[f32],
    src: &[f32],
    out: &mut [f32],
    ldo: usize,
) {
    if S::LANES >= 16 {
        dot_impl::<S, 8, 3>(s, rows, taps, vectors, dy, src, out, ldo)
    } else {
        dot_impl::<S, 3, 3>(s, rows, taps, vectors, dy, src, out, ldo)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot_impl<S: Simd, const MR: usize, const NT: usize>(
    s: S,
    rows: &[usize],
    taps: &[usize],
    vectors: &[DotVector],
    dy: &[f32],
    src: &[f32],
    out: &mut [f32],
    ldo: usize,
) {
    let lanes = S::LANES;
    let mut row = [0usize; MR];
    row.copy_from_slice(&rows[..MR]);
    let mut tap = [0usize; NT];
    tap.copy_from_slice(&taps[..NT]);
    // Whole vectors load without bounds checks: check their furthest reads once, here.
    let (far_row, far_tap) = (
        row.iter().copied().max().unwrap_or(0),
        tap.iter().copied().max().unwrap_or(0),
    );
    for v in vectors.iter().filter(|v| v.valid == lanes) {
        assert!(
            v.dy + far_row + lanes <= dy.len(),
            "dot tile reads past grad_output"
        );
        assert!(
            v.base + far_tap + lanes <= src.len(),
            "dot tile reads past its input"
        );
    }
    let (dyp, srcp) = (dy.as_ptr(), src.as_ptr());
    // Blocked summation, as in `outer`: runs of DOT_RUN vectors in fresh registers.
    let zero = s.splat(0.0);
    let mut block = [[zero; NT]; MR];
    for run in vectors.chunks(DOT_RUN) {
        let mut acc = [[zero; NT]; MR];
        for v in run {
            let (mut dv, mut xv) = ([zero; MR], [zero; NT]);
            if v.valid == lanes {
                for (d, &r) in dv.iter_mut().zip(&row) {
                    // SAFETY: v.dy + r + LANES <= dy.len() (asserted above).
                    *d = unsafe { s.load_ptr(dyp.add(v.dy + r)) };
                }
                for (x, &t) in xv.iter_mut().zip(&tap) {
                    // SAFETY: v.base + t + LANES <= src.len() (asserted above).
                    *x = unsafe { s.load_ptr(srcp.add(v.base + t)) };
                }
            } else {
                // The row's last, partial vector: lanes past it read nothing (the input
                // there may hold anything) and add nothing.
                for (d, &r) in dv.iter_mut().zip(&row) {
                    *d = s.load_partial(&dy[v.dy + r..], v.valid);
                }
                for (x, &t) in xv.iter_mut().zip(&tap) {
                    *x = s.load_partial(&src[v.base + t..], v.valid);
                }
            }
            for (acc, &d) in acc.iter_mut().zip(&dv) {
                for (acc, &x) in acc.iter_mut().zip(&xv) {
                    *acc = s.mul_add(d, x, *acc);
                }
            }
        }
        for (sum, acc) in block.iter_mut().zip(&acc) {
            for (sum, &value) in sum.iter_mut().zip(acc) {
                *sum = s.add(*sum, value);
            }
        }
    }
    for (r, sums) in block.iter().enumerate() {
        for (t, &value) in sums.iter().enumerate() {
            let at = &mut out[(r * ldo + t) * lanes..];
            s.store(at, s.add(s.load(at), value));
        }
    }
}

/// Vectors a [`dot`] tile sums in registers before adding them to its block's total.
const DOT_RUN: usize = 8;

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

    fn check_direct<S: Simd>(s: S) {
        let (_, block_nv) = DirectShape::Block.dims(S::LANES);
        // A block tile of every width it runs (a band's last tile may be narrower), and a row.
        let tiles = (1..=block_nv)
            .map(|nv| (DirectShape::Block, nv))
            .chain([(DirectShape::Row, DirectShape::Row.dims(S::LANES).1)]);
        for (shape, nv) in tiles {
            let mr = shape.dims(S::LANES).0;
            let (lanes, nr) = (S::LANES, nv * S::LANES);
            // Deeper than a run, so runs are added up.
            let depth = 2 * direct_run(0) + 5;
            let src = ints(800, 1);
            let offsets: Vec<usize> = (0..depth).map(|t| (t * 17) % 150).collect();
            let bases: Vec<usize> = (0..nv).map(|v| 200 + v * 37).collect();
            let a = ints(depth * mr, 2);
            let init = ints(mr, 3);
            let run = direct_run(depth);
            // Whole tiles, then a panel's padding rows and a partial last vector, which
            // leave what they do not name untouched.
            let partial = (mr.saturating_sub(1).max(1), lanes - 3);
            for (rows, last) in [(mr, lanes), partial] {
                let stride = nr + 5;
                let mut out = vec![f32::NAN; mr * stride];
                let mut valid = [0; 8];
                valid[..nv].fill(lanes);
                valid[nv - 1] = last;
                let dst = TileDst {
                    ptr: out.as_mut_ptr(),
                    row_stride: stride,
                    rows,
                    cols: std::array::from_fn(|v| v * lanes),
                    valid,
                };
                let taps = Taps::new(&offsets);
                // SAFETY: `dst` names values inside `out`, which nothing else touches.
                s.vectorize(|| unsafe {
                    direct(s, shape, run, &a, &taps, &src, &bases, &init, &dst)
                });
                for r in 0..mr {
                    for v in 0..nv {
                        for l in 0..lanes {
                            let got = out[r * stride + v * lanes + l];
                            if r >= rows || l >= valid[v] {
                                assert!(got.is_nan(), "{shape:?} wrote ({r}, {v}, {l})");
                                continue;
                            }
                            let want = init[r]
                                + (0..depth)
                                    .map(|t| a[t * mr + r] * src[bases[v] + offsets[t] + l])
                                    .sum::<f32>();
                            assert_eq!(got, want, "{shape:?} ({r}, {v}, {l})");
                        }
                    }
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
            s.vectorize(|| {
                outer(
                    s,
                    shape,
                    &Taps::new(&bases),
                    &taps,
                    &src,
                    &b,
                    ldb,
                    &mut c,
                    ldc,
                )
            });
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
        check_direct(crate::cpu::simd::Portable);
        check_outer(crate::cpu::simd::Portable);
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
        // AVX2: at equal padding, the shape with most accumulators.
        assert_eq!(OuterShape::for_channels(64, 8), OuterShape::Narrow);
        assert_eq!(OuterShape::for_channels(32, 8), OuterShape::Narrow);
    }

    #[test]
    fn pack_a_zero_pads_the_last_panel() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 x 2
        let mut out = vec![f32::NAN; packed_a_len(3, 2, 2)];
        pack_a(Mat::row_major(&m, 3, 2), 2, &mut out);
        assert_eq!(out, [1.0, 3.0, 2.0, 4.0, 5.0, 0.0, 6.0, 0.0]);
    }
}
