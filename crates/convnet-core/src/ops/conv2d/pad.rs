//! Padding modes: where a padded coordinate reads from, materialising a padded input, and the
//! adjoint that folds a gradient w.r.t. the padded input back onto the input.
//!
//! The fast paths only know zero padding. For reflect, replicate and circular padding the
//! dispatcher pads the input here first (as `torch.nn.Conv2d` does with `F.pad`), runs the
//! kernels with no padding, and folds the input gradient back with [`fold_padded_grad`].

use num_traits::Float;

use super::params::PaddingMode;

/// Index into an axis of length `n` that padded coordinate `i` reads from (`i` may be negative
/// or `>= n`), or `None` where the border holds zero.
///
/// Assumes the pad amounts were checked against `n` for the mode (reflect: pad < n,
/// circular: pad <= n), which `Conv2dParams::geometry` does.
#[inline]
pub(crate) fn source_index(i: isize, n: usize, mode: PaddingMode) -> Option<usize> {
    let n_i = n as isize;
    if (0..n_i).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PaddingMode::Zeros => None,
        PaddingMode::Reflect => {
            let r = if i < 0 { -i } else { 2 * (n_i - 1) - i };
            Some(r as usize)
        }
        PaddingMode::Replicate => Some(i.clamp(0, n_i - 1) as usize),
        PaddingMode::Circular => Some(i.rem_euclid(n_i) as usize),
    }
}

/// The input `[N, C, H, W]` padded by `pad = [top, bottom, left, right]` under `mode`.
pub(crate) fn pad_input<T: Float>(
    x: &[T],
    dims: [usize; 4],
    pad: [usize; 4],
    mode: PaddingMode,
) -> Vec<T> {
    let [n, c, h, w] = dims;
    let [top, bottom, left, right] = pad;
    let (hp, wp) = (h + top + bottom, w + left + right);
    let mut out = vec![T::zero(); n * c * hp * wp];
    let col_src: Vec<Option<usize>> = (0..wp)
        .map(|j| source_index(j as isize - left as isize, w, mode))
        .collect();
    for (plane, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(hp * wp)) {
        for (i, dst_row) in dst.chunks_exact_mut(wp).enumerate() {
            let Some(si) = source_index(i as isize - top as isize, h, mode) else {
                continue;
            };
            let src_row = &plane[si * w..(si + 1) * w];
            for (d, src) in dst_row.iter_mut().zip(&col_src) {
                if let Some(sj) = *src {
                    *d = src_row[sj];
                }
            }
        }
    }
    out
}

/// Adjoint of [`pad_input`]: every padded position's gradient is added to the input position
/// it was read from. `gp` is `[N, C, H + top + bottom, W + left + right]`.
pub(crate) fn fold_padded_grad<T: Float>(
    gp: &[T],
    dims: [usize; 4],
    pad: [usize; 4],
    mode: PaddingMode,
) -> Vec<T> {
    let [n, c, h, w] = dims;
    let [top, bottom, left, right] = pad;
    let (hp, wp) = (h + top + bottom, w + left + right);
    let mut out = vec![T::zero(); n * c * h * w];
    let col_src: Vec<Option<usize>> = (0..wp)
        .map(|j| source_index(j as isize - left as isize, w, mode))
        .collect();
    for (src, plane) in gp.chunks_exact(hp * wp).zip(out.chunks_exact_mut(h * w)) {
        for (i, src_row) in src.chunks_exact(wp).enumerate() {
            let Some(si) = source_index(i as isize - top as isize, h, mode) else {
                continue;
            };
            let dst_row = &mut plane[si * w..(si + 1) * w];
            for (g, dst) in src_row.iter().zip(&col_src) {
                if let Some(sj) = *dst {
                    dst_row[sj] = dst_row[sj] + *g;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_row(mode: PaddingMode) -> Vec<f64> {
        let x = [1.0, 2.0, 3.0, 4.0];
        pad_input(&x, [1, 1, 1, 4], [0, 0, 3, 3], mode)
    }

    #[test]
    fn modes_match_pytorch_f_pad() {
        // torch.nn.functional.pad(torch.tensor([[[[1., 2., 3., 4.]]]]), (3, 3), mode=...)
        assert_eq!(
            padded_row(PaddingMode::Zeros),
            [0., 0., 0., 1., 2., 3., 4., 0., 0., 0.]
        );
        assert_eq!(
            padded_row(PaddingMode::Reflect),
            [4., 3., 2., 1., 2., 3., 4., 3., 2., 1.]
        );
        assert_eq!(
            padded_row(PaddingMode::Replicate),
            [1., 1., 1., 1., 2., 3., 4., 4., 4., 4.]
        );
        assert_eq!(
            padded_row(PaddingMode::Circular),
            [2., 3., 4., 1., 2., 3., 4., 1., 2., 3.]
        );
    }

    #[test]
    fn fold_is_the_adjoint_of_pad() {
        // <pad(x), y> == <x, fold(y)> for every mode.
        let dims = [2, 1, 3, 4];
        let pad = [2, 1, 3, 2];
        let x: Vec<f64> = (0..24).map(|i| (i as f64 * 0.37).sin()).collect();
        let y: Vec<f64> = (0..2 * 6 * 9).map(|i| (i as f64 * 0.11).cos()).collect();
        for mode in [
            PaddingMode::Zeros,
            PaddingMode::Reflect,
            PaddingMode::Replicate,
            PaddingMode::Circular,
        ] {
            let px = pad_input(&x, dims, pad, mode);
            let fy = fold_padded_grad(&y, dims, pad, mode);
            let lhs: f64 = px.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&fy).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{mode:?}: {lhs} vs {rhs}");
        }
    }
}
