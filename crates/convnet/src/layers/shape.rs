//! Layers without parameters that move or mix values: flatten, dropout, residual add.

use convnet_core::{Tensor, add_in_place};

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
        let shape = single_shape(inputs)?;
        let features = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let features = features.ok_or_else(|| {
            Error::model(format!(
                "flatten: {shape:?} has more values than usize can count"
            ))
        })?;
        Ok(vec![features])
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let n = x.dims().first().copied().unwrap_or(1);
        let features = x.numel() / n.max(1);
        self.input_dims = ctx.record.then(|| x.dims().to_vec());
        Ok(x.reshape([n, features])?)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let dims = recorded(&self.input_dims, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(grad_output.reshape(dims.clone())?)])
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
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let mut x = single(inputs)?;
        if !ctx.training || self.p == 0.0 {
            self.mask = None;
            return Ok(x);
        }
        let mut rng = Rng::stream(ctx.seed, &[DROPOUT, ctx.step, ctx.node]);
        let keep = if self.p >= 1.0 {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        };
        let mask: Vec<f32> = (0..x.numel())
            .map(|_| if rng.uniform() < self.p { 0.0 } else { keep })
            .collect();
        for (v, m) in x.data_mut().iter_mut().zip(&mask) {
            *v *= m;
        }
        self.mask = ctx.record.then_some(mask);
        Ok(x)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        if !need_input_grad {
            return Ok(vec![None]);
        }
        let mut g = grad_output;
        // No recorded mask: the forward pass was the identity.
        if let Some(mask) = &self.mask {
            if mask.len() != g.numel() {
                return Err(Error::model(format!(
                    "dropout: gradient of {} values for a mask of {}",
                    g.numel(),
                    mask.len()
                )));
            }
            for (v, m) in g.data_mut().iter_mut().zip(mask) {
                *v *= m;
            }
        }
        Ok(vec![Some(g)])
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
    fn forward(&mut self, inputs: Vec<Tensor>, _ctx: &ForwardCtx) -> Result<Tensor> {
        let count = inputs.len();
        let Ok([mut a, b]) = <[Tensor; 2]>::try_from(inputs) else {
            return Err(Error::model(format!("add takes two inputs, got {count}")));
        };
        add_in_place(&mut a, &b)?;
        Ok(a)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        // Both inputs get the gradient; the two share storage until one is written.
        let g = need_input_grad.then_some(grad_output);
        Ok(vec![g.clone(), g])
    }
}
