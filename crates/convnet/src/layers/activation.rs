//! Activations: `relu`, `leaky_relu`, `elu`, `tanh`, `sigmoid` (one module over the core's
//! [`Activation`]), and `prelu` with its learned slope.

use convnet_core::{
    Activation, Tensor, activation, activation_backward, activation_backward_in_place,
    activation_in_place, gradient_from_output, prelu, prelu_backward,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kind::{Kind, LayerKind, Output};
use super::values::{self, one_of, size, word};
use super::{ForwardCtx, Layer, Module, Param, channels, recorded, same_shape, single};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// The settings struct of an activation and its [`Kind`]: `$config` has the type name
/// `$name` and runs `$act` (an expression of the settings `$c`).
macro_rules! activation_kind {
    ($config:ident, $name:literal, |$c:ident| $act:expr) => {
        impl $config {
            /// The activation these settings run.
            pub fn activation(&self) -> Activation {
                let $c = self;
                $act
            }
        }

        impl Kind for $config {
            const NAMES: &'static [&'static str] = &[$name];

            fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
                same_shape(inputs)
            }

            fn build(&self, _rng: &mut Rng) -> Result<Layer> {
                Ok(Box::new(ActivationLayer::new(self.activation())))
            }
        }
    };
}

/// `relu` (no settings), as `torch.nn.ReLU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReluConfig {}
activation_kind!(ReluConfig, "relu", |_c| Activation::Relu);

/// `tanh` (no settings), as `torch.nn.Tanh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TanhConfig {}
activation_kind!(TanhConfig, "tanh", |_c| Activation::Tanh);

/// `sigmoid` (no settings), as `torch.nn.Sigmoid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigmoidConfig {}
activation_kind!(SigmoidConfig, "sigmoid", |_c| Activation::Sigmoid);

fn default_slope() -> f32 {
    Activation::LEAKY_RELU_DEFAULT_SLOPE
}

/// `leaky_relu`, as `torch.nn.LeakyReLU` (`negative_slope` 0.01).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakyReluConfig {
    #[serde(with = "values::finite", default = "default_slope")]
    pub negative_slope: f32,
}
activation_kind!(LeakyReluConfig, "leaky_relu", |c| Activation::LeakyRelu {
    negative_slope: c.negative_slope
});

impl Default for LeakyReluConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakyReluConfig {
    /// PyTorch's default slope, 0.01.
    pub fn new() -> Self {
        LeakyReluConfig {
            negative_slope: default_slope(),
        }
    }
    pub fn with_negative_slope(mut self, negative_slope: f32) -> Self {
        self.negative_slope = negative_slope;
        self
    }
}

fn one() -> f32 {
    1.0
}

/// `elu`, as `torch.nn.ELU` (`alpha` 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EluConfig {
    #[serde(with = "values::finite", default = "one")]
    pub alpha: f32,
}
activation_kind!(EluConfig, "elu", |c| Activation::Elu { alpha: c.alpha });

impl Default for EluConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl EluConfig {
    /// PyTorch's default `alpha`, 1.0.
    pub fn new() -> Self {
        EluConfig { alpha: one() }
    }
    pub fn with_alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
}

/// The settings of an activation of the core.
impl From<Activation> for LayerKind {
    fn from(act: Activation) -> Self {
        match act {
            Activation::Relu => ReluConfig {}.into(),
            Activation::LeakyRelu { negative_slope } => LeakyReluConfig { negative_slope }.into(),
            Activation::Elu { alpha } => EluConfig { alpha }.into(),
            Activation::Tanh => TanhConfig {}.into(),
            Activation::Sigmoid => SigmoidConfig {}.into(),
        }
    }
}

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

    /// Record `output` as this ReLU's output when the layer before it computed it (a batch
    /// norm with the ReLU fused, [`crate::Model`]'s forward pass), so its backward pass can
    /// still run; `None` records nothing (a pass that does not record, or one fused further,
    /// whose output is not written). Only a ReLU (whose gradient is a function of its
    /// output) takes this.
    pub(crate) fn record_fused_output(&mut self, output: Option<Tensor>) -> Result<()> {
        if self.act != Activation::Relu {
            return Err(Error::model(format!(
                "{:?} cannot take its output from the layer before it (only ReLU)",
                self.act
            )));
        }
        self.cache = output;
        Ok(())
    }
}

