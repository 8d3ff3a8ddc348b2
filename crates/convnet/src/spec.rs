//! Model descriptions: what a model file says, built into a [`Model`].
//!
//! A model file is TOML: a `[model]` table and one `[[layer]]` table per layer, in order.
//! `docs/model-files.md` documents every key with an example of every layer kind;
//! `models/fashion_cnn.toml` is the reference model. Unknown keys, unknown layer types and
//! values of the wrong kind are errors that name the layer and the key.
//!
//! Input sizes (`in_channels`, `in_features`, `num_features`) are inferred from the previous
//! layer; when a file gives them they are checked.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use convnet_core::{Activation, ConvMode, Padding, PaddingMode, Pool2dParams};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNormConfig, Conv2dConfig, Dropout,
    Flatten, GlobalPool, Layer, LinearConfig, MaxPool2d, Module, PReluConfig, PoolKind,
};
use crate::model::{Model, Node, Source};
use crate::rng::Rng;

/// The name by which layers refer to the model input in `inputs`.
pub const INPUT: &str = "input";

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

/// The most weights one layer may have (1 << 31 floats, 8 GiB): more is a typo in a size,
/// refused with a message rather than an allocation failure.
const MAX_LAYER_WEIGHTS: usize = 1 << 31;

fn check_weight_count(count: Option<usize>) -> Result<()> {
    match count {
        Some(n) if n <= MAX_LAYER_WEIGHTS => Ok(()),
        _ => Err(Error::model(format!(
            "{} weights are more than one layer may have ({MAX_LAYER_WEIGHTS})",
            count.map_or("so many".to_string(), |n| n.to_string())
        ))),
    }
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

    /// Build the layer for per-sample input shapes `inputs`, drawing weights from `rng`.
    fn build(&self, inputs: &[&[usize]], rng: &mut Rng) -> Result<Layer> {
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
                check_weight_count(
                    [out_channels, c / groups.max(1), kernel[0], kernel[1]]
                        .iter()
                        .try_fold(1usize, |a, &d| a.checked_mul(d)),
                )?;
                Layer::Conv2d(
                    Conv2dConfig::new([c, out_channels], kernel)
                        .with_stride(stride)
                        .with_padding(padding)
                        .with_dilation(dilation)
                        .with_groups(groups)
                        .with_bias(bias)
                        .with_padding_mode(padding_mode)
                        .with_mode(mode)
                        .init(rng)?,
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
                check_weight_count(f.checked_mul(out_features))?;
                Layer::Linear(
                    LinearConfig::new(f, out_features)
                        .with_bias(bias)
                        .init(rng)?,
                )
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
                Layer::BatchNorm(
                    config
                        .with_eps(eps)
                        .with_momentum(momentum)
                        .with_affine(affine)
                        .with_track_running_stats(track_running_stats)
                        .init()?,
                )
            }
            LayerKind::Activation(act) => Layer::Activation(ActivationLayer::new(act)),
            LayerKind::PRelu { slopes, init } => {
                let n = match slopes {
                    PReluSlopes::Count(n) => n,
                    PReluSlopes::PerChannel => channels()?,
                };
                Layer::PRelu(PReluConfig::new(n).with_init(init).init()?)
            }
            LayerKind::MaxPool2d {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => Layer::MaxPool2d(MaxPool2d::new(
                Pool2dParams::builder(kernel)
                    .stride(stride)
                    .padding(padding)
                    .dilation(dilation)
                    .ceil_mode(ceil_mode)
                    .build()?,
            )),
            LayerKind::AvgPool2d {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
                divisor_override,
            } => Layer::AvgPool2d(AvgPool2d::new(
                Pool2dParams::builder(kernel)
                    .stride(stride)
                    .padding(padding)
                    .ceil_mode(ceil_mode)
                    .count_include_pad(count_include_pad)
                    .divisor_override(divisor_override)
                    .build()?,
            )),
            LayerKind::AdaptiveAvgPool2d { output_size } => {
                Layer::AdaptiveAvgPool2d(AdaptiveAvgPool2d::new(output_size))
            }
            LayerKind::GlobalPool(kind) => Layer::GlobalPool(GlobalPool::new(kind)),
            LayerKind::Flatten => Layer::Flatten(Flatten::new()),
            LayerKind::Dropout { p } => Layer::Dropout(Dropout::new(p)?),
            LayerKind::Add => Layer::Add(Add),
        })
    }
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
        if self.input.contains(&0) {
            return Err(Error::model(format!(
                "model input {:?} has an empty dimension",
                self.input
            )));
        }
        let mut rng = Rng::new(seed);
        let mut names: HashSet<&str> = HashSet::new();
        let mut nodes: Vec<Node> = Vec::with_capacity(self.layers.len());
        for (index, spec) in self.layers.iter().enumerate() {
            let context = |e: Error| {
                Error::model(format!(
                    "layer {index} ('{}', {}): {e}",
                    spec.name,
                    spec.kind.type_name()
                ))
            };
            if spec.name.is_empty() || spec.name == INPUT || spec.name.contains(char::is_whitespace)
            {
                return Err(context(Error::model(format!(
                    "invalid name '{}': names must be non-empty, without spaces, and not '{INPUT}'",
                    spec.name
                ))));
            }
            if !names.insert(spec.name.as_str()) {
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
                    .map(|n| {
                        if n == INPUT {
                            Ok(Source::Input)
                        } else {
                            nodes
                                .iter()
                                .position(|node| &node.name == n)
                                .map(Source::Node)
                                .ok_or_else(|| {
                                    context(Error::model(format!(
                                        "input '{n}' is not an earlier layer (nor '{INPUT}')"
                                    )))
                                })
                        }
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
            let layer = spec.kind.build(&shapes, &mut rng).map_err(context)?;
            if layer.arity() != sources.len() {
                return Err(context(Error::model(format!(
                    "takes {} input(s), {} given",
                    layer.arity(),
                    sources.len()
                ))));
            }
            let output_shape = layer.output_shape(&shapes).map_err(context)?;
            nodes.push(Node {
                name: spec.name.clone(),
                layer,
                inputs: sources,
                output_shape,
            });
        }
        Ok(Model::from_nodes(self.clone(), nodes))
    }

    /// Read a model file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| Error::file(path, e.to_string()))
    }

    /// Parse a model file's text.
    pub fn from_toml(text: &str) -> Result<Self> {
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

/// An integer or an `[h, w]` pair.
#[derive(Deserialize)]
#[serde(untagged)]
enum PairValue {
    One(usize),
    Two([usize; 2]),
}

impl From<PairValue> for [usize; 2] {
    fn from(v: PairValue) -> Self {
        match v {
            PairValue::One(x) => [x, x],
            PairValue::Two(p) => p,
        }
    }
}

/// Conv padding: an integer, `[h, w]`, `[top, bottom, left, right]`, "same" or "valid".
#[derive(Deserialize)]
#[serde(untagged)]
enum PaddingValue {
    One(usize),
    Two([usize; 2]),
    Four([usize; 4]),
    Word(String),
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

#[derive(Deserialize)]
#[serde(untagged)]
enum MomentumValue {
    Value(f32),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchNormFields {
    num_features: Option<usize>,
    eps: Option<f32>,
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
    negative_slope: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EluFields {
    alpha: Option<f32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SlopesValue {
    Count(usize),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PReluFields {
    num_parameters: Option<SlopesValue>,
    init: Option<f32>,
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
    p: Option<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFields {
    name: Option<String>,
    input: [usize; 3],
    classes: Option<Vec<String>>,
}

fn fields<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| Error::model(e.message().to_string()))
}

fn word<T: Copy>(key: &str, value: &str, choices: &[(&str, T)]) -> Result<T> {
    choices
        .iter()
        .find(|(w, _)| *w == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            Error::model(format!(
                "{key} = \"{value}\" is not one of: {}",
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
    let layers = match table.remove("layer") {
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::model(
                "`layer` must be an array of tables: [[layer]]",
            ));
        }
        None => Vec::new(),
    };
    if let Some(key) = table.keys().next() {
        return Err(Error::model(format!(
            "unknown top-level key '{key}' (a model file has [model] and [[layer]] tables)"
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
                "layer {index}: name must be a string, got {v}"
            )));
        }
    };
    let context =
        |kind: &str, e: Error| Error::model(format!("layer {index} ('{name}', {kind}): {e}"));
    let kind_name = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(context(
                "?",
                Error::model(format!("type must be a string, got {v}")),
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
        Some(v) => Some(v.try_into::<Vec<String>>().map_err(|_| {
            context(
                &kind_name,
                Error::model("inputs must be a list of layer names"),
            )
        })?),
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
                Some(PaddingValue::One(p)) => Padding::symmetric([p, p]),
                Some(PaddingValue::Two(p)) => Padding::symmetric(p),
                Some(PaddingValue::Four([top, bottom, left, right])) => Padding::Explicit {
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
                eps: f.eps.unwrap_or(1e-5),
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
                    .unwrap_or(Activation::LEAKY_RELU_DEFAULT_SLOPE),
            })
        }
        "elu" => {
            let f: EluFields = fields(table)?;
            LayerKind::Activation(Activation::Elu {
                alpha: f.alpha.unwrap_or(1.0),
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
                init: f.init.unwrap_or(0.25),
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
                p: f.p.unwrap_or(0.5),
            }
        }
        other => {
            return Err(Error::model(format!(
                "unknown layer type '{other}' (one of: {})",
                LayerKind::TYPES.join(", ")
            )));
        }
    })
}
