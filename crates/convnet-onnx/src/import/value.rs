//! What an ONNX value becomes during the conversion: the output of a convnet layer (or the
//! model input), or a constant known at import time (an initializer, a `Constant` node, or
//! something folded from them, such as the shape of a layer's output).

use crate::tensor::{Tensor, TensorData};

/// A value of the graph, as the converter knows it.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// Computed by the model at run time.
    Flow(Flow),
    /// Known now.
    Const(Const),
}

/// A value the model computes: which layer (or input) outputs it, and its per-sample shape
/// (the batch axis left out, as convnet's shapes are).
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    /// A layer name, or [`convnet::spec::INPUT`].
    pub(crate) source: String,
    pub(crate) shape: Vec<usize>,
}

/// A constant tensor, row-major: floating-point values as `f32`, integers as `i64`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Const {
    pub(crate) dims: Vec<usize>,
    pub(crate) data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Const {
    pub(crate) fn ints(dims: Vec<usize>, values: Vec<i64>) -> Const {
        Const {
            dims,
            data: Data::Int(values),
        }
    }

    pub(crate) fn floats(dims: Vec<usize>, values: Vec<f32>) -> Const {
        Const {
            dims,
            data: Data::Float(values),
        }
    }

    /// An ONNX tensor's values, its data moved out of it.
    pub(crate) fn from_tensor(tensor: Tensor) -> Const {
        let dims = tensor.dims.clone();
        match tensor.data {
            TensorData::Float(v) => Const::floats(dims, v),
            _ => match tensor.to_i64() {
                Some(ints) => Const::ints(dims, ints),
                None => Const::floats(dims, tensor.to_f32()),
            },
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.data {
            Data::Float(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    /// The values as `f32` (integers converted).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::Float(v) => v.clone(),
            Data::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as `f32`, moved out when they already are.
    pub(crate) fn into_f32(self) -> Vec<f32> {
        match self.data {
            Data::Float(v) => v,
            Data::Int(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as `i64`, or `None` for floating-point values.
    pub(crate) fn as_ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::Int(v) => Some(v),
            Data::Float(_) => None,
        }
    }

    /// The dims with leading ones removed: the shape that matters for broadcasting.
    pub(crate) fn core_dims(&self) -> &[usize] {
        let first = self
            .dims
            .iter()
            .position(|&d| d != 1)
            .unwrap_or(self.dims.len());
        &self.dims[first..]
    }

    /// Whether the values, broadcast against a per-sample shape `shape` (ONNX's
    /// numpy-style rule, batch axis in front), give one value per channel (axis 0 of the
    /// sample): dims `[C]` for a `[C]` sample, `[C, 1, 1]` (or `[1, C, 1, 1]`) for `[C, H, W]`.
    pub(crate) fn is_per_channel(&self, shape: &[usize]) -> bool {
        let core = self.core_dims();
        !shape.is_empty()
            && core.len() == shape.len()
            && core[0] == shape[0]
            && core[1..].iter().all(|&d| d == 1)
    }
}
