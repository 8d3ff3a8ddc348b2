//! `Tensor`: a contiguous, row-major `f32` array with a shape.
//!
//! The public layout of images is NCHW, as in PyTorch. A tensor never holds a shape whose
//! element count overflows `usize`, and its data length always equals that count.
//!
//! Cloning is cheap: clones share their storage until one of them is written
//! ([`Tensor::data_mut`] copies it first if it is shared), as PyTorch tensors share storage.
//! Layers keep their inputs for the backward pass by cloning them.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The most values one tensor may hold (2^31, 8 GiB of `f32`), and so the most any kernel
/// allocates for one output or workspace. Far above any real layer or batch; a shape beyond
/// it comes from a typo (a padding, a channel count) and is refused before anything is
/// allocated, rather than aborting on an allocation failure.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;

/// `Err(TooLarge)` naming `param` when `dims` would hold more than [`MAX_TENSOR_ELEMENTS`]
/// values (or more than `usize` can count).
pub(crate) fn check_elements(
    op: &'static str,
    param: &'static str,
    what: impl fmt::Display,
    dims: &[usize],
) -> Result<usize> {
    match checked_numel(dims) {
        Some(v) if v <= MAX_TENSOR_ELEMENTS => Ok(v),
        Some(v) => Err(Error::too_large(op, param, what, v)),
        None => Err(Error::overflow(
            op,
            format!("{what}: its element count does not fit in usize"),
        )),
    }
}

/// `a` and `b` have the same shape, or a shape error naming both: "`what_a` has shape [..]
/// but `what_b` has shape [..]".
pub(crate) fn check_same_shape(
    op: &'static str,
    (what_a, a): (&str, &Tensor),
    (what_b, b): (&str, &Tensor),
) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::shape(
            op,
            format!(
                "{what_a} has shape {} but {what_b} has shape {}",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok(())
}

/// The dimensions of a tensor, outermost first.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape, checked so that it holds at most [`MAX_TENSOR_ELEMENTS`] values.
    pub fn new(dims: impl Into<Vec<usize>>) -> Result<Self> {
        let dims = dims.into();
        check_elements(
            "tensor",
            "shape",
            format!("shape {}", fmt_dims(&dims)),
            &dims,
        )?;
        Ok(Shape(dims))
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (the product of the dimensions; 1 for a scalar).
    pub fn numel(&self) -> usize {
        // Cannot overflow: checked in `new`.
        self.0.iter().product()
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_dims(&self.0))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&fmt_dims(&self.0))
    }
}

/// `[2, 3, 4, 4]`, as PyTorch prints sizes.
pub(crate) fn fmt_dims(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

pub(crate) fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// An `f32` tensor, contiguous and row-major, with copy-on-write storage.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Shape,
    data: Arc<Vec<f32>>,
}

impl Tensor {
    /// A tensor of the given shape over `data`, which must hold exactly `numel` values.
    pub fn new(dims: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if shape.numel() != data.len() {
            return Err(Error::shape(
                "tensor",
                format!(
                    "shape {shape} holds {} values but {} were given",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            shape,
            data: Arc::new(data),
        })
    }

    /// A tensor filled with `value`.
    pub fn full(dims: impl Into<Vec<usize>>, value: f32) -> Result<Self> {
        let shape = Shape::new(dims)?;
        let data = vec![value; shape.numel()];
        Ok(Tensor {
            shape,
            data: Arc::new(data),
        })
    }

    /// A tensor of zeros.
    pub fn zeros(dims: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = Shape::new(dims)?;
        let data = crate::cpu::alloc::zeroed(shape.numel());
        Ok(Tensor {
            shape,
            data: Arc::new(data),
        })
    }

    /// A tensor whose value at flat index `i` is `f(i)`.
    pub fn from_fn(dims: impl Into<Vec<usize>>, f: impl FnMut(usize) -> f32) -> Result<Self> {
        let shape = Shape::new(dims)?;
        let data = (0..shape.numel()).map(f).collect();
        Ok(Tensor {
            shape,
            data: Arc::new(data),
        })
    }

    /// A shape and data known to agree (crate-internal constructor for kernel outputs).
    pub(crate) fn from_parts(dims: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(checked_numel(&dims), Some(data.len()));
        Tensor {
            shape: Shape(dims),
            data: Arc::new(data),
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, for writing: copied first if another clone shares them.
    pub fn data_mut(&mut self) -> &mut [f32] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The values (copied only if another clone shares them).
    pub fn into_data(self) -> Vec<f32> {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Whether `self` and `other` share storage (clones not yet written).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }

    /// Whether another tensor shares this one's storage (a clone not yet written), so that
    /// keeping this one alive costs no memory while that one lives.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.data) > 1
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(self, dims: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = Shape::new(dims)?;
        if shape.numel() != self.data.len() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view {} values of shape {} as {shape}",
                    self.data.len(),
                    self.shape
                ),
            ));
        }
        Ok(Tensor {
            shape,
            data: self.data,
        })
    }

