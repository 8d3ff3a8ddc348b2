//! Pooling: `max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`, `global_avg_pool2d` and
//! `global_max_pool2d`.

use convnet_core::{
    Pool2dParams, Tensor, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d,
    avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d,
    max_pool2d, max_pool2d_backward, max_pool2d_backward_from_input, max_pool2d_output,
};
use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output, Reach, Window, by_type_name};
use super::values::{self, shorthand_pair};
use super::{ForwardCtx, Layer, Module, image_shape, recorded, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

fn batch_dims(x: &Tensor, kind: &'static str) -> Result<[usize; 4]> {
    Ok(x.dims4(kind, "input")?)
}

fn zeros() -> [usize; 2] {
    [0, 0]
}

/// The output of a sliding-window pooling with `params` on per-sample `inputs` (`kind`: the
/// type name, for errors).
fn window_output(params: &Pool2dParams, inputs: &[&[usize]], kind: &str) -> Result<Output> {
    let [c, h, w] = image_shape(single_shape(inputs)?, kind)?;
    let [ho, wo] = params.output_hw([h, w])?;
    let [ph, pw] = params.padding();
    Ok(
        Output::new(vec![c, ho, wo]).with_reach(Reach::Window(Window {
            kernel: params.kernel(),
            stride: params.stride(),
            dilation: params.dilation(),
            pad: [ph, ph, pw, pw],
            ceil: params.ceil_mode(),
        })),
    )
}

/// The settings of the pooling shorthand `pool:max|avg:KxK[:sS][:pP][:ceil]`: kernel,
/// stride (if given), padding, ceil mode.
type PoolShorthand = ([usize; 2], Option<[usize; 2]>, [usize; 2], bool);

fn pool_shorthand(kernel: &str, options: &[&str]) -> Result<PoolShorthand> {
    let kernel = shorthand_pair("kernel", kernel)?;
    let (mut stride, mut padding, mut ceil) = (None, zeros(), false);
    for &opt in options {
        match (opt, opt.strip_prefix('s'), opt.strip_prefix('p')) {
            ("ceil", _, _) => ceil = true,
            (_, Some(s), _) => stride = Some(shorthand_pair("stride", s)?),
            (_, _, Some(p)) => padding = shorthand_pair("padding", p)?,
            _ => return Err(Error::model(format!("unknown pool option '{opt}'"))),
        }
    }
    Ok((kernel, stride, padding, ceil))
}

/// The [`Kind`] of a sliding-window pooling's settings `$config` (which have `params`, `init`
/// and the fields of the shorthand): type name `$name`, shorthand `pool:$word:KxK...`.
macro_rules! window_pool_kind {
    ($config:ident, $name:literal, $word:literal) => {
        impl Kind for $config {
            const NAMES: &'static [&'static str] = &[$name];
            const SHORTHAND: &'static str = concat!("pool:", $word, ":KxK[:sS][:pP][:ceil]");

            fn check(&self) -> Result<()> {
                self.params().map(drop)
            }

            fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
                window_output(&self.params()?, inputs, self.name())
            }

            fn build(&self, _rng: &mut Rng) -> Result<Layer> {
                Ok(Box::new(self.init()?))
            }

            fn shorthand(words: &[&str]) -> Option<Result<Self>> {
                let settings = match words {
                    ["pool", $word, kernel, options @ ..] => pool_shorthand(kernel, options),
                    _ => return by_type_name(words),
                };
                Some(
                    settings.map(|(kernel, stride, padding, ceil_mode)| $config {
                        stride,
                        padding,
                        ceil_mode,
                        ..Self::new(kernel)
                    }),
                )
            }
        }
    };
}

/// Settings of a [`MaxPool2d`]: the `max_pool2d` table of a model file (stride: the kernel,
/// unless given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxPool2dConfig {
    #[serde(with = "values::pair")]
    pub kernel: [usize; 2],
    #[serde(
        with = "values::pair::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stride: Option<[usize; 2]>,
    #[serde(with = "values::pair", default = "zeros")]
    pub padding: [usize; 2],
    #[serde(with = "values::pair", default = "values::ones")]
    pub dilation: [usize; 2],
    #[serde(default)]
    pub ceil_mode: bool,
}

