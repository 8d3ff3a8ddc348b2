//! Binary element-wise arithmetic with NumPy broadcasting (ONNX `Add`, `Sub`, `Mul`, `Div`;
//! PyTorch's `+ - * /` on tensors), forward and backward.
//!
//! Shapes are aligned at their last axis; an axis of size 1 (or a missing leading axis)
//! stretches to the other operand's size. The output has the broadcast shape
//! ([`broadcast_dims`]); the gradient of an operand is the output gradient's contribution
//! summed over the axes it was stretched along ([`sum_to`]), as autograd does.
//!
//! The loops run over the output in rows: adjacent axes that stretch the same operands are
//! merged first, so `[N, C, H, W] * [1, C, 1, 1]` is `N * C` rows of `H * W` values each
//! times one scalar, and rows are spread over threads when there are many values.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::elementwise::CHUNK;
use crate::tensor::{Tensor, check_elements, fmt_dims};

const OP: &str = "broadcast";

/// An element-wise operation of two operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    /// The name models and errors use (`add`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// The shape two shapes broadcast to (NumPy's rule), or an error naming both.
///
/// ```
/// use convnet_core::ops::broadcast::broadcast_dims;
/// assert_eq!(broadcast_dims(&[2, 3, 4, 5], &[3, 1, 1]).unwrap(), [2, 3, 4, 5]);
/// assert!(broadcast_dims(&[2, 3], &[4]).is_err());
/// ```
pub fn broadcast_dims(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let (pa, pb) = (padded(a, rank), padded(b, rank));
    let dims = (pa.iter().zip(&pb))
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Some(x),
            (1, _) => Some(y),
            (_, 1) => Some(x),
            _ => None,
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            Error::shape(
                OP,
                format!(
                    "shapes {} and {} do not broadcast: aligned at the last axis, each axis \
                     must be equal or 1 in one of them",
                    fmt_dims(a),
                    fmt_dims(b)
                ),
            )
        })?;
    check_elements(OP, "output", "the broadcast output", &dims)?;
    Ok(dims)
}

/// `dims` with leading 1s up to `rank` axes.
fn padded(dims: &[usize], rank: usize) -> Vec<usize> {
    let mut p = vec![1; rank - dims.len()];
    p.extend_from_slice(dims);
    p
}

/// The output axes and, per operand, each axis's stride (0 where it is stretched), with
/// adjacent axes that stretch alike merged.
struct Plan {
    dims: Vec<usize>,
    strides: [Vec<usize>; 2],
}

impl Plan {
    fn new(out: &[usize], operands: [&[usize]; 2]) -> Plan {
        let rank = out.len();
        let shapes = operands.map(|d| padded(d, rank));
        // Merge axis k into the previous one when neither operand changes between
        // stretching and not.
        let mut dims: Vec<usize> = Vec::new();
        let mut kinds: Vec<[bool; 2]> = Vec::new();
        for k in 0..rank {
            if out[k] == 1 {
                continue;
            }
            let kind = [0, 1].map(|o| shapes[o][k] == 1);
            match (dims.last_mut(), kinds.last()) {
                (Some(d), Some(last)) if *last == kind => *d *= out[k],
                _ => {
                    dims.push(out[k]);
                    kinds.push(kind);
                }
            }
        }
        if dims.is_empty() {
            dims.push(1);
            kinds.push([false, false]);
        }
        let strides = [0, 1].map(|o| {
            let mut s = vec![0; dims.len()];
            let mut step = 1;
            for k in (0..dims.len()).rev() {
                if !kinds[k][o] {
                    s[k] = step;
                    step *= dims[k];
                }
            }
            s
        });
        Plan { dims, strides }
    }

    fn row_len(&self) -> usize {
        *self.dims.last().expect("at least one axis")
    }

    /// Each operand's offset at the start of output row `row`.
    fn offsets(&self, mut row: usize) -> [usize; 2] {
        let mut at = [0, 0];
        for k in (0..self.dims.len() - 1).rev() {
            let i = row % self.dims[k];
            row /= self.dims[k];
            at[0] += i * self.strides[0][k];
            at[1] += i * self.strides[1][k];
        }
        at
    }

    fn inner_strides(&self) -> [usize; 2] {
        let last = self.dims.len() - 1;
        [self.strides[0][last], self.strides[1][last]]
    }
}

