//! 2-D pooling, forward and backward, computing what PyTorch's CPU kernels compute:
//! `max_pool2d` (with indices), `avg_pool2d`, `adaptive_avg_pool2d`, `adaptive_max_pool2d`,
//! and the global poolings (an adaptive pool to 1x1).
//!
//! Inputs are NCHW. Every (image, channel) plane is pooled on its own; planes run in parallel.
//!
//! This file holds the public functions and their checks; `params.rs` the hyper-parameters
//! ([`Pool2dParams`], checked once) and the output size; `plan.rs` the windows of one problem;
//! `max.rs` and `avg.rs` the kernels (windowed, adaptive and global, forward and backward),
//! `max2x2.rs` the vectorised 2x2 stride-2 max pooling and its one-write backward;
//! `tests.rs` the finite-difference checks, hand-checked cases and errors.
//!
//! # Windows
//! Along one axis, with input length `I`, kernel `k`, stride `s`, padding `p` (the same on
//! both sides, as in PyTorch) and dilation `d`:
//!
//! - **Output length**: `floor((I + 2p - d(k-1) - 1) / s) + 1`; with `ceil_mode` rounded up
//!   instead, dropping a last window that would start in the right padding
//!   ([`pool_output_len`](crate::geometry::pool_output_len), PyTorch's formula). So ceil
//!   mode also keeps one (clipped) window when the dilated kernel overhangs the padded input
//!   by less than one stride.
//! - **Max**: window `o` reads taps `o*s - p + t*d`, `t < k`; taps in the padding count as
//!   -inf. Taps are scanned row-major and a tap replaces the running maximum when
//!   `v > max || v.is_nan()`, so ties keep the *first* index and NaN propagates (the last NaN
//!   wins). The index starts at the first in-bounds tap, so a window of -inf still names a
//!   position. Indices are `h * W + w` inside the input plane, as `return_indices=True` gives.
//! - **Average**: `start = o*s - p`, `end = min(start + k, I + p)`; the window size *before*
//!   clipping to the input is PyTorch's `pool_size`. After clipping, an empty window gives 0.
//!   The divisor is `divisor_override`, else `pool_size` if `count_include_pad`, else the
//!   clipped area. The sum runs row-major in the input's precision, then one division.
//! - **Adaptive**: window `o` of `Out` over `In` is `[floor(o*In/Out), ceil((o+1)*In/Out))`;
//!   windows of neighbours may overlap. The average divides the sum by the window height, then
//!   by its width (two divisions, as PyTorch); the maximum follows the max rule above.
//! - **Global average** (and the adaptive average to 1x1, which PyTorch computes as `mean`)
//!   is the plane's sum divided by `H * W`; the sum is accumulated in `f64` here.
//!
//! # Gradients
//! - max (also adaptive and global max): `grad_input[plane][indices[i]] += grad_output[i]`,
//!   in output order ([`max_pool2d_backward`]).
//! - average: every input of the clipped window of output `i` gets `grad_output[i] / divisor`
//!   (adaptive: `/ kh / kw`; global: `/ (H * W)`).
//!
//! # Checks (as PyTorch)
//! kernel, stride and dilation at least 1; padding at most half the kernel (`p <= k / 2`)
//! on each axis; `divisor_override` not 0; `avg_pool2d` takes no dilation; the input's
//! channel, height and width dimensions non-empty. PyTorch checks max pooling's padding
//! against half the *effective* kernel (`(d(k-1)+1) / 2`) and then against `k / 2`; the
//! second rule is the stricter for every dilation, so one rule serves max and average
//! pooling and [`Pool2dParamsBuilder::build`] applies it.
//!
//! The kernels are generic over the float type so the finite-difference tests can run in `f64`.

mod avg;
mod max;
mod max2x2;
mod params;
mod plan;
#[cfg(test)]
mod tests;

pub use params::{Pool2dParams, Pool2dParamsBuilder};

use std::mem::MaybeUninit;

use avg::{
    adaptive_avg_backward, adaptive_avg_forward, avg_pool_backward, avg_pool_forward,
    global_avg_backward, global_avg_forward,
};
use max::{
    adaptive_max_forward, max_pool_backward, max_pool_backward_blocks,
    max_pool_backward_from_input_f32, max_pool_forward_f32, max_pool_values_f32,
};
use plan::Plan;

