//! `pad`: [`Pad`], as `F.pad` of images over height and width (ONNX `Pad`).

use convnet_core::{PaddingMode, Tensor, pad2d, pad2d_backward, padded_dims};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::kind::{Kind, Output};
use super::values;
use super::{ForwardCtx, Layer, Module, image_shape, recorded, single, single_shape};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// What the border holds: `"constant"` (`value`), `"reflect"`, `"replicate"`, `"circular"`.
mod mode {
    use super::*;

    const CHOICES: &[(&str, PaddingMode)] = &[
        ("constant", PaddingMode::Zeros),
        ("reflect", PaddingMode::Reflect),
        ("replicate", PaddingMode::Replicate),
        ("circular", PaddingMode::Circular),
    ];

    pub(crate) fn serialize<S: Serializer>(v: &PaddingMode, s: S) -> Result<S::Ok, S::Error> {
        let (word, _) = (CHOICES.iter().find(|(_, m)| m == v))
            .ok_or_else(|| serde::ser::Error::custom(format!("no word for {v:?}")))?;
        s.serialize_str(word)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PaddingMode, D::Error> {
        values::word(&String::deserialize(d)?, CHOICES)
    }
}

fn constant() -> PaddingMode {
    PaddingMode::Zeros
}

/// Settings of a [`Pad`]: the `pad` table of a model file. `pads` is `[top, left, bottom,
/// right]` (ONNX's order for the height and width axes: the begins, then the ends).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PadConfig {
    pub pads: [usize; 4],
    #[serde(with = "mode", default = "constant")]
    pub mode: PaddingMode,
    /// The border's value in mode `"constant"`.
    #[serde(with = "values::finite", default)]
    pub value: f32,
}

impl PadConfig {
    /// `pads` `[top, left, bottom, right]` with zeros.
    pub fn new(pads: [usize; 4]) -> Self {
        PadConfig {
            pads,
            mode: constant(),
            value: 0.0,
        }
    }

    /// The amounts in the kernels' order, `[top, bottom, left, right]`.
    fn amounts(&self) -> [usize; 4] {
        let [top, left, bottom, right] = self.pads;
        [top, bottom, left, right]
    }
}

impl Kind for PadConfig {
    const NAMES: &'static [&'static str] = &["pad"];

    fn check(&self) -> Result<()> {
        if self.mode != PaddingMode::Zeros && self.value != 0.0 {
            return Err(Error::config(
                "value",
                "a border value is for mode = \"constant\" only",
            ));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let [c, h, w] = image_shape(single_shape(inputs)?, "pad")?;
        let [_, c, h, w] = padded_dims([1, c, h, w], self.amounts(), self.mode)?;
        Ok(Output::new(vec![c, h, w]))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Pad {
            config: *self,
            input_dims: None,
        }))
    }
}

/// Padding of each plane, as `F.pad(x, (left, right, top, bottom), mode, value)`.
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, H + top + bottom, W + left + right]`.
#[derive(Debug, Clone)]
pub struct Pad {
    config: PadConfig,
    input_dims: Option<[usize; 4]>,
}

impl Pad {
    pub fn config(&self) -> &PadConfig {
        &self.config
    }
}

impl Module for Pad {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let c = &self.config;
        let y = pad2d(&x, c.amounts(), c.mode, c.value)?;
        self.input_dims = ctx.record.then(|| x.dims4("pad", "input")).transpose()?;
        Ok(y)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let dims = *recorded(&self.input_dims)?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        let c = &self.config;
        Ok(vec![Some(pad2d_backward(
            &grad_output,
            dims,
            c.amounts(),
            c.mode,
        )?)])
    }

    fn clear(&mut self) {
        self.input_dims = None;
    }
}
