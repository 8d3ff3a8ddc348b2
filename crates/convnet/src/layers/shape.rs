//! Layers without parameters that move values: `flatten`, `dropout`.

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output, Reach, by_type_name};
use super::values;
use super::{ForwardCtx, Layer, Module, recorded, same_shape, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Settings of a [`Flatten`] (none): the `flatten` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

impl Kind for FlattenConfig {
    const NAMES: &'static [&'static str] = &["flatten"];

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let shape = single_shape(inputs)?;
        let features = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let features = features.ok_or_else(|| {
            Error::model(format!(
                "flatten: {shape:?} has more values than usize can count"
            ))
        })?;
        Ok(Output::new(vec![features]).with_reach(Reach::Whole))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(Flatten::new()))
    }
}

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
        let dims = recorded(&self.input_dims)?;
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

fn half() -> f32 {
    0.5
}

/// Settings of a [`Dropout`]: the `dropout` table of a model file (`p` 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutConfig {
    #[serde(with = "values::finite", default = "half")]
    pub p: f32,
}

impl DropoutConfig {
    /// Dropout with probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Self {
        DropoutConfig { p }
    }

    pub fn init(&self) -> Result<Dropout> {
        self.check()?;
        Ok(Dropout {
            p: self.p,
            mask: None,
        })
    }
}

impl Default for DropoutConfig {
    fn default() -> Self {
        Self::new(half())
    }
}

impl Kind for DropoutConfig {
    const NAMES: &'static [&'static str] = &["dropout"];
    const SHORTHAND: &'static str = "dropout[:P]";

    fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.p) {
            return Err(Error::config(
                "p",
                format!("dropout probability must be in [0, 1], got {}", self.p),
            ));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init()?))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["dropout", p] => Some(
                p.parse()
                    .map(Self::new)
                    .map_err(|_| Error::model(format!("'{p}' is not a probability"))),
            ),
            _ => by_type_name(words),
        }
    }
}

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
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
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
                    "gradient of {} values for a mask of {}",
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
