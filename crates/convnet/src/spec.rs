//! Model descriptions: what a model file says, built into a [`Model`].
//!
//! A model file is TOML: a `[model]` table and one `[[layer]]` table per layer, in order.
//! `docs/model-files.md` documents every key with an example of every layer kind;
//! `models/fashion_cnn.toml` is the reference model. Unknown keys, unknown layer types and
//! values of the wrong kind are errors that name the layer and the key.
//!
//! Input sizes (`in_channels`, `in_features`, `num_features`) are inferred from the previous
//! layer; when a file gives them they are checked.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use convnet_core::tensor::MAX_TENSOR_ELEMENTS;
use convnet_core::{Activation, ConvMode, Padding, PaddingMode, Pool2dParams, Shape};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::layers::single_shape;
use crate::layers::{
    ActivationLayer, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNormConfig, Conv2dConfig, Dropout,
    Flatten, GlobalPool, Layer, LinearConfig, MaxPool2d, Module, PReluConfig, PoolKind,
};
use crate::model::{Model, Node, Source};
use crate::names;
use crate::rng::Rng;

/// The name by which layers refer to the model input in `inputs`.
pub const INPUT: &str = "input";

/// The most layers a model may have: far more than any real network (ResNet-152 has about
/// 500), few enough that checking a model file stays fast.
pub const MAX_LAYERS: usize = 10_000;

/// The largest model file read, in bytes: room for [`MAX_LAYERS`] layers with every key.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A layer name is non-empty, has no spaces, is not [`INPUT`], and is at most
/// [`names::MAX_NAME_CHARS`] long.
fn check_layer_name(name: &str) -> Result<()> {
    names::check_len(name).map_err(|e| Error::model(format!("invalid name: {e}")))?;
    if name.is_empty() || name == INPUT || name.contains(char::is_whitespace) {
        return Err(Error::model(format!(
            "invalid name '{name}': names must be non-empty, without spaces, and not '{INPUT}'"
        )));
    }
    Ok(())
}

/// A whole model: input shape, optional class names, layers in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: Option<String>,
    /// Per-sample input `[C, H, W]`.
    pub input: [usize; 3],
    pub classes: Option<Vec<String>>,
    pub layers: Vec<LayerSpec>,
}

/// One layer: its name (the `state_dict` prefix of its parameters), what it reads, and what
/// it is.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    /// Names of the layers (or [`INPUT`]) it reads; `None`: the previous layer.
    pub inputs: Option<Vec<String>>,
    pub kind: LayerKind,
}

/// How many slopes a PReLU learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PReluSlopes {
    /// This many (1: shared).
    Count(usize),
    /// One per input channel.
    PerChannel,
}

/// What a layer is, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Conv2d {
        in_channels: Option<usize>,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        dilation: [usize; 2],
        groups: usize,
        bias: bool,
        padding_mode: PaddingMode,
        mode: ConvMode,
    },
    Linear {
        in_features: Option<usize>,
        out_features: usize,
        bias: bool,
    },
    BatchNorm {
        /// `batchnorm2d` (true) or `batchnorm1d`.
        spatial: bool,
        num_features: Option<usize>,
        eps: f32,
        momentum: Option<f32>,
        affine: bool,
        track_running_stats: bool,
    },
    Activation(Activation),
    PRelu {
        slopes: PReluSlopes,
        init: f32,
    },
    MaxPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    },
    AvgPool2d {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
        count_include_pad: bool,
        divisor_override: Option<usize>,
    },
    AdaptiveAvgPool2d {
        output_size: [usize; 2],
    },
    GlobalPool(PoolKind),
    Flatten,
    Dropout {
        p: f32,
    },
    Add,
}

impl LayerKind {
    /// A conv layer with PyTorch's defaults: stride 1, no padding, bias.
    pub fn conv2d(out_channels: usize, kernel: [usize; 2]) -> Self {
        LayerKind::Conv2d {
            in_channels: None,
            out_channels,
            kernel,
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
            bias: true,
            padding_mode: PaddingMode::Zeros,
            mode: ConvMode::CrossCorrelation,
        }
    }

    /// A linear layer with a bias.
    pub fn linear(out_features: usize) -> Self {
        LayerKind::Linear {
            in_features: None,
            out_features,
            bias: true,
        }
    }

    /// `BatchNorm2d` (or `1d`) with PyTorch's defaults.
    pub fn batch_norm(spatial: bool) -> Self {
        LayerKind::BatchNorm {
            spatial,
            num_features: None,
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }

    /// Max pooling with stride = kernel.
    pub fn max_pool2d(kernel: [usize; 2]) -> Self {
        LayerKind::MaxPool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
        }
    }