impl Module for ActivationLayer {
    fn is_activation(&self) -> bool {
        true
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
        let kept = recorded(&self.cache)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        if kept.dims() != grad_output.dims() {
            return Err(Error::model(format!(
                "gradient of shape {} for an output of shape {}",
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

/// How many slopes a PReLU learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PReluSlopes {
    /// This many (1: shared); written as the number.
    Count(usize),
    /// One per input channel; written "channels".
    PerChannel,
}

impl Serialize for PReluSlopes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            PReluSlopes::Count(n) => s.serialize_u64(*n as u64),
            PReluSlopes::PerChannel => s.serialize_str("channels"),
        }
    }
}

impl<'de> Deserialize<'de> for PReluSlopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match one_of(d, "an integer or \"channels\"", |v| match v {
            toml::Value::String(w) => Some(Err(w.clone())),
            _ => size(v).map(Ok),
        })? {
            Ok(n) => Ok(PReluSlopes::Count(n)),
            Err(w) => word(&w, &[("channels", PReluSlopes::PerChannel)]),
        }
    }
}

fn one_slope() -> PReluSlopes {
    PReluSlopes::Count(1)
}

fn quarter() -> f32 {
    0.25
}

/// Settings of a [`PRelu`] layer (the `prelu` table of a model file): one slope shared by
/// all channels, or one per channel; PyTorch initialises them to 0.25.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PReluConfig {
    #[serde(default = "one_slope")]
    pub num_parameters: PReluSlopes,
    #[serde(with = "values::finite", default = "quarter")]
    pub init: f32,
}

impl PReluConfig {
    /// `num_parameters` slopes (1: shared by all channels).
    pub fn new(num_parameters: usize) -> Self {
        PReluConfig {
            num_parameters: PReluSlopes::Count(num_parameters),
            init: quarter(),
        }
    }
    /// One slope per channel of the input, counted when the layer is planned in a model.
    pub fn per_channel() -> Self {
        PReluConfig {
            num_parameters: PReluSlopes::PerChannel,
            ..Self::new(1)
        }
    }
    pub fn with_init(mut self, init: f32) -> Self {
        self.init = init;
        self
    }

    /// Check the settings (all that `init` checks) and return the number of slopes.
    fn checked(&self) -> Result<usize> {
        match self.num_parameters {
            PReluSlopes::Count(0) => Err(Error::config(
                "num_parameters",
                "PReLU needs at least one slope",
            )),
            PReluSlopes::Count(n) => Ok(n),
            PReluSlopes::PerChannel => Err(Error::config(
                "num_parameters",
                "one per channel: plan the layer in a model to count them",
            )),
        }
    }

    pub fn init(&self) -> Result<PRelu> {
        let n = self.checked()?;
        Ok(PRelu {
            config: *self,
            weight: Param::new(Tensor::full([n], self.init)?),
            input: None,
        })
    }
}

impl Kind for PReluConfig {
    const NAMES: &'static [&'static str] = &["prelu"];

    fn resolve(&self, inputs: &[&[usize]]) -> Result<Self> {
        let n = match self.num_parameters {
            PReluSlopes::Count(n) => n,
            PReluSlopes::PerChannel => channels(inputs)?,
        };
        Ok(PReluConfig {
            num_parameters: PReluSlopes::Count(n),
            ..*self
        })
    }

    fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        vec![("weight", vec![self.checked().unwrap_or(0)])]
    }

    /// The input's shape: one slope, or one per channel of the input.
    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let n = self.checked()?;
        let output = same_shape(inputs)?;
        if n != 1 && output.shape.first() != Some(&n) {
            return Err(Error::model(format!(
                "prelu with {n} slopes needs {n} channels, got per-sample shape {:?}",
                output.shape
            )));
        }
        Ok(output)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init()?))
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
    fn is_activation(&self) -> bool {
        true
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let y = prelu(&x, &self.weight.value)?;
        self.input = ctx.record.then_some(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = recorded(&self.input)?;
        let grads = prelu_backward(&grad_output, x, &self.weight.value)?;
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