impl MaxPool2dConfig {
    /// Max pooling over `kernel` windows, with stride = kernel, no padding.
    pub fn new(kernel: [usize; 2]) -> Self {
        MaxPool2dConfig {
            kernel,
            stride: None,
            padding: zeros(),
            dilation: values::ones(),
            ceil_mode: false,
        }
    }
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// The kernel's parameters, checked.
    pub fn params(&self) -> Result<Pool2dParams> {
        Ok(Pool2dParams::builder(self.kernel)
            .with_stride(self.stride.unwrap_or(self.kernel))
            .with_padding(self.padding)
            .with_dilation(self.dilation)
            .with_ceil_mode(self.ceil_mode)
            .build()?)
    }

    pub fn init(&self) -> Result<MaxPool2d> {
        Ok(MaxPool2d {
            params: self.params()?,
            cache: None,
        })
    }
}

window_pool_kind!(MaxPool2dConfig, "max_pool2d", "max");

/// Max pooling, as `torch.nn.MaxPool2d`. Shapes: `[N, C, H, W]` -> `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    params: Pool2dParams,
    cache: Option<MaxKept>,
}

/// What a recorded max pooling keeps for its backward pass.
#[derive(Debug, Clone)]
enum MaxKept {
    /// The input, when another layer keeps it anyway (a ReLU keeps its output): the
    /// backward pass finds each window's maximum again, and the forward pass writes no
    /// index (8 bytes per output, twice the output's size, for 2x2 windows).
    Input(Tensor),
    /// The argmax indices and the input shape.
    Indices(Vec<usize>, [usize; 4]),
}

impl MaxPool2d {
    pub fn pool_params(&self) -> &Pool2dParams {
        &self.params
    }

    /// Keep `input` as the recorded forward pass's input (which that pass, fused into the
    /// layers before, did not keep), for the backward pass to find the maxima again.
    pub(crate) fn keep_input(&mut self, input: Tensor) {
        self.cache = Some(MaxKept::Input(input));
    }
}

impl Module for MaxPool2d {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let dims = batch_dims(&x, MaxPool2dConfig::NAMES[0])?;
        self.cache = None;
        if !ctx.record || x.is_shared() {
            let y = max_pool2d_output(&x, &self.params)?;
            self.cache = ctx.record.then_some(MaxKept::Input(x));
            return Ok(y);
        }
        let out = max_pool2d(&x, &self.params)?;
        self.cache = Some(MaxKept::Indices(out.indices, dims));
        Ok(out.output)
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
        let gx = match kept {
            MaxKept::Input(x) => max_pool2d_backward_from_input(&grad_output, x, &self.params)?,
            MaxKept::Indices(indices, dims) => max_pool2d_backward(&grad_output, indices, *dims)?,
        };
        Ok(vec![Some(gx)])
    }
    fn clear(&mut self) {
        self.cache = None;
    }
}

/// Settings of an [`AvgPool2d`]: the `avg_pool2d` table of a model file (stride: the kernel,
/// unless given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgPool2dConfig {
    #[serde(with = "values::pair")]
    pub kernel: [usize; 2],
    #[serde(
        with = "values::pair::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stride: Option<[usize; 2]>,
    #[serde(with = "values::pair", default = "zeros")]
    pub padding: [usize; 2],
    #[serde(default)]
    pub ceil_mode: bool,
    #[serde(default = "values::yes")]
    pub count_include_pad: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divisor_override: Option<usize>,
}

impl AvgPool2dConfig {
    /// Average pooling over `kernel` windows, with stride = kernel, no padding, the padding
    /// counted in the divisor.
    pub fn new(kernel: [usize; 2]) -> Self {
        AvgPool2dConfig {
            kernel,
            stride: None,
            padding: zeros(),
            ceil_mode: false,
            count_include_pad: values::yes(),
            divisor_override: None,
        }
    }
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
    pub fn with_count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
    pub fn with_divisor_override(mut self, divisor_override: Option<usize>) -> Self {
        self.divisor_override = divisor_override;
        self
    }

