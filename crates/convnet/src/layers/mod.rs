//! Layers: one file per family, each holding, for each layer kind, its settings (a
//! `...Config`: the model file's table and the Rust builder in one struct, implementing
//! [`Kind`]) and its module (forward and backward, keeping what its backward pass needs,
//! implementing [`Module`]).
//!
//! [`KINDS`] is the registry: the list of kinds a model file may name, from which the type
//! names, the model-file reader and the `convnet shape` shorthand come. A new layer kind is
//! a new file here (declared and re-exported below) and one row of [`KINDS`].
//!
//! Shapes: layers see batches, `[N, C, H, W]` for image layers and `[N, F]` after a
//! flatten. Each module documents its shapes. Parameters and buffers carry PyTorch's
//! `state_dict` names (`weight`, `bias`, `running_mean`, ...), which the model prefixes with
//! the layer's name.
//!
//! Gradients accumulate into [`Param::grad`] (as PyTorch's `.grad`); the optimizer step and
//! `zero_grad` are the training loop's.

mod activation;
mod binary;
mod bounded;
mod concat;
mod constant;
mod conv;
mod conv_transpose;
mod hardswish;
mod kind;
mod linear;
mod norm;
mod pad;
mod piecewise;
mod pool;
mod resize;
mod shape;
mod softmax;
pub(crate) mod values;

pub use activation::{
    ActivationLayer, EluConfig, LeakyReluConfig, PRelu, PReluConfig, PReluSlopes, ReluConfig,
    SigmoidConfig, TanhConfig,
};
pub use binary::{AddConfig, Binary, DivConfig, MulConfig, SubConfig};
pub use concat::{Concat, ConcatConfig};
pub use constant::{Constant, ConstantConfig};
pub use conv::{Conv2d, Conv2dConfig};
pub use conv_transpose::{ConvTranspose2d, ConvTranspose2dConfig};
pub use hardswish::HardSwishConfig;
pub use kind::{
    Arity, Kind, KindEntry, LayerKind, LayerPlan, Output, Reach, Window, read_kind, read_shorthand,
    type_names,
};
pub use linear::{Linear, LinearConfig};
pub use norm::{BatchNorm, BatchNormConfig};
pub use pad::{Pad, PadConfig};
pub use piecewise::{ClipConfig, HardSigmoidConfig, Piecewise, PiecewiseFn};
pub use pool::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig, GlobalPool,
    GlobalPoolConfig, MaxPool2d, MaxPool2dConfig, PoolKind,
};
pub use resize::{Interpolation, Resize, ResizeConfig};
pub use shape::{Dropout, DropoutConfig, Flatten, FlattenConfig};
pub use softmax::{Softmax, SoftmaxConfig};

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use convnet_core::{GradRequest, Tensor, add_in_place};

use crate::error::{Error, Result};
use crate::train::Workers;

/// Every layer kind a model file may name (messages list their type names in this order).
pub const KINDS: &[KindEntry] = &[
    KindEntry::of::<Conv2dConfig>(),
    KindEntry::of::<ConvTranspose2dConfig>(),
    KindEntry::of::<LinearConfig>(),
    KindEntry::of::<BatchNormConfig>(),
    KindEntry::of::<ReluConfig>(),
    KindEntry::of::<LeakyReluConfig>(),
    KindEntry::of::<EluConfig>(),
    KindEntry::of::<TanhConfig>(),
    KindEntry::of::<SigmoidConfig>(),
    KindEntry::of::<PReluConfig>(),
    KindEntry::of::<HardSwishConfig>(),
    KindEntry::of::<ClipConfig>(),
    KindEntry::of::<HardSigmoidConfig>(),
    KindEntry::of::<MaxPool2dConfig>(),
    KindEntry::of::<AvgPool2dConfig>(),
    KindEntry::of::<AdaptiveAvgPool2dConfig>(),
    KindEntry::of::<GlobalPoolConfig>(),
    KindEntry::of::<FlattenConfig>(),
    KindEntry::of::<DropoutConfig>(),
    KindEntry::of::<AddConfig>(),
    KindEntry::of::<SubConfig>(),
    KindEntry::of::<MulConfig>(),
    KindEntry::of::<DivConfig>(),
    KindEntry::of::<ConcatConfig>(),
    KindEntry::of::<ConstantConfig>(),
    KindEntry::of::<SoftmaxConfig>(),
    KindEntry::of::<PadConfig>(),
    KindEntry::of::<ResizeConfig>(),
];

/// How a forward pass runs.
#[derive(Debug, Clone, Copy)]
pub struct ForwardCtx<'a> {
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
    /// The workers whose shards batch norm takes its statistics over, in data-parallel
    /// training with synchronized batch norm (`None`: this process's batch alone).
    pub sync_batch_norm: Option<&'a Arc<dyn Workers>>,
}

impl<'a> ForwardCtx<'a> {
    /// Training step `step` of a run seeded with `seed`.
    pub fn train(seed: u64, step: u64) -> Self {
        ForwardCtx {
            training: true,
            record: true,
            seed,
            step,
            node: 0,
            sync_batch_norm: None,
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
            sync_batch_norm: None,
        }
    }

