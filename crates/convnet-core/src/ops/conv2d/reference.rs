//! The reference conv2d: the defining formula written literally, one loop per index.
//!
//! `y[n, k, i, j] = b[k] + sum_{c, p, q} x~[n, g*C_g + c, i*s_h + p*d_h - pad_t,
//! j*s_w + q*d_w - pad_l] * w[k, c, p', q']`, where `g` is the group of filter `k`, `x~` reads
//! the padded input (see [`source_index`]) and `(p', q') = (p, q)` for cross-correlation or
//! `(kh-1-p, kw-1-q)` for convolution (the flipped kernel).
//!
//! The gradients are the same sums read the other way: every product `x~ * w` that made an
//! output adds `grad_output * w` to the input position it read (for reflect, replicate and
//! circular padding that may be a position inside the input) and `grad_output * x~` to the
//! weight. Slow on purpose and never dispatched to: it is the oracle every fast path is tested
//! against. Generic over the float type so finite-difference checks can run in `f64`.

use num_traits::Float;

use super::pad::source_index;
use super::params::{Conv2dGeometry, ConvMode};

/// Calls `f(yi, wi, xi)` for every product of the convolution sum: `yi` the flat output
/// index, `wi` the flat weight index, `xi` the flat input index read (`None` where zero
/// padding is read). The single place where the formula's indices are written down.
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
                                let (pw, qw) = match g.mode {
                                    ConvMode::CrossCorrelation => (p, q),
                                    ConvMode::Convolution => (kh - 1 - p, kw - 1 - q),
                                };
                                let wi = ((k * cg + c) * kh + pw) * kw + qw;
                                let row = (i * g.stride[0] + p * g.dilation[0]) as isize
                                    - g.pad[0] as isize;
                                let col = (j * g.stride[1] + q * g.dilation[1]) as isize
                                    - g.pad[2] as isize;
                                let xi = source_index(row, h, g.padding_mode).and_then(|r| {
                                    source_index(col, w, g.padding_mode)
                                        .map(|s| ((n * c_in + ci) * h + r) * w + s)
                                });
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
