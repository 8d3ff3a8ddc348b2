//! `softmax`: [`Softmax`], as `torch.nn.Softmax(dim)` (ONNX `Softmax`, opset 13).

use convnet_core::{Tensor, softmax_axis, softmax_axis_backward};
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output};
use super::{ForwardCtx, Layer, Module, recorded, same_shape, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

fn channel_axis() -> usize {
    1
}

/// Settings of a [`Softmax`]: the `softmax` table of a model file (`dim` 1: over the classes
/// of `[N, K]` scores, or the channels of `[N, C, H, W]` maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftmaxConfig {
    /// The axis of the batched tensor `[N, ...]` (1 or more).
    #[serde(default = "channel_axis")]
    pub dim: usize,
}

impl SoftmaxConfig {
    pub fn new(dim: usize) -> Self {
        SoftmaxConfig { dim }
    }
}

impl Default for SoftmaxConfig {
    fn default() -> Self {
        Self::new(channel_axis())
    }
}

impl Kind for SoftmaxConfig {
    const NAMES: &'static [&'static str] = &["softmax"];

    fn check(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::config(
                "dim",
                "softmax across the batch axis 0 mixes samples; give dim = 1 or a later axis",
            ));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let shape = single_shape(inputs)?;
        if self.dim > shape.len() {
            return Err(Error::config(
                "dim",
                format!(
                    "softmax along dim {} needs inputs [N, ...] of more than {} axes, got \
                     per-sample shape {shape:?}",
                    self.dim, self.dim
                ),
            ));
        }
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Softmax {
            dim: self.dim,
            output: None,
        }))
    }
}

/// Softmax along one axis: each slice along `dim` becomes probabilities.
///
/// Shapes: any `[N, ...]`; output as input. Keeps its output for the backward pass.
#[derive(Debug, Clone)]
pub struct Softmax {
    dim: usize,
    output: Option<Tensor>,
}

impl Softmax {
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl Module for Softmax {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let y = softmax_axis(&single(inputs)?, self.dim)?;
        self.output = ctx.record.then(|| y.clone());
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let y = recorded(&self.output)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(softmax_axis_backward(
            &grad_output,
            y,
            self.dim,
        )?)])
    }

    fn clear(&mut self) {
        self.output = None;
    }
}