/// One output row: `out[j] = op(a[j * sa], b[j * sb])`.
#[inline(always)]
fn row(op: BinaryOp, out: &mut [f32], a: &[f32], b: &[f32], [sa, sb]: [usize; 2]) {
    match (sa, sb) {
        (1, 1) => (out.iter_mut().zip(a).zip(b)).for_each(|((o, &x), &y)| *o = op.apply(x, y)),
        (1, 0) => (out.iter_mut().zip(a)).for_each(|(o, &x)| *o = op.apply(x, b[0])),
        (0, 1) => (out.iter_mut().zip(b)).for_each(|(o, &y)| *o = op.apply(a[0], y)),
        _ => out.fill(op.apply(a[0], b[0])),
    }
}

/// `op(a, b)` with broadcasting: the output has [`broadcast_dims`] of the two shapes.
///
/// ```
/// use convnet_core::{BinaryOp, Tensor, binary};
/// let x = Tensor::new([2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
/// let scale = Tensor::new([2, 1], vec![10.0, 100.0])?;
/// assert_eq!(binary(&x, &scale, BinaryOp::Mul)?.data(), &[10.0, 20.0, 300.0, 400.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let dims = broadcast_dims(a.dims(), b.dims())?;
    let plan = Plan::new(&dims, [a.dims(), b.dims()]);
    let mut out = vec![0.0; dims.iter().product()];
    let (xa, xb) = (a.data(), b.data());
    let len = plan.row_len();
    let inner = plan.inner_strides();
    let one = |(r, o): (usize, &mut [f32])| {
        let [oa, ob] = plan.offsets(r);
        row(op, o, &xa[oa..], &xb[ob..], inner);
    };
    if out.len() <= CHUNK {
        out.chunks_mut(len).enumerate().for_each(one);
    } else {
        out.par_chunks_mut(len).enumerate().for_each(one);
    }
    Ok(Tensor::from_parts(dims, out))
}

/// `grad` summed down to `dims` over the axes `dims` stretches along (the gradient of an
/// operand of shape `dims` that broadcast to `grad`'s shape). Sums are taken in f64.
pub fn sum_to(grad: &Tensor, dims: &[usize]) -> Result<Tensor> {
    if grad.dims() == dims {
        return Ok(grad.clone());
    }
    let out = broadcast_dims(grad.dims(), dims)?;
    if out != grad.dims() {
        return Err(Error::shape(
            OP,
            format!(
                "a gradient of shape {} cannot be summed to shape {}",
                grad.shape(),
                fmt_dims(dims)
            ),
        ));
    }
    let plan = Plan::new(&out, [dims, dims]);
    let mut acc = vec![0f64; dims.iter().product()];
    let len = plan.row_len();
    let [s, _] = plan.inner_strides();
    for (r, g) in grad.data().chunks(len).enumerate() {
        let [at, _] = plan.offsets(r);
        if s == 0 {
            acc[at] += g.iter().map(|&v| f64::from(v)).sum::<f64>();
        } else {
            for (a, &v) in acc[at..at + len].iter_mut().zip(g) {
                *a += f64::from(v);
            }
        }
    }
    let values = acc.into_iter().map(|v| v as f32).collect();
    Ok(Tensor::from_parts(dims.to_vec(), values))
}

/// The gradients of [`binary`] w.r.t. `a` and `b` (each only if `need` says so), from the
/// gradient w.r.t. its output, as autograd computes them: `d(a / b)/db = -g * (a / b) / b`.
pub fn binary_backward(
    grad_output: &Tensor,
    a: &Tensor,
    b: &Tensor,
    op: BinaryOp,
    need: [bool; 2],
) -> Result<[Option<Tensor>; 2]> {
    let dims = broadcast_dims(a.dims(), b.dims())?;
    if grad_output.dims() != dims {
        return Err(Error::shape(
            op.name(),
            format!(
                "a gradient of shape {} for an output of shape {}",
                grad_output.shape(),
                fmt_dims(&dims)
            ),
        ));
    }
    let g = grad_output;
    let ga = match (need[0], op) {
        (false, _) => None,
        (true, BinaryOp::Add | BinaryOp::Sub) => Some(sum_to(g, a.dims())?),
        (true, BinaryOp::Mul) => Some(sum_to(&binary(g, b, BinaryOp::Mul)?, a.dims())?),
        (true, BinaryOp::Div) => Some(sum_to(&binary(g, b, BinaryOp::Div)?, a.dims())?),
    };
    let gb = match (need[1], op) {
        (false, _) => None,
        (true, BinaryOp::Add) => Some(sum_to(g, b.dims())?),
        (true, BinaryOp::Sub) => Some(negated(sum_to(g, b.dims())?)),
        (true, BinaryOp::Mul) => Some(sum_to(&binary(g, a, BinaryOp::Mul)?, b.dims())?),
        (true, BinaryOp::Div) => {
            let q = binary(&binary(a, b, BinaryOp::Div)?, b, BinaryOp::Div)?;
            Some(negated(sum_to(&binary(g, &q, BinaryOp::Mul)?, b.dims())?))
        }
    };
    Ok([ga, gb])
}

