//! `hardswish`: `HardSwish`, as `torch.nn.Hardswish`.

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output};
use super::{ForwardCtx, Layer, Module, recorded, same_shape, single};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Settings of a [`HardSwish`] (none): the `hardswish` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardSwishConfig {}

impl Kind for HardSwishConfig {
    const NAMES: &'static [&'static str] = &["hardswish"];

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(HardSwish::default()))
    }
}

/// `x * relu6(x + 3) / 6`, computed in PyTorch's order so that values are equal bit for bit.
fn hardswish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// The gradient for `g` at `x`, as PyTorch's backward takes it: 0 up to -3, `g * (x / 3 +
/// 1/2)` between, `g` from 3 (at each kink, the flat side's slope).
fn hardswish_grad(g: f32, x: f32) -> f32 {
    if x <= -3.0 {
        0.0
    } else if x < 3.0 {
        g * (x / 3.0 + 0.5)
    } else {
        g
    }
}

/// The hard swish activation, as `torch.nn.Hardswish` (MobileNetV3): `x * relu6(x + 3) / 6`.
///
/// Shapes: any; output as input. Keeps its input for the backward pass.
#[derive(Debug, Clone, Default)]
pub struct HardSwish {
    input: Option<Tensor>,
}

impl Module for HardSwish {
    fn is_activation(&self) -> bool {
        true
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let mut y = x.clone();
        // Kept, the input's storage is copied for the output; else it is reused.
        self.input = ctx.record.then_some(x);
        y.data_mut().iter_mut().for_each(|v| *v = hardswish(*v));
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = recorded(&self.input)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        if x.dims() != grad_output.dims() {
            return Err(Error::model(format!(
                "gradient of shape {} for an input of shape {}",
                grad_output.shape(),
                x.shape()
            )));
        }
        let mut g = grad_output;
        for (g, &x) in g.data_mut().iter_mut().zip(x.data()) {
            *g = hardswish_grad(*g, x);
        }
        Ok(vec![Some(g)])
    }

    fn clear(&mut self) {
        self.input = None;
    }
}