    /// The kernel's parameters, checked.
    pub fn params(&self) -> Result<Pool2dParams> {
        Ok(Pool2dParams::builder(self.kernel)
            .with_stride(self.stride.unwrap_or(self.kernel))
            .with_padding(self.padding)
            .with_ceil_mode(self.ceil_mode)
            .with_count_include_pad(self.count_include_pad)
            .with_divisor_override(self.divisor_override)
            .build()?)
    }

    pub fn init(&self) -> Result<AvgPool2d> {
        Ok(AvgPool2d {
            params: self.params()?,
            input_dims: None,
        })
    }
}

window_pool_kind!(AvgPool2dConfig, "avg_pool2d", "avg");

/// Average pooling, as `torch.nn.AvgPool2d`. Shapes: `[N, C, H, W]` -> `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct AvgPool2d {
    params: Pool2dParams,
    input_dims: Option<[usize; 4]>,
}

impl AvgPool2d {
    pub fn pool_params(&self) -> &Pool2dParams {
        &self.params
    }
}

impl Module for AvgPool2d {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let dims = batch_dims(&x, AvgPool2dConfig::NAMES[0])?;
        let y = avg_pool2d(&x, &self.params)?;
        self.input_dims = ctx.record.then_some(dims);
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let dims = recorded(&self.input_dims)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(avg_pool2d_backward(
            &grad_output,
            *dims,
            &self.params,
        )?)])
    }
    fn clear(&mut self) {
        self.input_dims = None;
    }
}

/// Settings of an [`AdaptiveAvgPool2d`]: the `adaptive_avg_pool2d` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool2dConfig {
    #[serde(with = "values::pair")]
    pub output_size: [usize; 2],
}

impl AdaptiveAvgPool2dConfig {
    /// Average pooling to `output_size` (height, width) whatever the input's size.
    pub fn new(output_size: [usize; 2]) -> Self {
        AdaptiveAvgPool2dConfig { output_size }
    }

    pub fn init(&self) -> Result<AdaptiveAvgPool2d> {
        self.check()?;
        Ok(AdaptiveAvgPool2d {
            output_hw: self.output_size,
            input_dims: None,
        })
    }
}

impl Kind for AdaptiveAvgPool2dConfig {
    const NAMES: &'static [&'static str] = &["adaptive_avg_pool2d"];
    const SHORTHAND: &'static str = "adaptive:HxW";

    fn check(&self) -> Result<()> {
        if self.output_size.contains(&0) {
            return Err(Error::config("output_size", "must be at least 1x1"));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let [c, _, _] = image_shape(single_shape(inputs)?, self.name())?;
        let [h, w] = self.output_size;
        Ok(Output::new(vec![c, h, w]).with_reach(Reach::Whole))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init()?))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["adaptive", size] => Some(shorthand_pair("size", size).map(Self::new)),
            _ => by_type_name(words),
        }
    }
}

/// Adaptive average pooling to a fixed output size, as `torch.nn.AdaptiveAvgPool2d`.
/// Shapes: `[N, C, H, W]` -> `[N, C, oh, ow]`.
#[derive(Debug, Clone)]
pub struct AdaptiveAvgPool2d {
    output_hw: [usize; 2],
    input_dims: Option<[usize; 4]>,
}

impl AdaptiveAvgPool2d {
    pub fn output_hw(&self) -> [usize; 2] {
        self.output_hw
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let dims = batch_dims(&x, AdaptiveAvgPool2dConfig::NAMES[0])?;
        let y = adaptive_avg_pool2d(&x, self.output_hw)?;
        self.input_dims = ctx.record.then_some(dims);
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let dims = recorded(&self.input_dims)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(adaptive_avg_pool2d_backward(
            &grad_output,
            *dims,
        )?)])
    }
    fn clear(&mut self) {
        self.input_dims = None;
    }
}

/// Which reduction a [`GlobalPool`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolKind {
    #[default]
    Avg,
    Max,
}

/// Settings of a [`GlobalPool`]: the `global_avg_pool2d` and `global_max_pool2d` tables of
/// a model file (no keys; the type name says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalPoolConfig {
    #[serde(skip)]
    pub kind: PoolKind,
}

impl GlobalPoolConfig {
    pub fn new(kind: PoolKind) -> Self {
        GlobalPoolConfig { kind }
    }

