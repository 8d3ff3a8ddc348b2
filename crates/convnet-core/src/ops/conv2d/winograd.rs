//! Winograd's minimal filtering F(2x2, 3x3) for 3x3 kernels, stride 1, no dilation, one
//! group: each 2x2 block of outputs ("tile") takes 16 products per channel pair instead of 36.
//!
//! With `d` a tile's 4x4 input window and `g` a 3x3 kernel, the tile is
//! `A^T [(G g G^T) ⊙ (B^T d B)] A` (Lavin & Gray's matrices: `B` and `A` hold only 0 and ±1,
//! `G` also ±1/2, so the transforms add and subtract and round little). Per call:
//!
//! 1. the kernels are transformed once, `U[ξ][k][c]` (ξ: the 16 points), and packed as A
//!    panels of `microkernel::direct`;
//! 2. tasks take chunks of tile rows (over images and rows, sized by [`CHUNK_BYTES`]);
//!    a chunk's input windows, split into even and odd columns so that a vector's worth of
//!    neighbouring tiles' columns are one load, become `V[ξ][c][tile]`, one tile per lane
//!    (planes of `V` and `M` one cache line further apart than their size);
//! 3. per point, `M[ξ] = U[ξ] V[ξ]` (`K x C` by `C x tiles`) by the direct tile with the
//!    channels as its taps and the tiles as its vectors (no lane wasted at row ends);
//! 4. `A^T M A` adds the points back into each tile's four outputs, plus the bias.
//!
//! The input gradient of such a layer is a forward pass of the same kind (`direct.rs`'s
//! transposed problem), so it runs here too, its channel sums blocked as in `direct.rs`.
//!
//! `Auto` picks this path only for 128+ channels each side on AVX-512
//! (`super::prefers_winograd`). Measured interleaved on 2 cores against the direct path,
//! forward: on AVX-512, 1.11x to 1.66x faster at 128 and 256 channels, 0.7x to 1.1x at 32
//! and 64; on AVX2 (Zen 3), equal or slower at every width. At few channels the products
//! (depth `C`) run near 40% of peak and the transforms, whose vectors hold the tiles of one
//! tile row (7 of 16 lanes used on a 14-wide plane), cost as much again. What it would need
//! there: transforms over several tile rows per vector, and longer products (F(4x4, 3x3),
//! or the channels of several points per product).
//!
//! Vector code here is written in loops, never in closures (`array::from_fn`, `map`): a
//! closure is compiled without the kernel's instruction set, and its vector operations
//! become calls (the output transform once ran 5x slower so).

use super::microkernel::{DirectShape, Taps, TileDst, direct, direct_run, pack_a, packed_a_len};
use super::params::Conv2dGeometry;
use crate::cpu::linalg::Mat;
use crate::cpu::parallel::SharedOut;
use crate::cpu::scratch::Scratch;
use crate::cpu::simd::{Simd, multiversion};

use rayon::prelude::*;

/// The problems this path computes: a 3x3 kernel, stride 1, no dilation, one group.
pub(crate) fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == [3, 3] && g.stride == [1, 1] && g.dilation == [1, 1] && g.groups == 1
}

/// Bytes of a task's transformed input and products (`16 (C + K)` values per tile), about:
/// near L2's size, so that the products read what the input transform wrote from L2 (on 64
/// channels, 400-tile chunks ran slower than 64 to 192), within [`MIN_TILES`] and
/// [`MAX_TILES`] tiles, so that wide layers still give the products long rows.
const CHUNK_BYTES: usize = 512 * 1024;
const MIN_TILES: usize = 48;
/// Floats between the end of one point's plane of `V` or `M` and the next (one cache line).
const PLANE_SKEW: usize = 16;
const MAX_TILES: usize = 192;

/// Forward: `y` (`[N, K, Ho, Wo]`) is overwritten. `g` must be canonical and [`applies`].
pub(crate) fn forward(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    forward_simd(g, x, w, b, y, usize::MAX)
}

