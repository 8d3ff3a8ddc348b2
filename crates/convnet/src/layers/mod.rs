//! Layers: each is a config builder (`...Config`, checked by `init`) and a module that runs
//! forward and backward, keeping what its backward pass needs.
//!
//! Shapes: layers see batches, `[N, C, H, W]` for image layers and `[N, F]` after
//! [`Flatten`]. Each module documents its shapes. Parameters and buffers carry PyTorch's
//! `state_dict` names (`weight`, `bias`, `running_mean`, ...), which the model prefixes with
//! the layer's name.
//!
//! Gradients accumulate into [`Param::grad`] (as PyTorch's `.grad`); the optimizer step and
//! `zero_grad` are the training loop's.

mod activation;
mod conv;
mod linear;
mod norm;
mod pool;
mod shape;

pub use activation::{ActivationLayer, PRelu, PReluConfig};
pub use conv::{Conv2d, Conv2dConfig};
pub use linear::{Linear, LinearConfig};
pub use norm::{BatchNorm, BatchNormConfig};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, GlobalPool, MaxPool2d, PoolKind};
pub use shape::{Add, Dropout, Flatten};

use convnet_core::{Tensor, add_in_place};

use crate::error::{Error, Result};

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardCtx {
    /// Training behaviour (dropout active, batch norm on batch statistics) or evaluation.
    pub training: bool,
    /// Keep what the backward pass needs (inputs, masks, indices). Training always does;
    /// evaluation does when gradients are wanted (e.g. Grad-CAM).
    pub record: bool,
    /// Seed of the run and index of the step: dropout draws from
    /// `Rng::stream(seed, [tag, step, node])`.
    pub seed: u64,
    pub step: u64,
    /// Index of the layer in its model (set by the model).
    pub node: u64,
}

impl ForwardCtx {
    /// Training step `step` of a run seeded with `seed`.
    pub fn train(seed: u64, step: u64) -> Self {
        ForwardCtx {
            training: true,
            record: true,
            seed,
            step,
            node: 0,
        }
    }

    /// Inference; `record` keeps what a backward pass needs.
    pub fn eval(record: bool) -> Self {
        ForwardCtx {
            training: false,
            record,
            seed: 0,
            step: 0,
            node: 0,
        }
    }
}

/// A learnable tensor and the gradient accumulated for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub value: Tensor,
    pub grad: Tensor,
}

impl Param {
    /// A parameter with a zero gradient.
    pub fn new(value: Tensor) -> Self {
        let grad = Tensor::zeros(value.dims()).expect("same shape as an existing tensor");
        Param { value, grad }
    }

    pub fn zero_grad(&mut self) {
        self.grad.data_mut().fill(0.0);
    }

    /// `grad += g` (shapes must agree).
    pub(crate) fn accumulate(&mut self, g: &Tensor) -> Result<()> {
        Ok(add_in_place(&mut self.grad, g)?)
    }
}

/// A non-learnable tensor saved with the weights (batch-norm running statistics).
#[derive(Debug, Clone, PartialEq)]
pub enum Buffer<'a> {
    Tensor(&'a Tensor),
    /// An integer counter, saved as an int64 scalar as PyTorch does (`num_batches_tracked`).
    Count(u64),
}