use crate::error::{Error, Result};
use crate::tensor::{Tensor, check_elements, fmt_dims};

const MAX_OP: &str = "max_pool2d";
const MAX_BACKWARD_OP: &str = "max_pool2d_backward";
const AVG_OP: &str = "avg_pool2d";
const AVG_BACKWARD_OP: &str = "avg_pool2d_backward";
const ADAPTIVE_AVG_OP: &str = "adaptive_avg_pool2d";
const ADAPTIVE_AVG_BACKWARD_OP: &str = "adaptive_avg_pool2d_backward";
const ADAPTIVE_MAX_OP: &str = "adaptive_max_pool2d";
const GLOBAL_AVG_OP: &str = "global_avg_pool2d";
const GLOBAL_AVG_BACKWARD_OP: &str = "global_avg_pool2d_backward";
const GLOBAL_MAX_OP: &str = "global_max_pool2d";

/// The result of a max pooling: the maxima and where they were.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool2dOutput {
    /// `[N, C, Ho, Wo]`.
    pub output: Tensor,
    /// For output element `i` (flat NCHW order), the flat index `h * W + w` of its maximum
    /// inside its own input plane, as PyTorch's `return_indices=True`.
    pub indices: Vec<usize>,
}

/// Max pooling, `torch.nn.functional.max_pool2d(..., return_indices=True)`.
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, Ho, Wo]` with `Ho`, `Wo` from
/// [`Pool2dParams::output_hw`]. `count_include_pad` and `divisor_override` are ignored.
pub fn max_pool2d(input: &Tensor, params: &Pool2dParams) -> Result<MaxPool2dOutput> {
    let dims = check_input(MAX_OP, input)?;
    let plan = Plan::new(MAX_OP, params, dims)?;
    let out_dims = plan.output_dims(MAX_OP, dims)?;
    let len = out_dims.iter().product();
    let mut y = vec![0.0; len];
    let mut indices = vec![0; len];
    max_pool_forward_f32(&plan, input.data(), &mut y, &mut indices);
    Ok(MaxPool2dOutput {
        output: Tensor::from_parts(out_dims.to_vec(), y),
        indices,
    })
}

/// Max pooling without the indices, `torch.nn.functional.max_pool2d(...)`: the output of
/// [`max_pool2d`], with no index per output written (for 2x2 windows with stride 2 the index
/// array is twice the output's size, and writing it most of the work). Pair it with
/// [`max_pool2d_backward_from_input`] when the input is kept anyway.
pub fn max_pool2d_output(input: &Tensor, params: &Pool2dParams) -> Result<Tensor> {
    let dims = check_input(MAX_OP, input)?;
    let plan = Plan::new(MAX_OP, params, dims)?;
    let out_dims = plan.output_dims(MAX_OP, dims)?;
    let mut y = vec![0.0; out_dims.iter().product()];
    max_pool_values_f32(&plan, input.data(), &mut y);
    Ok(Tensor::from_parts(out_dims.to_vec(), y))
}

/// `grad_input` of [`max_pool2d`] from the pooling's input instead of its indices: each
/// window's maximum is found again by the same scan (so the same position, ties and NaNs
/// included) and receives its `grad_output` value. Equal, bit for bit, to
/// [`max_pool2d_backward`] with the indices [`max_pool2d`] returns for `input`.
///
/// Shapes: `grad_output` `[N, C, Ho, Wo]` as [`max_pool2d`] gives for `input` `[N, C, H, W]`;
/// the result is shaped like `input`.
pub fn max_pool2d_backward_from_input(
    grad_output: &Tensor,
    input: &Tensor,
    params: &Pool2dParams,
) -> Result<Tensor> {
    const OP: &str = MAX_BACKWARD_OP;
    let dims = check_input(OP, input)?;
    let plan = Plan::new(OP, params, dims)?;
    let out_dims = plan.output_dims(OP, dims)?;
    if grad_output.dims() != out_dims.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "grad_output {} is not the {} output of pooling input {}",
                grad_output.shape(),
                fmt_dims(&out_dims),
                input.shape()
            ),
        ));
    }
    let gx = max_pool_backward_from_input_f32(&plan, grad_output.data(), input.data());
    Ok(Tensor::from_parts(dims.to_vec(), gx))
}

/// A max pooling of `[N, C, H, W]` inputs whose windows are whole 2x2 blocks at stride 2
/// (no padding, no dilation), one plane at a time: the kernels [`max_pool2d_output`] and
/// [`max_pool2d_backward_from_input`] run on each plane, for a caller that produces the
/// planes itself (batch norm with ReLU and max pooling fused: `batch_norm::pool`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaxPool2x2Planes {
    /// Input height and width.
    hw: [usize; 2],
    /// Output height and width.
    out_hw: [usize; 2],
}

impl MaxPool2x2Planes {
    /// The plane kernels of `params` on inputs of `dims`, if it is such a pooling (and the
    /// planes are small enough for the vectorised scan); `None` for any other, or an error
    /// for parameters that do not fit the input (as [`max_pool2d`] reports it).
    pub(crate) fn new(
        op: &'static str,
        params: &Pool2dParams,
        dims: [usize; 4],
    ) -> Result<Option<Self>> {
        check_planes(op, dims)?;
        let plan = Plan::new(op, params, dims)?;
        plan.output_dims(op, dims)?;
        let fits =
            plan.is_2x2_stride_2() && plan.out_plane() > 0 && plan.in_plane() <= max2x2::MAX_PLANE;
        Ok(fits.then_some(MaxPool2x2Planes {
            hw: [dims[2], dims[3]],
            out_hw: plan.out_hw,
        }))
    }

    /// Values in an output plane.
    pub(crate) fn out_plane(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }

    /// The output's dimensions for `n` images of `c` channels.
    pub(crate) fn out_dims(&self, n: usize, c: usize) -> [usize; 4] {
        [n, c, self.out_hw[0], self.out_hw[1]]
    }

    /// The maxima of input plane `x` into output plane `y`: the values of
    /// [`max_pool2d_output`].
    pub(crate) fn forward(&self, x: &[f32], y: &mut [f32]) {
        max2x2::forward_plane(x, self.hw[1], y, None, self.out_hw[1]);
    }

    /// The gradient of input plane `x` from output gradient plane `gy`, every value of `gx`
    /// written: the values of [`max_pool2d_backward_from_input`].
    pub(crate) fn backward(&self, gy: &[f32], x: &[f32], gx: &mut [MaybeUninit<f32>]) {
        max2x2::backward_from_input_plane(gy, x, self.hw, self.out_hw[1], gx);
    }
}

/// `grad_input` of [`max_pool2d`], [`adaptive_max_pool2d`] and [`global_max_pool2d`]: every
/// `grad_output` value is added to the input position its index names.
///
/// Shapes: `grad_output` `[N, C, Ho, Wo]`, `indices` one per `grad_output` element (as the
/// forward pass returned them), result `input_dims` = `[N, C, H, W]`. An index outside the
/// `H x W` plane is an error.
pub fn max_pool2d_backward(
    grad_output: &Tensor,
    indices: &[usize],
    input_dims: [usize; 4],
) -> Result<Tensor> {
    const OP: &str = MAX_BACKWARD_OP;
    let [n, c, ho, wo] = grad_output.dims4(OP, "grad_output")?;
    let [n_in, c_in, h, w] = input_dims;
    let numel = check_elements(
        OP,
        "input",
        format!("input {}", fmt_dims(&input_dims)),
        &input_dims,
    )?;
    if [n, c] != [n_in, c_in] {
        return Err(Error::shape(
            OP,
            format!(
                "grad_output {} and input {} differ in batch size or channels",
                grad_output.shape(),
                fmt_dims(&input_dims)
            ),
        ));
    }
    if indices.len() != grad_output.numel() {
        return Err(Error::shape(
            OP,
            format!(
                "indices holds {} values but grad_output {} has {}",
                indices.len(),
                grad_output.shape(),
                grad_output.numel()
            ),
        ));
    }
    if let Some(gx) = max_pool_backward_blocks([h, w], [ho, wo], grad_output.data(), indices) {
        return Ok(Tensor::from_parts(input_dims.to_vec(), gx));
    }
    let in_plane = h * w;
    if let Some(at) = indices.iter().position(|&i| i >= in_plane) {
        return Err(Error::param(
            OP,
            "indices",
            format!(
                "indices[{at}] = {} is outside the {h}x{w} input plane ({in_plane} positions)",
                indices[at]
            ),
        ));
    }
    let mut gx = vec![0.0; numel];
    max_pool_backward(in_plane, ho * wo, grad_output.data(), indices, &mut gx);
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// Average pooling, `torch.nn.functional.avg_pool2d`.
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, Ho, Wo]`. The dilation must be 1.
pub fn avg_pool2d(input: &Tensor, params: &Pool2dParams) -> Result<Tensor> {
    let dims = check_input(AVG_OP, input)?;
    check_no_dilation(AVG_OP, params)?;
    let plan = Plan::new(AVG_OP, params, dims)?;
    let out_dims = plan.output_dims(AVG_OP, dims)?;
    let mut y = vec![0.0; out_dims.iter().product()];
    avg_pool_forward(&plan, input.data(), &mut y);
    Ok(Tensor::from_parts(out_dims.to_vec(), y))
}