    pub fn init(&self) -> GlobalPool {
        GlobalPool {
            kind: self.kind,
            cache: None,
        }
    }
}

impl Kind for GlobalPoolConfig {
    const NAMES: &'static [&'static str] = &["global_avg_pool2d", "global_max_pool2d"];
    const SHORTHAND: &'static str = "gpool:avg|max";

    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Avg => Self::NAMES[0],
            PoolKind::Max => Self::NAMES[1],
        }
    }

    fn named(self, name: &str) -> Self {
        let kind = if name == Self::NAMES[1] {
            PoolKind::Max
        } else {
            PoolKind::Avg
        };
        GlobalPoolConfig { kind }
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let [c, _, _] = image_shape(single_shape(inputs)?, self.name())?;
        Ok(Output::new(vec![c, 1, 1]).with_reach(Reach::Whole))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init()))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["gpool", "avg"] => Some(Ok(Self::new(PoolKind::Avg))),
            ["gpool", "max"] => Some(Ok(Self::new(PoolKind::Max))),
            _ => by_type_name(words),
        }
    }
}

/// Global pooling of each plane to one value (`AdaptiveAvgPool2d(1)` /
/// `AdaptiveMaxPool2d(1)`). Shapes: `[N, C, H, W]` -> `[N, C, 1, 1]`.
#[derive(Debug, Clone)]
pub struct GlobalPool {
    kind: PoolKind,
    /// Input shape, and the argmax indices for max.
    cache: Option<([usize; 4], Vec<usize>)>,
}

impl GlobalPool {
    pub fn pool_kind(&self) -> PoolKind {
        self.kind
    }
}

impl Module for GlobalPool {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let name = GlobalPoolConfig::new(self.kind).name();
        let dims = batch_dims(&x, name)?;
        let (y, indices) = match self.kind {
            PoolKind::Avg => (global_avg_pool2d(&x)?, Vec::new()),
            PoolKind::Max => {
                let out = global_max_pool2d(&x)?;
                (out.output, out.indices)
            }
        };
        self.cache = ctx.record.then_some((dims, indices));
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let (dims, indices) = recorded(&self.cache)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        let g = match self.kind {
            PoolKind::Avg => global_avg_pool2d_backward(&grad_output, *dims)?,
            PoolKind::Max => max_pool2d_backward(&grad_output, indices, *dims)?,
        };
        Ok(vec![Some(g)])
    }
    fn clear(&mut self) {
        self.cache = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded max pooling keeps its input when another holder shares it, its indices
    /// otherwise; both give the same output and, bit for bit, the same gradient.
    #[test]
    fn max_pooling_keeps_a_shared_input_instead_of_indices_with_the_same_gradient() {
        let dims = [2, 3, 9, 12];
        let x = Tensor::from_fn(dims, |i| match i % 5 {
            0 => 0.0,
            k => ((i * 7919) % 101) as f32 * 0.1 - k as f32,
        })
        .unwrap();
        let gy = Tensor::from_fn([2, 3, 4, 6], |i| i as f32 * 0.25 - 3.0).unwrap();
        let ctx = ForwardCtx::train(0, 0);
        let run = |share: bool| {
            let mut pool = MaxPool2dConfig::new([2, 2]).init().unwrap();
            let input = x.data().to_vec();
            let input = Tensor::new(dims.to_vec(), input).unwrap();
            let kept_elsewhere = share.then(|| input.clone());
            let y = pool.forward(vec![input], &ctx).unwrap();
            let kept_input = matches!(pool.cache, Some(MaxKept::Input(_)));
            let gx = pool.backward(gy.clone(), true).unwrap().remove(0).unwrap();
            drop(kept_elsewhere);
            (y, gx, kept_input)
        };
        let (y_shared, gx_shared, kept_input) = run(true);
        assert!(kept_input, "a shared input is kept");
        let (y_alone, gx_alone, kept_input) = run(false);
        assert!(
            !kept_input,
            "an input nobody else holds is not kept: the indices are"
        );
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y_shared), bits(&y_alone));
        assert_eq!(bits(&gx_shared), bits(&gx_alone));
        assert!(gx_alone.data().iter().any(|&v| v != 0.0));
    }
}
