//! The most common max pooling, a 2x2 window with stride 2 and no padding, on `f32` planes:
//! the forward pass vectorised (compiled per instruction set, chosen at run time), with
//! PyTorch's tap order and tie and NaN rule (as [`super::max::window_max`]), and a backward
//! pass that writes every input position once.
//!
//! Forward: the scalar scan picks the winner with a data-dependent choice per tap; on real
//! activations (after a ReLU, half of them zeros, many ties) the compiler's branches there
//! mispredicted so often that a 128x32x28x28 pooling took 3.7 ms in a training step where
//! patterned data of the same shape took 2.1 ms at the same point. Here the choice is a
//! lane mask (the same pooling: 1.2-1.7 ms in the step). Along a row, an output vector's
//! taps are the even and odd columns of two input rows (`deinterleave`); the scan keeps the
//! winning tap as its offset from the window's top-left position (exact in `f32` for planes
//! up to [`MAX_PLANE`]), turned into the plane index afterwards.
//!
//! Backward: when every index lies in its own output's 2x2 block (rows `2i, 2i + 1`,
//! columns `2j, 2j + 1`; the forward above always gives such indices), no two outputs share
//! an input position, so each input gradient is `0 + grad_output` or zero, written in order:
//! no zeroing pass, no separate index check, no scattered adds. Other indices are left to
//! the general scatter (`max_pool_backward`), which the caller runs when this refuses.

use std::mem::MaybeUninit;

use crate::cpu::simd::{MAX_LANES, Simd, multiversion};

/// Planes up to this many positions keep their tap offsets exactly in `f32`.
pub(super) const MAX_PLANE: usize = 1 << 24;

multiversion!(
    pub(super) fn forward_plane(
        x: &[f32],
        width: usize,
        y: &mut [f32],
        indices: Option<&mut [usize]>,
        ow: usize,
    ) => forward_plane_impl
);

multiversion!(
    pub(super) fn backward_from_input_plane(
        gy: &[f32],
        x: &[f32],
        hw: [usize; 2],
        ow: usize,
        gx: &mut [MaybeUninit<f32>],
    ) => backward_from_input_plane_impl
);

multiversion!(
    pub(super) fn backward_plane(
        gy: &[f32],
        indices: &[usize],
        hw: [usize; 2],
        ow: usize,
        gx: &mut [MaybeUninit<f32>],
    ) -> bool => backward_plane_impl
);

/// Max pooling of one plane: `x` rows of `width`, `y` and `indices` rows of `ow` (at least
/// 1), two input rows per output row, `2 * ow <= width`, `x.len() <= MAX_PLANE`. Without
/// `indices` (the backward pass will find the winners again), the maxima only.
///
/// Masked loads and stores (`load_partial`, `store_partial`) are kept to the end of the
/// plane: on memory out of cache they run at half speed or worse on some CPUs (measured on
/// AMD Zen 5), so a vector that runs past its row reads the next row (ignored) or writes
/// the next outputs (rewritten when their turn comes: rows are done in order).
#[inline(always)]
fn forward_plane_impl<S: Simd>(
    s: S,
    x: &[f32],
    width: usize,
    y: &mut [f32],
    mut indices: Option<&mut [usize]>,
    ow: usize,
) {
    let lanes = S::LANES;
    let offsets = tap_offsets(s, width);
    let mut taps = [0.0f32; MAX_LANES];
    for i in 0..y.len() / ow {
        let top = 2 * i * width;
        for j in (0..ow).step_by(lanes) {
            let n = lanes.min(ow - j);
            let (best, tap) = window_max(s, x, width, top + 2 * j, n, &offsets);
            let at = i * ow + j;
            if y.len() - at >= lanes {
                s.store(&mut y[at..], best);
            } else {
                s.store_partial(&mut y[at..], best, n);
            }
            if let Some(indices) = indices.as_deref_mut() {
                s.store(&mut taps, tap);
                let first = top + 2 * j;
                for (k, (idx, &t)) in indices[at..at + n].iter_mut().zip(&taps).enumerate() {
                    *idx = first + 2 * k + t as usize;
                }
            }
        }
    }
}

/// The positions of a window's taps from its top-left one, in scan order.
#[inline(always)]
fn tap_offsets<S: Simd>(s: S, width: usize) -> [S::V; 4] {
    [0.0, 1.0, width as f32, (width + 1) as f32].map(|o| s.splat(o))
}