    /// The type name a model file uses.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::Linear { .. } => "linear",
            LayerKind::BatchNorm { spatial: true, .. } => "batchnorm2d",
            LayerKind::BatchNorm { spatial: false, .. } => "batchnorm1d",
            LayerKind::Activation(Activation::Relu) => "relu",
            LayerKind::Activation(Activation::LeakyRelu { .. }) => "leaky_relu",
            LayerKind::Activation(Activation::Elu { .. }) => "elu",
            LayerKind::Activation(Activation::Tanh) => "tanh",
            LayerKind::Activation(Activation::Sigmoid) => "sigmoid",
            LayerKind::PRelu { .. } => "prelu",
            LayerKind::MaxPool2d { .. } => "max_pool2d",
            LayerKind::AvgPool2d { .. } => "avg_pool2d",
            LayerKind::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            LayerKind::GlobalPool(PoolKind::Avg) => "global_avg_pool2d",
            LayerKind::GlobalPool(PoolKind::Max) => "global_max_pool2d",
            LayerKind::Flatten => "flatten",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Add => "add",
        }
    }

    /// Every layer type a model file may name.
    pub const TYPES: &'static [&'static str] = &[
        "conv2d",
        "linear",
        "batchnorm2d",
        "batchnorm1d",
        "relu",
        "leaky_relu",
        "elu",
        "tanh",
        "sigmoid",
        "prelu",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "global_avg_pool2d",
        "global_max_pool2d",
        "flatten",
        "dropout",
        "add",
    ];

    /// Check the layer against its per-sample input shapes `inputs` and size it, without
    /// drawing any weight.
    fn plan(&self, inputs: &[&[usize]]) -> Result<LayerPlan> {
        let channels = || -> Result<usize> {
            inputs
                .first()
                .and_then(|s| s.first().copied())
                .ok_or_else(|| Error::model("needs an input with a channel axis"))
        };
        let check = |what: &str, given: Option<usize>, inferred: usize| -> Result<usize> {
            match given {
                Some(g) if g != inferred => Err(Error::model(format!(
                    "{what} = {g} does not match its input, which has {inferred}"
                ))),
                _ => Ok(inferred),
            }
        };
        Ok(match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                padding_mode,
                mode,
            } => {
                let c = check("in_channels", in_channels, channels()?)?;
                LayerPlan::Conv2d(
                    Conv2dConfig::new([c, out_channels], kernel)
                        .with_stride(stride)
                        .with_padding(padding)
                        .with_dilation(dilation)
                        .with_groups(groups)
                        .with_bias(bias)
                        .with_padding_mode(padding_mode)
                        .with_mode(mode),
                )
            }
            LayerKind::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let f = match inputs.first() {
                    Some([f]) => check("in_features", in_features, *f)?,
                    Some(shape) => {
                        return Err(Error::model(format!(
                            "linear needs a vector per sample, got shape {shape:?} (add a \
                             flatten layer before it)"
                        )));
                    }
                    None => return Err(Error::model("linear needs an input")),
                };
                LayerPlan::Linear(LinearConfig::new(f, out_features).with_bias(bias))
            }
            LayerKind::BatchNorm {
                spatial,
                num_features,
                eps,
                momentum,
                affine,
                track_running_stats,
            } => {
                let c = check("num_features", num_features, channels()?)?;
                let config = if spatial {
                    BatchNormConfig::new_2d(c)
                } else {
                    BatchNormConfig::new_1d(c)
                };
                LayerPlan::BatchNorm(
                    config
                        .with_eps(eps)
                        .with_momentum(momentum)
                        .with_affine(affine)
                        .with_track_running_stats(track_running_stats),
                )
            }
            LayerKind::Activation(act) => {
                LayerPlan::ready(Layer::Activation(ActivationLayer::new(act)))
            }
            LayerKind::PRelu { slopes, init } => {
                let n = match slopes {
                    PReluSlopes::Count(n) => n,
                    PReluSlopes::PerChannel => channels()?,
                };
                LayerPlan::PRelu(PReluConfig::new(n).with_init(init))
            }
            LayerKind::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => LayerPlan::ready(Layer::MaxPool2d(MaxPool2d::new(
                Pool2dParams::builder(kernel)
                    .with_stride(stride)
                    .with_padding(padding)
                    .with_dilation(dilation)
                    .with_ceil_mode(ceil_mode)
                    .build()?,
            ))),
            LayerKind::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
                divisor_override,
            } => LayerPlan::ready(Layer::AvgPool2d(AvgPool2d::new(
                Pool2dParams::builder(kernel)
                    .with_stride(stride)
                    .with_padding(padding)
                    .with_ceil_mode(ceil_mode)
                    .with_count_include_pad(count_include_pad)
                    .with_divisor_override(divisor_override)
                    .build()?,
            ))),
            LayerKind::AdaptiveAvgPool2d { output_size } => LayerPlan::ready(
                Layer::AdaptiveAvgPool2d(AdaptiveAvgPool2d::new(output_size)),
            ),
            LayerKind::GlobalPool(kind) => {
                LayerPlan::ready(Layer::GlobalPool(GlobalPool::new(kind)))
            }
            LayerKind::Flatten => LayerPlan::ready(Layer::Flatten(Flatten::new())),
            LayerKind::Dropout { p } => LayerPlan::ready(Layer::Dropout(Dropout::new(p)?)),
            LayerKind::Add => LayerPlan::ready(Layer::Add(Add)),
        })
    }
}

