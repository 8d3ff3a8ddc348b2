//! Tiled im2col + GEMM, for any kernel, stride, dilation and groups: the strided input
//! gradients of the direct path, and a second general path to cross-check it.
//!
//! The problem is canonical here (zero padding, cross-correlation; see `mod.rs`). For one
//! image and group, with `CRS = C_g * kh * kw` and `P = Ho * Wo`:
//!
//! - forward: `Y[K_g, P] = W[K_g, CRS] * cols[CRS, P]`,
//! - input gradient: `dcols[CRS, P] = W^T * dY[K_g, P]`, then col2im adds `dcols` back onto the
//!   input positions it was read from (the transposed convolution),
//! - weight gradient: `dW[K_g, CRS] += dY[K_g, P] * cols^T`, summed over images.
//!
//! `cols` is never built whole: it is made a tile of output rows at a time (or a part of one
//! row, when a row's columns alone exceed a tile), sized to stay in the L2 cache, in a
//! per-thread scratch buffer. Forward tasks are (image, group, tile)
//! triples; input-gradient tasks are (image, group) pairs, since neighbouring tiles add to
//! overlapping input rows; weight-gradient tasks are runs of (image, tile) pairs, each summing
//! into its own partial gradient, added up in a fixed order so results do not depend on
//! scheduling.

use std::ops::Range;

use super::params::Conv2dGeometry;
use crate::cpu::linalg::{Mat, MatMut, gemm};
use crate::cpu::parallel::{SharedOut, Split, sum_over_parts};
use crate::cpu::scratch::Scratch;

/// Target size of one im2col tile in bytes.
const TILE_BYTES: usize = 512 * 1024;

/// How the output of one image is cut into tiles: runs of whole output rows, or, when one
/// row's im2col is larger than a tile, parts of one row. Either way a tile's output positions
/// are contiguous, and its im2col matrix is at most a tile (or one column of it, when the
/// depth alone exceeds a tile): sized from the weight and the output, never the input.
struct Tiling {
    /// `C_g * kh * kw`: rows of the im2col matrix.
    crs: usize,
    /// Output rows per tile (the last tile may have fewer); 1 when rows are split.
    rows_per_tile: usize,
    /// Output columns per tile: `Wo`, or a part of a row.
    cols_per_tile: usize,
    /// Tiles per run of rows (1 unless rows are split).
    col_tiles: usize,
    tiles: usize,
}

/// The output positions of one tile: rows, and the columns of each row.
struct Tile {
    rows: Range<usize>,
    cols: Range<usize>,
}

impl Tile {
    /// Output positions (columns of the tile's im2col matrix).
    fn len(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    /// Flat index of the tile's first output position in an `[Ho, Wo]` plane.
    fn start(&self, g: &Conv2dGeometry) -> usize {
        self.rows.start * g.out_hw[1] + self.cols.start
    }
}

impl Tiling {
    fn new(g: &Conv2dGeometry) -> Self {
        let crs = g.in_per_group() * g.kernel[0] * g.kernel[1];
        let [ho, wo] = [g.out_hw[0].max(1), g.out_hw[1].max(1)];
        let max_cols = (TILE_BYTES / 4 / crs.max(1)).max(1);
        let (rows_per_tile, cols_per_tile) = if wo <= max_cols {
            ((max_cols / wo).clamp(1, ho), wo)
        } else {
            (1, max_cols)
        };
        let col_tiles = wo.div_ceil(cols_per_tile);
        Tiling {
            crs,
            rows_per_tile,
            cols_per_tile,
            col_tiles,
            tiles: g.out_hw[0].div_ceil(rows_per_tile) * col_tiles,
        }
    }

    fn tile(&self, g: &Conv2dGeometry, tile: usize) -> Tile {
        let (row_tile, col_tile) = (tile / self.col_tiles, tile % self.col_tiles);
        let (r0, c0) = (row_tile * self.rows_per_tile, col_tile * self.cols_per_tile);
        Tile {
            rows: r0..(r0 + self.rows_per_tile).min(g.out_hw[0]),
            cols: c0..(c0 + self.cols_per_tile).min(g.out_hw[1]),
        }
    }

