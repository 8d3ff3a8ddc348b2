//! `conv_transpose2d`: [`ConvTranspose2d`], as `torch.nn.ConvTranspose2d` (ONNX
//! `ConvTranspose`).
//!
//! A transposed convolution is the adjoint of a convolution, so it runs on conv2d's kernels
//! with the roles turned around: its forward pass is conv2d's input gradient, its input
//! gradient is conv2d's forward pass, and its weight gradient is conv2d's weight gradient
//! with the output gradient as the input and the input as the output gradient. The conv2d
//! that it is the adjoint of maps its output `[N, out_channels, Ho, Wo]` back to its input
//! `[N, in_channels, H, W]` with the same stride, padding, dilation and groups.

use convnet_core::geometry::conv2d_flops;
use convnet_core::{
    Conv2dParams, Padding, Tensor, conv2d, conv2d_grad_bias, conv2d_grad_input, conv2d_grad_weight,
};
use serde::{Deserialize, Serialize};

use super::bounded::bounded;
use super::kind::{Kind, Output, Reach};
use super::values;
use super::{
    ForwardCtx, Layer, Module, Param, WeightBias, channels, image_shape, recorded, single,
    single_shape, take_given,
};
use crate::error::{Error, Result};
use crate::rng::Rng;

const OP: &str = "conv_transpose2d";

fn one() -> usize {
    1
}

fn zeros() -> [usize; 2] {
    [0, 0]
}

/// Settings of a [`ConvTranspose2d`]: the `conv_transpose2d` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvTranspose2dConfig {
    /// `None`: taken from the input when the layer is planned in a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_channels: Option<usize>,
    pub out_channels: usize,
    #[serde(with = "values::pair")]
    pub kernel: [usize; 2],
    #[serde(with = "values::pair", default = "values::ones")]
    pub stride: [usize; 2],
    /// Removed from the output's borders (PyTorch's `padding`; `[top, bottom, left, right]`
    /// for ONNX's uneven pads).
    #[serde(with = "values::padding", default)]
    pub padding: Padding,
    /// Added to the output's bottom and right (smaller than the stride).
    #[serde(with = "values::pair", default = "zeros")]
    pub output_padding: [usize; 2],
    #[serde(with = "values::pair", default = "values::ones")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default = "values::yes")]
    pub bias: bool,
}

impl ConvTranspose2dConfig {
    /// `[in_channels, out_channels]` and the kernel size; stride 1, no padding, bias.
    pub fn new([in_channels, out_channels]: [usize; 2], kernel: [usize; 2]) -> Self {
        ConvTranspose2dConfig {
            in_channels: Some(in_channels),
            out_channels,
            kernel,
            stride: values::ones(),
            padding: Padding::default(),
            output_padding: zeros(),
            dilation: values::ones(),
            groups: one(),
            bias: values::yes(),
        }
    }

    /// Shape of the weight: `[in_channels, out_channels / groups, kh, kw]` (PyTorch's).
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.in_channels.unwrap_or(0),
            self.out_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// The parameters of the conv2d this layer is the adjoint of, checked with the settings
    /// (all that building checks, drawing nothing).
    fn checked(&self) -> Result<Conv2dParams> {
        if self.padding == Padding::Same {
            return Err(Error::config(
                "padding",
                "conv_transpose2d takes amounts (a number, [h, w] or [top, bottom, left, \
                 right]), not \"same\"",
            ));
        }
        let params = Conv2dParams::builder()
            .with_stride(self.stride)
            .with_padding(self.padding)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .build()?;
        let c_in = self.in_channels.ok_or_else(|| {
            Error::config(
                "in_channels",
                "not known: give it, or plan the layer in a model",
            )
        })?;
        let g = self.groups;
        let divides = |c: usize| c.is_multiple_of(g);
        if c_in == 0 || self.out_channels == 0 || !divides(c_in) || !divides(self.out_channels) {
            return Err(Error::config(
                "channels",
                format!(
                    "conv_transpose2d needs in_channels and out_channels of at least 1 that \
                     groups = {g} divides, got {c_in} -> {}",
                    self.out_channels
                ),
            ));
        }
        if self.kernel.contains(&0) {
            return Err(Error::config("kernel", "must be at least 1x1"));
        }
        if (self.output_padding.iter().zip(&self.stride)).any(|(p, s)| p >= s) {
            return Err(Error::config(
                "output_padding",
                format!(
                    "must be smaller than the stride {:?} on each axis, got {:?}",
                    self.stride, self.output_padding
                ),
            ));
        }
        Ok(params)
    }

    /// The output height and width for an input of `[h, w]`:
    /// `(in - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + output_padding + 1`.
    fn output_hw(&self, [h, w]: [usize; 2]) -> Result<[usize; 2]> {
        let [top, bottom, left, right] = match self.padding {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => [top, bottom, left, right],
            Padding::Valid | Padding::Same => [0; 4],
        };
        let axis = |i: usize, n: usize, before: usize, after: usize| {
            let full = (n.checked_sub(1)?)
                .checked_mul(self.stride[i])?
                .checked_add(self.dilation[i].checked_mul(self.kernel[i].checked_sub(1)?)?)?
                .checked_add(self.output_padding[i])?
                .checked_add(1)?;
            full.checked_sub(before.checked_add(after)?)
                .filter(|&o| o > 0)
        };
        match (axis(0, h, top, bottom), axis(1, w, left, right)) {
            (Some(ho), Some(wo)) => Ok([ho, wo]),
            _ => Err(Error::model(format!(
                "conv_transpose2d: an input of {h}x{w} with kernel {:?}, stride {:?}, \
                 dilation {:?} and padding {:?} leaves no output (or one too large to count)",
                self.kernel, self.stride, self.dilation, self.padding
            ))),
        }
    }