/// A layer checked against its inputs and sized, before any weight is drawn: what shape
/// inference and summaries read, so that they allocate nothing from a model's sizes.
#[derive(Debug, Clone)]
pub enum LayerPlan {
    Conv2d(Conv2dConfig),
    Linear(LinearConfig),
    BatchNorm(BatchNormConfig),
    PRelu(PReluConfig),
    /// A layer without weights, already built.
    Ready(Box<Layer>),
}

impl LayerPlan {
    fn ready(layer: Layer) -> Self {
        LayerPlan::Ready(Box::new(layer))
    }

    /// The layer's type name, as model files write it.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerPlan::Conv2d(_) => "conv2d",
            LayerPlan::Linear(_) => "linear",
            LayerPlan::BatchNorm(c) => c.kind(),
            LayerPlan::PRelu(_) => "prelu",
            LayerPlan::Ready(l) => l.kind(),
        }
    }

    /// How many inputs it takes.
    pub fn arity(&self) -> usize {
        match self {
            LayerPlan::Ready(l) => l.arity(),
            _ => 1,
        }
    }

    /// The per-sample output shape for per-sample input shapes.
    pub fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let one = || single_shape(inputs);
        match self {
            LayerPlan::Conv2d(c) => c.output_shape(one()?),
            LayerPlan::Linear(c) => c.output_shape(one()?),
            LayerPlan::BatchNorm(c) => c.output_shape(one()?),
            LayerPlan::PRelu(c) => c.output_shape(one()?),
            LayerPlan::Ready(l) => l.output_shape(inputs),
        }
    }

    /// The shapes of its learnable tensors, by `state_dict` name.
    pub fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        match self {
            LayerPlan::Conv2d(c) => c.param_dims(),
            LayerPlan::Linear(c) => c.param_dims(),
            LayerPlan::BatchNorm(c) => c.param_dims(),
            LayerPlan::PRelu(c) => c.param_dims(),
            LayerPlan::Ready(_) => Vec::new(),
        }
    }

    /// How many learnable values it has.
    pub fn param_count(&self) -> u64 {
        // Each tensor was bounded by `check`, so neither product nor sum overflows.
        self.param_dims()
            .iter()
            .map(|(_, dims)| dims.iter().product::<usize>() as u64)
            .sum()
    }

    /// Check all that [`init`](Self::init) checks, and refuse a learnable tensor that no
    /// tensor may hold, naming it, before any is drawn.
    fn check(&self) -> Result<()> {
        match self {
            LayerPlan::Conv2d(c) => c.check().map(drop)?,
            LayerPlan::Linear(c) => c.check()?,
            LayerPlan::BatchNorm(c) => c.check()?,
            LayerPlan::PRelu(c) => c.check()?,
            LayerPlan::Ready(_) => {}
        }
        for (name, dims) in self.param_dims() {
            Shape::new(dims.clone()).map_err(|_| {
                let values = dims
                    .iter()
                    .try_fold(1u128, |a, &d| a.checked_mul(d as u128))
                    .map_or("more".to_string(), |v| v.to_string());
                Error::model(format!(
                    "its {name} {dims:?} would hold {values} values, more than the \
                     {MAX_TENSOR_ELEMENTS} one tensor may hold"
                ))
            })?;
        }
        Ok(())
    }

    /// The layer, its weights drawn from `rng` (PyTorch's default initialization).
    pub fn init(self, rng: &mut Rng) -> Result<Layer> {
        Ok(match self {
            LayerPlan::Conv2d(c) => Layer::Conv2d(c.init(rng)?),
            LayerPlan::Linear(c) => Layer::Linear(c.init(rng)?),
            LayerPlan::BatchNorm(c) => Layer::BatchNorm(c.init()?),
            LayerPlan::PRelu(c) => Layer::PRelu(c.init()?),
            LayerPlan::Ready(l) => *l,
        })
    }
}

/// One layer of a planned model: its name, what it reads, what it is, and its per-sample
/// output shape.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub name: String,
    pub inputs: Vec<Source>,
    pub layer: LayerPlan,
    pub output_shape: Vec<usize>,
}

impl LayerSpec {
    pub fn new(name: impl Into<String>, kind: LayerKind) -> Self {
        LayerSpec {
            name: name.into(),
            inputs: None,
            kind,
        }
    }

    /// Read the named layers (or [`INPUT`]) instead of the previous one.
    pub fn with_inputs(mut self, inputs: &[&str]) -> Self {
        self.inputs = Some(inputs.iter().map(|s| s.to_string()).collect());
        self
    }
}

impl ModelSpec {
    /// A model on per-sample inputs `[C, H, W]` with no layers yet.
    pub fn new(input: [usize; 3]) -> Self {
        ModelSpec {
            name: None,
            input,
            classes: None,
            layers: Vec::new(),
        }
    }