/// Mutable access to a buffer, for loading weights.
#[derive(Debug)]
pub enum BufferMut<'a> {
    Tensor(&'a mut Tensor),
    Count(&'a mut u64),
}

/// Any layer of a model.
#[derive(Debug, Clone)]
pub enum Layer {
    Conv2d(Conv2d),
    Linear(Linear),
    BatchNorm(BatchNorm),
    Activation(ActivationLayer),
    PRelu(PRelu),
    MaxPool2d(MaxPool2d),
    AvgPool2d(AvgPool2d),
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    GlobalPool(GlobalPool),
    Flatten(Flatten),
    Dropout(Dropout),
    Add(Add),
}

macro_rules! each_layer {
    ($self:expr, $l:ident => $body:expr) => {
        match $self {
            Layer::Conv2d($l) => $body,
            Layer::Linear($l) => $body,
            Layer::BatchNorm($l) => $body,
            Layer::Activation($l) => $body,
            Layer::PRelu($l) => $body,
            Layer::MaxPool2d($l) => $body,
            Layer::AvgPool2d($l) => $body,
            Layer::AdaptiveAvgPool2d($l) => $body,
            Layer::GlobalPool($l) => $body,
            Layer::Flatten($l) => $body,
            Layer::Dropout($l) => $body,
            Layer::Add($l) => $body,
        }
    };
}

/// What every layer module provides.
pub trait Module {
    /// The layer's type name, as model files write it (`conv2d`, `relu`, ...).
    fn kind(&self) -> &'static str;
    /// How many inputs it takes (2 for [`Add`], else 1).
    fn arity(&self) -> usize {
        1
    }
    /// The per-sample output shape for per-sample input shapes (no batch axis), or why
    /// they do not fit.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;
    /// Forward on a batch. The layer owns its inputs: one whose storage is not shared (the
    /// model hands over values at their last use) may be overwritten in place.
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor>;
    /// Backward: accumulate parameter gradients and return the gradient for each input
    /// (`None` where `need_input_grad` is false). Needs a recorded forward pass. The layer
    /// owns `grad_output` and may reuse its storage for the input gradient.
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>>;
    /// Learnable parameters with their local `state_dict` names.
    fn params(&self) -> Vec<(&'static str, &Param)> {
        Vec::new()
    }
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        Vec::new()
    }
    /// Saved non-learnable state with local `state_dict` names.
    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        Vec::new()
    }
    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        Vec::new()
    }
    /// Drop what was recorded for backward.
    fn clear(&mut self) {}
}

impl Module for Layer {
    fn kind(&self) -> &'static str {
        each_layer!(self, l => l.kind())
    }
    fn arity(&self) -> usize {
        each_layer!(self, l => l.arity())
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        each_layer!(self, l => l.output_shape(inputs))
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        each_layer!(self, l => l.forward(inputs, ctx))
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        each_layer!(self, l => l.backward(grad_output, need_input_grad))
    }
    fn params(&self) -> Vec<(&'static str, &Param)> {
        each_layer!(self, l => l.params())
    }
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        each_layer!(self, l => l.params_mut())
    }
    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        each_layer!(self, l => l.buffers())
    }
    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        each_layer!(self, l => l.buffers_mut())
    }
    fn clear(&mut self) {
        each_layer!(self, l => l.clear())
    }
}

/// The single input of a one-input layer.
pub(crate) fn single(mut inputs: Vec<Tensor>) -> Result<Tensor> {
    match inputs.len() {
        1 => Ok(inputs.pop().expect("one input")),
        n => Err(Error::model(format!("takes one input, got {n}"))),
    }
}

/// The single per-sample input shape of a one-input layer.
pub(crate) fn single_shape<'a>(inputs: &[&'a [usize]]) -> Result<&'a [usize]> {
    match inputs {
        [x] => Ok(x),
        _ => Err(Error::model(format!(
            "takes one input, got {}",
            inputs.len()
        ))),
    }
}

/// What was recorded for backward, or the error of calling backward without it.
pub(crate) fn recorded<'a, T>(cache: &'a Option<T>, kind: &str) -> Result<&'a T> {
    cache.as_ref().ok_or_else(|| {
        Error::model(format!(
            "{kind}: backward needs a forward pass that recorded its inputs (training, or \
             evaluation with recording)"
        ))
    })
}

/// Per-sample `[C, H, W]` of an image layer's input shape.
pub(crate) fn image_shape(shape: &[usize], kind: &str) -> Result<[usize; 3]> {
    match *shape {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(Error::model(format!(
            "{kind} needs images [C, H, W], got shape {shape:?}"
        ))),
    }
}

/// PyTorch's default initialization of conv and linear layers: Kaiming-uniform with
/// `a = sqrt(5)` for the weight, which is `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and the same
/// bound for the bias.
pub(crate) fn kaiming_uniform(
    dims: &[usize],
    fan_in: usize,
    rng: &mut crate::rng::Rng,
) -> Result<Tensor> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    Ok(Tensor::from_fn(dims.to_vec(), |_| {
        rng.uniform_range(-bound, bound)
    })?)
}