/// `grad_input` of [`avg_pool2d`] for an input of shape `input_dims`.
pub fn avg_pool2d_backward(
    grad_output: &Tensor,
    input_dims: [usize; 4],
    params: &Pool2dParams,
) -> Result<Tensor> {
    const OP: &str = AVG_BACKWARD_OP;
    let numel = check_planes(OP, input_dims)?;
    check_no_dilation(OP, params)?;
    let plan = Plan::new(OP, params, input_dims)?;
    let out_dims = plan.output_dims(OP, input_dims)?;
    check_grad_output(OP, grad_output, input_dims, out_dims)?;
    let mut gx = vec![0.0; numel];
    avg_pool_backward(&plan, grad_output.data(), &mut gx);
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// Adaptive average pooling, `torch.nn.functional.adaptive_avg_pool2d`, to an output plane of
/// `output_hw` (each at least 1).
///
/// A 1x1 output is computed as PyTorch does it, as the mean of each plane
/// ([`global_avg_pool2d`]).
pub fn adaptive_avg_pool2d(input: &Tensor, output_hw: [usize; 2]) -> Result<Tensor> {
    const OP: &str = ADAPTIVE_AVG_OP;
    let dims = check_input(OP, input)?;
    let out_dims = adaptive_output_dims(OP, dims, output_hw)?;
    let mut y = vec![0.0; out_dims.iter().product()];
    if output_hw == [1, 1] {
        global_avg_forward(dims[2] * dims[3], input.data(), &mut y);
    } else {
        adaptive_avg_forward([dims[2], dims[3]], output_hw, input.data(), &mut y);
    }
    Ok(Tensor::from_parts(out_dims.to_vec(), y))
}

/// `grad_input` of [`adaptive_avg_pool2d`]: the output size is read from `grad_output`.
pub fn adaptive_avg_pool2d_backward(
    grad_output: &Tensor,
    input_dims: [usize; 4],
) -> Result<Tensor> {
    const OP: &str = ADAPTIVE_AVG_BACKWARD_OP;
    let [n, c, ho, wo] = grad_output.dims4(OP, "grad_output")?;
    let numel = check_planes(OP, input_dims)?;
    if [n, c] != [input_dims[0], input_dims[1]] || ho == 0 || wo == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "grad_output {} does not fit input {}: batch size and channels must agree and \
                 the output plane must be at least 1x1",
                grad_output.shape(),
                fmt_dims(&input_dims)
            ),
        ));
    }
    let in_hw = [input_dims[2], input_dims[3]];
    let mut gx = vec![0.0; numel];
    if [ho, wo] == [1, 1] {
        global_avg_backward(in_hw[0] * in_hw[1], grad_output.data(), &mut gx);
    } else {
        adaptive_avg_backward(in_hw, [ho, wo], grad_output.data(), &mut gx);
    }
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// Adaptive max pooling, `torch.nn.functional.adaptive_max_pool2d(..., return_indices=True)`,
/// to an output plane of `output_hw` (each at least 1). Backward: [`max_pool2d_backward`].
pub fn adaptive_max_pool2d(input: &Tensor, output_hw: [usize; 2]) -> Result<MaxPool2dOutput> {
    adaptive_max(ADAPTIVE_MAX_OP, input, output_hw)
}

