//! `conv2d`: `Conv2d`, as `torch.nn.Conv2d` (and `torch.nn.LazyConv2d`).

use convnet_core::geometry::{conv2d_flops, conv2d_param_count};
use convnet_core::{Conv2dParams, ConvMode, Padding, PaddingMode, Tensor, conv2d, conv2d_backward};
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output, Reach, Window, by_type_name};
use super::values::{self, shorthand_count, shorthand_pair};
use super::{
    ForwardCtx, Layer, Module, Param, WeightBias, channels, image_shape, recorded, single,
    single_shape, take_given,
};
use crate::error::{Error, Result};
use crate::rng::Rng;

fn one() -> usize {
    1
}

/// Settings of a [`Conv2d`]: the `conv2d` table of a model file. `init` checks them and draws
/// the weights.
///
/// ```
/// use convnet::layers::Conv2dConfig;
/// use convnet::rng::Rng;
/// let conv = Conv2dConfig::new([1, 32], [3, 3]).with_stride([2, 2]).init(&mut Rng::new(0))?;
/// assert_eq!(conv.weight().value.dims(), &[32, 1, 3, 3]);
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// `None`: taken from the input when the layer is planned in a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_channels: Option<usize>,
    pub out_channels: usize,
    #[serde(with = "values::pair")]
    pub kernel: [usize; 2],
    #[serde(with = "values::pair", default = "values::ones")]
    pub stride: [usize; 2],
    #[serde(with = "values::padding", default)]
    pub padding: Padding,
    #[serde(with = "values::pair", default = "values::ones")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default = "values::yes")]
    pub bias: bool,
    #[serde(with = "values::padding_mode", default)]
    pub padding_mode: PaddingMode,
    #[serde(with = "values::conv_mode", default)]
    pub mode: ConvMode,
}

impl Conv2dConfig {
    /// `[in_channels, out_channels]` and the kernel size; stride 1, no padding, bias.
    pub fn new([in_channels, out_channels]: [usize; 2], kernel: [usize; 2]) -> Self {
        Conv2dConfig {
            in_channels: Some(in_channels),
            ..Self::lazy(out_channels, kernel)
        }
    }
    /// As [`Conv2dConfig::new`], with `in_channels` taken from the input when the layer is
    /// planned in a model (PyTorch's `LazyConv2d`).
    pub fn lazy(out_channels: usize, kernel: [usize; 2]) -> Self {
        Conv2dConfig {
            in_channels: None,
            out_channels,
            kernel,
            stride: values::ones(),
            padding: Padding::default(),
            dilation: values::ones(),
            groups: one(),
            bias: values::yes(),
            padding_mode: PaddingMode::default(),
            mode: ConvMode::default(),
        }
    }
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    pub fn with_padding_mode(mut self, padding_mode: PaddingMode) -> Self {
        self.padding_mode = padding_mode;
        self
    }
    pub fn with_mode(mut self, mode: ConvMode) -> Self {
        self.mode = mode;
        self
    }

    /// The kernel's parameters, checked.
    pub fn params(&self) -> Result<Conv2dParams> {
        Ok(Conv2dParams::builder()
            .with_stride(self.stride)
            .with_padding(self.padding)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding_mode(self.padding_mode)
            .with_mode(self.mode)
            .build()?)
    }

    /// `in_channels`, or the error of a layer that was never given nor planned.
    fn c_in(&self) -> Result<usize> {
        self.in_channels.ok_or_else(|| {
            Error::config(
                "in_channels",
                "not known: give it, or plan the layer in a model (which takes it from the input)",
            )
        })
    }

    /// Shape of the weight: `[out_channels, in_channels / groups, kh, kw]` (`in_channels` 0
    /// while it is not known).
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels.unwrap_or(0) / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Check the settings (all that `init` checks, drawing nothing) and return the kernel
    /// parameters.
    fn checked(&self) -> Result<Conv2dParams> {
        let params = self.params()?;
        let c_in = self.c_in()?;
        if c_in == 0 || self.out_channels == 0 {
            return Err(Error::config(
                "channels",
                format!(
                    "conv2d needs at least one input and output channel, got {c_in} -> {}",
                    self.out_channels
                ),
            ));
        }
        conv2d_param_count(c_in, self.out_channels, self.kernel, self.groups, self.bias)?;
        if self.kernel.contains(&0) {
            return Err(Error::config("kernel", "must be at least 1x1"));
        }
        Ok(params)
    }