/// The maxima of `n` (`<= LANES`) consecutive windows whose first starts at `corner`, and
/// the winning tap of each (one of `offsets`): PyTorch's scan, taps in row-major order.
#[inline(always)]
fn window_max<S: Simd>(
    s: S,
    x: &[f32],
    width: usize,
    corner: usize,
    n: usize,
    offsets: &[S::V; 4],
) -> (S::V, S::V) {
    let (a_even, a_odd) = column_pairs(s, &x[corner..], n);
    let (b_even, b_odd) = column_pairs(s, &x[corner + width..], n);
    let (best, tap) = s.take_max(a_even, offsets[0], a_odd, offsets[1]);
    let (best, tap) = s.take_max(best, tap, b_even, offsets[2]);
    s.take_max(best, tap, b_odd, offsets[3])
}

/// The gradient of one plane from the pooling's input rather than its indices (`gy` rows of
/// `ow`, `x` and `gx` `height x width`, `2 * rows(gy) <= height`, `2 * ow <= width`): each
/// window's winner is found again by the forward scan, so it is the position the forward
/// pass's index names, and gets `0 + grad_output`; every other value of `gx` is zero. Every
/// value of `gx` is written. Reading the input (4 values per output) costs less than
/// reading an index per output (8 bytes) that the forward pass also had to write.
#[inline(always)]
fn backward_from_input_plane_impl<S: Simd>(
    s: S,
    gy: &[f32],
    x: &[f32],
    [height, width]: [usize; 2],
    ow: usize,
    gx: &mut [MaybeUninit<f32>],
) {
    let lanes = S::LANES;
    let oh = gy.len() / ow;
    assert!(
        x.len() == height * width
            && gx.len() == x.len()
            && 2 * oh <= height
            && 2 * ow <= width
            && gy.len() == oh * ow,
        "max_pool2d 2x2 backward: plane sizes disagree"
    );
    let offsets = tap_offsets(s, width);
    let zero = s.splat(0.0);
    for i in 0..oh {
        let top = 2 * i * width;
        for j in (0..ow).step_by(lanes) {
            let n = lanes.min(ow - j);
            let (_, tap) = window_max(s, x, width, top + 2 * j, n, &offsets);
            // A whole vector where the plane has one (lanes past the row's `n` are never
            // stored): a masked load of memory out of cache stalls (on AMD Zen 5 this load,
            // masked on every 14-output row, was two thirds of the pass).
            let g_row = &gy[i * ow + j..];
            let g = if g_row.len() >= lanes {
                s.load(g_row)
            } else {
                s.load_partial(g_row, n)
            };
            // `0 + g`, as the scatter into zeros computes it (so -0 becomes +0).
            let g = s.add(zero, g);
            for (row, [left, right]) in [(top, [0, 1]), (top + width, [2, 3])] {
                let (lo, hi) = s.interleave(
                    s.select_eq(tap, offsets[left], g),
                    s.select_eq(tap, offsets[right], g),
                );
                let out = &mut gx[row + 2 * j..row + 2 * (j + n)];
                // SAFETY: `out` holds `2 n` values; each store below writes inside it.
                // (A masked store for a row's last pair: on AMD Zen 4 that measured faster
                // than a full store through a buffer.)
                unsafe {
                    let at = out.as_mut_ptr() as *mut f32;
                    if n == lanes {
                        s.store_ptr(at, lo);
                        s.store_ptr(at.add(lanes), hi);
                    } else if 2 * n > lanes {
                        s.store_ptr(at, lo);
                        s.store_partial_ptr(at.add(lanes), hi, 2 * n - lanes);
                    } else {
                        s.store_partial_ptr(at, lo, 2 * n);
                    }
                }
            }
        }
        // A last column no window covers (odd width).
        for row in [top, top + width] {
            gx[row + 2 * ow..row + width].fill(MaybeUninit::new(0.0));
        }
    }
    // A last row no window covers (odd height).
    gx[2 * oh * width..].fill(MaybeUninit::new(0.0));
}

/// The even and the odd values of `rest[..2 * n]` (`n <= LANES`); past them, whatever
/// follows in `rest`, or zeros.
#[inline(always)]
fn column_pairs<S: Simd>(s: S, rest: &[f32], n: usize) -> (S::V, S::V) {
    let (lanes, m) = (S::LANES, 2 * n);
    if rest.len() >= 2 * lanes {
        return s.deinterleave(s.load(rest), s.load(&rest[lanes..]));
    }
    let lo = s.load_partial(rest, m.min(lanes));
    let hi = if m > lanes {
        s.load_partial(&rest[lanes..], m - lanes)
    } else {
        s.splat(0.0)
    };
    s.deinterleave(lo, hi)
}