fn negated(mut t: Tensor) -> Tensor {
    t.data_mut().iter_mut().for_each(|v| *v = -*v);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal definition: each output index mapped to each operand's index.
    fn reference(a: &Tensor, b: &Tensor, op: BinaryOp) -> Vec<f32> {
        let dims = broadcast_dims(a.dims(), b.dims()).unwrap();
        let rank = dims.len();
        let (pa, pb) = (padded(a.dims(), rank), padded(b.dims(), rank));
        let index = |shape: &[usize], at: &[usize]| {
            (shape.iter().zip(at)).fold(0, |i, (&d, &k)| i * d + if d == 1 { 0 } else { k })
        };
        (0..dims.iter().product::<usize>())
            .map(|mut flat| {
                let mut at = vec![0; rank];
                for k in (0..rank).rev() {
                    at[k] = flat % dims[k];
                    flat /= dims[k];
                }
                op.apply(a.data()[index(&pa, &at)], b.data()[index(&pb, &at)])
            })
            .collect()
    }

    fn tensor(dims: &[usize], seed: usize) -> Tensor {
        Tensor::from_fn(dims.to_vec(), |i| {
            ((i * 37 + seed * 11) % 23) as f32 * 0.25 + 0.5
        })
        .unwrap()
    }

    #[test]
    fn every_broadcast_pattern_equals_the_literal_definition() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[2, 3, 4, 5], &[2, 3, 4, 5]),
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[2, 3, 4, 5], &[3, 1, 1]),
            (&[2, 3, 4, 5], &[5]),
            (&[2, 3, 4, 5], &[]),
            (&[2, 1, 5], &[1, 4, 1]),
            (&[4, 1], &[2, 1, 3]),
            (&[1, 1], &[1]),
            (&[3, 1, 2, 1], &[1, 4, 1, 6]),
        ];
        for &(da, db) in shapes {
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                let (a, b) = (tensor(da, 1), tensor(db, 2));
                assert_eq!(binary(&a, &b, op).unwrap().data(), reference(&a, &b, op));
                assert_eq!(binary(&b, &a, op).unwrap().data(), reference(&b, &a, op));
            }
        }
    }

    #[test]
    fn large_outputs_run_in_parallel_rows_with_the_same_values() {
        let (a, b) = (tensor(&[3, 8, 40, 41], 1), tensor(&[8, 1, 41], 2));
        let y = binary(&a, &b, BinaryOp::Div).unwrap();
        assert_eq!(y.data(), reference(&a, &b, BinaryOp::Div));
    }

    #[test]
    fn sum_to_adds_over_the_stretched_axes() {
        let g = tensor(&[2, 3, 4], 3);
        let s = sum_to(&g, &[3, 1]).unwrap();
        for c in 0..3 {
            let want: f32 = (0..2)
                .flat_map(|n| (0..4).map(move |w| (n, w)))
                .map(|(n, w)| g.data()[n * 12 + c * 4 + w])
                .sum();
            assert!((s.data()[c] - want).abs() < 1e-5);
        }
        assert_eq!(s.dims(), [3, 1]);
        let err = sum_to(&g, &[5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "broadcast: shapes [2, 3, 4] and [5] do not broadcast: aligned at the last \
             axis, each axis must be equal or 1 in one of them"
        );
    }

    #[test]
    fn incompatible_shapes_are_refused_naming_both() {
        let err = binary(&tensor(&[2, 3], 0), &tensor(&[4], 0), BinaryOp::Add).unwrap_err();
        assert!(
            err.to_string()
                .contains("shapes [2, 3] and [4] do not broadcast")
        );
    }

    #[test]
    fn a_broadcast_beyond_the_tensor_bound_is_refused_before_allocating() {
        let err = broadcast_dims(&[1 << 20, 1], &[1 << 20]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
}
