//! `concat`: `Concat`, as `torch.cat(inputs, dim)` (ONNX `Concat`).

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use super::kind::{Arity, Kind, Output, Reach};
use super::{ForwardCtx, Layer, Module, recorded};
use crate::error::{Error, Result};
use crate::rng::Rng;

fn channel_axis() -> usize {
    1
}

/// Settings of a [`Concat`]: the `concat` table of a model file, whose `inputs` name the
/// layers to join (`dim` 1: channels of images, features of vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcatConfig {
    /// The axis of the batched tensors `[N, ...]` to join along (1 or more: the batch axis
    /// is never joined).
    #[serde(default = "channel_axis")]
    pub dim: usize,
}

impl ConcatConfig {
    pub fn new(dim: usize) -> Self {
        ConcatConfig { dim }
    }
}

impl Default for ConcatConfig {
    fn default() -> Self {
        Self::new(channel_axis())
    }
}

impl Kind for ConcatConfig {
    const NAMES: &'static [&'static str] = &["concat"];

    fn arity(&self) -> Arity {
        Arity::AtLeast(1)
    }

    fn check(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::config(
                "dim",
                "concat cannot join along the batch axis 0; give dim = 1 (channels) or a later axis",
            ));
        }
        Ok(())
    }

    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::model("concat takes at least one input"))?;
        let axis = self.dim - 1;
        if axis >= first.len() {
            return Err(Error::config(
                "dim",
                format!(
                    "concat along dim {} needs inputs [N, ...] of more than {} axes, got \
                     per-sample shape {first:?}",
                    self.dim, self.dim
                ),
            ));
        }
        let mut shape = first.to_vec();
        shape[axis] = 0;
        for (i, s) in inputs.iter().enumerate() {
            let agrees = s.len() == first.len()
                && (s.iter().zip(first.iter()).enumerate()).all(|(k, (a, b))| k == axis || a == b);
            if !agrees {
                return Err(Error::model(format!(
                    "concat along dim {} needs inputs that agree on every other axis, but \
                     input 0 has per-sample shape {first:?} and input {i} has {s:?}",
                    self.dim
                )));
            }
            shape[axis] = shape[axis]
                .checked_add(s[axis])
                .ok_or_else(|| Error::model("concat: the joined axis overflows"))?;
        }
        Ok(Output::new(shape).with_reach(Reach::Join))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        self.check()?;
        Ok(Box::new(Concat {
            dim: self.dim,
            widths: None,
        }))
    }
}

/// Several inputs joined along one axis, as `torch.cat` (the join of an Inception or
/// U-Net block).
///
/// Shapes: inputs `[N, ..., d_i, ...]` that agree on every axis but `dim`; output
/// `[N, ..., sum d_i, ...]`. Its backward pass splits the gradient back into the inputs'
/// shapes.
#[derive(Debug, Clone)]
pub struct Concat {
    dim: usize,
    /// Each input's dims, recorded for the backward pass.
    widths: Option<Vec<Vec<usize>>>,
}

impl Concat {
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// `(outer, inner)`: the number of blocks before the axis `dim` of `dims`, and the values
/// after it.
fn blocks(dims: &[usize], dim: usize) -> (usize, usize) {
    (
        dims[..dim].iter().product(),
        dims[dim + 1..].iter().product(),
    )
}

impl Module for Concat {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::model("concat takes at least one input"))?;
        let dim = self.dim;
        let mut out_dims = first.dims().to_vec();
        if dim >= out_dims.len() {
            return Err(Error::model(format!(
                "concat along dim {dim} got an input of shape {}",
                first.shape()
            )));
        }
        out_dims[dim] = 0;
        for x in &inputs {
            let d = x.dims();
            let agrees = d.len() == out_dims.len()
                && (d.iter().zip(first.dims()).enumerate()).all(|(k, (a, b))| k == dim || a == b);
            if !agrees {
                return Err(Error::model(format!(
                    "concat along dim {dim} got inputs of shapes {} and {}",
                    first.shape(),
                    x.shape()
                )));
            }
            out_dims[dim] += d[dim];
        }
        let (outer, inner) = blocks(&out_dims, dim);
        let mut out = Vec::with_capacity(out_dims.iter().product());
        for o in 0..outer {
            for x in &inputs {
                let len = x.dims()[dim] * inner;
                out.extend_from_slice(&x.data()[o * len..(o + 1) * len]);
            }
        }
        self.widths = ctx
            .record
            .then(|| inputs.iter().map(|x| x.dims().to_vec()).collect());
        Ok(Tensor::new(out_dims, out)?)
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let widths = recorded(&self.widths)?;
        if !need_input_grad {
            return Ok(vec![None; widths.len()]);
        }
        let dim = self.dim;
        let total: usize = widths.iter().map(|d| d[dim]).sum();
        let mut want = widths[0].clone();
        want[dim] = total;
        if grad_output.dims() != want {
            return Err(Error::model(format!(
                "gradient of shape {} for an output of shape {want:?}",
                grad_output.shape()
            )));
        }
        let (outer, inner) = blocks(&want, dim);
        let g = grad_output.data();
        let mut grads: Vec<Vec<f32>> = widths
            .iter()
            .map(|d| Vec::with_capacity(d.iter().product()))
            .collect();
        let mut at = 0;
        for _ in 0..outer {
            for (grad, d) in grads.iter_mut().zip(widths) {
                let len = d[dim] * inner;
                grad.extend_from_slice(&g[at..at + len]);
                at += len;
            }
        }
        (grads.into_iter().zip(widths))
            .map(|(grad, d)| Ok(Some(Tensor::new(d.clone(), grad)?)))
            .collect()
    }

    fn clear(&mut self) {
        self.widths = None;
    }
}
