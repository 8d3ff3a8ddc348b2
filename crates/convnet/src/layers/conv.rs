//! `Conv2d`, as `torch.nn.Conv2d`.

use convnet_core::{
    Conv2dParams, ConvMode, GradRequest, Padding, PaddingMode, Tensor, conv2d, conv2d_backward,
    geometry::conv2d_param_count,
};

use super::{
    ForwardCtx, Module, Param, image_shape, kaiming_uniform, recorded, single, single_shape,
};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Configuration of a [`Conv2d`]; `init` checks it and draws the weights.
///
/// ```
/// use convnet::layers::Conv2dConfig;
/// use convnet::rng::Rng;
/// let conv = Conv2dConfig::new([1, 32], [3, 3]).with_stride([2, 2]).init(&mut Rng::new(0))?;
/// assert_eq!(conv.weight().value.dims(), &[32, 1, 3, 3]);
/// # Ok::<(), convnet::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: Padding,
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
    pub padding_mode: PaddingMode,
    pub mode: ConvMode,
}

impl Conv2dConfig {
    /// `[in_channels, out_channels]` and the kernel size; stride 1, no padding, bias.
    pub fn new([in_channels, out_channels]: [usize; 2], kernel: [usize; 2]) -> Self {
        Conv2dConfig {
            in_channels,
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

    /// Shape of the weight: `[out_channels, in_channels / groups, kh, kw]`.
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Per-sample output shape `[out_channels, Ho, Wo]` for a per-sample input `[C, H, W]`.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [c, h, w] = image_shape(input, "conv2d")?;
        let g = self.params()?.geometry([1, c, h, w], self.weight_dims())?;
        Ok(vec![self.out_channels, g.out_hw[0], g.out_hw[1]])
    }

    /// The shapes of the learnable tensors, by `state_dict` name (nothing is allocated).
    pub fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        let mut dims = vec![("weight", self.weight_dims().to_vec())];
        if self.bias {
            dims.push(("bias", vec![self.out_channels]));
        }
        dims
    }

    /// Learnable parameters.
    pub fn param_count(&self) -> Result<u64> {
        Ok(conv2d_param_count(
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.groups,
            self.bias,
        )?)
    }

    /// Check the configuration (all that `init` checks, drawing nothing) and return its
    /// kernel parameters.
    pub fn check(&self) -> Result<Conv2dParams> {
        let params = self.params()?;
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(Error::config(
                "channels",
                format!(
                    "conv2d needs at least one input and output channel, got {} -> {}",
                    self.in_channels, self.out_channels
                ),
            ));
        }
        self.param_count()?;
        if self.kernel.contains(&0) {
            return Err(Error::config("kernel", "must be at least 1x1"));
        }
        Ok(params)
    }

    /// Check the configuration and draw PyTorch's default initialization from `rng`.
    pub fn init(&self, rng: &mut Rng) -> Result<Conv2d> {
        let params = self.check()?;
        let dims = self.weight_dims();
        let fan_in = dims[1] * dims[2] * dims[3];
        let weight = kaiming_uniform(&dims, fan_in, rng)?;
        let bias = if self.bias {
            Some(Param::new(kaiming_uniform(
                &[self.out_channels],
                fan_in,
                rng,
            )?))
        } else {
            None
        };
        Ok(Conv2d {
            config: *self,
            params,
            weight: Param::new(weight),
            bias,
            input: None,
        })
    }
}

/// A 2-D convolution layer.
///
/// Shapes: input `[N, in_channels, H, W]`, output `[N, out_channels, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    config: Conv2dConfig,
    params: Conv2dParams,
    weight: Param,
    bias: Option<Param>,
    input: Option<Tensor>,
}

impl Conv2d {
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }
    pub fn weight(&self) -> &Param {
        &self.weight
    }
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }
    /// The kernel parameters.
    pub fn conv_params(&self) -> &Conv2dParams {
        &self.params
    }
}

impl Module for Conv2d {
    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(single_shape(inputs)?)
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let y = conv2d(
            x,
            &self.weight.value,
            self.bias.as_ref().map(|b| &b.value),
            &self.params,
        )?;
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
        let grads = conv2d_backward(
            grad_output,
            x,
            &self.weight.value,
            &self.params,
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