    /// Append a layer.
    pub fn layer(mut self, name: impl Into<String>, kind: LayerKind) -> Self {
        self.layers.push(LayerSpec::new(name, kind));
        self
    }

    /// Append a layer that reads the named layers.
    pub fn layer_from(mut self, name: impl Into<String>, inputs: &[&str], kind: LayerKind) -> Self {
        self.layers
            .push(LayerSpec::new(name, kind).with_inputs(inputs));
        self
    }

    /// Check every layer against its inputs and draw the weights (PyTorch's default
    /// initialization) from `Rng::new(seed)`.
    pub fn build(&self, seed: u64) -> Result<Model> {
        let mut rng = Rng::new(seed);
        let nodes = self
            .plan()?
            .into_iter()
            .enumerate()
            .map(|(index, node)| {
                let kind = node.layer.kind();
                let layer = node
                    .layer
                    .init(&mut rng)
                    .map_err(|e| self.layer_error(index, kind, e))?;
                Ok(Node {
                    name: node.name,
                    layer,
                    inputs: node.inputs,
                    output_shape: node.output_shape,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Model::from_nodes(self.clone(), nodes))
    }

    /// Check every layer against its inputs and size it, drawing no weights: the shapes,
    /// parameter counts and geometry a summary reads, in memory that does not grow with the
    /// model's sizes. Every parameter tensor and every per-sample output is bounded here
    /// (at most [`MAX_TENSOR_ELEMENTS`] values), so [`build`](Self::build) allocates only
    /// what was checked.
    pub fn plan(&self) -> Result<Vec<PlannedNode>> {
        Shape::new(self.input.to_vec())
            .ok()
            .filter(|_| !self.input.contains(&0))
            .ok_or_else(|| {
                Error::model(format!(
                    "model input {:?} must have sizes of at least 1 and at most \
                     {MAX_TENSOR_ELEMENTS} values in all",
                    self.input
                ))
            })?;
        if self.layers.len() > MAX_LAYERS {
            return Err(Error::model(format!(
                "{} layers are more than a model may have ({MAX_LAYERS})",
                self.layers.len()
            )));
        }
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        let mut nodes: Vec<PlannedNode> = Vec::with_capacity(self.layers.len());
        for (index, spec) in self.layers.iter().enumerate() {
            let context = |e: Error| self.layer_error(index, spec.kind.type_name(), e);
            check_layer_name(&spec.name).map_err(context)?;
            if index_of.insert(&spec.name, index).is_some() {
                return Err(context(Error::model(
                    "a layer with this name comes earlier",
                )));
            }
            let sources: Vec<Source> = match &spec.inputs {
                None => vec![match index {
                    0 => Source::Input,
                    i => Source::Node(i - 1),
                }],
                Some(list) => list
                    .iter()
                    .map(|n| match index_of.get(n.as_str()) {
                        _ if n == INPUT => Ok(Source::Input),
                        Some(&j) if j < index => Ok(Source::Node(j)),
                        _ => Err(context(Error::model(format!(
                            "input '{}' is not an earlier layer (nor '{INPUT}')",
                            names::shorten(n, 64)
                        )))),
                    })
                    .collect::<Result<_>>()?,
            };
            let shapes: Vec<&[usize]> = sources
                .iter()
                .map(|s| match s {
                    Source::Input => &self.input[..],
                    Source::Node(j) => &nodes[*j].output_shape[..],
                })
                .collect();
            let layer = spec.kind.plan(&shapes).map_err(context)?;
            if layer.arity() != sources.len() {
                return Err(context(Error::model(format!(
                    "takes {} input(s), {} given",
                    layer.arity(),
                    sources.len()
                ))));
            }
            layer.check().map_err(context)?;
            let output_shape = layer.output_shape(&shapes).map_err(context)?;
            Shape::new(output_shape.clone()).map_err(|_| {
                context(Error::model(format!(
                    "its per-sample output {output_shape:?} would hold more than the \
                     {MAX_TENSOR_ELEMENTS} values one tensor may hold"
                )))
            })?;
            nodes.push(PlannedNode {
                name: spec.name.clone(),
                inputs: sources,
                layer,
                output_shape,
            });
        }
        Ok(nodes)
    }

    /// `e` in the context of layer `index`, named as the model file names it.
    fn layer_error(&self, index: usize, kind: &str, e: Error) -> Error {
        let name = self.layers.get(index).map_or("", |l| l.name.as_str());
        Error::model(format!(
            "layer {index} ('{}', {kind}): {e}",
            names::shorten(name, 64)
        ))
    }

    /// Read a model file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| Error::file(path, e.to_string()))
    }

    /// Parse a model file's text (at most [`MAX_FILE_BYTES`]).
    pub fn from_toml(text: &str) -> Result<Self> {
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::model(format!(
                "more than {MAX_FILE_BYTES} bytes: a model file is a few kilobytes (is this the \
                 right file?)"
            )));
        }
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::model(format!("not valid TOML: {}", e.message()))
        })?;
        parse_model(table)
    }

    /// This description as a model file.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        out.push_str("[model]\n");
        if let Some(name) = &self.name {
            let _ = writeln!(out, "name = {}", quote(name));
        }
        let _ = writeln!(
            out,
            "input = [{}, {}, {}]  # channels, height, width",
            self.input[0], self.input[1], self.input[2]
        );
        if let Some(classes) = &self.classes {
            let list: Vec<String> = classes.iter().map(|c| quote(c)).collect();
            let _ = writeln!(out, "classes = [{}]", list.join(", "));
        }
        for layer in &self.layers {
            out.push_str("\n[[layer]]\n");
            let _ = writeln!(out, "name = {}", quote(&layer.name));
            let _ = writeln!(out, "type = {}", quote(layer.kind.type_name()));
            if let Some(inputs) = &layer.inputs {
                let list: Vec<String> = inputs.iter().map(|c| quote(c)).collect();
                let _ = writeln!(out, "inputs = [{}]", list.join(", "));
            }
            write_fields(&mut out, &layer.kind);
        }
        out
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn pair(v: [usize; 2]) -> String {
    format!("[{}, {}]", v[0], v[1])
}

