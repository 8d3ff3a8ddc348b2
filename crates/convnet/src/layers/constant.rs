//! `constant`: [`Constant`], a fixed tensor with no input (an ONNX initializer or `Constant`
//! node that an `add`, `mul`, ... takes as an operand).

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use super::kind::{Arity, Kind, Output};
use super::{Buffer, BufferMut, ForwardCtx, Layer, Module};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Settings of a [`Constant`]: the `constant` table of a model file, with `inputs = []`.
/// `shape` is per sample (no batch axis); the values are the weights file's
/// `<name>.value`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantConfig {
    pub shape: Vec<usize>,
}

impl ConstantConfig {
    pub fn new(shape: Vec<usize>) -> Self {
        ConstantConfig { shape }
    }
}

impl Kind for ConstantConfig {
    const NAMES: &'static [&'static str] = &["constant"];

    /// Any count passes here so that [`Kind::output`] can say how to give none.
    fn arity(&self) -> Arity {
        Arity::AtLeast(0)
    }

    fn check(&self) -> Result<()> {
        if self.shape.contains(&0) {
            return Err(Error::config(
                "shape",
                format!(
                    "a constant's sizes must be at least 1, got {:?}",
                    self.shape
                ),
            ));
        }
        Ok(())
    }

    /// The plan bounds this shape (the per-sample output) before anything is allocated.
    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        if !inputs.is_empty() {
            return Err(Error::model(format!(
                "a constant reads no input, but it is given {} (a layer reads the one \
                 before it unless told otherwise): give it inputs = []",
                inputs.len()
            )));
        }
        Ok(Output::new(self.shape.clone()))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        let mut dims = vec![1];
        dims.extend_from_slice(&self.shape);
        Ok(Box::new(Constant {
            value: Tensor::zeros(self.shape.clone())?,
            batched: dims,
        }))
    }
}

/// A fixed tensor, saved with the weights as the buffer `value` (not trained): zeros until
/// weights are loaded.
///
/// Shapes: no input; output `[1, ...shape]`, one sample, which broadcasts over the other
/// operand's batch in `add`, `mul`, ...
#[derive(Debug, Clone)]
pub struct Constant {
    value: Tensor,
    /// `[1, ...shape]`.
    batched: Vec<usize>,
}

impl Constant {
    pub fn value(&self) -> &Tensor {
        &self.value
    }
}

impl Module for Constant {
    fn forward(&mut self, inputs: Vec<Tensor>, _ctx: &ForwardCtx) -> Result<Tensor> {
        if !inputs.is_empty() {
            return Err(Error::model(format!(
                "a constant takes no input, got {}",
                inputs.len()
            )));
        }
        if self.value.dims() != &self.batched[1..] {
            return Err(Error::model(format!(
                "its value has shape {}, not the {:?} of its settings",
                self.value.shape(),
                &self.batched[1..]
            )));
        }
        Ok(self.value.clone().reshape(self.batched.clone())?)
    }

    fn backward(
        &mut self,
        _grad_output: Tensor,
        _need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(Vec::new())
    }

    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        vec![("value", Buffer::Tensor(&self.value))]
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        vec![("value", BufferMut::Tensor(&mut self.value))]
    }
}