    /// Check the settings and draw PyTorch's default initialization from `rng`.
    pub fn init(&self, rng: &mut Rng) -> Result<Conv2d> {
        let params = self.checked()?;
        let dims = self.weight_dims();
        let fan_in = dims[1] * dims[2] * dims[3];
        Ok(Conv2d {
            config: *self,
            params,
            weights: WeightBias::init(&dims, fan_in, self.bias, rng)?,
            input: None,
        })
    }

    /// `conv:OUT:KxK[:sS][:pP|:pH,W|:pT,B,L,R|:same|:valid][:dD][:gG][:nobias]`.
    fn from_shorthand(out: &str, kernel: &str, options: &[&str]) -> Result<Self> {
        let mut conv = Self::lazy(
            shorthand_count("a channel count", out)?,
            shorthand_pair("kernel", kernel)?,
        );
        for &opt in options {
            let (letter, rest) = opt.split_at(opt.chars().next().map_or(0, char::len_utf8));
            match (opt, letter) {
                ("same", _) => conv.padding = Padding::Same,
                ("valid", _) => conv.padding = Padding::Valid,
                ("nobias", _) => conv.bias = false,
                (_, "s") => conv.stride = shorthand_pair("stride", rest)?,
                (_, "d") => conv.dilation = shorthand_pair("dilation", rest)?,
                (_, "g") => {
                    conv.groups = rest
                        .parse()
                        .map_err(|_| Error::model(format!("'{opt}' is not gN")))?
                }
                (_, "p") => conv.padding = shorthand_padding(opt, rest)?,
                _ => return Err(Error::model(format!("unknown conv option '{opt}'"))),
            }
        }
        Ok(conv)
    }
}

/// `pN`, `pH,W` or `pT,B,L,R` (`rest`: what follows the `p`).
fn shorthand_padding(opt: &str, rest: &str) -> Result<Padding> {
    let bad = || Error::model(format!("'{opt}' is not pN or pT,B,L,R"));
    let v: Vec<usize> = rest
        .split(',')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    Ok(match v[..] {
        [p] => Padding::symmetric([p, p]),
        [h, w] => Padding::symmetric([h, w]),
        [top, bottom, left, right] => Padding::Explicit {
            top,
            bottom,
            left,
            right,
        },
        _ => return Err(bad()),
    })
}

impl Kind for Conv2dConfig {
    const NAMES: &'static [&'static str] = &["conv2d"];
    const SHORTHAND: &'static str = "conv:OUT:KxK[:sS][:pP|:same|:valid][:dD][:gG][:nobias]";

    fn resolve(&self, inputs: &[&[usize]]) -> Result<Self> {
        let c = take_given("in_channels", self.in_channels, channels(inputs)?)?;
        Ok(Conv2dConfig {
            in_channels: Some(c),
            ..*self
        })
    }

    fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        let mut dims = vec![("weight", self.weight_dims().to_vec())];
        if self.bias {
            dims.push(("bias", vec![self.out_channels]));
        }
        dims
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let [c, h, w] = image_shape(single_shape(inputs)?, "conv2d")?;
        let g = self.params()?.geometry([1, c, h, w], self.weight_dims())?;
        let flops = conv2d_flops(1, c, self.out_channels, g.out_hw, self.kernel, self.groups)?;
        Ok(
            Output::new(vec![self.out_channels, g.out_hw[0], g.out_hw[1]])
                .with_flops(flops)
                .with_reach(Reach::Window(Window {
                    kernel: self.kernel,
                    stride: self.stride,
                    dilation: self.dilation,
                    pad: g.pad,
                    ceil: false,
                })),
        )
    }

    fn build(&self, rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init(rng)?))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["conv", out, kernel, options @ ..] => Some(Self::from_shorthand(out, kernel, options)),
            ["conv", ..] => Some(Err(Error::model(format!("expected {}", Self::SHORTHAND)))),
            _ => by_type_name(words),
        }
    }
}

/// A 2-D convolution layer.
///
/// Shapes: input `[N, in_channels, H, W]`, output `[N, out_channels, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    config: Conv2dConfig,
    params: Conv2dParams,
    weights: WeightBias,
    input: Option<Tensor>,
}

impl Conv2d {
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weights.weight
    }
    pub fn bias(&self) -> Option<&Param> {
        self.weights.bias.as_ref()
    }
    /// The kernel parameters.
    pub fn conv_params(&self) -> &Conv2dParams {
        &self.params
    }
}

impl Module for Conv2d {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let y = conv2d(
            &x,
            &self.weights.weight.value,
            self.weights.bias_value(),
            &self.params,
        )?;
        self.input = ctx.record.then_some(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = recorded(&self.input)?;
        let grads = conv2d_backward(
            &grad_output,
            x,
            &self.weights.weight.value,
            &self.params,
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