fn write_fields(out: &mut String, kind: &LayerKind) {
    let mut kv = |k: &str, v: String| {
        let _ = writeln!(out, "{k} = {v}");
    };
    match kind {
        LayerKind::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            mode,
        } => {
            if let Some(c) = in_channels {
                kv("in_channels", c.to_string());
            }
            kv("out_channels", out_channels.to_string());
            kv("kernel", pair(*kernel));
            kv("stride", pair(*stride));
            kv(
                "padding",
                match padding {
                    Padding::Valid => quote("valid"),
                    Padding::Same => quote("same"),
                    Padding::Explicit {
                        top,
                        bottom,
                        left,
                        right,
                    } => format!("[{top}, {bottom}, {left}, {right}]"),
                },
            );
            kv("dilation", pair(*dilation));
            kv("groups", groups.to_string());
            kv("bias", bias.to_string());
            kv(
                "padding_mode",
                quote(match padding_mode {
                    PaddingMode::Zeros => "zeros",
                    PaddingMode::Reflect => "reflect",
                    PaddingMode::Replicate => "replicate",
                    PaddingMode::Circular => "circular",
                }),
            );
            kv(
                "mode",
                quote(match mode {
                    ConvMode::CrossCorrelation => "cross_correlation",
                    ConvMode::Convolution => "convolution",
                }),
            );
        }
        LayerKind::Linear {
            in_features,
            out_features,
            bias,
        } => {
            if let Some(f) = in_features {
                kv("in_features", f.to_string());
            }
            kv("out_features", out_features.to_string());
            kv("bias", bias.to_string());
        }
        LayerKind::BatchNorm {
            num_features,
            eps,
            momentum,
            affine,
            track_running_stats,
            ..
        } => {
            if let Some(f) = num_features {
                kv("num_features", f.to_string());
            }
            kv("eps", float(*eps));
            kv("momentum", momentum.map_or(quote("none"), float));
            kv("affine", affine.to_string());
            kv("track_running_stats", track_running_stats.to_string());
        }
        LayerKind::Activation(Activation::LeakyRelu { negative_slope }) => {
            kv("negative_slope", float(*negative_slope));
        }
        LayerKind::Activation(Activation::Elu { alpha }) => kv("alpha", float(*alpha)),
        LayerKind::Activation(_) => {}
        LayerKind::PRelu { slopes, init } => {
            kv(
                "num_parameters",
                match slopes {
                    PReluSlopes::Count(n) => n.to_string(),
                    PReluSlopes::PerChannel => quote("channels"),
                },
            );
            kv("init", float(*init));
        }
        LayerKind::MaxPool2d {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        } => {
            kv("kernel", pair(*kernel));
            kv("stride", pair(*stride));
            kv("padding", pair(*padding));
            kv("dilation", pair(*dilation));
            kv("ceil_mode", ceil_mode.to_string());
        }
        LayerKind::AvgPool2d {
            kernel,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
            divisor_override,
        } => {
            kv("kernel", pair(*kernel));
            kv("stride", pair(*stride));
            kv("padding", pair(*padding));
            kv("ceil_mode", ceil_mode.to_string());
            kv("count_include_pad", count_include_pad.to_string());
            if let Some(d) = divisor_override {
                kv("divisor_override", d.to_string());
            }
        }
        LayerKind::AdaptiveAvgPool2d { output_size } => kv("output_size", pair(*output_size)),
        LayerKind::Dropout { p } => kv("p", float(*p)),
        LayerKind::GlobalPool(_) | LayerKind::Flatten | LayerKind::Add => {}
    }
}