/// Global average pooling: `[N, C, H, W]` -> `[N, C, 1, 1]`, the mean of each plane
/// (PyTorch's `adaptive_avg_pool2d(x, 1)`, i.e. `x.mean((-2, -1), keepdim=True)`).
pub fn global_avg_pool2d(input: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = check_input(GLOBAL_AVG_OP, input)?;
    let mut y = vec![0.0; n * c];
    global_avg_forward(h * w, input.data(), &mut y);
    Ok(Tensor::from_parts(vec![n, c, 1, 1], y))
}

/// `grad_input` of [`global_avg_pool2d`]: every input gets `grad_output / (H * W)`.
pub fn global_avg_pool2d_backward(grad_output: &Tensor, input_dims: [usize; 4]) -> Result<Tensor> {
    const OP: &str = GLOBAL_AVG_BACKWARD_OP;
    let numel = check_planes(OP, input_dims)?;
    let out_dims = [input_dims[0], input_dims[1], 1, 1];
    check_grad_output(OP, grad_output, input_dims, out_dims)?;
    let mut gx = vec![0.0; numel];
    global_avg_backward(input_dims[2] * input_dims[3], grad_output.data(), &mut gx);
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// Global max pooling: `[N, C, H, W]` -> `[N, C, 1, 1]`, the maximum of each plane and its
/// index (PyTorch's `adaptive_max_pool2d(x, 1, return_indices=True)`). Backward:
/// [`max_pool2d_backward`].
pub fn global_max_pool2d(input: &Tensor) -> Result<MaxPool2dOutput> {
    adaptive_max(GLOBAL_MAX_OP, input, [1, 1])
}

fn adaptive_max(
    op: &'static str,
    input: &Tensor,
    output_hw: [usize; 2],
) -> Result<MaxPool2dOutput> {
    let dims = check_input(op, input)?;
    let out_dims = adaptive_output_dims(op, dims, output_hw)?;
    let len = out_dims.iter().product();
    let mut y = vec![0.0; len];
    let mut indices = vec![0; len];
    adaptive_max_forward(
        [dims[2], dims[3]],
        output_hw,
        input.data(),
        &mut y,
        &mut indices,
    );
    Ok(MaxPool2dOutput {
        output: Tensor::from_parts(out_dims.to_vec(), y),
        indices,
    })
}

/// The input's dimensions, 4-D with non-empty planes.
fn check_input(op: &'static str, input: &Tensor) -> Result<[usize; 4]> {
    let dims = input.dims4(op, "input")?;
    check_planes(op, dims)?;
    Ok(dims)
}

/// Channels, height and width at least 1 (PyTorch's rule; the batch may be empty), and an
/// element count that fits in `usize`, which is returned.
fn check_planes(op: &'static str, dims: [usize; 4]) -> Result<usize> {
    let [_, c, h, w] = dims;
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::shape(
            op,
            format!(
                "input {} has an empty channel, height or width dimension (each must be at \
                 least 1; only the batch may be empty)",
                fmt_dims(&dims)
            ),
        ));
    }
    check_elements(op, "input", format!("input {}", fmt_dims(&dims)), &dims)
}

