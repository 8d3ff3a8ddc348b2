//! Piecewise activations: `clip` (`torch.clamp`, ReLU6) and `hardsigmoid`
//! (`torch.nn.Hardsigmoid`, ONNX `HardSigmoid`), with their settings; `hardswish`'s settings
//! live in hardswish.rs.
//!
//! All three are one [`Piecewise`] module: the function and its gradient are chosen by a
//! [`PiecewiseFn`], so the kinds share their forward and backward passes.

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output};
use super::{ForwardCtx, Layer, Module, recorded, same_shape, single};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// A number that may be infinite but not NaN (a clip bound: `-inf` and `inf` mean none).
mod bound {
    use serde::{Deserializer, Serializer};

    use crate::layers::values::one_of;

    pub(crate) fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(*v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        one_of(d, "a number (inf and -inf allowed)", |v| {
            let x = match v {
                toml::Value::Float(x) => *x as f32,
                toml::Value::Integer(n) => *n as f32,
                _ => return None,
            };
            (!x.is_nan()).then_some(x)
        })
    }
}

fn minus_infinity() -> f32 {
    f32::NEG_INFINITY
}

fn infinity() -> f32 {
    f32::INFINITY
}

/// Settings of a `clip` layer: the `clip` table of a model file (`min` -inf, `max` inf).
/// ReLU6 is `ClipConfig::new(0.0, 6.0)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipConfig {
    #[serde(with = "bound", default = "minus_infinity")]
    pub min: f32,
    #[serde(with = "bound", default = "infinity")]
    pub max: f32,
}

impl ClipConfig {
    /// Values clamped to `[min, max]`.
    pub fn new(min: f32, max: f32) -> Self {
        ClipConfig { min, max }
    }
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self::new(minus_infinity(), infinity())
    }
}

impl Kind for ClipConfig {
    const NAMES: &'static [&'static str] = &["clip"];

    fn check(&self) -> Result<()> {
        if self.min.is_nan() || self.max.is_nan() || self.min > self.max {
            return Err(Error::config(
                "min",
                format!(
                    "clip needs min <= max, got min = {} and max = {}",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Piecewise::new(PiecewiseFn::Clip {
            min: self.min,
            max: self.max,
        })))
    }
}

fn one_sixth() -> f32 {
    1.0 / 6.0
}

fn one_half() -> f32 {
    0.5
}

/// Settings of a `hardsigmoid` layer: the `hardsigmoid` table of a model file (`alpha` 1/6,
/// `beta` 0.5: PyTorch's; ONNX's default alpha is 0.2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardSigmoidConfig {
    #[serde(with = "super::values::finite", default = "one_sixth")]
    pub alpha: f32,
    #[serde(with = "super::values::finite", default = "one_half")]
    pub beta: f32,
}

impl HardSigmoidConfig {
    /// `max(0, min(1, alpha * x + beta))`.
    pub fn new(alpha: f32, beta: f32) -> Self {
        HardSigmoidConfig { alpha, beta }
    }
}

impl Default for HardSigmoidConfig {
    fn default() -> Self {
        Self::new(one_sixth(), one_half())
    }
}

impl Kind for HardSigmoidConfig {
    const NAMES: &'static [&'static str] = &["hardsigmoid"];

    fn check(&self) -> Result<()> {
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !v.is_finite() {
                return Err(Error::config(name, format!("must be finite, got {v}")));
            }
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Piecewise::new(PiecewiseFn::HardSigmoid {
            alpha: self.alpha,
            beta: self.beta,
        })))
    }
}

/// The function a [`Piecewise`] module computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PiecewiseFn {
    /// `min(max(x, min), max)`; the gradient passes where `min < x < max` (as
    /// `torch.clamp`'s and `relu6`'s: 0 on the bounds).
    Clip { min: f32, max: f32 },
    /// `max(0, min(1, alpha * x + beta))`; the gradient is `alpha` where
    /// `0 < alpha * x + beta < 1` (as `torch.nn.Hardsigmoid`'s, 0 at the kinks).
    HardSigmoid { alpha: f32, beta: f32 },
    /// `x * relu6(x + 3) / 6`, bit for bit as `torch.nn.Hardswish` (see hardswish.rs).
    HardSwish,
}

