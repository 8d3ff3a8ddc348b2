//! The input as `N` images of `C` channel planes, and the two loop orders over it: the plane
//! path (one task per channel, [`per_channel`]) and the row path (short planes, [`map_rows`],
//! [`column_sums`]).

use std::mem::MaybeUninit;
use std::ops::Range;

use num_traits::Float;
use rayon::prelude::*;

use super::simd::{BnFloat, GradSums, through_relu, to_f64};
use crate::error::{Error, Result};
use crate::ops::activation;
use crate::tensor::Tensor;

/// Elements per rayon task, at least (small tensors stay on one thread).
const PARALLEL_MIN_WORK: usize = 1 << 15;
/// Planes shorter than this (`[N, C]`, short `[N, C, L]`) take the row path.
const SIMD_MIN_PLANE: usize = 16;

/// The input as `n` images of `c` channel planes of `s` values each.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) s: usize,
}

impl Layout {
    pub(super) fn new(op: &'static str, input: &Tensor) -> Result<Layout> {
        match *input.dims() {
            [n, c] => Ok(Layout { n, c, s: 1 }),
            [n, c, l] => Ok(Layout { n, c, s: l }),
            [n, c, h, w] => Ok(Layout { n, c, s: h * w }),
            _ => Err(Error::shape(
                op,
                format!(
                    "input must be [N, C], [N, C, L] or [N, C, H, W], got shape {} ({}-D)",
                    input.shape(),
                    input.rank()
                ),
            )),
        }
    }

    /// `M`: the values of one channel.
    pub(super) fn per_channel(self) -> usize {
        self.n * self.s
    }

    /// The elements of image `img`, channel `ch`.
    pub(super) fn plane(self, img: usize, ch: usize) -> Range<usize> {
        let start = (img * self.c + ch) * self.s;
        start..start + self.s
    }

    /// Channels per rayon task.
    pub(super) fn channels_per_task(self) -> usize {
        PARALLEL_MIN_WORK.div_ceil(self.per_channel().max(1))
    }

    /// Whether the row path runs this layout (short planes).
    pub(super) fn uses_rows(self) -> bool {
        (1..SIMD_MIN_PLANE).contains(&self.s)
    }

    /// The row `row` of `x`.
    pub(super) fn row<T>(self, x: &[T], row: usize) -> &[T] {
        let len = self.c * self.s;
        &x[row * len..(row + 1) * len]
    }
}

/// Channel `ch`'s scale `γ` (1 without a weight).
pub(super) fn weight_of<T: Float>(w: Option<&[T]>, ch: usize) -> f64 {
    w.map_or(1.0, |w| to_f64(w[ch]))
}

/// Channel `ch`'s shift `β` (0 without a bias).
pub(super) fn bias_of<T: Float>(b: Option<&[T]>, ch: usize) -> T {
    b.map_or(T::zero(), |b| b[ch])
}

/// Fills a new output of `l`'s shape channel by channel, in parallel, without zeroing it
/// first (zeroing a 12.8 MB activation costs as much as a batch-norm pass): `f(channel,
/// planes)` gets every plane of its channel (`planes[img]`, `s` values each) and must write
/// every value of each, which it does through [`BnFloat::plane_affine`] or
/// [`BnFloat::plane_grad_input`]. Returns the output and the channels' results in order.
pub(super) fn per_channel<T: BnFloat, R: Send>(
    l: Layout,
    f: impl Fn(usize, &mut [&mut [MaybeUninit<T>]]) -> R + Sync + Send,
) -> (Vec<T>, Vec<R>) {
    per_channel_planes(l, l.s, f)
}

/// [`per_channel`] with output planes of `out_plane` values each (the output is `N` images of
/// `C` such planes): for a pass that writes a smaller plane per input plane (a pooling fused
/// into it), which `f` must write whole as [`per_channel`]'s does.
pub(super) fn per_channel_planes<T: Send, R: Send>(
    l: Layout,
    out_plane: usize,
    f: impl Fn(usize, &mut [&mut [MaybeUninit<T>]]) -> R + Sync + Send,
) -> (Vec<T>, Vec<R>) {
    let len = l.n * l.c * out_plane;
    let mut out: Vec<T> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let mut by_channel: Vec<Vec<&mut [MaybeUninit<T>]>> =
        (0..l.c).map(|_| Vec::with_capacity(l.n)).collect();
    if out_plane > 0 && l.c > 0 {
        for (p, plane) in spare.chunks_exact_mut(out_plane).enumerate() {
            by_channel[p % l.c].push(plane);
        }
    }
    let results = by_channel
        .into_par_iter()
        .enumerate()
        .with_min_len(l.channels_per_task())
        .map(|(ch, mut planes)| f(ch, &mut planes))
        .collect();
    // SAFETY: the `n * c` planes of `out_plane` values partition `out[..len]`; each went to
    // the task of its channel, which wrote every value of every plane (the kernels' contract;
    // every caller runs one over each plane of `planes`). A panic in a task propagates out of
    // `collect` before this line, leaving `out` empty.
    unsafe { out.set_len(len) };
    (out, results)
}

