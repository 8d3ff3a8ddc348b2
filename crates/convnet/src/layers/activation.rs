//! Activation layers: ReLU, LeakyReLU, ELU, tanh, sigmoid, and PReLU with its learned slope.

use convnet_core::{
    Activation, Tensor, activation, activation_backward, activation_backward_in_place,
    activation_in_place, gradient_from_output, prelu, prelu_backward,
};

use super::{ForwardCtx, Module, Param, recorded, single, single_shape};
use crate::error::{Error, Result};

/// An element-wise activation without parameters.
///
/// Shapes: any; output as input. ReLU, tanh and sigmoid work in place (their gradient is a
/// function of the output, which is all they keep); LeakyReLU and ELU keep their input.
#[derive(Debug, Clone)]
pub struct ActivationLayer {
    act: Activation,
    /// The output (in-place activations) or the input (the others) of the recorded pass.
    cache: Option<Tensor>,
}

impl ActivationLayer {
    pub fn new(act: Activation) -> Self {
        ActivationLayer { act, cache: None }
    }
    pub fn activation(&self) -> Activation {
        self.act
    }
}

impl Module for ActivationLayer {
    fn kind(&self) -> &'static str {
        match self.act {
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Elu { .. } => "elu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(single_shape(inputs)?.to_vec())
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        if gradient_from_output(self.act) {
            let mut y = x;
            activation_in_place(y.data_mut(), self.act);
            self.cache = ctx.record.then(|| y.clone());
            Ok(y)
        } else {
            let y = activation(&x, self.act);
            self.cache = ctx.record.then_some(x);
            Ok(y)
        }
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let kept = recorded(&self.cache, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        if kept.dims() != grad_output.dims() {
            return Err(Error::model(format!(
                "{}: gradient of shape {} for an output of shape {}",
                self.kind(),
                grad_output.shape(),
                kept.shape()
            )));
        }
        let mut g = grad_output;
        if activation_backward_in_place(g.data_mut(), kept.data(), self.act) {
            return Ok(vec![Some(g)]);
        }
        // The input was kept; the output is not read by these activations.
        Ok(vec![Some(activation_backward(&g, kept, kept, self.act)?)])
    }

    fn clear(&mut self) {
        self.cache = None;
    }
}

/// Configuration of a [`PRelu`] layer: one slope shared by all channels
/// (`num_parameters = 1`) or one per channel; PyTorch initialises them to 0.25.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PReluConfig {
    pub num_parameters: usize,
    pub init: f32,
}

impl PReluConfig {
    pub fn new(num_parameters: usize) -> Self {
        PReluConfig {
            num_parameters,
            init: 0.25,
        }
    }
    pub fn with_init(mut self, init: f32) -> Self {
        self.init = init;
        self
    }
    /// Per-sample output shape (the input's): one slope, or one per channel of the input.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let n = self.num_parameters;
        if n != 1 && input.first() != Some(&n) {
            return Err(Error::model(format!(
                "prelu with {n} slopes needs {n} channels, got per-sample shape {input:?}"
            )));
        }
        Ok(input.to_vec())
    }

    /// The shapes of the learnable tensors, by `state_dict` name (nothing is allocated).
    pub fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        vec![("weight", vec![self.num_parameters])]
    }

    /// Check the configuration (all that `init` checks, drawing nothing).
    pub fn check(&self) -> Result<()> {
        if self.num_parameters == 0 {
            return Err(Error::config(
                "num_parameters",
                "PReLU needs at least one slope",
            ));
        }
        Ok(())
    }

    pub fn init(&self) -> Result<PRelu> {
        self.check()?;
        Ok(PRelu {
            config: *self,
            weight: Param::new(Tensor::full([self.num_parameters], self.init)?),
            input: None,
        })
    }
}

/// `max(0, x) + a * min(0, x)` with a learned slope `a`, as `torch.nn.PReLU`.
///
/// Shapes: `[N, C, ...]`; with one slope per channel, `C = num_parameters`.
#[derive(Debug, Clone)]
pub struct PRelu {
    config: PReluConfig,
    weight: Param,
    input: Option<Tensor>,
}

impl PRelu {
    pub fn config(&self) -> &PReluConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weight
    }
}

impl Module for PRelu {
    fn kind(&self) -> &'static str {
        "prelu"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(single_shape(inputs)?)
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let y = prelu(x, &self.weight.value)?;
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
        let grads = prelu_backward(grad_output, x, &self.weight.value)?;
        self.weight.accumulate(&grads.grad_weight)?;
        Ok(vec![need_input_grad.then_some(grads.grad_input)])
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        vec![("weight", &self.weight)]
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        vec![("weight", &mut self.weight)]
    }

    fn clear(&mut self) {
        self.input = None;
    }
}
