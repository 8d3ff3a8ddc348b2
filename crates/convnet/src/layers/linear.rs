//! `Linear`, as `torch.nn.Linear`.

use convnet_core::{GradRequest, Tensor, linear, linear_backward};

use super::{ForwardCtx, Module, Param, kaiming_uniform, recorded, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Configuration of a [`Linear`] layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearConfig {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
}

impl LinearConfig {
    /// `in_features -> out_features`, with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        LinearConfig {
            in_features,
            out_features,
            bias: true,
        }
    }
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Per-sample output shape `[out_features]` for a per-sample input `[in_features]`.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [f] if *f == self.in_features => Ok(vec![self.out_features]),
            shape => Err(Error::model(format!(
                "linear expects {} input features, got shape {shape:?}{}",
                self.in_features,
                if shape.len() > 1 {
                    " (add a flatten layer before it)"
                } else {
                    ""
                }
            ))),
        }
    }

    /// The shapes of the learnable tensors, by `state_dict` name (nothing is allocated).
    pub fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        let mut dims = vec![("weight", vec![self.out_features, self.in_features])];
        if self.bias {
            dims.push(("bias", vec![self.out_features]));
        }
        dims
    }

    /// Check the configuration (all that `init` checks, drawing nothing).
    pub fn check(&self) -> Result<()> {
        if self.in_features == 0 || self.out_features == 0 {
            return Err(Error::config(
                "features",
                format!(
                    "linear needs at least one input and output feature, got {} -> {}",
                    self.in_features, self.out_features
                ),
            ));
        }
        Ok(())
    }

    /// Check the configuration and draw PyTorch's default initialization from `rng`.
    pub fn init(&self, rng: &mut Rng) -> Result<Linear> {
        self.check()?;
        let weight = kaiming_uniform(
            &[self.out_features, self.in_features],
            self.in_features,
            rng,
        )?;
        let bias = if self.bias {
            Some(Param::new(kaiming_uniform(
                &[self.out_features],
                self.in_features,
                rng,
            )?))
        } else {
            None
        };
        Ok(Linear {
            config: *self,
            weight: Param::new(weight),
            bias,
            input: None,
        })
    }
}

/// A fully connected layer: `y = x W^T + b`.
///
/// Shapes: input `[N, in_features]`, output `[N, out_features]`.
#[derive(Debug, Clone)]
pub struct Linear {
    config: LinearConfig,
    weight: Param,
    bias: Option<Param>,
    input: Option<Tensor>,
}

impl Linear {
    pub fn config(&self) -> &LinearConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weight
    }
}

impl Module for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(single_shape(inputs)?)
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let y = linear(x, &self.weight.value, self.bias.as_ref().map(|b| &b.value))?;
        self.input = ctx.record.then(|| x.clone());
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let x = recorded(&self.input, self.kind())?;
        let grads = linear_backward(
            grad_output,
            x,
            &self.weight.value,
            GradRequest {
                input: need_input_grad,
                weight: true,
                bias: self.bias.is_some(),
            },
        )?;
        if let Some(gw) = &grads.grad_weight {
            self.weight.accumulate(gw)?;
        }
        if let (Some(b), Some(gb)) = (self.bias.as_mut(), &grads.grad_bias) {
            b.accumulate(gb)?;
        }
        Ok(vec![grads.grad_input])
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        let mut p = vec![("weight", &self.weight)];
        if let Some(b) = &self.bias {
            p.push(("bias", b));
        }
        p
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        let mut p = vec![("weight", &mut self.weight)];
        if let Some(b) = &mut self.bias {
            p.push(("bias", b));
        }
        p
    }

    fn clear(&mut self) {
        self.input = None;
    }
}