/// The gradient of one plane (`gy` and `indices` rows of `ow`, `gx` the `height x width`
/// input plane, `2 * rows(gy) <= height`, `2 * ow <= width`), every value of `gx` written;
/// `false` (with `gx` partly written) if an index lies outside its output's 2x2 block.
/// Plain loops: a version with vector selects and interleaves measured no faster (the pass
/// is bound by memory).
#[inline(always)]
fn backward_plane_impl<S: Simd>(
    _: S,
    gy: &[f32],
    indices: &[usize],
    [height, width]: [usize; 2],
    ow: usize,
    gx: &mut [MaybeUninit<f32>],
) -> bool {
    let oh = gy.len() / ow;
    for (i, (g_row, idx_row)) in gy.chunks(ow).zip(indices.chunks(ow)).enumerate() {
        let top = 2 * i * width;
        let (a, b) = gx[top..top + 2 * width].split_at_mut(width);
        let mut inside = true;
        for (j, ((&g, &at), (a, b))) in g_row
            .iter()
            .zip(idx_row)
            .zip(a.chunks_exact_mut(2).zip(b.chunks_exact_mut(2)))
            .enumerate()
        {
            let d = at.wrapping_sub(top + 2 * j);
            // (Bitwise, not short-circuit, operators: no branches.)
            inside &= (d <= 1) | (d.wrapping_sub(width) <= 1);
            // `0 + g`, as the scatter into zeros computes it (so -0 becomes +0).
            let g = 0.0 + g;
            a[0].write(if d == 0 { g } else { 0.0 });
            a[1].write(if d == 1 { g } else { 0.0 });
            b[0].write(if d == width { g } else { 0.0 });
            b[1].write(if d == width + 1 { g } else { 0.0 });
        }
        if !inside {
            return false;
        }
        // A last column no window covers (odd width).
        for row in [a, b] {
            row[2 * ow..].fill(MaybeUninit::new(0.0));
        }
    }
    // A last row no window covers (odd height).
    gx[2 * oh * width..height * width].fill(MaybeUninit::new(0.0));
    true
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::{backward_from_input_plane_impl, backward_plane_impl, forward_plane_impl};
    use crate::ops::pool::max::{max_pool_2x2, max_pool_backward};
    use crate::testing::{Rng, for_each_simd};

    /// Values with many ties (zeros as after a ReLU, repeats), signed zeros, infinities and
    /// NaNs, so every rule of the scan is exercised.
    fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
        const POOL: [f32; 10] = [
            0.0,
            0.0,
            0.0,
            -0.0,
            1.5,
            1.5,
            -2.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        (0..n)
            .map(|_| match rng.next_u64() % 3 {
                0 => POOL[(rng.next_u64() % POOL.len() as u64) as usize],
                _ => rng.uniform() as f32,
            })
            .collect()
    }

    // (height, width): even and odd sizes, rows shorter and longer than a vector of every
    // instruction set, one window.
    const SHAPES: [(usize, usize); 10] = [
        (2, 2),
        (3, 3),
        (2, 5),
        (5, 14),
        (7, 16),
        (4, 17),
        (14, 28),
        (9, 33),
        (2, 64),
        (6, 70),
    ];

    #[test]
    fn forward_matches_the_scalar_scan_on_every_instruction_set() {
        let mut rng = Rng(7);
        for (h, w) in SHAPES {
            let (oh, ow) = (h / 2, w / 2);
            // Two planes back to back: the first's last vector must not spill into the second.
            let x = activations(&mut rng, 2 * h * w);
            let (mut want_y, mut want_idx) = (vec![0.0; 2 * oh * ow], vec![0; 2 * oh * ow]);
            for p in 0..2 {
                let out = p * oh * ow..(p + 1) * oh * ow;
                max_pool_2x2(
                    &x[p * h * w..(p + 1) * h * w],
                    w,
                    &mut want_y[out.clone()],
                    &mut want_idx[out],
                    ow,
                );
            }
            for_each_simd!(|name, s| {
                let (mut y, mut idx) = (vec![9.0; 2 * oh * ow], vec![usize::MAX; 2 * oh * ow]);
                for p in 0..2 {
                    let out = p * oh * ow..(p + 1) * oh * ow;
                    forward_plane_impl(
                        s,
                        &x[p * h * w..(p + 1) * h * w],
                        w,
                        &mut y[out.clone()],
                        Some(&mut idx[out]),
                        ow,
                    );
                }
                let bits = |v: &[f32]| -> Vec<u32> {
                    v.iter()
                        .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                        .collect()
                };
                assert_eq!(bits(&y), bits(&want_y), "{name} {h}x{w}: values");
                assert_eq!(idx, want_idx, "{name} {h}x{w}: indices");
            });
        }
    }

    /// NaNs compared as equal.
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter()
            .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
            .collect()
    }

    #[test]
    fn the_maxima_alone_and_the_gradient_from_the_input_match_the_indices_on_every_instruction_set()
    {
        let mut rng = Rng(13);
        for (h, w) in SHAPES {
            let (oh, ow) = (h / 2, w / 2);
            let x = activations(&mut rng, h * w);
            let mut gy = activations(&mut rng, oh * ow);
            gy[0] = -0.0; // becomes +0, as 0 + (-0) in the scatter
            let (mut want_y, mut idx) = (vec![0.0; oh * ow], vec![0; oh * ow]);
            max_pool_2x2(&x, w, &mut want_y, &mut idx, ow);
            let mut want_gx = vec![0.0f32; h * w];
            max_pool_backward(h * w, oh * ow, &gy, &idx, &mut want_gx);
            for_each_simd!(|name, s| {
                let mut y = vec![9.0; oh * ow];
                forward_plane_impl(s, &x, w, &mut y, None, ow);
                assert_eq!(bits(&y), bits(&want_y), "{name} {h}x{w}: values");
                let mut gx = vec![MaybeUninit::new(f32::NAN); h * w];
                backward_from_input_plane_impl(s, &gy, &x, [h, w], ow, &mut gx);
                // SAFETY: initialised above (and every value rewritten by the kernel).
                let gx: Vec<f32> = gx.iter().map(|v| unsafe { v.assume_init() }).collect();
                // Exact bits: the NaN gradients are the very values of `gy`.
                let exact = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(exact(&gx), exact(&want_gx), "{name} {h}x{w}: gradient");
            });
        }
    }

    /// The gradient of one plane by [`backward_plane_impl`], or `None` where it refuses.
    fn dense<S: crate::cpu::simd::Simd>(
        s: S,
        gy: &[f32],
        indices: &[usize],
        [h, w]: [usize; 2],
        ow: usize,
    ) -> Option<Vec<f32>> {
        let mut gx = vec![MaybeUninit::new(f32::NAN); h * w];
        backward_plane_impl(s, gy, indices, [h, w], ow, &mut gx)
            // SAFETY: initialised above (and every value rewritten by the kernel).
            .then(|| gx.iter().map(|v| unsafe { v.assume_init() }).collect())
    }

    #[test]
    fn backward_writes_what_the_scatter_adds_and_refuses_indices_outside_their_block() {
        let mut rng = Rng(11);
        for (h, w) in SHAPES {
            let (oh, ow) = (h / 2, w / 2);
            let mut gy = activations(&mut rng, oh * ow);
            gy[0] = -0.0; // becomes +0, as 0 + (-0) in the scatter
            let indices: Vec<usize> = (0..oh * ow)
                .map(|o| {
                    let (i, j) = (o / ow, o % ow);
                    let tap = (rng.next_u64() % 4) as usize;
                    (2 * i + tap / 2) * w + 2 * j + tap % 2
                })
                .collect();
            let mut want = vec![0.0f32; h * w];
            max_pool_backward(h * w, oh * ow, &gy, &indices, &mut want);
            for_each_simd!(|name, s| {
                let got = dense(s, &gy, &indices, [h, w], ow).expect("indices in their blocks");
                let bits = |v: &[f32]| -> Vec<u32> {
                    v.iter()
                        .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                        .collect()
                };
                assert_eq!(bits(&got), bits(&want), "{name} {h}x{w}");
                // Any index outside its own block: the right neighbour's block, the plane.
                let last = indices.len() - 1;
                let right = (ow >= 2).then_some((0, indices[0] + 2));
                for (at, bad) in right.into_iter().chain([(last, h * w), (last, usize::MAX)]) {
                    let mut moved = indices.clone();
                    moved[at] = bad;
                    assert!(
                        dense(s, &gy, &moved, [h, w], ow).is_none(),
                        "{name} {h}x{w}: index {bad} accepted"
                    );
                }
            });
        }
    }
}
