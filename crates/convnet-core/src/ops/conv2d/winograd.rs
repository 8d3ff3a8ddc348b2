//! Winograd's minimal filtering F(2x2, 3x3) for 3x3 kernels, stride 1, no dilation, one
//! group: each 2x2 block of outputs ("tile") takes 16 products per channel pair instead of 36.
//!
//! With `d` a tile's 4x4 input window and `g` a 3x3 kernel, the tile is
//! `A^T [(G g G^T) ⊙ (B^T d B)] A` (Lavin & Gray's matrices: `B` and `A` hold only 0 and ±1,
//! `G` also ±1/2, so the transforms add and subtract and round little). Per call:
//!
//! 1. the kernels are transformed once, `U[ξ][k][c]` (ξ: the 16 points), straight into the A
//!    panels of `microkernel::direct`, panels in parallel ([`pack_transformed`]);
//! 2. tasks take chunks of tile rows (over images and rows, sized by [`CHUNK_BYTES`]);
//!    a chunk's input windows, split into even and odd columns so that a vector's worth of
//!    neighbouring tiles' columns are one load, become `V[ξ][c][tile]`, one tile per lane
//!    (planes of `V` and `M` one cache line further apart than their size);
//! 3. per point, `M[ξ] = U[ξ] V[ξ]` (`K x C` by `C x tiles`) by the direct tile with the
//!    channels as its taps and the tiles as its vectors (no lane wasted at row ends);
//! 4. `A^T M A` adds the points back into each tile's four outputs, plus the bias.
//!
//! The input gradient of such a layer is a forward pass of the same kind (`direct.rs`'s
//! transposed problem), so it runs here too, its channel sums blocked as in `direct.rs`, its
//! kernels read from the layer's weights as step 1 packs them ([`Kernels::Transposed`]).
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

use super::microkernel::{DirectShape, Taps, TileDst, direct, direct_run};
use super::params::Conv2dGeometry;
use crate::cpu::parallel::SharedOut;
use crate::cpu::scratch::Scratch;
use crate::cpu::simd::{MAX_LANES, Simd, multiversion};

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
    forward_simd(g, x, Kernels::Forward(w), b, y, usize::MAX)
}

/// The input gradient of a problem that [`applies`], as the forward pass of its
/// `direct::transposed_problem` `t` (which applies too), whose kernels are read from the
/// layer's weights `w` as they are packed (no transposed copy), channel sums blocked.
pub(crate) fn input_grad_transposed(t: &Conv2dGeometry, gy: &[f32], w: &[f32], gx: &mut [f32]) {
    forward_simd(
        t,
        gy,
        Kernels::Transposed(w),
        None,
        gx,
        direct_run(t.in_channels),
    )
}

