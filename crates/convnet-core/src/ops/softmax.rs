//! Softmax along any axis (`F.softmax(x, dim)`, ONNX `Softmax` of opset 13), forward and
//! backward. (`loss::softmax` is the rows-of-logits case that the loss functions share.)
//!
//! The tensor is seen as `[outer, len, inner]` around the axis: each of the `outer` blocks
//! is `len` rows of `inner` values, and the softmax runs down the columns, vectorised across
//! them. Sums are taken in f64; blocks run in parallel.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::elementwise::CHUNK;
use crate::tensor::Tensor;

const OP: &str = "softmax";

/// `(outer, len, inner)` of `dims` around `axis`, or an error naming the axis.
fn split(dims: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= dims.len() {
        return Err(Error::param(
            OP,
            "dim",
            format!(
                "dim {axis} is not an axis of a tensor of shape {dims:?} ({} axes)",
                dims.len()
            ),
        ));
    }
    Ok((
        dims[..axis].iter().product(),
        dims[axis],
        dims[axis + 1..].iter().product(),
    ))
}

/// `f(block of out, block of a, block of b)` for each block of `len * inner` values, in
/// parallel when the tensor is large.
fn blocks(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    size: usize,
    f: impl Fn(&mut [f32], &[f32], &[f32]) + Send + Sync,
) {
    if size == 0 {
        return;
    }
    if out.len() <= CHUNK {
        (out.chunks_mut(size).zip(a.chunks(size)).zip(b.chunks(size)))
            .for_each(|((o, a), b)| f(o, a, b));
    } else {
        (out.par_chunks_mut(size)
            .zip(a.par_chunks(size))
            .zip(b.par_chunks(size)))
        .for_each(|((o, a), b)| f(o, a, b));
    }
}

/// Softmax of `input` along `axis` (0 is the outermost): `exp(x - max) / sum exp(x - max)`.
///
/// ```
/// use convnet_core::{Tensor, softmax_axis};
/// let x = Tensor::new([1, 2, 1, 1], vec![0.0, 0.0])?;
/// assert_eq!(softmax_axis(&x, 1)?.data(), &[0.5, 0.5]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn softmax_axis(input: &Tensor, axis: usize) -> Result<Tensor> {
    let (_, len, inner) = split(input.dims(), axis)?;
    let mut y = vec![0.0; input.numel()];
    let x = input.data();
    blocks(&mut y, x, x, len * inner, |y, x, _| {
        let mut max = vec![f32::NEG_INFINITY; inner];
        for row in x.chunks_exact(inner) {
            max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
        }
        let mut sum = vec![0f64; inner];
        for (y, x) in y.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
            for (((y, &v), s), &m) in y.iter_mut().zip(x).zip(&mut sum).zip(&max) {
                let e = (v - m).exp();
                *y = e;
                *s += f64::from(e);
            }
        }
        for y in y.chunks_exact_mut(inner) {
            y.iter_mut()
                .zip(&sum)
                .for_each(|(y, &s)| *y = (f64::from(*y) / s) as f32);
        }
    });
    Ok(Tensor::from_parts(input.dims().to_vec(), y))
}

/// `grad_input` of [`softmax_axis`] from its `output`: `y * (g - sum(g * y))` along `axis`.
pub fn softmax_axis_backward(grad_output: &Tensor, output: &Tensor, axis: usize) -> Result<Tensor> {
    if grad_output.dims() != output.dims() {
        return Err(Error::shape(
            OP,
            format!(
                "a gradient of shape {} for an output of shape {}",
                grad_output.shape(),
                output.shape()
            ),
        ));
    }
    let (_, len, inner) = split(output.dims(), axis)?;
    let mut gx = vec![0.0; output.numel()];
    blocks(
        &mut gx,
        grad_output.data(),
        output.data(),
        len * inner,
        |gx, g, y| {
            let mut dot = vec![0f64; inner];
            for (g, y) in g.chunks_exact(inner).zip(y.chunks_exact(inner)) {
                for ((d, &g), &y) in dot.iter_mut().zip(g).zip(y) {
                    *d += f64::from(g) * f64::from(y);
                }
            }
            let rows = gx.chunks_exact_mut(inner).zip(g.chunks_exact(inner));
            for ((gx, g), y) in rows.zip(y.chunks_exact(inner)) {
                for (((gx, &g), &y), &d) in gx.iter_mut().zip(g).zip(y).zip(&dot) {
                    *gx = (f64::from(y) * (f64::from(g) - d)) as f32;
                }
            }
        },
    );
    Ok(Tensor::from_parts(output.dims().to_vec(), gx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_along_an_inner_axis_sums_to_one_down_each_column() {
        let x = Tensor::from_fn([2, 3, 4, 5], |i| ((i * 17) % 11) as f32 - 5.0).unwrap();
        for axis in 0..4 {
            let y = softmax_axis(&x, axis).unwrap();
            let (outer, len, inner) = split(x.dims(), axis).unwrap();
            for o in 0..outer {
                for i in 0..inner {
                    let s: f32 = (0..len).map(|j| y.data()[(o * len + j) * inner + i]).sum();
                    assert!((s - 1.0).abs() < 1e-6, "axis {axis}: {s}");
                }
            }
        }
    }

    #[test]
    fn the_gradient_of_a_constant_objective_is_zero_and_bad_axes_are_named() {
        let x = Tensor::from_fn([3, 4], |i| i as f32 * 0.3).unwrap();
        let y = softmax_axis(&x, 1).unwrap();
        let g = softmax_axis_backward(&Tensor::full([3, 4], 2.0).unwrap(), &y, 1).unwrap();
        assert!(g.data().iter().all(|v| v.abs() < 1e-6), "{:?}", g.data());
        let err = softmax_axis(&x, 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "softmax: invalid dim: dim 2 is not an axis of a tensor of shape [3, 4] (2 axes)"
        );
    }
}