    /// Elements of the largest tile's im2col matrix.
    fn cols_len(&self) -> usize {
        self.crs * self.rows_per_tile * self.cols_per_tile
    }
}

/// For kernel column `q`, the output columns `j` whose input column
/// `j * s_w + q * d_w - pad_left` lies inside the input, as a range.
fn valid_cols(g: &Conv2dGeometry, q: usize) -> Range<usize> {
    let (sw, left, w, wo) = (g.stride[1], g.pad[2], g.in_hw[1], g.out_hw[1]);
    let offset = q * g.dilation[1];
    let lo = left.saturating_sub(offset).div_ceil(sw);
    let hi = (w + left).saturating_sub(offset).div_ceil(sw);
    let hi = hi.min(wo);
    lo.min(hi)..hi
}

/// Input row read by output row `i` and kernel row `p`, if inside the input.
#[inline]
fn input_row(g: &Conv2dGeometry, i: usize, p: usize) -> Option<usize> {
    (i * g.stride[0] + p * g.dilation[0])
        .checked_sub(g.pad[0])
        .filter(|&r| r < g.in_hw[0])
}

/// Where one output row of one kernel tap reads: the start of its input row (indexing the
/// group's channels `[C_g, H, W]`), the output columns of the tile that read inside the
/// input, and the input column of output column 0 plus `pad_left` (`q * d_w`).
struct Source {
    row_start: usize,
    valid: Range<usize>,
    shift: usize,
}

impl Source {
    /// Input column read by the first valid output column.
    fn first_col(&self, g: &Conv2dGeometry) -> usize {
        self.valid.start * g.stride[1] + self.shift - g.pad[2]
    }
}

/// Visits every segment of a tile's im2col matrix, the one place where the im2col indexing is
/// written: `f(dst, source)` for each kernel tap `(c, p, q)` and output row, with `dst` the
/// start of the segment (the tile's columns of that row) in `cols[CRS, tile]` and `source`
/// where it reads, or `None` where the whole row reads padding.
#[inline]
fn for_each_segment(g: &Conv2dGeometry, tile: &Tile, mut f: impl FnMut(usize, Option<Source>)) {
    let [kh, kw] = g.kernel;
    let [h, w] = g.in_hw;
    let (tp, width) = (tile.len(), tile.cols.len());
    let clip = |v: Range<usize>| {
        let (lo, hi) = (tile.cols.start, tile.cols.end);
        v.start.clamp(lo, hi)..v.end.clamp(lo, hi)
    };
    let col_ranges: Vec<Range<usize>> = (0..kw).map(|q| clip(valid_cols(g, q))).collect();
    for c in 0..g.in_per_group() {
        for p in 0..kh {
            for (q, valid) in col_ranges.iter().enumerate() {
                let row_base = ((c * kh + p) * kw + q) * tp;
                for (t, i) in tile.rows.clone().enumerate() {
                    let source = input_row(g, i, p).map(|r| Source {
                        row_start: (c * h + r) * w,
                        valid: valid.clone(),
                        shift: q * g.dilation[1],
                    });
                    f(row_base + t * width, source);
                }
            }
        }
    }
}

/// Fill `cols[CRS, tile]` from the group's input channels `x_g = [C_g, H, W]`.
fn im2col(g: &Conv2dGeometry, x_g: &[f32], tile: &Tile, cols: &mut [f32]) {
    let (c0, width, sw) = (tile.cols.start, tile.cols.len(), g.stride[1]);
    for_each_segment(g, tile, |dst, source| {
        let seg = &mut cols[dst..dst + width];
        let Some(src) = source else {
            seg.fill(0.0);
            return;
        };
        let valid = src.valid.start - c0..src.valid.end - c0;
        seg[..valid.start].fill(0.0);
        seg[valid.end..].fill(0.0);
        if valid.is_empty() {
            return;
        }
        let first = src.row_start + src.first_col(g);
        let out = &mut seg[valid];
        if sw == 1 {
            out.copy_from_slice(&x_g[first..first + out.len()]);
        } else {
            for (o, v) in out.iter_mut().zip(x_g[first..].iter().step_by(sw)) {
                *o = *v;
            }
        }
    });
}

/// Adjoint of [`im2col`]: add `dcols[CRS, tile]` onto `gx_g = [C_g, H, W]`.
fn col2im(g: &Conv2dGeometry, dcols: &[f32], tile: &Tile, gx_g: &mut [f32]) {
    let (c0, sw) = (tile.cols.start, g.stride[1]);
    for_each_segment(g, tile, |dst, source| {
        let Some(src) = source.filter(|s| !s.valid.is_empty()) else {
            return;
        };
        let first = src.row_start + src.first_col(g);
        let seg = &dcols[dst + src.valid.start - c0..dst + src.valid.end - c0];
        if sw == 1 {
            for (o, v) in gx_g[first..first + seg.len()].iter_mut().zip(seg) {
                *o += *v;
            }
        } else {
            for (o, v) in gx_g[first..].iter_mut().step_by(sw).zip(seg) {
                *o += *v;
            }
        }
    });
}

/// Forward: `y` (`[N, K, Ho, Wo]`) is overwritten.
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let tiling = Tiling::new(g);
    let (cg, kg, crs) = (g.in_per_group(), g.out_per_group(), tiling.crs);
    let [h, wd] = g.in_hw;
    let p = g.out_hw[0] * g.out_hw[1];
    let tasks = g.batch * g.groups * tiling.tiles;
    let split = Split::new(tasks);
    assert_eq!(y.len(), g.batch * g.out_channels * p);
    let out = SharedOut::new(y);
    let run = |task: usize| {
        let tile = tiling.tile(g, task % tiling.tiles);
        let grp = (task / tiling.tiles) % g.groups;
        let n = task / (tiling.tiles * g.groups);
        let tp = tile.len();
        let x_g = &x[(n * g.in_channels + grp * cg) * h * wd..][..cg * h * wd];
        let w_g = &w[grp * kg * crs..][..kg * crs];
        let k0 = grp * kg;
        let offset = (n * g.out_channels + k0) * p + tile.start(g);
        // SAFETY (for the raw views below): this task alone writes rows k0..k0+kg, at the
        // tile's output positions (contiguous in each plane), of image n. (n, group, tile)
        // triples are distinct across tasks and cover disjoint elements, and every view stays
        // inside `y`: offset + (kg - 1) * p + tp <= y.len().
        if let Some(b) = b {
            for (k, &bias) in b[k0..k0 + kg].iter().enumerate() {
                let row = unsafe { std::slice::from_raw_parts_mut(out.at(offset + k * p), tp) };
                row.fill(bias);
            }
        }
        let y_tile = unsafe { MatMut::from_raw(out.at(offset), kg, tp, p, 1) };
        let mut cols = Scratch::take(crs * tp);
        im2col(g, x_g, &tile, &mut cols);
        gemm(
            y_tile,
            Mat::row_major(w_g, kg, crs),
            Mat::row_major(&cols, crs, tp),
            b.is_some(),
            split.gemm_threads,
        );
    };
    split.run(tasks, run);
}