fn check_no_dilation(op: &'static str, params: &Pool2dParams) -> Result<()> {
    if params.dilation() != [1, 1] {
        return Err(Error::param(
            op,
            "dilation",
            format!(
                "average pooling has no dilation (as in PyTorch), got {}x{}",
                params.dilation()[0],
                params.dilation()[1]
            ),
        ));
    }
    Ok(())
}

fn check_grad_output(
    op: &'static str,
    grad_output: &Tensor,
    input_dims: [usize; 4],
    out_dims: [usize; 4],
) -> Result<()> {
    if grad_output.dims() != out_dims {
        return Err(Error::shape(
            op,
            format!(
                "grad_output has shape {} but the output for input {} has shape {}",
                grad_output.shape(),
                fmt_dims(&input_dims),
                fmt_dims(&out_dims)
            ),
        ));
    }
    Ok(())
}

fn adaptive_output_dims(
    op: &'static str,
    [n, c, _, _]: [usize; 4],
    output_hw: [usize; 2],
) -> Result<[usize; 4]> {
    if output_hw.contains(&0) {
        return Err(Error::param(
            op,
            "output size",
            format!(
                "must be at least 1x1, got {}x{}",
                output_hw[0], output_hw[1]
            ),
        ));
    }
    let dims = [n, c, output_hw[0], output_hw[1]];
    check_elements(
        op,
        "output size",
        format!("output {}", fmt_dims(&dims)),
        &dims,
    )?;
    Ok(dims)
}