    /// Check the settings and draw PyTorch's default initialization from `rng`: weight and
    /// bias uniform within `1 / sqrt((out_channels / groups) * kh * kw)`.
    pub fn init(&self, rng: &mut Rng) -> Result<ConvTranspose2d> {
        let params = self.checked()?;
        let dims = self.weight_dims();
        let fan_in = dims[1] * dims[2] * dims[3];
        let mut weights = WeightBias::init(&dims, fan_in, false, rng)?;
        if self.bias {
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            let b = Tensor::from_fn([self.out_channels], |_| rng.uniform_range(-bound, bound))?;
            weights.bias = Some(Param::new(b));
        }
        Ok(ConvTranspose2d {
            config: *self,
            params,
            weights,
            input: None,
        })
    }
}

impl Kind for ConvTranspose2dConfig {
    const NAMES: &'static [&'static str] = &["conv_transpose2d"];

    fn resolve(&self, inputs: &[&[usize]]) -> Result<Self> {
        let c = take_given("in_channels", self.in_channels, channels(inputs)?)?;
        Ok(ConvTranspose2dConfig {
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
        let [c, h, w] = image_shape(single_shape(inputs)?, "conv_transpose2d")?;
        let [ho, wo] = self.output_hw([h, w])?;
        bounded(OP, "stride", vec![self.out_channels, ho, wo])?;
        // The adjoint conv2d's geometry bounds the output (its input) before anything is
        // allocated, and checks that it maps the output back to this input.
        let g = self
            .checked()?
            .geometry([1, self.out_channels, ho, wo], self.weight_dims())?;
        if g.out_hw != [h, w] {
            return Err(Error::model(format!(
                "conv_transpose2d: its output {ho}x{wo} does not map back to the input {h}x{w}"
            )));
        }
        let flops = conv2d_flops(1, self.out_channels, c, [h, w], self.kernel, self.groups)?;
        Ok(Output::new(vec![self.out_channels, ho, wo])
            .with_flops(flops)
            .with_reach(Reach::Whole))
    }

    fn build(&self, rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init(rng)?))
    }
}

/// A 2-D transposed convolution layer (an upsampling convolution).
///
/// Shapes: input `[N, in_channels, H, W]`, weight `[in_channels, out_channels / groups, kh,
/// kw]`, output `[N, out_channels, Ho, Wo]` with `Ho = (H - 1) * stride - pad_top -
/// pad_bottom + dilation * (kh - 1) + output_padding + 1`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    config: ConvTranspose2dConfig,
    params: Conv2dParams,
    weights: WeightBias,
    input: Option<Tensor>,
}

impl ConvTranspose2d {
    pub fn config(&self) -> &ConvTranspose2dConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weights.weight
    }
    pub fn bias(&self) -> Option<&Param> {
        self.weights.bias.as_ref()
    }
}

/// `y[n, k, ...] += bias[k]` over every plane.
fn add_bias(y: &mut Tensor, bias: &Tensor) {
    let k = bias.numel();
    let plane = y.numel() / (y.dims()[0] * k).max(1);
    for (i, p) in y.data_mut().chunks_mut(plane.max(1)).enumerate() {
        let b = bias.data()[i % k];
        p.iter_mut().for_each(|v| *v += b);
    }
}

impl Module for ConvTranspose2d {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let [n, c, h, w] = x.dims4("conv_transpose2d", "input")?;
        if Some(c) != self.config.in_channels {
            return Err(Error::model(format!(
                "conv_transpose2d: input of {c} channels for in_channels = {:?}",
                self.config.in_channels
            )));
        }
        let [ho, wo] = self.config.output_hw([h, w])?;
        let out_dims = [n, self.config.out_channels, ho, wo];
        bounded(OP, "stride", out_dims.to_vec())?;
        let mut y = conv2d_grad_input(&x, &self.weights.weight.value, out_dims, &self.params)?;
        if let Some(b) = self.weights.bias_value() {
            add_bias(&mut y, b);
        }
        self.input = ctx.record.then_some(x);
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = recorded(&self.input)?;
        let dims = self.config.weight_dims();
        let grad_weight = conv2d_grad_weight(x, &grad_output, dims, &self.params)?;
        let grad_bias = match self.weights.bias {
            Some(_) => Some(conv2d_grad_bias(&grad_output)?),
            None => None,
        };
        let grad_input = match need_input_grad {
            true => Some(conv2d(
                &grad_output,
                &self.weights.weight.value,
                None,
                &self.params,
            )?),
            false => None,
        };
        self.weights.accumulate(&Some(grad_weight), &grad_bias)?;
        Ok(vec![grad_input])
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
