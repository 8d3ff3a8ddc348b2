//! `linear`: `Linear`, as `torch.nn.Linear` (and `torch.nn.LazyLinear`).

use convnet_core::{Tensor, linear, linear_backward};
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output, Reach, by_type_name};
use super::values::{self, shorthand_count};
use super::{
    ForwardCtx, Layer, Module, Param, WeightBias, recorded, single, single_shape, take_given,
};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Settings of a [`Linear`] layer: the `linear` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {
    /// `None`: taken from the input when the layer is planned in a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_features: Option<usize>,
    pub out_features: usize,
    #[serde(default = "values::yes")]
    pub bias: bool,
}

impl LinearConfig {
    /// `in_features -> out_features`, with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        LinearConfig {
            in_features: Some(in_features),
            ..Self::lazy(out_features)
        }
    }
    /// As [`LinearConfig::new`], with `in_features` taken from the input when the layer is
    /// planned in a model (PyTorch's `LazyLinear`).
    pub fn lazy(out_features: usize) -> Self {
        LinearConfig {
            in_features: None,
            out_features,
            bias: values::yes(),
        }
    }
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// `in_features`, or the error of a layer that was never given nor planned.
    fn f_in(&self) -> Result<usize> {
        self.in_features.ok_or_else(|| {
            Error::config(
                "in_features",
                "not known: give it, or plan the layer in a model (which takes it from the input)",
            )
        })
    }

    /// Check the settings (all that `init` checks, drawing nothing).
    fn checked(&self) -> Result<usize> {
        let f_in = self.f_in()?;
        if f_in == 0 || self.out_features == 0 {
            return Err(Error::config(
                "features",
                format!(
                    "linear needs at least one input and output feature, got {f_in} -> {}",
                    self.out_features
                ),
            ));
        }
        Ok(f_in)
    }

    /// Check the settings and draw PyTorch's default initialization from `rng`.
    pub fn init(&self, rng: &mut Rng) -> Result<Linear> {
        let f_in = self.checked()?;
        Ok(Linear {
            config: *self,
            weights: WeightBias::init(&[self.out_features, f_in], f_in, self.bias, rng)?,
            input: None,
        })
    }
}

impl Kind for LinearConfig {
    const NAMES: &'static [&'static str] = &["linear"];
    const SHORTHAND: &'static str = "fc:OUT";

    fn resolve(&self, inputs: &[&[usize]]) -> Result<Self> {
        let f = match inputs.first() {
            Some([f]) => take_given("in_features", self.in_features, *f)?,
            Some(shape) => {
                return Err(Error::model(format!(
                    "linear needs a vector per sample, got shape {shape:?} (add a flatten layer \
                     before it)"
                )));
            }
            None => return Err(Error::model("linear needs an input")),
        };
        Ok(LinearConfig {
            in_features: Some(f),
            ..*self
        })
    }

    fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        let f_in = self.in_features.unwrap_or(0);
        let mut dims = vec![("weight", vec![self.out_features, f_in])];
        if self.bias {
            dims.push(("bias", vec![self.out_features]));
        }
        dims
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let f_in = self.f_in()?;
        match single_shape(inputs)? {
            [f] if *f == f_in => {}
            shape => {
                return Err(Error::model(format!(
                    "linear expects {f_in} input features, got shape {shape:?}{}",
                    if shape.len() > 1 {
                        " (add a flatten layer before it)"
                    } else {
                        ""
                    }
                )));
            }
        }
        let flops = [2, f_in as u64, self.out_features as u64]
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::model("its FLOP count overflows"))?;
        Ok(Output::new(vec![self.out_features])
            .with_flops(flops)
            .with_reach(Reach::Whole))
    }

    fn build(&self, rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init(rng)?))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["fc" | "linear", out] => Some(shorthand_count("a feature count", out).map(Self::lazy)),
            _ => by_type_name(words),
        }
    }
}

/// A fully connected layer: `y = x W^T + b`.
///
/// Shapes: input `[N, in_features]`, output `[N, out_features]`.
#[derive(Debug, Clone)]
pub struct Linear {
    config: LinearConfig,
    weights: WeightBias,
    input: Option<Tensor>,
}

impl Linear {
    pub fn config(&self) -> &LinearConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weights.weight
    }
}

impl Module for Linear {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let y = linear(&x, &self.weights.weight.value, self.weights.bias_value())?;
        self.input = ctx.record.then_some(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = recorded(&self.input)?;
        let grads = linear_backward(
            &grad_output,
            x,
            &self.weights.weight.value,
            self.weights.request(need_input_grad),
        )?;
        self.weights
            .accumulate(&grads.grad_weight, &grads.grad_bias)?;
        Ok(vec![grads.grad_input])
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        self.weights.params()
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        self.weights.params_mut()
    }

    fn clear(&mut self) {
        self.input = None;
    }
}