impl PiecewiseFn {
    /// `v = f(v)` over `data`, the match taken once: one loop per function, so each is
    /// vectorised, in chunks across threads (an activation map at batch 32 is tens of
    /// megabytes).
    fn apply(self, data: &mut [f32]) {
        match self {
            // Not f32::clamp, which panics on NaN bounds and orders differently on NaN.
            PiecewiseFn::Clip { min, max } => map_in_place(data, |x| x.max(min).min(max)),
            PiecewiseFn::HardSigmoid { alpha, beta } => {
                map_in_place(data, |x| (alpha * x + beta).clamp(0.0, 1.0))
            }
            PiecewiseFn::HardSwish => map_in_place(data, super::hardswish::hardswish),
        }
    }

    fn grad(self, g: f32, x: f32) -> f32 {
        match self {
            PiecewiseFn::Clip { min, max } => {
                if min < x && x < max {
                    g
                } else {
                    0.0
                }
            }
            PiecewiseFn::HardSigmoid { alpha, beta } => {
                let z = alpha * x + beta;
                if 0.0 < z && z < 1.0 { g * alpha } else { 0.0 }
            }
            PiecewiseFn::HardSwish => super::hardswish::hardswish_grad(g, x),
        }
    }
}

/// Values per task of [`map_in_place`]: large enough that a task's loop outweighs its
/// scheduling, small enough to split a 112x112 map of one image among threads.
const CHUNK: usize = 1 << 16;

/// `v = f(v)` for every value, chunks of [`CHUNK`] in parallel (one thread for small data).
fn map_in_place(data: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    use rayon::prelude::*;
    let run = |chunk: &mut [f32]| chunk.iter_mut().for_each(|v| *v = f(*v));
    if data.len() <= CHUNK {
        run(data);
    } else {
        data.par_chunks_mut(CHUNK).for_each(run);
    }
}

/// An element-wise piecewise activation (`clip`, `hardsigmoid`, `hardswish`).
///
/// Shapes: any; output as input. Keeps its input for the backward pass.
#[derive(Debug, Clone)]
pub struct Piecewise {
    function: PiecewiseFn,
    input: Option<Tensor>,
}

impl Piecewise {
    pub fn new(function: PiecewiseFn) -> Self {
        Piecewise {
            function,
            input: None,
        }
    }

    pub fn function(&self) -> PiecewiseFn {
        self.function
    }
}

impl Module for Piecewise {
    fn is_activation(&self) -> bool {
        true
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let mut y = x.clone();
        // Kept, the input's storage is copied for the output; else it is reused.
        self.input = ctx.record.then_some(x);
        self.function.apply(y.data_mut());
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
        let f = self.function;
        let mut g = grad_output;
        for (g, &x) in g.data_mut().iter_mut().zip(x.data()) {
            *g = f.grad(*g, x);
        }
        Ok(vec![Some(g)])
    }

    fn clear(&mut self) {
        self.input = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_of_a_large_map_is_computed() {
        // Several parallel chunks and a partial one: each value mapped exactly once.
        let n = 3 * CHUNK + 5;
        let x: Vec<f32> = (0..n).map(|i| (i % 1001) as f32 / 50.0 - 10.0).collect();
        for (f, want) in [
            (
                PiecewiseFn::Clip { min: 0.0, max: 6.0 },
                (|v: f32| v.clamp(0.0, 6.0)) as fn(f32) -> f32,
            ),
            (
                PiecewiseFn::HardSigmoid {
                    alpha: 0.2,
                    beta: 0.5,
                },
                |v| (0.2 * v + 0.5).clamp(0.0, 1.0),
            ),
            (PiecewiseFn::HardSwish, super::super::hardswish::hardswish),
        ] {
            let mut y = x.clone();
            f.apply(&mut y);
            for (i, (&got, &v)) in y.iter().zip(&x).enumerate() {
                assert_eq!(got.to_bits(), want(v).to_bits(), "{f:?} at {i} ({v})");
            }
        }
    }
}