multiversion!(fn forward_simd(g: &Conv2dGeometry, x: &[f32], w: Kernels<'_>, b: Option<&[f32]>, y: &mut [f32], run: usize) => forward_impl);

/// The 3x3 kernels a pass multiplies by, `[out][in]` of the problem it runs.
#[derive(Debug, Clone, Copy)]
enum Kernels<'a> {
    /// The problem's own weights, `[K, C, 3, 3]`.
    Forward(&'a [f32]),
    /// The kernels of a layer's transposed problem (its input gradient), read from the
    /// layer's weights `[C, K, 3, 3]` (`C`, `K` the transposed problem's channels):
    /// `w'[k][c][p][q] = w[c][k][2-p][2-q]` (`direct::transposed_weights`).
    Transposed(&'a [f32]),
}

impl Kernels<'_> {
    /// The kernel from input channel `ch` to output channel `o` of a problem with `c` input
    /// and `k` output channels, row-major.
    #[inline(always)]
    fn get(self, o: usize, ch: usize, k: usize, c: usize) -> [f32; 9] {
        match self {
            Kernels::Forward(w) => w[(o * c + ch) * 9..][..9].try_into().expect("9 taps"),
            Kernels::Transposed(w) => {
                let mut g: [f32; 9] = w[(ch * k + o) * 9..][..9].try_into().expect("9 taps");
                g.reverse();
                g
            }
        }
    }
}

/// Rows of the tallest A panel ([`DirectShape::dims`]).
const MAX_MR: usize = 8;

/// Floats from one point's packed matrix to the next ([`pack_transformed`]): `mr * c`, plus a
/// cache line so that the sixteen points' stores, which run side by side, do not share L1
/// sets (at 256 channels the matrices are 8 KiB apart without it).
fn point_stride(c: usize, mr: usize) -> usize {
    mr * c + PLANE_SKEW
}

/// Length of [`pack_transformed`]'s result.
fn packed_len(k: usize, c: usize, mr: usize) -> usize {
    k.div_ceil(mr) * 16 * point_stride(c, mr)
}

/// The transformed kernels `U[ξ] = G g G^T` (`K x C` per point) packed as A panels of `mr`
/// output channels (`microkernel::pack_a`'s layout), panel-major: panel `ip`'s matrix for
/// point `ξ` starts at `(ip * 16 + ξ) * point_stride`, so each panel is one contiguous block and
/// the panels are filled in parallel, straight from the weights, a panel's `mr` kernels of
/// one input channel transformed together in vector lanes. (Transforming every kernel into
/// `U` and then packing it, one kernel at a time on one thread, took 1.1-1.2 ms of a 4.3-5 ms
/// forward pass of 256 channels on 14x14, AMD Zen 5.)
fn pack_transformed(kernels: Kernels<'_>, k: usize, c: usize, mr: usize, packed: &mut [f32]) {
    assert!(mr <= MAX_MR, "panels of {mr} rows");
    let packed = &mut packed[..packed_len(k, c, mr)];
    if packed.is_empty() {
        return;
    }
    packed
        .par_chunks_mut(16 * point_stride(c, mr))
        .enumerate()
        .for_each(|(ip, panel)| pack_panel(kernels, [k, c], mr, ip, panel));
}

multiversion!(fn pack_panel(kernels: Kernels<'_>, kc: [usize; 2], mr: usize, ip: usize, panel: &mut [f32]) => pack_panel_impl);

/// Panel `ip` of [`pack_transformed`]: lane `r` of each vector is output channel `ip * mr + r`
/// (zero past the last channel). The arithmetic is `G g G^T` as written, in the same order for
/// every lane, with no fused multiply-adds.
#[inline(always)]
fn pack_panel_impl<S: Simd>(
    s: S,
    kernels: Kernels<'_>,
    [k, c]: [usize; 2],
    mr: usize,
    ip: usize,
    panel: &mut [f32],
) {
    assert!(mr <= S::LANES && mr <= MAX_MR);
    let rows = mr.min(k - ip * mr);
    let stride = point_stride(c, mr);
    let half = s.splat(0.5);
    // g[tap][row]: the panel's kernels of one input channel; rows past `rows` stay zero.
    let mut g = [[0.0f32; MAX_LANES]; 9];
    for ch in 0..c {
        for (r, o) in (ip * mr..ip * mr + rows).enumerate() {
            let kernel = kernels.get(o, ch, k, c);
            for (t, v) in kernel.into_iter().enumerate() {
                g[t][r] = v;
            }
        }
        // G g: 4 rows of 3 columns.
        let mut gg = [[s.splat(0.0); 3]; 4];
        for col in 0..3 {
            let (g0, g1, g2) = (s.load(&g[col]), s.load(&g[3 + col]), s.load(&g[6 + col]));
            gg[0][col] = g0;
            gg[1][col] = s.mul(half, s.add(s.add(g0, g1), g2));
            gg[2][col] = s.mul(half, s.add(s.sub(g0, g1), g2));
            gg[3][col] = g2;
        }
        // (G g) G^T: point `xi = row * 4 + col` of the panel's kernels of channel `ch`, one
        // per lane, at `xi * stride + ch * mr`.
        for (row, r) in gg.iter().enumerate() {
            let (g0, g1, g2) = (r[0], r[1], r[2]);
            let points = [
                g0,
                s.mul(half, s.add(s.add(g0, g1), g2)),
                s.mul(half, s.add(s.sub(g0, g1), g2)),
                g2,
            ];
            for (col, v) in points.into_iter().enumerate() {
                let xi = row * 4 + col;
                s.store_partial(&mut panel[xi * stride + ch * mr..][..mr], v, mr);
            }
        }
    }
}

#[inline(always)]
fn forward_impl<S: Simd>(
    s: S,
    g: &Conv2dGeometry,
    x: &[f32],
    w: Kernels<'_>,
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
    let mut packed = Scratch::take(packed_len(k, c, mr));
    pack_transformed(w, k, c, mr, &mut packed);
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
                            let a = &packed[(ip * 16 + xi) * point_stride(c, mr)..][..mr * c];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::linalg::Mat;
    use crate::ops::conv2d::direct;
    use crate::ops::conv2d::microkernel::{pack_a, packed_a_len};
    use crate::ops::conv2d::params::{Conv2dParams, Padding};
    use crate::testing::for_each_simd;

    /// `U = G g G^T` of one kernel, its 16 points row-major: the definition, one value at a
    /// time.
    fn transform_kernel(g: [f32; 9]) -> [f32; 16] {
        // G g: 4 rows of 3.
        let mut gg = [[0.0f32; 3]; 4];
        for col in 0..3 {
            let (g0, g1, g2) = (g[col], g[3 + col], g[6 + col]);
            gg[0][col] = g0;
            gg[1][col] = 0.5 * (g0 + g1 + g2);
            gg[2][col] = 0.5 * (g0 - g1 + g2);
            gg[3][col] = g2;
        }
        let mut u = [0.0f32; 16];
        for (row, r) in gg.iter().enumerate() {
            let (g0, g1, g2) = (r[0], r[1], r[2]);
            u[row * 4..][..4].copy_from_slice(&[
                g0,
                0.5 * (g0 + g1 + g2),
                0.5 * (g0 - g1 + g2),
                g2,
            ]);
        }
        u
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// [`pack_transformed`] with instruction set `s`, panel by panel.
    fn packed_with<S: Simd>(s: S, kernels: Kernels<'_>, k: usize, c: usize, mr: usize) -> Vec<f32> {
        let mut packed = vec![f32::NAN; packed_len(k, c, mr)];
        for (ip, panel) in packed
            .chunks_exact_mut(16 * point_stride(c, mr))
            .enumerate()
        {
            s.vectorize(|| pack_panel_impl(s, kernels, [k, c], mr, ip, panel));
        }
        packed
    }

    /// The packed panels hold `G g G^T` of each kernel, to the bit, where `pack_a` puts row
    /// `o`, column `ch` of point `ξ`'s matrix, zeros past the last channel, on every
    /// instruction set; the transposed kernels are those of `direct::transposed_weights`.
    #[test]
    fn packed_panels_hold_each_transformed_kernel_where_pack_a_puts_it() {
        for (k, c, mr) in [(5, 3, 8), (16, 9, 8), (13, 4, 6), (1, 2, 1)] {
            let w: Vec<f32> = (0..k * c * 9)
                .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
                .collect();
            let a_len = packed_a_len(k, c, mr);
            // The skew between points is never written: NaN, as in the results.
            let mut want = vec![f32::NAN; packed_len(k, c, mr)];
            for xi in 0..16 {
                let u: Vec<f32> = (0..k * c)
                    .map(|kc| transform_kernel(w[kc * 9..][..9].try_into().unwrap())[xi])
                    .collect();
                let mut point = vec![0.0; a_len];
                pack_a(Mat::row_major(&u, k, c), mr, &mut point);
                for ip in 0..k.div_ceil(mr) {
                    want[(ip * 16 + xi) * point_stride(c, mr)..][..mr * c]
                        .copy_from_slice(&point[ip * mr * c..][..mr * c]);
                }
            }

            // The transposed problem of a layer with `c` outputs and `k` inputs has `k`
            // outputs and `c` inputs: its kernels come from that layer's weights `w`.
            let layer = Conv2dParams::builder()
                .with_padding(Padding::symmetric([1, 1]))
                .build()
                .unwrap()
                .geometry([1, k, 5, 5], [c, k, 3, 3])
                .unwrap();
            let mut wt = vec![0.0; w.len()];
            direct::transposed_weights(&layer, &w, &mut wt);

            for_each_simd!(|name, s| {
                let got = packed_with(s, Kernels::Forward(&w), k, c, mr);
                assert_eq!(bits(&got), bits(&want), "{name}: k {k} c {c} mr {mr}");
                let from_copy = packed_with(s, Kernels::Forward(&wt), k, c, mr);
                let transposed = packed_with(s, Kernels::Transposed(&w), k, c, mr);
                assert_eq!(
                    bits(&transposed),
                    bits(&from_copy),
                    "{name}: transposed k {k} c {c}"
                );
            });
            let mut packed = vec![f32::NAN; packed_len(k, c, mr)];
            pack_transformed(Kernels::Forward(&w), k, c, mr, &mut packed);
            assert_eq!(
                bits(&packed),
                bits(&want),
                "dispatched: k {k} c {c} mr {mr}"
            );
        }
    }
}