/// Input gradient: `gx` (`[N, C, H, W]`) is overwritten.
pub(crate) fn input_grad(g: &Conv2dGeometry, gy: &[f32], w: &[f32], gx: &mut [f32]) {
    let tiling = Tiling::new(g);
    let (cg, kg, crs) = (g.in_per_group(), g.out_per_group(), tiling.crs);
    let [h, wd] = g.in_hw;
    let p = g.out_hw[0] * g.out_hw[1];
    let split = Split::new(g.batch * g.groups);
    let cols_len = tiling.cols_len();
    // Task t = n * groups + grp owns input channels grp*cg.. of image n: one contiguous chunk.
    let run = |task: usize, gx_g: &mut [f32]| {
        let grp = task % g.groups;
        let n = task / g.groups;
        gx_g.fill(0.0);
        let w_g = &w[grp * kg * crs..][..kg * crs];
        let gy_g = &gy[(n * g.out_channels + grp * kg) * p..][..kg * p];
        let mut dcols = Scratch::take(cols_len);
        for tile in 0..tiling.tiles {
            let tile = tiling.tile(g, tile);
            let tp = tile.len();
            let dcols = &mut dcols[..crs * tp];
            gemm(
                MatMut::row_major(dcols, crs, tp),
                Mat::row_major(w_g, kg, crs).t(),
                Mat::new(&gy_g[tile.start(g)..], kg, tp, p, 1),
                false,
                split.gemm_threads,
            );
            col2im(g, dcols, &tile, gx_g);
        }
    };
    split.run_chunks(gx, cg * h * wd, run);
}

/// Output positions per GEMM of the weight gradient.
const WEIGHT_GRAD_RUN: usize = 32;

/// Weight gradient: `gw` (`[K, C_g, kh, kw]`) is overwritten.
pub(crate) fn weight_grad(g: &Conv2dGeometry, gy: &[f32], x: &[f32], gw: &mut [f32]) {
    let tiling = Tiling::new(g);
    let (cg, kg, crs) = (g.in_per_group(), g.out_per_group(), tiling.crs);
    let [h, wd] = g.in_hw;
    let p = g.out_hw[0] * g.out_hw[1];
    let cols_len = tiling.cols_len();
    sum_over_parts(g.batch * tiling.tiles, gw, |tasks, acc, gemm_threads| {
        let mut cols = Scratch::take(cols_len);
        for task in tasks {
            let tile = tiling.tile(g, task % tiling.tiles);
            let n = task / tiling.tiles;
            let tp = tile.len();
            let cols = &mut cols[..crs * tp];
            for grp in 0..g.groups {
                let x_g = &x[(n * g.in_channels + grp * cg) * h * wd..][..cg * h * wd];
                im2col(g, x_g, &tile, cols);
                let gy_t = &gy[(n * g.out_channels + grp * kg) * p + tile.start(g)..];
                // One product per run of positions: each sums into fresh registers and is
                // added to the gradient once (blocked summation, as in the direct path).
                for first in (0..tp).step_by(WEIGHT_GRAD_RUN) {
                    let len = WEIGHT_GRAD_RUN.min(tp - first);
                    gemm(
                        MatMut::row_major(&mut acc[grp * kg * crs..][..kg * crs], kg, crs),
                        Mat::new(&gy_t[first..], kg, len, p, 1),
                        Mat::new(&cols[first..], crs, len, tp, 1).t(),
                        true,
                        gemm_threads,
                    );
                }
            }
        }
    });
}
