//! Layers without parameters that move or mix values: flatten, dropout, residual add.

use convnet_core::Tensor;

use super::{ForwardCtx, Module, recorded, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Flattens each sample to a vector, as `torch.nn.Flatten()` (start_dim 1).
/// Shapes: `[N, d1, d2, ...]` -> `[N, d1 * d2 * ...]`.
#[derive(Debug, Clone, Default)]
pub struct Flatten {
    input_dims: Option<Vec<usize>>,
}

impl Flatten {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Module for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(vec![single_shape(inputs)?.iter().product()])
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let n = x.dims().first().copied().unwrap_or(1);
        let features = x.numel() / n.max(1);
        self.input_dims = ctx.record.then(|| x.dims().to_vec());
        Ok(x.clone().reshape([n, features])?)
    }
    fn backward(
        &mut self,
        grad_output: &Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let dims = recorded(&self.input_dims, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(grad_output.clone().reshape(dims.clone())?)])
    }
    fn clear(&mut self) {
        self.input_dims = None;
    }
}

/// Stream tag of dropout masks: `Rng::stream(seed, [DROPOUT, step, layer index])`.
const DROPOUT: u64 = 0x6472_6f70; // "drop"

/// Dropout, as `torch.nn.Dropout(p)`: in training each element is zeroed with probability
/// `p` and the others are scaled by `1 / (1 - p)`; in evaluation it passes values through.
/// Shapes: any; output as input.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f32,
    /// The scale applied to each element (0 or 1 / (1 - p)) in the recorded forward pass.
    mask: Option<Vec<f32>>,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::config(
                "p",
                format!("dropout probability must be in [0, 1], got {p}"),
            ));
        }
        Ok(Dropout { p, mask: None })
    }
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(single_shape(inputs)?.to_vec())
    }
    fn forward(&mut self, inputs: &[&Tensor], ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        if !ctx.training || self.p == 0.0 {
            self.mask = None;
            return Ok(x.clone());
        }
        let mut rng = Rng::stream(ctx.seed, &[DROPOUT, ctx.step, ctx.node]);
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..x.numel())
            .map(|_| if rng.uniform() < self.p { 0.0 } else { keep })
            .map(|m| if self.p >= 1.0 { 0.0 } else { m })
            .collect();
        let y = Tensor::from_fn(x.dims().to_vec(), |i| x.data()[i] * mask[i])?;
        self.mask = ctx.record.then_some(mask);
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: &Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        if !need_input_grad {
            return Ok(vec![None]);
        }
        // No recorded mask: the forward pass was the identity.
        Ok(vec![Some(match &self.mask {
            Some(mask) => Tensor::from_fn(grad_output.dims().to_vec(), |i| {
                grad_output.data()[i] * mask[i]
            })?,
            None => grad_output.clone(),
        })])
    }
    fn clear(&mut self) {
        self.mask = None;
    }
}

/// The sum of two inputs of the same shape: the join of a residual block.
#[derive(Debug, Clone, Default)]
pub struct Add;

impl Module for Add {
    fn kind(&self) -> &'static str {
        "add"
    }
    fn arity(&self) -> usize {
        2
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        match inputs {
            [a, b] if a == b => Ok(a.to_vec()),
            [a, b] => Err(Error::model(format!(
                "add needs two inputs of the same shape, got {a:?} and {b:?}"
            ))),
            _ => Err(Error::model(format!(
                "add takes two inputs, got {}",
                inputs.len()
            ))),
        }
    }
    fn forward(&mut self, inputs: &[&Tensor], _ctx: &ForwardCtx) -> Result<Tensor> {
        let [a, b] = inputs else {
            return Err(Error::model(format!(
                "add takes two inputs, got {}",
                inputs.len()
            )));
        };
        if a.dims() != b.dims() {
            return Err(Error::model(format!(
                "add needs two inputs of the same shape, got {} and {}",
                a.shape(),
                b.shape()
            )));
        }
        Ok(Tensor::from_fn(a.dims().to_vec(), |i| {
            a.data()[i] + b.data()[i]
        })?)
    }
    fn backward(
        &mut self,
        grad_output: &Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let g = need_input_grad.then(|| grad_output.clone());
        Ok(vec![g.clone(), g])
    }
}