    /// Batch norm statistics over every worker's shard of the batch.
    pub fn with_sync_batch_norm(self, workers: Option<&'a Arc<dyn Workers>>) -> Self {
        ForwardCtx {
            sync_batch_norm: workers,
            ..self
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

/// A built layer of a model: any [`Module`].
pub type Layer = Box<dyn Module>;

/// What every layer module provides.
pub trait Module: fmt::Debug + Send + Sync + ModuleBase {
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
    /// Whether it has a backward pass. An inference-only module says `false`; the model
    /// then never calls its `backward`, and a gradient that would flow through it is an
    /// error naming it.
    fn has_backward(&self) -> bool {
        true
    }
    /// Whether it is an element-wise activation (activation maximization steps on its input
    /// while it passes no gradient).
    fn is_activation(&self) -> bool {
        false
    }
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

/// Cloning and downcasting of boxed modules, for every `Module + Clone`.
pub trait ModuleBase {
    fn clone_box(&self) -> Layer;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Module + Clone + 'static> ModuleBase for T {
    fn clone_box(&self) -> Layer {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Clone for Layer {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

impl dyn Module {
    /// The module as the concrete layer `T`, if it is one (`layer.downcast_ref::<Conv2d>()`).
    pub fn downcast_ref<T: Module + 'static>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }

    /// The module as the concrete layer `T`, mutably, if it is one.
    pub fn downcast_mut<T: Module + 'static>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut()
    }

    /// Whether the module is a `T`.
    pub fn is<T: Module + 'static>(&self) -> bool {
        self.as_any().is::<T>()
    }
}

/// A weight and an optional bias, the learnable tensors of conv and linear layers.
#[derive(Debug, Clone)]
pub(crate) struct WeightBias {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl WeightBias {
    /// PyTorch's default initialization of conv and linear layers, drawn from `rng` in its
    /// order (weight, then bias): Kaiming-uniform with `a = sqrt(5)` for the weight, which is
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and the same bound for the bias (`dims[0]`
    /// values, if `bias`).
    pub fn init(
        dims: &[usize],
        fan_in: usize,
        bias: bool,
        rng: &mut crate::rng::Rng,
    ) -> Result<Self> {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let mut draw = |dims: &[usize]| -> Result<Param> {
            let t = Tensor::from_fn(dims.to_vec(), |_| rng.uniform_range(-bound, bound))?;
            Ok(Param::new(t))
        };
        let weight = draw(dims)?;
        let bias = if bias { Some(draw(&dims[..1])?) } else { None };
        Ok(WeightBias { weight, bias })
    }

    pub fn bias_value(&self) -> Option<&Tensor> {
        self.bias.as_ref().map(|b| &b.value)
    }

    /// The gradients a backward pass computes: the weight's, the bias's if there is one,
    /// the input's if asked.
    pub fn request(&self, input: bool) -> GradRequest {
        GradRequest {
            input,
            weight: true,
            bias: self.bias.is_some(),
        }
    }

    /// Add a backward pass's gradients.
    pub fn accumulate(
        &mut self,
        grad_weight: &Option<Tensor>,
        grad_bias: &Option<Tensor>,
    ) -> Result<()> {
        if let Some(gw) = grad_weight {
            self.weight.accumulate(gw)?;
        }
        if let (Some(b), Some(gb)) = (self.bias.as_mut(), grad_bias) {
            b.accumulate(gb)?;
        }
        Ok(())
    }

    pub fn params(&self) -> Vec<(&'static str, &Param)> {
        let mut p = vec![("weight", &self.weight)];
        if let Some(b) = &self.bias {
            p.push(("bias", b));
        }
        p
    }

    pub fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        let mut p = vec![("weight", &mut self.weight)];
        if let Some(b) = &mut self.bias {
            p.push(("bias", b));
        }
        p
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

/// The output of a layer that keeps its input's shape (element-wise layers).
pub(crate) fn same_shape(inputs: &[&[usize]]) -> Result<Output> {
    Ok(Output::new(single_shape(inputs)?.to_vec()))
}

/// The channels (first axis) of a layer's first per-sample input.
pub(crate) fn channels(inputs: &[&[usize]]) -> Result<usize> {
    inputs
        .first()
        .and_then(|s| s.first().copied())
        .ok_or_else(|| Error::model("needs an input with a channel axis"))
}

/// A size taken from a layer's input (`inferred`), checked against the one its settings
/// give, if any (`what = given`).
pub(crate) fn take_given(what: &str, given: Option<usize>, inferred: usize) -> Result<usize> {
    match given {
        Some(g) if g != inferred => Err(Error::model(format!(
            "{what} = {g} does not match its input, which has {inferred}"
        ))),
        _ => Ok(inferred),
    }
}

/// What was recorded for backward, or the error of calling backward without it.
pub(crate) fn recorded<T>(cache: &Option<T>) -> Result<&T> {
    cache.as_ref().ok_or_else(|| {
        Error::model(
            "backward needs a forward pass that recorded its inputs (training, or evaluation \
             with recording)",
        )
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