    /// The dimensions of a 4-D tensor as `[N, C, H, W]`, or an error naming `op` and `what`
    /// (e.g. "input", "weight").
    pub fn dims4(&self, op: &'static str, what: &str) -> Result<[usize; 4]> {
        match *self.dims() {
            [n, c, h, w] => Ok([n, c, h, w]),
            _ => Err(Error::shape(
                op,
                format!(
                    "{what} must be 4-D (N, C, H, W), got shape {} ({}-D)",
                    self.shape,
                    self.rank()
                ),
            )),
        }
    }

    /// Largest absolute difference to `other` (infinite if the shapes differ or a value is NaN
    /// on one side only).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        if self.shape != other.shape {
            return f32::INFINITY;
        }
        self.data
            .iter()
            .zip(other.data.iter())
            .map(|(a, b)| {
                if a.is_nan() && b.is_nan() {
                    0.0
                } else if a == b {
                    // Equal infinities.
                    0.0
                } else {
                    let d = (a - b).abs();
                    if d.is_nan() { f32::INFINITY } else { d }
                }
            })
            .fold(0.0, f32::max)
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        write!(f, "Tensor(shape={}, data=[", self.shape)?;
        for (i, v) in self.data.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        if self.data.len() > SHOWN {
            write!(f, ", ... {} more", self.data.len() - SHOWN)?;
        }
        f.write_str("])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_data_length() {
        let err = Tensor::new([2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor: shape [2, 3] holds 6 values but 5 were given"
        );
    }

    #[test]
    fn shapes_whose_product_overflows_are_errors() {
        let err = Tensor::zeros([usize::MAX, 2]).unwrap_err();
        assert!(matches!(err, Error::Overflow { .. }), "{err}");
        assert!(err.to_string().contains("[18446744073709551615, 2]"));
    }

    #[test]
    fn shapes_beyond_the_tensor_bound_are_refused_before_allocating() {
        let err = Tensor::full([1 << 40], 0.25).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor: shape too large: shape [1099511627776] would hold 1099511627776 values, \
             more than the 2147483648 one tensor may hold"
        );
        assert!(Shape::new([MAX_TENSOR_ELEMENTS]).is_ok());
        assert!(Shape::new([MAX_TENSOR_ELEMENTS + 1]).is_err());
    }

    #[test]
    fn dims4_names_the_tensor_and_its_rank() {
        let t = Tensor::zeros([3, 4]).unwrap();
        let err = t.dims4("conv2d", "input").unwrap_err();
        assert_eq!(
            err.to_string(),
            "conv2d: input must be 4-D (N, C, H, W), got shape [3, 4] (2-D)"
        );
    }

    #[test]
    fn clones_share_storage_until_written() {
        let a = Tensor::from_fn([4], |i| i as f32).unwrap();
        let mut b = a.clone();
        assert!(a.shares_storage(&b));
        b.data_mut()[0] = 9.0;
        assert!(!a.shares_storage(&b));
        assert_eq!(a.data(), &[0.0, 1.0, 2.0, 3.0]);
        assert_eq!(b.data(), &[9.0, 1.0, 2.0, 3.0]);
        let c = a.clone().reshape([2, 2]).unwrap();
        assert!(c.shares_storage(&a));
    }

    #[test]
    fn reshape_keeps_the_data() {
        let t = Tensor::from_fn([2, 3], |i| i as f32).unwrap();
        let r = t.reshape([3, 2]).unwrap();
        assert_eq!(r.dims(), &[3, 2]);
        assert_eq!(r.data(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(r.reshape([4]).is_err());
    }
}