// Rows: for planes shorter than `SIMD_MIN_PLANE` (`[N, C]`, short `[N, C, L]`), the input is
// `N` rows of `C * s` values, summed column by column and transformed row by row with one
// coefficient per position (a channel's coefficient repeated `s` times).

/// Rows per rayon task on the row path.
pub(super) fn rows_per_task(l: Layout) -> usize {
    PARALLEL_MIN_WORK.div_ceil((l.c * l.s).max(1))
}

/// Each channel's sums of `k` quantities: `add(row, acc)` adds row `row`'s contribution to
/// `acc` (`k` blocks of `C * s` position sums). Blocks of rows run in parallel; their sums
/// are added in order (deterministic). Returns `k` blocks of `C` channel sums.
pub(super) fn column_sums(
    l: Layout,
    k: usize,
    add: impl Fn(usize, &mut [f64]) + Sync + Send,
) -> Vec<f64> {
    let width = k * l.c * l.s;
    let per = rows_per_task(l);
    let partials: Vec<Vec<f64>> = (0..l.n.div_ceil(per))
        .into_par_iter()
        .map(|block| {
            let mut acc = vec![0.0; width];
            for row in block * per..((block + 1) * per).min(l.n) {
                add(row, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for part in partials {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total.chunks_exact(l.s).map(|c| c.iter().sum()).collect()
}

/// One value per channel, repeated for each of the channel's `s` positions in a row.
pub(super) fn per_position<T: Copy>(per_channel: impl Iterator<Item = T>, s: usize) -> Vec<T> {
    per_channel
        .flat_map(|v| std::iter::repeat_n(v, s))
        .collect()
}

/// `out[row] = f(row, out row)` for every row, rows in parallel; `out` has `l`'s shape.
pub(super) fn map_rows<T: BnFloat>(l: Layout, f: impl Fn(usize, &mut [T]) + Sync + Send) -> Vec<T> {
    let row_len = l.c * l.s;
    let mut out = vec![T::zero(); l.n * row_len];
    if row_len > 0 {
        let per = rows_per_task(l);
        out.par_chunks_mut(per * row_len)
            .enumerate()
            .for_each(|(block, rows)| {
                for (i, row) in rows.chunks_exact_mut(row_len).enumerate() {
                    f(block * per + i, row);
                }
            });
    }
    out
}

/// The row path's output pass, `y = (x - mean) * a + b` (then ReLU if `relu`), with one
/// `mean`, `a` and `b` per channel (each repeated over the channel's positions in a row).
pub(super) fn affine_rows<T: BnFloat>(
    x: &[T],
    l: Layout,
    mean: impl Iterator<Item = T>,
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    relu: bool,
) -> Vec<T> {
    let (mean, a, b) = (
        per_position(mean, l.s),
        per_position(a, l.s),
        per_position(b, l.s),
    );
    map_rows(l, |row, out| {
        for ((((y, &x), &mu), &a), &b) in
            out.iter_mut().zip(l.row(x, row)).zip(&mean).zip(&a).zip(&b)
        {
            let v = (x - mu) * a + b;
            *y = if relu { activation::relu(v) } else { v };
        }
    })
}

/// `y = (x - mean) * a + b` (then ReLU if `relu`) with one `mean`, `a` and `b` per channel,
/// on whichever loop order `l` takes: the output pass of a batch norm whose coefficients are
/// known (evaluation, or training statistics saved by an earlier pass).
pub(super) fn affine<T: BnFloat>(
    x: &[T],
    l: Layout,
    [mean, a, b]: [&[T]; 3],
    relu: bool,
) -> Vec<T> {
    if l.uses_rows() {
        let (mean, a, b) = (mean.iter().copied(), a.iter().copied(), b.iter().copied());
        return affine_rows(x, l, mean, a, b, relu);
    }
    per_channel(l, |ch, planes| {
        for (i, out) in planes.iter_mut().enumerate() {
            T::plane_affine(&x[l.plane(i, ch)], mean[ch], a[ch], b[ch], relu, out);
        }
    })
    .0
}

/// Each channel's `(Σ g, Σ g (x - mean))` on the row path, `g` through the ReLU whose
/// coefficients per position `relu_pos` holds, if any.
pub(super) fn row_grad_sums<T: BnFloat>(
    gy: &[T],
    x: &[T],
    l: Layout,
    mean_pos: &[T],
    relu_pos: Option<(&[T], &[T])>,
) -> Vec<GradSums> {
    let width = l.c * l.s;
    let sums = column_sums(l, 2, |row, acc| {
        let (sum, dot) = acc.split_at_mut(width);
        for (j, ((((s, d), &g), &x), &mu)) in sum
            .iter_mut()
            .zip(dot)
            .zip(l.row(gy, row))
            .zip(l.row(x, row))
            .zip(mean_pos)
            .enumerate()
        {
            let g = through_relu(g, x, mu, relu_pos.map(|(a, b)| (a[j], b[j])));
            *s += to_f64(g);
            *d += to_f64(g * (x - mu));
        }
    });
    let (sum, dot) = sums.split_at(l.c);
    sum.iter()
        .zip(dot)
        .map(|(&sum, &dot)| GradSums { sum, dot })
        .collect()
}