/// A float as TOML writes it (always with a decimal point or exponent).
fn float(v: f32) -> String {
    toml::Value::Float(f64::from(v)).to_string()
}

// ---- parsing -------------------------------------------------------------------------------

/// A value that may take several forms (an integer or a pair, a number or a word): read as
/// a TOML value, then converted by `convert`, so that an error says every form it may take
/// ("expected an integer or a pair [h, w] of integers, got [3, 3, 3]"); the key is added by
/// [`fields`].
fn one_of<'de, D, T>(
    d: D,
    expected: &str,
    convert: impl FnOnce(&toml::Value) -> Option<T>,
) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = toml::Value::deserialize(d)?;
    convert(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("expected {expected}, got {}", shown(&v))))
}

/// A TOML integer as a size (0 or more).
fn size(v: &toml::Value) -> Option<usize> {
    v.as_integer().and_then(|n| usize::try_from(n).ok())
}

/// `N` sizes in a TOML array of exactly `N` integers.
fn sizes<const N: usize>(v: &toml::Value) -> Option<[usize; N]> {
    let items = v.as_array().filter(|a| a.len() == N)?;
    let mut out = [0; N];
    for (o, item) in out.iter_mut().zip(items) {
        *o = size(item)?;
    }
    Some(out)
}

/// An integer or an `[h, w]` pair (kernel, stride, padding, dilation, output size).
struct PairValue([usize; 2]);

impl<'de> Deserialize<'de> for PairValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        one_of(d, "an integer or a pair [h, w] of integers", |v| {
            size(v).map(|n| [n, n]).or_else(|| sizes::<2>(v))
        })
        .map(PairValue)
    }
}

impl From<PairValue> for [usize; 2] {
    fn from(v: PairValue) -> Self {
        v.0
    }
}

/// Conv padding: an integer, `[h, w]`, `[top, bottom, left, right]`, "same" or "valid".
enum PaddingValue {
    Amounts([usize; 4]),
    Word(String),
}

impl<'de> Deserialize<'de> for PaddingValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        one_of(
            d,
            "an integer, a pair [h, w], [top, bottom, left, right], \"same\" or \"valid\"",
            |v| {
                let symmetric = |[h, w]: [usize; 2]| [h, h, w, w];
                match v {
                    toml::Value::String(w) => Some(PaddingValue::Word(w.clone())),
                    _ => size(v)
                        .map(|n| symmetric([n, n]))
                        .or_else(|| sizes::<2>(v).map(symmetric))
                        .or_else(|| sizes::<4>(v))
                        .map(PaddingValue::Amounts),
                }
            },
        )
    }
}

/// A finite number (model files may write `nan` and `inf`, and 1e39 is infinite as f32).
struct Float(f32);

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        one_of(d, "a finite number", finite).map(Float)
    }
}

