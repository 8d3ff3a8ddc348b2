//! The reference conv2d: the defining formula written literally, one loop per index.
//!
//! `y[n, k, i, j] = b[k] + sum_{c, p, q} x~[n, g*C_g + c, i*s_h + p*d_h - pad_t,
//! j*s_w + q*d_w - pad_l] * w[k, c, p', q']`, where `g` is the group of filter `k`, `x~` reads
//! the padded input (see [`Conv2dGeometry::tap`]) and `(p', q') = (p, q)` for cross-correlation or
//! `(kh-1-p, kw-1-q)` for convolution (the flipped kernel).
//!
//! The gradients are the same sums read the other way: every product `x~ * w` that made an
//! output adds `grad_output * w` to the input position it read (for reflect, replicate and
//! circular padding that may be a position inside the input) and `grad_output * x~` to the
//! weight. Slow on purpose and never dispatched to: it is the oracle every fast path is tested
//! against. Generic over the float type so finite-difference checks can run in `f64`.

use num_traits::Float;

use super::params::Conv2dGeometry;

/// Calls `f(yi, wi, xi)` for every product of the convolution sum: `yi` the flat output
/// index, `wi` the flat weight index, `xi` the flat input index read (`None` where zero
/// padding is read). Each product's positions come from [`Conv2dGeometry::tap`], the one
/// place where the formula's indices are written down.
#[inline]
fn for_each_product(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, Option<usize>)) {
    let [n_batch, c_in, h, w] = g.input_dims();
    let [k_out, cg, kh, kw] = g.weight_dims();
    let [ho, wo] = g.out_hw;
    let kg = g.out_per_group();
    for n in 0..n_batch {
        for k in 0..k_out {
            let group = k / kg;
            for i in 0..ho {
                for j in 0..wo {
                    let out_idx = ((n * k_out + k) * ho + i) * wo + j;
                    for c in 0..cg {
                        let ci = group * cg + c;
                        for p in 0..kh {
                            for q in 0..kw {
                                let tap = g.tap([i, j], [p, q]);
                                let wi = ((k * cg + c) * kh + tap.weight[0]) * kw + tap.weight[1];
                                let xi = tap.input.map(|[r, s]| ((n * c_in + ci) * h + r) * w + s);
                                f(out_idx, wi, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y = conv2d(x, w) + b`; `y` is overwritten.
pub(crate) fn forward<T: Float>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    b: Option<&[T]>,
    y: &mut [T],
) {
    let plane = g.out_hw[0] * g.out_hw[1];
    for (idx, v) in y.iter_mut().enumerate() {
        let k = (idx / plane) % g.out_channels;
        *v = b.map_or(T::zero(), |b| b[k]);
    }
    for_each_product(g, |out, wi, xi| {
        if let Some(xi) = xi {
            y[out] = y[out] + x[xi] * w[wi];
        }
    });
}

/// `grad_input`: `gx` is overwritten.
pub(crate) fn input_grad<T: Float>(g: &Conv2dGeometry, gy: &[T], w: &[T], gx: &mut [T]) {
    gx.fill(T::zero());
    for_each_product(g, |out, wi, xi| {
        if let Some(xi) = xi {
            gx[xi] = gx[xi] + gy[out] * w[wi];
        }
    });
}

/// `grad_weight`: `gw` is overwritten.
pub(crate) fn weight_grad<T: Float>(g: &Conv2dGeometry, gy: &[T], x: &[T], gw: &mut [T]) {
    gw.fill(T::zero());
    for_each_product(g, |out, wi, xi| {
        if let Some(xi) = xi {
            gw[wi] = gw[wi] + gy[out] * x[xi];
        }
    });
}

/// `grad_bias`: the sum of `grad_output` over batch and positions; `gb` is overwritten.
pub(crate) fn bias_grad<T: Float>(g: &Conv2dGeometry, gy: &[T], gb: &mut [T]) {
    gb.fill(T::zero());
    let plane = g.out_hw[0] * g.out_hw[1];
    for (idx, v) in gy.iter().enumerate() {
        let k = (idx / plane) % g.out_channels;
        gb[k] = gb[k] + *v;
    }
}

#[cfg(test)]
mod tests {
    //! Finite-difference checks of the reference gradients, in f64. The fast paths are tied to
    //! the reference by the property tests, so these checks cover them too.

    use super::*;
    use crate::ops::conv2d::{Conv2dParams, ConvMode, Padding, PaddingMode};

    fn values(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + 1.0) * 0.618_033 + seed as f64 * 0.377).sin())
            .collect()
    }

    /// `L = sum(conv2d(x, w) + b) * r)` for a fixed random `r`.
    fn loss(g: &Conv2dGeometry, x: &[f64], w: &[f64], b: &[f64], r: &[f64]) -> f64 {
        let mut y = vec![0.0; r.len()];
        forward(g, x, w, Some(b), &mut y);
        y.iter().zip(r).map(|(a, b)| a * b).sum()
    }

    /// Central differences of `L` w.r.t. every element of `which` (0: input, 1: weight,
    /// 2: bias) against the analytic gradient. `L` is linear in each argument, so the only
    /// error is rounding: `eps * |L| / h`, far below the tolerance.
    fn check(params: Conv2dParams, input: [usize; 4], weight: [usize; 4]) {
        let g = params.geometry(input, weight).unwrap();
        let x = values(input.iter().product(), 1);
        let w = values(weight.iter().product(), 2);
        let b = values(weight[0], 3);
        let r = values(g.output_dims().iter().product(), 4);
        let mut gx = vec![0.0; x.len()];
        let mut gw = vec![0.0; w.len()];
        let mut gb = vec![0.0; b.len()];
        input_grad(&g, &r, &w, &mut gx);
        weight_grad(&g, &r, &x, &mut gw);
        bias_grad(&g, &r, &mut gb);
        const H: f64 = 1e-3;
        const TOL: f64 = 1e-8;
        let mut args = [x, w, b];
        for (which, analytic) in [gx, gw, gb].iter().enumerate() {
            for i in 0..analytic.len() {
                let orig = args[which][i];
                args[which][i] = orig + H;
                let up = loss(&g, &args[0], &args[1], &args[2], &r);
                args[which][i] = orig - H;
                let down = loss(&g, &args[0], &args[1], &args[2], &r);
                args[which][i] = orig;
                let numeric = (up - down) / (2.0 * H);
                assert!(
                    (numeric - analytic[i]).abs() <= TOL * numeric.abs().max(1.0),
                    "{params:?} {input:?} {weight:?}: gradient {which}[{i}]: \
                     numeric {numeric} vs analytic {}",
                    analytic[i]
                );
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences_for_every_option() {
        let explicit = Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 2,
            right: 0,
        };
        let b = || Conv2dParams::builder();
        let cases = [
            (b(), [2, 3, 5, 6], [4, 3, 3, 3]),
            (b().with_stride([2, 3]), [1, 2, 7, 8], [3, 2, 2, 3]),
            (b().with_padding(explicit), [1, 2, 5, 5], [2, 2, 3, 3]),
            (b().with_padding(Padding::Same), [1, 2, 5, 6], [2, 2, 4, 2]),
            (
                b().with_padding(Padding::Same).with_dilation([2, 1]),
                [1, 1, 6, 5],
                [2, 1, 3, 4],
            ),
            (
                b().with_dilation([2, 3]).with_stride([1, 2]),
                [1, 2, 7, 9],
                [2, 2, 2, 3],
            ),
            (b().with_groups(2), [2, 4, 5, 5], [6, 2, 3, 3]),
            (
                b().with_groups(3).with_padding(Padding::symmetric([1, 1])),
                [1, 3, 4, 5],
                [6, 1, 3, 3],
            ),
            (
                b().with_mode(ConvMode::Convolution).with_padding(explicit),
                [1, 2, 5, 4],
                [2, 2, 2, 3],
            ),
            (b().with_stride([3, 3]), [1, 1, 7, 7], [1, 1, 2, 2]),
        ];
        for (params, input, weight) in cases {
            check(params.build().unwrap(), input, weight);
        }
    }

    #[test]
    fn gradients_match_finite_differences_for_every_padding_mode() {
        for mode in [
            PaddingMode::Zeros,
            PaddingMode::Reflect,
            PaddingMode::Replicate,
            PaddingMode::Circular,
        ] {
            let params = Conv2dParams::builder()
                .with_padding(Padding::Explicit {
                    top: 2,
                    bottom: 1,
                    left: 1,
                    right: 3,
                })
                .with_padding_mode(mode)
                .with_stride([1, 2])
                .build()
                .unwrap();
            check(params, [2, 2, 4, 5], [3, 2, 3, 2]);
            let conv = Conv2dParams::builder()
                .with_padding(Padding::Same)
                .with_padding_mode(mode)
                .with_mode(ConvMode::Convolution)
                .build()
                .unwrap();
            check(conv, [1, 2, 5, 4], [2, 2, 3, 4]);
        }
    }
}
