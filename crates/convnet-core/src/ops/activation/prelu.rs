//! PReLU, `x > 0 ? x : w * x` with learnt slopes `w` (one shared, or one per channel), and
//! its gradients; the weight gradient is summed in `f64`.

use num_traits::Float;
use rayon::prelude::*;

use super::{map, map2};
use crate::error::{Error, Result};
use crate::ops::elementwise::CHUNK;
use crate::tensor::{Tensor, check_same_shape};

/// The gradients of [`prelu`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreluGrads {
    /// Same shape as the input.
    pub grad_input: Tensor,
    /// Same shape as the weight.
    pub grad_weight: Tensor,
}

/// PReLU, `torch.nn.functional.prelu`: `x > 0 ? x : w * x`.
///
/// `weight` holds one slope (shape `[1]`, or a scalar) shared by every element, or one slope
/// per channel (shape `[C]`, `C` = dimension 1 of an input of rank 2 or more).
pub fn prelu(input: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let layout = PreluLayout::new("prelu", input, weight)?;
    let mut y = vec![0.0; input.numel()];
    prelu_forward(layout, input.data(), weight.data(), &mut y);
    Ok(Tensor::from_parts(input.dims().to_vec(), y))
}

/// The gradients of [`prelu`] w.r.t. its input and its weight. `grad_output` must have the
/// input's shape.
pub fn prelu_backward(grad_output: &Tensor, input: &Tensor, weight: &Tensor) -> Result<PreluGrads> {
    const OP: &str = "prelu_backward";
    let layout = PreluLayout::new(OP, input, weight)?;
    check_same_shape(OP, ("grad_output", grad_output), ("the input", input))?;
    let mut gx = vec![0.0; input.numel()];
    let mut gw = vec![0.0; weight.numel()];
    prelu_grads(
        layout,
        grad_output.data(),
        input.data(),
        weight.data(),
        &mut gx,
        &mut gw,
    );
    Ok(PreluGrads {
        grad_input: Tensor::from_parts(input.dims().to_vec(), gx),
        grad_weight: Tensor::from_parts(weight.dims().to_vec(), gw),
    })
}

/// How PReLU's slopes map onto the input.
#[derive(Debug, Clone, Copy)]
pub(super) enum PreluLayout {
    /// One slope for every element.
    Shared,
    /// One slope per channel: the input is `outer` blocks of `channels` planes of `inner`
    /// elements each.
    PerChannel { channels: usize, inner: usize },
}

impl PreluLayout {
    pub(super) fn new(op: &'static str, input: &Tensor, weight: &Tensor) -> Result<Self> {
        if weight.rank() > 1 {
            return Err(Error::shape(
                op,
                format!(
                    "weight must be a scalar or 1-D (one slope, or one per channel), got shape {}",
                    weight.shape()
                ),
            ));
        }
        let slopes = weight.numel();
        if slopes == 1 {
            return Ok(PreluLayout::Shared);
        }
        match input.dims() {
            [_, channels, rest @ ..] if *channels == slopes => Ok(PreluLayout::PerChannel {
                channels: slopes,
                inner: rest.iter().product(),
            }),
            [_, channels, ..] => Err(Error::shape(
                op,
                format!(
                    "weight {} has {slopes} slopes but input {} has {channels} channels \
                     (dimension 1); give 1 slope or one per channel",
                    weight.shape(),
                    input.shape()
                ),
            )),
            _ => Err(Error::shape(
                op,
                format!(
                    "weight {} has {slopes} slopes but input {} has no channel dimension \
                     (rank < 2), so it takes exactly 1 slope",
                    weight.shape(),
                    input.shape()
                ),
            )),
        }
    }
}

/// Planes per parallel task for PReLU's per-channel loops over planes of `inner` elements.
fn planes_per_task(inner: usize) -> usize {
    CHUNK.div_ceil(inner.max(1))
}

pub(super) fn prelu_forward<T: Float + Send + Sync>(
    layout: PreluLayout,
    x: &[T],
    w: &[T],
    y: &mut [T],
) {
    let zero = T::zero();
    match layout {
        PreluLayout::Shared => {
            let w = w[0];
            map(x, y, |x| if x > zero { x } else { w * x });
        }
        PreluLayout::PerChannel { channels, inner } => {
            if inner == 0 {
                return;
            }
            y.par_chunks_mut(inner)
                .zip(x.par_chunks(inner))
                .enumerate()
                .with_min_len(planes_per_task(inner))
                .for_each(|(p, (y, x))| {
                    let w = w[p % channels];
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = if x > zero { x } else { w * x };
                    }
                });
        }
    }
}

/// `gx = x > 0 ? g : w * g`; `gw[c] = sum over channel c of (x > 0 ? 0 : x * g)`, in `f64`.
pub(super) fn prelu_grads<T: Float + Send + Sync>(
    layout: PreluLayout,
    g: &[T],
    x: &[T],
    w: &[T],
    gx: &mut [T],
    gw: &mut [T],
) {
    let zero = T::zero();
    let slope_term = |x: T, g: T| -> f64 {
        if x > zero {
            0.0
        } else {
            (x * g).to_f64().unwrap_or(f64::NAN)
        }
    };
    match layout {
        PreluLayout::Shared => {
            let w0 = w[0];
            map2(g, x, gx, |g, x| if x > zero { g } else { w0 * g });
            let sum: f64 = x.iter().zip(g).map(|(&x, &g)| slope_term(x, g)).sum();
            gw[0] = T::from(sum).unwrap_or_else(T::nan);
        }
        PreluLayout::PerChannel { channels, inner } => {
            if inner == 0 {
                gw.fill(zero);
                return;
            }
            gx.par_chunks_mut(inner)
                .zip(g.par_chunks(inner))
                .zip(x.par_chunks(inner))
                .enumerate()
                .with_min_len(planes_per_task(inner))
                .for_each(|(p, ((gx, g), x))| {
                    let w = w[p % channels];
                    for ((gx, &g), &x) in gx.iter_mut().zip(g).zip(x) {
                        *gx = if x > zero { g } else { w * g };
                    }
                });
            // Channel by channel, each summing its planes in order: deterministic.
            let block = channels * inner;
            gw.par_iter_mut().enumerate().for_each(|(c, gw)| {
                let mut sum = 0.0f64;
                for (g, x) in g.chunks_exact(block).zip(x.chunks_exact(block)) {
                    let plane = c * inner..(c + 1) * inner;
                    let (g, x) = (&g[plane.clone()], &x[plane]);
                    sum += x
                        .iter()
                        .zip(g)
                        .map(|(&x, &g)| slope_term(x, g))
                        .sum::<f64>();
                }
                *gw = T::from(sum).unwrap_or_else(T::nan);
            });
        }
    }
}