fn finite(v: &toml::Value) -> Option<f32> {
    let x = match v {
        toml::Value::Float(x) => *x as f32,
        toml::Value::Integer(n) => *n as f32,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Conv2dFields {
    in_channels: Option<usize>,
    out_channels: usize,
    kernel: PairValue,
    stride: Option<PairValue>,
    padding: Option<PaddingValue>,
    dilation: Option<PairValue>,
    groups: Option<usize>,
    bias: Option<bool>,
    padding_mode: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearFields {
    in_features: Option<usize>,
    out_features: usize,
    bias: Option<bool>,
}

/// A number or "none".
enum MomentumValue {
    Value(f32),
    Word(String),
}

impl<'de> Deserialize<'de> for MomentumValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        one_of(d, "a number or \"none\"", |v| match v {
            toml::Value::String(w) => Some(MomentumValue::Word(w.clone())),
            _ => finite(v).map(MomentumValue::Value),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchNormFields {
    num_features: Option<usize>,
    eps: Option<Float>,
    momentum: Option<MomentumValue>,
    affine: Option<bool>,
    track_running_stats: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeakyReluFields {
    negative_slope: Option<Float>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EluFields {
    alpha: Option<Float>,
}

/// A count or "channels".
enum SlopesValue {
    Count(usize),
    Word(String),
}

impl<'de> Deserialize<'de> for SlopesValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        one_of(d, "an integer or \"channels\"", |v| match v {
            toml::Value::String(w) => Some(SlopesValue::Word(w.clone())),
            _ => size(v).map(SlopesValue::Count),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PReluFields {
    num_parameters: Option<SlopesValue>,
    init: Option<Float>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxPoolFields {
    kernel: PairValue,
    stride: Option<PairValue>,
    padding: Option<PairValue>,
    dilation: Option<PairValue>,
    ceil_mode: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvgPoolFields {
    kernel: PairValue,
    stride: Option<PairValue>,
    padding: Option<PairValue>,
    ceil_mode: Option<bool>,
    count_include_pad: Option<bool>,
    divisor_override: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveFields {
    output_size: PairValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DropoutFields {
    p: Option<Float>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFields {
    name: Option<String>,
    input: [usize; 3],
    classes: Option<Vec<String>>,
}

/// A table's keys as the struct `T`: an error names the key (`kernel: expected ...`).
fn fields<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            // The key path is only in the error's text: "<message>\nin `<key>`".
            let text = e.to_string();
            match text.trim_end().rsplit_once("\nin `") {
                Some((_, key)) => Error::model(format!(
                    "{}: {}",
                    names::shorten(key.trim_end_matches('`'), 64),
                    names::shorten(e.message(), 400)
                )),
                None => Error::model(names::shorten(e.message(), 400)),
            }
        })
}

/// A value from a file as an error message shows it: at most 40 characters.
fn shown(v: &impl std::fmt::Display) -> String {
    names::shorten(&v.to_string(), 40).into_owned()
}

fn word<T: Copy>(key: &str, value: &str, choices: &[(&str, T)]) -> Result<T> {
    choices
        .iter()
        .find(|(w, _)| *w == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            Error::model(format!(
                "{key} = \"{}\" is not one of: {}",
                shown(&value),
                names.join(", ")
            ))
        })
}

fn parse_model(mut table: toml::Table) -> Result<ModelSpec> {
    let model = table
        .remove("model")
        .ok_or_else(|| Error::model("missing the [model] table (with `input = [C, H, W]`)"))?;
    let toml::Value::Table(model) = model else {
        return Err(Error::model("`model` must be a table: [model]"));
    };
    let model: ModelFields = fields(model).map_err(|e| Error::model(format!("[model]: {e}")))?;
    let model_names = model.name.iter().chain(model.classes.iter().flatten());
    for name in model_names {
        names::check_len(name).map_err(|e| Error::model(format!("[model]: {e}")))?;
    }
    let layers = match table.remove("layer") {
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::model(
                "`layer` must be an array of tables: [[layer]]",
            ));
        }
        None => Vec::new(),
    };
    if layers.len() > MAX_LAYERS {
        return Err(Error::model(format!(
            "{} layers are more than a model may have ({MAX_LAYERS})",
            layers.len()
        )));
    }
    if let Some(key) = table.keys().next() {
        return Err(Error::model(format!(
            "unknown top-level key '{}' (a model file has [model] and [[layer]] tables)",
            shown(key)
        )));
    }
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_layer(index, item))
        .collect::<Result<_>>()?;
    Ok(ModelSpec {
        name: model.name,
        input: model.input,
        classes: model.classes,
        layers,
    })
}

fn parse_layer(index: usize, item: toml::Value) -> Result<LayerSpec> {
    let toml::Value::Table(mut table) = item else {
        return Err(Error::model(format!(
            "layer {index}: must be a table [[layer]]"
        )));
    };
    let name = match table.remove("name") {
        None => index.to_string(),
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(Error::model(format!(
                "layer {index}: name must be a string, got {}",
                shown(&v)
            )));
        }
    };
    let context = |kind: &str, e: Error| {
        Error::model(format!(
            "layer {index} ('{}', {}): {e}",
            shown(&name),
            shown(&kind)
        ))
    };
    names::check_len(&name)
        .map_err(|e| context("?", Error::model(format!("invalid name: {e}"))))?;
    let kind_name = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(context(
                "?",
                Error::model(format!("type must be a string, got {}", shown(&v))),
            ));
        }
        None => {
            return Err(context(
                "?",
                Error::model(format!(
                    "missing `type` (one of: {})",
                    LayerKind::TYPES.join(", ")
                )),
            ));
        }
    };
    let inputs = match table.remove("inputs") {
        None => None,
        Some(v) => {
            let list = v.try_into::<Vec<String>>().map_err(|_| {
                context(
                    &kind_name,
                    Error::model("inputs must be a list of layer names"),
                )
            })?;
            for input in &list {
                names::check_len(input).map_err(|e| {
                    context(&kind_name, Error::model(format!("invalid input: {e}")))
                })?;
            }
            Some(list)
        }
    };
    let kind = parse_kind(&kind_name, table).map_err(|e| context(&kind_name, e))?;
    Ok(LayerSpec { name, inputs, kind })
}

fn parse_kind(kind: &str, table: toml::Table) -> Result<LayerKind> {
    Ok(match kind {
        "conv2d" => {
            let f: Conv2dFields = fields(table)?;
            let padding = match f.padding {
                None => Padding::Valid,
                Some(PaddingValue::Amounts([top, bottom, left, right])) => Padding::Explicit {
                    top,
                    bottom,
                    left,
                    right,
                },
                Some(PaddingValue::Word(w)) => word(
                    "padding",
                    &w,
                    &[("same", Padding::Same), ("valid", Padding::Valid)],
                )?,
            };
            LayerKind::Conv2d {
                in_channels: f.in_channels,
                out_channels: f.out_channels,
                kernel: f.kernel.into(),
                stride: f.stride.map_or([1, 1], Into::into),
                padding,
                dilation: f.dilation.map_or([1, 1], Into::into),
                groups: f.groups.unwrap_or(1),
                bias: f.bias.unwrap_or(true),
                padding_mode: match f.padding_mode {
                    None => PaddingMode::Zeros,
                    Some(w) => word(
                        "padding_mode",
                        &w,
                        &[
                            ("zeros", PaddingMode::Zeros),
                            ("reflect", PaddingMode::Reflect),
                            ("replicate", PaddingMode::Replicate),
                            ("circular", PaddingMode::Circular),
                        ],
                    )?,
                },
                mode: match f.mode {
                    None => ConvMode::CrossCorrelation,
                    Some(w) => word(
                        "mode",
                        &w,
                        &[
                            ("cross_correlation", ConvMode::CrossCorrelation),
                            ("convolution", ConvMode::Convolution),
                        ],
                    )?,
                },
            }
        }
        "linear" => {
            let f: LinearFields = fields(table)?;
            LayerKind::Linear {
                in_features: f.in_features,
                out_features: f.out_features,
                bias: f.bias.unwrap_or(true),
            }
        }
        "batchnorm2d" | "batchnorm1d" => {
            let f: BatchNormFields = fields(table)?;
            LayerKind::BatchNorm {
                spatial: kind == "batchnorm2d",
                num_features: f.num_features,
                eps: f.eps.map_or(1e-5, |v| v.0),
                momentum: match f.momentum {
                    None => Some(0.1),
                    Some(MomentumValue::Value(m)) => Some(m),
                    Some(MomentumValue::Word(w)) => word("momentum", &w, &[("none", None)])?,
                },
                affine: f.affine.unwrap_or(true),
                track_running_stats: f.track_running_stats.unwrap_or(true),
            }
        }
        "relu" | "tanh" | "sigmoid" | "flatten" | "global_avg_pool2d" | "global_max_pool2d"
        | "add" => {
            let _: NoFields = fields(table)?;
            match kind {
                "relu" => LayerKind::Activation(Activation::Relu),
                "tanh" => LayerKind::Activation(Activation::Tanh),
                "sigmoid" => LayerKind::Activation(Activation::Sigmoid),
                "flatten" => LayerKind::Flatten,
                "global_avg_pool2d" => LayerKind::GlobalPool(PoolKind::Avg),
                "global_max_pool2d" => LayerKind::GlobalPool(PoolKind::Max),
                _ => LayerKind::Add,
            }
        }
        "leaky_relu" => {
            let f: LeakyReluFields = fields(table)?;
            LayerKind::Activation(Activation::LeakyRelu {
                negative_slope: f
                    .negative_slope
                    .map_or(Activation::LEAKY_RELU_DEFAULT_SLOPE, |v| v.0),
            })
        }
        "elu" => {
            let f: EluFields = fields(table)?;
            LayerKind::Activation(Activation::Elu {
                alpha: f.alpha.map_or(1.0, |v| v.0),
            })
        }
        "prelu" => {
            let f: PReluFields = fields(table)?;
            LayerKind::PRelu {
                slopes: match f.num_parameters {
                    None => PReluSlopes::Count(1),
                    Some(SlopesValue::Count(n)) => PReluSlopes::Count(n),
                    Some(SlopesValue::Word(w)) => word(
                        "num_parameters",
                        &w,
                        &[("channels", PReluSlopes::PerChannel)],
                    )?,
                },
                init: f.init.map_or(0.25, |v| v.0),
            }
        }
        "max_pool2d" => {
            let f: MaxPoolFields = fields(table)?;
            let kernel: [usize; 2] = f.kernel.into();
            LayerKind::MaxPool2d {
                kernel,
                stride: f.stride.map_or(kernel, Into::into),
                padding: f.padding.map_or([0, 0], Into::into),
                dilation: f.dilation.map_or([1, 1], Into::into),
                ceil_mode: f.ceil_mode.unwrap_or(false),
            }
        }
        "avg_pool2d" => {
            let f: AvgPoolFields = fields(table)?;
            let kernel: [usize; 2] = f.kernel.into();
            LayerKind::AvgPool2d {
                kernel,
                stride: f.stride.map_or(kernel, Into::into),
                padding: f.padding.map_or([0, 0], Into::into),
                ceil_mode: f.ceil_mode.unwrap_or(false),
                count_include_pad: f.count_include_pad.unwrap_or(true),
                divisor_override: f.divisor_override,
            }
        }
        "adaptive_avg_pool2d" => {
            let f: AdaptiveFields = fields(table)?;
            LayerKind::AdaptiveAvgPool2d {
                output_size: f.output_size.into(),
            }
        }
        "dropout" => {
            let f: DropoutFields = fields(table)?;
            LayerKind::Dropout {
                p: f.p.map_or(0.5, |v| v.0),
            }
        }
        other => {
            return Err(Error::model(format!(
                "unknown layer type '{}' (one of: {})",
                shown(&other),
                LayerKind::TYPES.join(", ")
            )));
        }
    })
}