/// The input gradient of a problem that [`applies`], as the forward pass of its
/// `direct::transposed_problem` `t` (which applies too) with `wt` its weights
/// (`direct::transposed_weights`), channel sums blocked.
pub(crate) fn input_grad_transposed(t: &Conv2dGeometry, gy: &[f32], wt: &[f32], gx: &mut [f32]) {
    forward_simd(t, gy, wt, None, gx, direct_run(t.in_channels))
}

multiversion!(fn forward_simd(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32], run: usize) => forward_impl);

/// `U = G g G^T` of every kernel, as `u[ξ][k][c]`.
fn transform_weights(w: &[f32], k: usize, c: usize, u: &mut [f32]) {
    for (kc, g) in w.chunks_exact(9).enumerate().take(k * c) {
        // G g: 4 rows of 3.
        let mut gg = [[0.0f32; 3]; 4];
        for col in 0..3 {
            let (g0, g1, g2) = (g[col], g[3 + col], g[6 + col]);
            gg[0][col] = g0;
            gg[1][col] = 0.5 * (g0 + g1 + g2);
            gg[2][col] = 0.5 * (g0 - g1 + g2);
            gg[3][col] = g2;
        }
        for (row, r) in gg.iter().enumerate() {
            let (g0, g1, g2) = (r[0], r[1], r[2]);
            let out = [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
            for (col, v) in out.into_iter().enumerate() {
                u[(row * 4 + col) * k * c + kc] = v;
            }
        }
    }
}

#[inline(always)]
fn forward_impl<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    run: usize,
) {
    let lanes = S::LANES;
    let (c, k) = (g.in_channels, g.out_channels);
    let [h, wd] = g.in_hw;
    let [ho, wo] = g.out_hw;
    assert!(applies(g));
    assert_eq!(y.len(), g.batch * k * ho * wo);
    if y.is_empty() {
        return;
    }
    if c == 0 {
        // No input channels: every output is its bias.
        for (plane, v) in y.chunks_exact_mut(ho * wo).zip((0..k).cycle()) {
            plane.fill(b.map_or(0.0, |b| b[v]));
        }
        return;
    }
    let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
    let (top, left) = (g.pad[0], g.pad[2]);

    let shape = DirectShape::for_channels(k, lanes);
    let (mr, nv) = shape.dims(lanes);
    let nr = nv * lanes;
    let panels = k.div_ceil(mr);
    let a_len = packed_a_len(k, c, mr);
    let mut packed = Scratch::take(16 * a_len);
    {
        let mut u = Scratch::take(16 * k * c);
        transform_weights(w, k, c, &mut u);
        for (u, dst) in u.chunks_exact(k * c).zip(packed.chunks_exact_mut(a_len)) {
            pack_a(Mat::row_major(u, k, c), mr, dst);
        }
    }
    let packed = &*packed;

    // Chunks of whole tile rows, `rows` at a time; smaller when there are too few for the
    // threads.
    let tile_rows = g.batch * th;
    let threads = rayon::current_num_threads();
    let target = (CHUNK_BYTES / (16 * (c + k) * 4)).clamp(MIN_TILES, MAX_TILES);
    let mut rows = (target / tw).clamp(1, tile_rows);
    while rows > 1 && tile_rows.div_ceil(rows) < 2 * threads {
        rows = rows.div_ceil(2);
    }
    let chunks = tile_rows.div_ceil(rows);
    let out = SharedOut::new(y);
    // Even and odd input columns of a tile row's windows (tile j reads columns 2j..2j+3 of
    // the padded input): whole vectors, with one to spare for the last vector's extra lanes.
    let half = (tw + 1).div_ceil(lanes) * lanes + lanes;

    (0..chunks).into_par_iter().for_each(|chunk| {
        s.vectorize(
            #[inline(always)]
            || {
                let chunk_rows = chunk * rows..((chunk + 1) * rows).min(tile_rows);
                let tiles = chunk_rows.len() * tw;
                // Room for whole tiles of products, and for the last vector's extra lanes.
                let tp = tiles.div_ceil(nr) * nr + lanes;
                // One point's `V` (or `M`) per plane, planes one cache line more apart than
                // their size: at `C * tp` floats (a multiple of 1024 when `C` is a multiple
                // of 16) the sixteen points' stores and loads fell in one L1 set.
                let (v_plane, m_plane) = (c * tp + PLANE_SKEW, k * tp + PLANE_SKEW);
                let mut v = Scratch::take(16 * v_plane);
                // Input rows by row mod 4, each as its even then its odd columns; `line`, one
                // zero-padded input row.
                let mut window = Scratch::take(8 * half);
                let mut line = Scratch::take(2 * half);

                // 2. V = B^T d B, a vector's worth of a tile row's tiles at a time.
                for ch in 0..c {
                    // (image, first input row not yet in `window`) of the previous tile row.
                    let mut filled = (usize::MAX, 0);
                    for (local, tile_row) in chunk_rows.clone().enumerate() {
                        let (n, i) = (tile_row / th, tile_row % th);
                        let plane = &x[(n * c + ch) * h * wd..][..h * wd];
                        let from = if filled.0 == n {
                            filled.1.max(2 * i)
                        } else {
                            2 * i
                        };
                        for padded in from..2 * i + 4 {
                            let slot = &mut window[(padded % 4) * 2 * half..][..2 * half];
                            match padded.checked_sub(top).filter(|&row| row < h) {
                                None => slot.fill(0.0),
                                Some(row) => {
                                    line.fill(0.0);
                                    let dst = &mut line[left.min(2 * half)..];
                                    let len = wd.min(dst.len());
                                    dst[..len].copy_from_slice(&plane[row * wd..][..len]);
                                    let (even, odd) = slot.split_at_mut(half);
                                    for col in (0..half).step_by(lanes) {
                                        let (e, o) = s.deinterleave(
                                            s.load(&line[2 * col..]),
                                            s.load(&line[2 * col + lanes..]),
                                        );
                                        s.store(&mut even[col..], e);
                                        s.store(&mut odd[col..], o);
                                    }
                                }
                            }
                        }
                        filled = (n, 2 * i + 4);
                        for j in (0..tw).step_by(lanes) {
                            // t[r][q]: (d B) of row r, column q, for `lanes` tiles.
                            let mut t = [[s.splat(0.0); 4]; 4];
                            for (r, t) in t.iter_mut().enumerate() {
                                let slot = &window[((2 * i + r) % 4) * 2 * half..];
                                let e0 = s.load(&slot[j..]);
                                let o0 = s.load(&slot[half + j..]);
                                let e1 = s.load(&slot[j + 1..]);
                                let o1 = s.load(&slot[half + j + 1..]);
                                *t = [s.sub(e0, e1), s.add(o0, e1), s.sub(e1, o0), s.sub(o0, o1)];
                            }
                            let at = local * tw + j;
                            for q in 0..4 {
                                let col = [
                                    s.sub(t[0][q], t[2][q]),
                                    s.add(t[1][q], t[2][q]),
                                    s.sub(t[2][q], t[1][q]),
                                    s.sub(t[1][q], t[3][q]),
                                ];
                                for (p, val) in col.into_iter().enumerate() {
                                    // Lanes past the row's last tile land on the next row's
                                    // first tiles, which are written after, or in the slack.
                                    s.store(&mut v[(p * 4 + q) * v_plane + ch * tp + at..], val);
                                }
                            }
                        }
                    }
                    for xi in 0..16 {
                        v[xi * v_plane + ch * tp + tiles..][..tp - tiles].fill(0.0);
                    }
                }
                drop((window, line));

                // 3. M[ξ] = U[ξ] V[ξ].
                let mut m = Scratch::take(16 * m_plane);
                let channel_offsets: Vec<usize> = (0..c).map(|ch| ch * tp).collect();
                let taps = Taps::new(&channel_offsets);
                let zeros = [0.0f32; 8];
                let mut bases = [0usize; 8];
                let valid: [usize; 8] = std::array::from_fn(|vec| if vec < nv { lanes } else { 0 });
                for xi in 0..16 {
                    let src = &v[xi * v_plane..][..c * tp];
                    let m_point = &mut m[xi * m_plane..][..k * tp];
                    // Every panel passes over one group of tile columns before the next: the
                    // columns (`C` rows of `nr` values) stay in L1 across the panels.
                    for first in (0..tiles).step_by(nr) {
                        for (vec, base) in bases[..nv].iter_mut().enumerate() {
                            *base = first + vec * lanes;
                        }
                        let cols: [usize; 8] = std::array::from_fn(|vec| first + vec * lanes);
                        for ip in 0..panels {
                            let a = &packed[xi * a_len + ip * mr * c..][..mr * c];
                            let dst = TileDst {
                                ptr: m_point[ip * mr * tp..].as_mut_ptr(),
                                row_stride: tp,
                                rows: mr.min(k - ip * mr),
                                cols,
                                valid,
                            };
                            // SAFETY: rows `ip * mr ..` (at most `k`) of `m_point` (stride
                            // `tp`) hold columns `first .. first + nr <= tp`: `dst` names
                            // values of `m_point`, borrowed here alone.
                            unsafe {
                                direct(
                                    s,
                                    shape,
                                    run,
                                    a,
                                    &taps,
                                    src,
                                    &bases[..nv],
                                    &zeros[..mr],
                                    &dst,
                                )
                            };
                        }
                    }
                }
                drop(v);

                // 4. y = A^T M A + bias.
                for kk in 0..k {
                    let bias = s.splat(b.map_or(0.0, |b| b[kk]));
                    for (local, tile_row) in chunk_rows.clone().enumerate() {
                        let (n, i) = (tile_row / th, tile_row % th);
                        let plane = (n * k + kk) * ho * wo;
                        for j in (0..tw).step_by(lanes) {
                            let at = local * tw + j;
                            // No closures here: a closure is compiled without the
                            // kernel's instruction set, and its vector operations become
                            // calls (this transform ran 5x slower so).
                            let mut mq = [s.splat(0.0); 16];
                            for (xi, mq) in mq.iter_mut().enumerate() {
                                *mq = s.load(&m[xi * m_plane + kk * tp + at..]);
                            }
                            // A^T M: two rows of four columns.
                            let mut rows2 = [[s.splat(0.0); 4]; 2];
                            for q in 0..4 {
                                let (m0, m1, m2, m3) = (mq[q], mq[4 + q], mq[8 + q], mq[12 + q]);
                                rows2[0][q] = s.add(m0, s.add(m1, m2));
                                rows2[1][q] = s.sub(s.sub(m1, m2), m3);
                            }
                            let valid = lanes.min(tw - j);
                            for (a, r) in rows2.iter().enumerate() {
                                let row = 2 * i + a;
                                if row >= ho {
                                    break;
                                }
                                let mid = s.add(r[1], r[2]);
                                let y0 = s.add(s.add(r[0], mid), bias);
                                let y1 = s.add(s.sub(s.sub(r[1], r[2]), r[3]), bias);
                                let (lo, hi) = s.interleave(y0, y1);
                                let start = plane + row * wo + 2 * j;
                                let width = (2 * valid).min(wo - 2 * j);
                                // SAFETY: this task alone writes the outputs of its tile rows
                                // (chunks are disjoint ranges of (image, tile row)), and
                                // `start + width` stays inside output row `row` of `plane`.
                                let dst =
                                    unsafe { std::slice::from_raw_parts_mut(out.at(start), width) };
                                if width == 2 * lanes {
                                    let (first, second) = dst.split_at_mut(lanes);
                                    s.store(first, lo);
                                    s.store(second, hi);
                                } else if width > lanes {
                                    let (first, second) = dst.split_at_mut(lanes);
                                    s.store(first, lo);
                                    s.store_partial(second, hi, width - lanes);
                                } else {
                                    s.store_partial(dst, lo, width);
                                }
                            }
                        }
                    }
                }
            },
        )
    });
}
