//! `resize`: [`Resize`], as `F.interpolate` of images (ONNX `Resize`), nearest or bilinear.

use convnet_core::{Resize2dParams, ResizeMode, Tensor, resize2d, resize2d_backward};
use serde::{Deserialize, Serialize};

use super::bounded::bounded;
use super::kind::{Kind, Output, Reach};
use super::{ForwardCtx, Layer, Module, image_shape, recorded, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// How a [`Resize`] interpolates (the `mode` of a model file's `resize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    #[default]
    Nearest,
    Bilinear,
}

/// Settings of a [`Resize`]: the `resize` table of a model file, with either `scale = [h, w]`
/// (the output is `floor(in * scale)`) or `size = [h, w]`; `mode` `"nearest"` (PyTorch's
/// legacy nearest: ONNX `asymmetric` + `floor`) or `"bilinear"` (`align_corners` false:
/// ONNX `half_pixel`; true: `align_corners`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<[usize; 2]>,
    #[serde(default)]
    pub mode: Interpolation,
    #[serde(default)]
    pub align_corners: bool,
}

impl ResizeConfig {
    /// Resize by `scale`, nearest.
    pub fn by_scale(scale: [f64; 2]) -> Self {
        ResizeConfig {
            scale: Some(scale),
            size: None,
            mode: Interpolation::Nearest,
            align_corners: false,
        }
    }

    /// Resize to `size`, nearest.
    pub fn to_size(size: [usize; 2]) -> Self {
        ResizeConfig {
            size: Some(size),
            scale: None,
            ..Self::by_scale([1.0, 1.0])
        }
    }

    pub fn with_mode(mut self, mode: Interpolation, align_corners: bool) -> Self {
        self.mode = mode;
        self.align_corners = align_corners;
        self
    }

    fn kernel_mode(&self) -> ResizeMode {
        match self.mode {
            Interpolation::Nearest => ResizeMode::Nearest,
            Interpolation::Bilinear => ResizeMode::Bilinear {
                align_corners: self.align_corners,
            },
        }
    }

    /// The kernel's parameters for an input of `in_hw`.
    fn params(&self, in_hw: [usize; 2]) -> Result<Resize2dParams> {
        Ok(match (self.scale, self.size) {
            (Some(scale), None) => Resize2dParams::by_scale(in_hw, scale, self.kernel_mode())?,
            (None, Some(size)) => Resize2dParams::to_size(size, self.kernel_mode())?,
            _ => {
                return Err(Error::config(
                    "scale",
                    "resize needs exactly one of scale = [h, w] and size = [h, w]",
                ));
            }
        })
    }
}

impl Kind for ResizeConfig {
    const NAMES: &'static [&'static str] = &["resize"];

    fn check(&self) -> Result<()> {
        if self.mode == Interpolation::Nearest && self.align_corners {
            return Err(Error::config(
                "align_corners",
                "is for mode = \"bilinear\" only (nearest has no corners to align)",
            ));
        }
        self.params([1, 1]).map(drop).or_else(|e| match e {
            // A scale that empties a 1x1 input may still fit the real input.
            Error::Kernel(convnet_core::Error::TooLarge { .. }) => Ok(()),
            e => Err(e),
        })
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let [c, h, w] = image_shape(single_shape(inputs)?, "resize")?;
        let [ho, wo] = self.params([h, w])?.out_hw();
        let shape = bounded("resize", "size", vec![c, ho, wo])?;
        Ok(Output::new(shape).with_reach(Reach::Whole))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Resize {
            config: *self,
            cache: None,
        }))
    }
}

/// Resizing of each plane, as `F.interpolate(x, size or scale_factor, mode, align_corners)`.
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct Resize {
    config: ResizeConfig,
    /// The input's dims and the kernel's parameters of the recorded forward pass.
    cache: Option<([usize; 4], Resize2dParams)>,
}

impl Resize {
    pub fn config(&self) -> &ResizeConfig {
        &self.config
    }
}

impl Module for Resize {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let dims = x.dims4("resize", "input")?;
        let params = self.config.params([dims[2], dims[3]])?;
        let y = resize2d(&x, &params)?;
        self.cache = ctx.record.then_some((dims, params));
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let (dims, params) = recorded(&self.cache)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(resize2d_backward(&grad_output, *dims, params)?)])
    }

    fn clear(&mut self) {
        self.cache = None;
    }
}
