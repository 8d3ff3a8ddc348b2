//! `hardswish`: the hard swish activation, as `torch.nn.Hardswish` (MobileNetV3):
//! `x * relu6(x + 3) / 6`, run by the [`Piecewise`](super::piecewise::Piecewise) module.

use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output};
use super::piecewise::{Piecewise, PiecewiseFn};
use super::{Layer, same_shape};
use crate::error::Result;
use crate::rng::Rng;

/// Settings of a hard swish (none): the `hardswish` table of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardSwishConfig {}

impl Kind for HardSwishConfig {
    const NAMES: &'static [&'static str] = &["hardswish"];

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        same_shape(inputs)
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(Piecewise::new(PiecewiseFn::HardSwish)))
    }
}

/// `x * relu6(x + 3) / 6`, computed in PyTorch's order so that values are equal bit for bit.
pub(super) fn hardswish(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// The gradient for `g` at `x`, as PyTorch's backward takes it: 0 up to -3, `g * (x / 3 +
/// 1/2)` between, `g` from 3 (at each kink, the flat side's slope).
pub(super) fn hardswish_grad(g: f32, x: f32) -> f32 {
    if x <= -3.0 {
        0.0
    } else if x < 3.0 {
        g * (x / 3.0 + 0.5)
    } else {
        g
    }
}
