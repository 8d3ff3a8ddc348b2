//! 2-D pooling, forward and backward, computing what PyTorch's CPU kernels compute:
//! `max_pool2d` (with indices), `avg_pool2d`, `adaptive_avg_pool2d`, `adaptive_max_pool2d`,
//! and the global poolings (an adaptive pool to 1x1).
//!
//! Inputs are NCHW. Every (image, channel) plane is pooled on its own; planes run in parallel.
//!
//! # Windows
//! Along one axis, with input length `I`, kernel `k`, stride `s`, padding `p` (the same on
//! both sides, as in PyTorch) and dilation `d`:
//!
//! - **Output length**: `floor((I + 2p - d(k-1) - 1) / s) + 1`; with `ceil_mode` rounded up
//!   instead, dropping a last window that would start in the right padding
//!   ([`pool_output_len`], PyTorch's formula). So ceil mode also keeps one (clipped) window
//!   when the dilated kernel overhangs the padded input by less than one stride.
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

use num_traits::Float;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::geometry::{check_positive, effective_kernel, pool_output_len};
use crate::tensor::{Tensor, check_elements, fmt_dims};

const PARAMS_OP: &str = "pool2d";
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

/// Inner-loop steps below which a call stays on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 15;

/// Pooling hyper-parameters, as `torch.nn.MaxPool2d` / `torch.nn.AvgPool2d` take them.
///
/// Built and checked by [`Pool2dParams::builder`]. `dilation` is used by max pooling only
/// (average pooling rejects a dilation other than 1); `count_include_pad` and
/// `divisor_override` are used by average pooling only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dParams {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Option<usize>,
}

impl Pool2dParams {
    /// Start from PyTorch's defaults for a `kernel` (height, width): stride = kernel, no
    /// padding, dilation 1, floor mode, `count_include_pad = true`, no divisor override.
    ///
    /// ```
    /// use convnet_core::{Pool2dParams, Tensor, max_pool2d};
    /// let p = Pool2dParams::builder([2, 2]).build()?;
    /// let x = Tensor::new([1, 1, 2, 4], vec![1., 5., 2., 0., 3., 4., 8., 7.])?;
    /// let out = max_pool2d(&x, &p)?;
    /// assert_eq!(out.output.data(), &[5.0, 8.0]);
    /// assert_eq!(out.indices, [1, 6]);
    /// # Ok::<(), convnet_core::Error>(())
    /// ```
    pub fn builder(kernel: [usize; 2]) -> Pool2dParamsBuilder {
        Pool2dParamsBuilder {
            params: Pool2dParams {
                kernel,
                stride: kernel,
                padding: [0, 0],
                dilation: [1, 1],
                ceil_mode: false,
                count_include_pad: true,
                divisor_override: None,
            },
        }
    }

    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    /// Padding `[h, w]`, applied on both sides of each axis.
    pub fn padding(&self) -> [usize; 2] {
        self.padding
    }
    pub fn dilation(&self) -> [usize; 2] {
        self.dilation
    }
    pub fn ceil_mode(&self) -> bool {
        self.ceil_mode
    }
    pub fn count_include_pad(&self) -> bool {
        self.count_include_pad
    }
    pub fn divisor_override(&self) -> Option<usize> {
        self.divisor_override
    }

    /// Output height and width for an input plane of `input_hw`, or an error saying what does
    /// not fit.
    pub fn output_hw(&self, input_hw: [usize; 2]) -> Result<[usize; 2]> {
        self.output_hw_for(PARAMS_OP, input_hw)
    }

    fn output_hw_for(&self, op: &'static str, input_hw: [usize; 2]) -> Result<[usize; 2]> {
        if input_hw.contains(&0) {
            return Err(Error::shape(
                op,
                format!(
                    "input height and width must be at least 1, got {}x{}",
                    input_hw[0], input_hw[1]
                ),
            ));
        }
        let mut out = [0; 2];
        for (axis, len) in out.iter_mut().enumerate() {
            let input = input_hw[axis];
            // `2 * padding <= kernel` (checked in `build`), so only the sum can overflow.
            if input.checked_add(2 * self.padding[axis]).is_none() {
                return Err(Error::overflow(
                    op,
                    format!(
                        "input {}x{} with padding {}x{}",
                        input_hw[0], input_hw[1], self.padding[0], self.padding[1]
                    ),
                ));
            }
            *len = pool_output_len(
                input,
                self.kernel[axis],
                self.stride[axis],
                self.dilation[axis],
                self.padding[axis],
                self.ceil_mode,
            )
            .ok_or_else(|| self.does_not_fit(op, input_hw))?;
        }
        Ok(out)
    }

    fn does_not_fit(&self, op: &'static str, [h, w]: [usize; 2]) -> Error {
        let [kh, kw] = self.kernel;
        let [dh, dw] = self.dilation;
        let [ph, pw] = self.padding;
        let span = |k: usize, d: usize| effective_kernel(k, d).unwrap_or(usize::MAX);
        let mut reason = format!(
            "kernel {kh}x{kw} (dilation {dh}x{dw}, spans {}x{}) is larger than the padded input \
             {}x{} (input {h}x{w}, padding {ph}x{pw} on each side)",
            span(kh, dh),
            span(kw, dw),
            h.saturating_add(2 * ph),
            w.saturating_add(2 * pw),
        );
        if self.ceil_mode {
            reason.push_str(&format!(
                "; ceil_mode allows an overhang of less than one stride ({}x{})",
                self.stride[0], self.stride[1]
            ));
        }
        Error::shape(op, reason)
    }
}

/// Builder for [`Pool2dParams`]; nothing is checked until [`build`](Self::build).
#[derive(Debug, Clone, Copy)]
pub struct Pool2dParamsBuilder {
    params: Pool2dParams,
}

impl Pool2dParamsBuilder {
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.params.stride = stride;
        self
    }
    /// Padding `[h, w]` on both sides of each axis (PyTorch's `padding=(h, w)`).
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.params.padding = padding;
        self
    }
    /// Spacing of the kernel taps (max pooling only).
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.params.dilation = dilation;
        self
    }
    /// Round the output size up instead of down (see the module documentation).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.params.ceil_mode = ceil_mode;
        self
    }
    /// Average pooling: divide by the window including its padding (else only the inputs).
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.params.count_include_pad = count_include_pad;
        self
    }
    /// Average pooling: divide every window by this instead.
    pub fn divisor_override(mut self, divisor_override: Option<usize>) -> Self {
        self.params.divisor_override = divisor_override;
        self
    }

    /// Check what does not depend on the input: kernel, stride and dilation at least 1,
    /// padding at most half the kernel on each axis, and a divisor override other than 0.
    pub fn build(self) -> Result<Pool2dParams> {
        let p = self.params;
        check_positive(PARAMS_OP, "kernel", p.kernel)?;
        check_positive(PARAMS_OP, "stride", p.stride)?;
        check_positive(PARAMS_OP, "dilation", p.dilation)?;
        for axis in 0..2 {
            if effective_kernel(p.kernel[axis], p.dilation[axis]).is_none() {
                return Err(Error::overflow(
                    PARAMS_OP,
                    format!(
                        "kernel {}x{} with dilation {}x{} spans more than usize::MAX",
                        p.kernel[0], p.kernel[1], p.dilation[0], p.dilation[1]
                    ),
                ));
            }
        }
        if p.padding[0] > p.kernel[0] / 2 || p.padding[1] > p.kernel[1] / 2 {
            return Err(Error::param(
                PARAMS_OP,
                "padding",
                format!(
                    "must be at most half the kernel size on each axis (as in PyTorch), got \
                     padding {}x{} for kernel {}x{} (at most {}x{})",
                    p.padding[0],
                    p.padding[1],
                    p.kernel[0],
                    p.kernel[1],
                    p.kernel[0] / 2,
                    p.kernel[1] / 2
                ),
            ));
        }
        if p.divisor_override == Some(0) {
            return Err(Error::param(PARAMS_OP, "divisor_override", "must not be 0"));
        }
        Ok(p)
    }
}

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
    max_pool_forward(&plan, input.data(), &mut y, &mut indices);
    Ok(MaxPool2dOutput {
        output: Tensor::from_parts(out_dims.to_vec(), y),
        indices,
    })
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

// ---------------------------------------------------------------------------------------------
// Checks

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
    if params.dilation != [1, 1] {
        return Err(Error::param(
            op,
            "dilation",
            format!(
                "average pooling has no dilation (as in PyTorch), got {}x{}",
                params.dilation[0], params.dilation[1]
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

// ---------------------------------------------------------------------------------------------
// Windows

/// One spatial axis of a max or average pooling.
#[derive(Debug, Clone, Copy)]
struct Axis {
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    /// `dilation * (kernel - 1) + 1`.
    span: usize,
}

impl Axis {
    /// Taps of max-pool window `o`: the first in-bounds tap and the end (exclusive) of the
    /// in-bounds taps, stepping by the dilation. `first >= end` when every tap is padding.
    /// Positions are computed in padded coordinates so nothing goes negative.
    fn max_taps(&self, o: usize) -> (usize, usize) {
        let start = o * self.stride;
        let end = start
            .saturating_add(self.span)
            .min(self.input + self.pad)
            .saturating_sub(self.pad);
        let first = if start >= self.pad {
            start - self.pad
        } else {
            // PyTorch: `while (i0 < 0) i0 += dilation;`
            let before = self.pad - start;
            before.div_ceil(self.dilation) * self.dilation - before
        };
        (first, end)
    }

    /// Average-pool window `o`: the input range `[lo, hi)` after clipping, and the window
    /// length before clipping (`min(start + k, I + p) - start`, PyTorch's `pool_size` factor).
    fn avg_taps(&self, o: usize) -> (usize, usize, usize) {
        let start = o * self.stride;
        let end = (start + self.kernel).min(self.input + 2 * self.pad);
        let lo = start.max(self.pad) - self.pad;
        let hi = end.min(self.input + self.pad).saturating_sub(self.pad);
        (lo, hi, end.saturating_sub(start))
    }
}

/// Input range `[floor(o * input / out), ceil((o + 1) * input / out))` of adaptive window `o`.
fn adaptive_range(o: usize, out: usize, input: usize) -> (usize, usize) {
    let (o, out, input) = (o as u128, out as u128, input as u128);
    let start = o * input / out;
    let end = ((o + 1) * input).div_ceil(out);
    (start as usize, end as usize)
}

/// A max or average pooling problem, checked against an input shape.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Height, width.
    axes: [Axis; 2],
    out_hw: [usize; 2],
    count_include_pad: bool,
    divisor_override: Option<usize>,
}

impl Plan {
    fn new(op: &'static str, params: &Pool2dParams, [_, _, h, w]: [usize; 4]) -> Result<Plan> {
        let out_hw = params.output_hw_for(op, [h, w])?;
        let axis = |i: usize, input: usize| Axis {
            input,
            kernel: params.kernel[i],
            stride: params.stride[i],
            pad: params.padding[i],
            dilation: params.dilation[i],
            // Checked in `build`.
            span: effective_kernel(params.kernel[i], params.dilation[i]).unwrap_or(usize::MAX),
        };
        Ok(Plan {
            axes: [axis(0, h), axis(1, w)],
            out_hw,
            count_include_pad: params.count_include_pad,
            divisor_override: params.divisor_override,
        })
    }

    fn output_dims(&self, op: &'static str, [n, c, _, _]: [usize; 4]) -> Result<[usize; 4]> {
        let dims = [n, c, self.out_hw[0], self.out_hw[1]];
        check_elements(op, "output", format!("output {}", fmt_dims(&dims)), &dims)?;
        Ok(dims)
    }

    fn in_plane(&self) -> usize {
        self.axes[0].input * self.axes[1].input
    }

    fn out_plane(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }

    /// Inner-loop steps for one plane (for the parallel split).
    fn work_per_plane(&self) -> usize {
        self.out_plane()
            .saturating_mul(self.axes[0].kernel.saturating_mul(self.axes[1].kernel))
    }

    /// The divisor of an average window of `pool_size` elements before clipping and `area`
    /// after.
    fn divisor<T: Float>(&self, pool_size: usize, area: usize) -> T {
        let d = self.divisor_override.unwrap_or(if self.count_include_pad {
            pool_size
        } else {
            area
        });
        cast(d)
    }
}

fn cast<T: Float>(v: usize) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Planes per rayon task, so that each task has at least [`PARALLEL_MIN_WORK`] steps.
fn planes_per_task(work_per_plane: usize) -> usize {
    PARALLEL_MIN_WORK.div_ceil(work_per_plane.max(1))
}

// ---------------------------------------------------------------------------------------------
// Kernels: each walks the planes in parallel and one plane sequentially, in PyTorch's order.

/// The maximum over the taps `rows x cols` (each `(first, end, step)`) of a plane of `width`
/// columns, PyTorch's rule: `v > max || v.is_nan()`, starting from -inf at the first tap.
#[inline]
fn window_max<T: Float>(
    plane: &[T],
    width: usize,
    (r0, r1, dr): (usize, usize, usize),
    (c0, c1, dc): (usize, usize, usize),
) -> (T, usize) {
    let mut best = T::neg_infinity();
    let mut best_at = r0.saturating_mul(width).saturating_add(c0);
    for r in (r0..r1).step_by(dr) {
        let row = &plane[r * width..(r + 1) * width];
        for c in (c0..c1).step_by(dc) {
            let v = row[c];
            if v > best || v.is_nan() {
                best = v;
                best_at = r * width + c;
            }
        }
    }
    (best, best_at)
}

/// The common 2x2 window with stride 2 and no padding: each output row reads two input rows,
/// taps in PyTorch's order (row-major), with the same tie and NaN rule as [`window_max`].
fn max_pool_2x2<T: Float>(x: &[T], width: usize, y: &mut [T], indices: &mut [usize], ow: usize) {
    for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
        let top = 2 * i * width;
        let (a, b) = (&x[top..top + width], &x[top + width..top + 2 * width]);
        for (j, (y, idx)) in y_row.iter_mut().zip(idx_row.iter_mut()).enumerate() {
            let c = 2 * j;
            let (mut best, mut at) = (a[c], top + c);
            for (v, pos) in [
                (a[c + 1], top + c + 1),
                (b[c], top + width + c),
                (b[c + 1], top + width + c + 1),
            ] {
                if v > best || v.is_nan() {
                    best = v;
                    at = pos;
                }
            }
            *y = best;
            *idx = at;
        }
    }
}

fn max_pool_forward<T: Float + Send + Sync>(
    plan: &Plan,
    x: &[T],
    y: &mut [T],
    indices: &mut [usize],
) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(x.len() / in_plane, y.len() / out_plane);
    let [ah, aw] = plan.axes;
    let ow = plan.out_hw[1];
    // (With ceil_mode a last window may hang off the input: only whole windows qualify.)
    let two_by_two = [(ah, plan.out_hw[0]), (aw, ow)].iter().all(|(a, o)| {
        a.kernel == 2 && a.stride == 2 && a.pad == 0 && a.dilation == 1 && 2 * o <= a.input
    });
    y.par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|((y, indices), x)| {
            if two_by_two {
                max_pool_2x2(x, aw.input, y, indices, ow);
                return;
            }
            for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
                let (r0, r1) = ah.max_taps(i);
                for (j, (y, idx)) in y_row.iter_mut().zip(idx_row).enumerate() {
                    let (c0, c1) = aw.max_taps(j);
                    (*y, *idx) =
                        window_max(x, aw.input, (r0, r1, ah.dilation), (c0, c1, aw.dilation));
                }
            }
        });
}

/// `gx[plane][indices[i]] += gy[i]`; `gx` must be zeroed and every index below `in_plane`.
fn max_pool_backward<T: Float + Send + Sync>(
    in_plane: usize,
    out_plane: usize,
    gy: &[T],
    indices: &[usize],
    gx: &mut [T],
) {
    if in_plane == 0 || out_plane == 0 {
        return;
    }
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .zip(indices.par_chunks(out_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|((gx, gy), indices)| {
            for (&g, &i) in gy.iter().zip(indices) {
                gx[i] = gx[i] + g;
            }
        });
}

fn avg_pool_forward<T: Float + Send + Sync>(plan: &Plan, x: &[T], y: &mut [T]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(x.len() / in_plane, y.len() / out_plane);
    let [ah, aw] = plan.axes;
    let (w, ow) = (aw.input, plan.out_hw[1]);
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|(y, x)| {
            for (i, y_row) in y.chunks_mut(ow).enumerate() {
                let (r0, r1, pool_h) = ah.avg_taps(i);
                for (j, y) in y_row.iter_mut().enumerate() {
                    let (c0, c1, pool_w) = aw.avg_taps(j);
                    if r0 >= r1 || c0 >= c1 {
                        *y = T::zero();
                        continue;
                    }
                    let mut sum = T::zero();
                    for r in r0..r1 {
                        for &v in &x[r * w + c0..r * w + c1] {
                            sum = sum + v;
                        }
                    }
                    *y = sum / plan.divisor::<T>(pool_h * pool_w, (r1 - r0) * (c1 - c0));
                }
            }
        });
}

/// `gx` (zeroed) gets, for every output, `gy / divisor` on each input of its clipped window.
fn avg_pool_backward<T: Float + Send + Sync>(plan: &Plan, gy: &[T], gx: &mut [T]) {
    let (in_plane, out_plane) = (plan.in_plane(), plan.out_plane());
    debug_assert_eq!(gx.len() / in_plane, gy.len() / out_plane);
    let [ah, aw] = plan.axes;
    let (w, ow) = (aw.input, plan.out_hw[1]);
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .with_min_len(planes_per_task(plan.work_per_plane()))
        .for_each(|(gx, gy)| {
            for (i, gy_row) in gy.chunks(ow).enumerate() {
                let (r0, r1, pool_h) = ah.avg_taps(i);
                for (j, &g) in gy_row.iter().enumerate() {
                    let (c0, c1, pool_w) = aw.avg_taps(j);
                    if r0 >= r1 || c0 >= c1 {
                        continue;
                    }
                    let delta = g / plan.divisor::<T>(pool_h * pool_w, (r1 - r0) * (c1 - c0));
                    for r in r0..r1 {
                        for v in &mut gx[r * w + c0..r * w + c1] {
                            *v = *v + delta;
                        }
                    }
                }
            }
        });
}

fn adaptive_avg_forward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    x: &[T],
    y: &mut [T],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|(y, x)| {
            for (i, y_row) in y.chunks_mut(ow).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, y) in y_row.iter_mut().enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    let mut sum = T::zero();
                    for r in r0..r1 {
                        for &v in &x[r * w + c0..r * w + c1] {
                            sum = sum + v;
                        }
                    }
                    *y = sum / cast::<T>(r1 - r0) / cast::<T>(c1 - c0);
                }
            }
        });
}

fn adaptive_avg_backward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    gy: &[T],
    gx: &mut [T],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    gx.par_chunks_mut(in_plane)
        .zip(gy.par_chunks(out_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|(gx, gy)| {
            for (i, gy_row) in gy.chunks(ow).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, &g) in gy_row.iter().enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    let delta = g / cast::<T>(r1 - r0) / cast::<T>(c1 - c0);
                    for r in r0..r1 {
                        for v in &mut gx[r * w + c0..r * w + c1] {
                            *v = *v + delta;
                        }
                    }
                }
            }
        });
}

fn adaptive_max_forward<T: Float + Send + Sync>(
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    x: &[T],
    y: &mut [T],
    indices: &mut [usize],
) {
    let (in_plane, out_plane) = (h * w, oh * ow);
    y.par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.par_chunks(in_plane))
        .with_min_len(planes_per_task(in_plane + out_plane))
        .for_each(|((y, indices), x)| {
            for (i, (y_row, idx_row)) in y.chunks_mut(ow).zip(indices.chunks_mut(ow)).enumerate() {
                let (r0, r1) = adaptive_range(i, oh, h);
                for (j, (y, idx)) in y_row.iter_mut().zip(idx_row).enumerate() {
                    let (c0, c1) = adaptive_range(j, ow, w);
                    (*y, *idx) = window_max(x, w, (r0, r1, 1), (c0, c1, 1));
                }
            }
        });
}

/// `y[plane] = sum(x[plane]) / plane_len`, the sum accumulated in `f64`.
fn global_avg_forward<T: Float + Send + Sync>(plane_len: usize, x: &[T], y: &mut [T]) {
    let divisor = cast::<T>(plane_len);
    y.par_iter_mut()
        .zip(x.par_chunks(plane_len))
        .with_min_len(planes_per_task(plane_len))
        .for_each(|(y, x)| {
            let sum: f64 = x.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).sum();
            *y = T::from(sum).unwrap_or_else(T::nan) / divisor;
        });
}

/// Every input of plane `p` gets `gy[p] / plane_len`.
fn global_avg_backward<T: Float + Send + Sync>(plane_len: usize, gy: &[T], gx: &mut [T]) {
    let divisor = cast::<T>(plane_len);
    gx.par_chunks_mut(plane_len)
        .zip(gy.par_iter())
        .with_min_len(planes_per_task(plane_len))
        .for_each(|(gx, &g)| gx.fill(g / divisor));
}

#[cfg(test)]
mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------
    // Helpers

    // Finite differences (crate::testing): pooling is piecewise linear, so central differences
    // are exact up to rounding (~1e-9 here).
    use crate::testing::{Rng, check_grad};

    fn params(kernel: [usize; 2]) -> Pool2dParamsBuilder {
        Pool2dParams::builder(kernel)
    }

    fn plan(p: Pool2dParamsBuilder, dims: [usize; 4]) -> Plan {
        Plan::new("test", &p.build().unwrap(), dims).unwrap()
    }

    fn out_len(plan: &Plan, dims: [usize; 4]) -> usize {
        dims[0] * dims[1] * plan.out_plane()
    }

    fn max_fwd(plan: &Plan, dims: [usize; 4], x: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let len = out_len(plan, dims);
        let (mut y, mut idx) = (vec![0.0; len], vec![0; len]);
        max_pool_forward(plan, x, &mut y, &mut idx);
        (y, idx)
    }

    fn check_max_pool(name: &str, p: Pool2dParamsBuilder, dims: [usize; 4], seed: u64) {
        let mut rng = Rng(seed);
        let plan = plan(p, dims);
        let x = rng.distinct(dims.iter().product());
        let (y, idx) = max_fwd(&plan, dims, &x);
        let wts = rng.values(y.len());
        let mut gx = vec![0.0; x.len()];
        max_pool_backward(plan.in_plane(), plan.out_plane(), &wts, &idx, &mut gx);
        check_grad(name, &x, &wts, |x| max_fwd(&plan, dims, x).0, &gx);
    }

    fn avg_fwd(plan: &Plan, dims: [usize; 4], x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; out_len(plan, dims)];
        avg_pool_forward(plan, x, &mut y);
        y
    }

    fn check_avg_pool(name: &str, p: Pool2dParamsBuilder, dims: [usize; 4], seed: u64) {
        let mut rng = Rng(seed);
        let plan = plan(p, dims);
        let x = rng.values(dims.iter().product());
        let wts = rng.values(out_len(&plan, dims));
        let mut gx = vec![0.0; x.len()];
        avg_pool_backward(&plan, &wts, &mut gx);
        check_grad(name, &x, &wts, |x| avg_fwd(&plan, dims, x), &gx);
    }

    fn t(dims: [usize; 4], data: &[f32]) -> Tensor {
        Tensor::new(dims, data.to_vec()).unwrap()
    }

    fn iota(dims: [usize; 4]) -> Tensor {
        Tensor::from_fn(dims, |i| i as f32).unwrap()
    }

    // -----------------------------------------------------------------------------------------
    // Finite-difference gradient checks (f64)

    #[test]
    fn max_pool_gradients_match_finite_differences() {
        let dims = [2, 3, 7, 8];
        check_max_pool("2x2 default stride", params([2, 2]), dims, 1);
        check_max_pool(
            "3x3 stride 1 (overlapping)",
            params([3, 3]).stride([1, 1]),
            dims,
            2,
        );
        check_max_pool(
            "3x3 stride 2 padding 1",
            params([3, 3]).stride([2, 2]).padding([1, 1]),
            dims,
            3,
        );
        check_max_pool(
            "3x2 stride 2x1 padding 1x1 dilation 2x3",
            params([3, 2])
                .stride([2, 1])
                .padding([1, 1])
                .dilation([2, 3]),
            dims,
            4,
        );
        check_max_pool(
            "3x3 stride 2 ceil_mode",
            params([3, 3]).stride([2, 2]).ceil_mode(true),
            [1, 2, 6, 7],
            5,
        );
        check_max_pool(
            "2x2 stride 2 padding 1 ceil_mode dilation 2",
            params([2, 2])
                .padding([1, 1])
                .ceil_mode(true)
                .dilation([2, 2]),
            [1, 2, 5, 6],
            6,
        );
        check_max_pool(
            "ceil_mode overhang",
            params([3, 3]).stride([2, 2]).ceil_mode(true),
            [2, 1, 2, 2],
            7,
        );
    }

    #[test]
    fn avg_pool_gradients_match_finite_differences() {
        let dims = [2, 2, 7, 6];
        check_avg_pool("2x2 default stride", params([2, 2]), dims, 11);
        for include in [true, false] {
            check_avg_pool(
                &format!("3x3 stride 2 padding 1 count_include_pad={include}"),
                params([3, 3])
                    .stride([2, 2])
                    .padding([1, 1])
                    .count_include_pad(include),
                dims,
                12,
            );
            check_avg_pool(
                &format!("3x2 stride 2x1 padding 1x1 ceil_mode count_include_pad={include}"),
                params([3, 2])
                    .stride([2, 1])
                    .padding([1, 1])
                    .ceil_mode(true)
                    .count_include_pad(include),
                dims,
                13,
            );
        }
        check_avg_pool(
            "3x3 padding 1 divisor_override 5",
            params([3, 3])
                .stride([1, 2])
                .padding([1, 1])
                .divisor_override(Some(5)),
            dims,
            14,
        );
        check_avg_pool(
            "ceil_mode overhang",
            params([3, 3])
                .stride([2, 2])
                .ceil_mode(true)
                .count_include_pad(false),
            [1, 2, 2, 2],
            15,
        );
    }

    #[test]
    fn adaptive_pool_gradients_match_finite_differences() {
        let cases = [
            ([2, 2, 5, 7], [3, 4]), // windows overlap: sizes do not divide
            ([1, 3, 6, 4], [3, 2]), // sizes divide
            ([1, 2, 3, 5], [5, 7]), // output larger than input
            ([2, 2, 5, 6], [1, 1]), // global
        ];
        for (seed, (dims, out_hw)) in cases.into_iter().enumerate() {
            let mut rng = Rng(100 + seed as u64);
            let in_hw = [dims[2], dims[3]];
            let len = dims[0] * dims[1] * out_hw[0] * out_hw[1];
            let wts = rng.values(len);

            let avg = |x: &[f64]| {
                let mut y = vec![0.0; len];
                adaptive_avg_forward(in_hw, out_hw, x, &mut y);
                y
            };
            let x = rng.values(dims.iter().product());
            let mut gx = vec![0.0; x.len()];
            adaptive_avg_backward(in_hw, out_hw, &wts, &mut gx);
            check_grad(
                &format!("adaptive avg {dims:?} -> {out_hw:?}"),
                &x,
                &wts,
                avg,
                &gx,
            );

            let max = |x: &[f64]| {
                let (mut y, mut idx) = (vec![0.0; len], vec![0; len]);
                adaptive_max_forward(in_hw, out_hw, x, &mut y, &mut idx);
                (y, idx)
            };
            let x = rng.distinct(dims.iter().product());
            let idx = max(&x).1;
            let mut gx = vec![0.0; x.len()];
            max_pool_backward(
                in_hw[0] * in_hw[1],
                out_hw[0] * out_hw[1],
                &wts,
                &idx,
                &mut gx,
            );
            check_grad(
                &format!("adaptive max {dims:?} -> {out_hw:?}"),
                &x,
                &wts,
                |x| max(x).0,
                &gx,
            );
        }
    }

    #[test]
    fn global_pool_gradients_match_finite_differences() {
        let mut rng = Rng(200);
        let plane = 5 * 6;
        let x = rng.values(3 * plane);
        let wts = rng.values(3);
        let avg = |x: &[f64]| {
            let mut y = vec![0.0; 3];
            global_avg_forward(plane, x, &mut y);
            y
        };
        let mut gx = vec![0.0; x.len()];
        global_avg_backward(plane, &wts, &mut gx);
        check_grad("global avg", &x, &wts, avg, &gx);

        let x = rng.distinct(3 * plane);
        let max = |x: &[f64]| {
            let (mut y, mut idx) = (vec![0.0; 3], vec![0; 3]);
            adaptive_max_forward([5, 6], [1, 1], x, &mut y, &mut idx);
            (y, idx)
        };
        let mut gx = vec![0.0; x.len()];
        max_pool_backward(plane, 1, &wts, &max(&x).1, &mut gx);
        check_grad("global max", &x, &wts, |x| max(x).0, &gx);
    }

    // -----------------------------------------------------------------------------------------
    // Hand-checked cases

    #[test]
    fn max_pool_tie_keeps_the_first_index() {
        let p = params([2, 2]).build().unwrap();
        let out = max_pool2d(&t([1, 1, 2, 2], &[1.0; 4]), &p).unwrap();
        assert_eq!(out.indices, [0]);
        let out = max_pool2d(&t([1, 1, 2, 2], &[3.0, 5.0, 5.0, 1.0]), &p).unwrap();
        assert_eq!(
            (out.output.data(), out.indices.as_slice()),
            (&[5.0f32][..], &[1][..])
        );
    }

    #[test]
    fn max_pool_propagates_nan_and_points_at_the_last_nan() {
        // PyTorch's `val > maxval || isnan(val)`: after the first NaN only another NaN wins.
        let p = params([2, 2]).build().unwrap();
        let x = t([1, 1, 2, 2], &[1.0, f32::NAN, 3.0, f32::NAN]);
        let out = max_pool2d(&x, &p).unwrap();
        assert!(out.output.data()[0].is_nan());
        assert_eq!(out.indices, [3]);
        let out = adaptive_max_pool2d(&x, [1, 1]).unwrap();
        assert!(out.output.data()[0].is_nan());
        assert_eq!(out.indices, [3]);
    }

    #[test]
    fn max_pool_of_all_minus_infinity_points_at_the_first_valid_tap() {
        // The running max starts at -inf, so no tap replaces it and the index stays at the
        // first in-bounds tap: row 0, column 1 for the 2nd window with padding 1.
        let p = params([3, 3])
            .stride([2, 2])
            .padding([1, 1])
            .build()
            .unwrap();
        let x = Tensor::full([1, 1, 3, 3], f32::NEG_INFINITY).unwrap();
        let out = max_pool2d(&x, &p).unwrap();
        assert_eq!(out.output.dims(), &[1, 1, 2, 2]);
        assert_eq!(out.indices, [0, 1, 3, 4]);
        assert!(out.output.data().iter().all(|v| *v == f32::NEG_INFINITY));
    }

    #[test]
    fn max_pool_ceil_mode_drops_the_window_starting_in_the_padding() {
        // MaxPool2d(2, stride=2, padding=1, ceil_mode=True) on 5x5 gives 3x3 (a 4th window
        // would start at padded column 6 >= 5 + 1). Windows: rows [-1, 1), [1, 3), [3, 5).
        let p = params([2, 2])
            .padding([1, 1])
            .ceil_mode(true)
            .build()
            .unwrap();
        assert_eq!(p.output_hw([5, 5]).unwrap(), [3, 3]);
        let out = max_pool2d(&iota([1, 1, 5, 5]), &p).unwrap();
        assert_eq!(out.output.dims(), &[1, 1, 3, 3]);
        assert_eq!(
            out.output.data(),
            &[0.0, 2.0, 4.0, 10.0, 12.0, 14.0, 20.0, 22.0, 24.0]
        );
        assert_eq!(out.indices, [0, 2, 4, 10, 12, 14, 20, 22, 24]);
    }

    #[test]
    fn ceil_mode_adds_a_clipped_last_window() {
        // MaxPool2d(3, stride=2) on 1x6: floor mode 2 windows, ceil mode a 3rd over [4, 6).
        let x = Tensor::new([1, 1, 1, 6], vec![0., 1., 2., 3., 9., 5.]).unwrap();
        let floor = params([1, 3]).stride([1, 2]).build().unwrap();
        let ceil = params([1, 3])
            .stride([1, 2])
            .ceil_mode(true)
            .build()
            .unwrap();
        assert_eq!(max_pool2d(&x, &floor).unwrap().output.data(), &[2.0, 9.0]);
        assert_eq!(
            max_pool2d(&x, &ceil).unwrap().output.data(),
            &[2.0, 9.0, 9.0]
        );
        // Average: the clipped window [4, 6) has pool_size min(4 + 3, 6) - 4 = 2.
        assert_eq!(
            avg_pool2d(&x, &ceil).unwrap().data(),
            &[1.0, 14.0 / 3.0, 7.0]
        );
    }

    #[test]
    fn ceil_mode_keeps_one_window_when_the_kernel_overhangs_by_less_than_a_stride() {
        // PyTorch: (2 - 3 + 2 - 1) div 2 + 1 = 1, so MaxPool2d(3, 2, ceil_mode=True) on 2x2
        // pools the whole input; floor mode is an error ("Output size is too small").
        let x = t([1, 1, 2, 2], &[1.0, 4.0, 2.0, 3.0]);
        let ceil = params([3, 3])
            .stride([2, 2])
            .ceil_mode(true)
            .build()
            .unwrap();
        let out = max_pool2d(&x, &ceil).unwrap();
        assert_eq!(
            (out.output.data(), out.indices.as_slice()),
            (&[4.0f32][..], &[1][..])
        );
        // pool_size = min(0 + 3, 2 + 0) - 0 = 2 per axis, so the divisor is 4 either way.
        assert_eq!(avg_pool2d(&x, &ceil).unwrap().data(), &[2.5]);
        let floor = params([3, 3]).stride([2, 2]).build().unwrap();
        let err = max_pool2d(&x, &floor).unwrap_err();
        assert!(
            err.to_string().contains("larger than the padded input"),
            "{err}"
        );
        // An overhang of a whole stride is too much even in ceil mode.
        let ceil1 = params([3, 3])
            .stride([1, 1])
            .ceil_mode(true)
            .build()
            .unwrap();
        assert!(max_pool2d(&x, &ceil1).is_err());
    }

    #[test]
    fn avg_pool_count_include_pad_false_at_a_corner() {
        // 3x3 kernel, padding 1 on 1..9: the corner window holds 1, 2, 4, 5.
        let x = Tensor::from_fn([1, 1, 3, 3], |i| i as f32 + 1.0).unwrap();
        let base = params([3, 3]).stride([1, 1]).padding([1, 1]);
        let exclude = avg_pool2d(&x, &base.count_include_pad(false).build().unwrap()).unwrap();
        assert_eq!(exclude.data()[0], 3.0);
        assert_eq!(exclude.data()[4], 5.0);
        let include = avg_pool2d(&x, &base.build().unwrap()).unwrap();
        assert_eq!(include.data()[0], 12.0 / 9.0);
        let over = avg_pool2d(&x, &base.divisor_override(Some(2)).build().unwrap()).unwrap();
        assert_eq!(over.data()[0], 6.0);
        // Backward at the corner: each of the 4 inputs gets 1/4 with count_include_pad=false.
        let p = base.count_include_pad(false).build().unwrap();
        let mut g = vec![0.0; 9];
        g[0] = 1.0;
        let gx = avg_pool2d_backward(&t([1, 1, 3, 3], &g), [1, 1, 3, 3], &p).unwrap();
        assert_eq!(
            gx.data(),
            &[0.25, 0.25, 0.0, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn adaptive_avg_5_to_3_uses_overlapping_windows() {
        // Windows [0, 2), [1, 4), [3, 5).
        assert_eq!(
            (0..3).map(|o| adaptive_range(o, 3, 5)).collect::<Vec<_>>(),
            [(0, 2), (1, 4), (3, 5)]
        );
        let x = t([1, 1, 1, 5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        let y = adaptive_avg_pool2d(&x, [1, 3]).unwrap();
        assert_eq!(y.dims(), &[1, 1, 1, 3]);
        assert_eq!(y.data(), &[1.5, 3.0, 4.5]);
        let m = adaptive_max_pool2d(&x, [1, 3]).unwrap();
        assert_eq!(m.output.data(), &[2.0, 4.0, 5.0]);
        assert_eq!(m.indices, [1, 3, 4]);
        let gx =
            adaptive_avg_pool2d_backward(&t([1, 1, 1, 3], &[2.0, 3.0, 4.0]), [1, 1, 1, 5]).unwrap();
        assert_eq!(gx.data(), &[1.0, 2.0, 1.0, 3.0, 2.0]);
    }

    #[test]
    fn global_pools_reduce_each_plane() {
        let x = iota([2, 3, 2, 2]);
        let avg = global_avg_pool2d(&x).unwrap();
        assert_eq!(avg.dims(), &[2, 3, 1, 1]);
        assert_eq!(avg.data(), &[1.5, 5.5, 9.5, 13.5, 17.5, 21.5]);
        assert_eq!(adaptive_avg_pool2d(&x, [1, 1]).unwrap(), avg);
        let max = global_max_pool2d(&x).unwrap();
        assert_eq!(max.output.data(), &[3.0, 7.0, 11.0, 15.0, 19.0, 23.0]);
        assert_eq!(max.indices, [3; 6]);
        let g = Tensor::full([2, 3, 1, 1], 2.0).unwrap();
        let gx = global_avg_pool2d_backward(&g, [2, 3, 2, 2]).unwrap();
        assert!(gx.data().iter().all(|v| *v == 0.5));
        assert_eq!(adaptive_avg_pool2d_backward(&g, [2, 3, 2, 2]).unwrap(), gx);
        let gx = max_pool2d_backward(&g, &max.indices, [2, 3, 2, 2]).unwrap();
        assert_eq!(&gx.data()[..4], &[0.0, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn max_pool_backward_adds_where_windows_share_a_maximum() {
        // Kernel 1x2, stride 1 over [1, 3, 2]: both windows pick index 1.
        let p = params([1, 2]).stride([1, 1]).build().unwrap();
        let x = t([1, 1, 1, 3], &[1.0, 3.0, 2.0]);
        let out = max_pool2d(&x, &p).unwrap();
        assert_eq!(out.indices, [1, 1]);
        let gx = max_pool2d_backward(&t([1, 1, 1, 2], &[0.5, 0.25]), &out.indices, [1, 1, 1, 3])
            .unwrap();
        assert_eq!(gx.data(), &[0.0, 0.75, 0.0]);
    }

    #[test]
    fn parallel_planes_match_one_plane_at_a_time() {
        // Enough planes to cross the parallel threshold; each plane equals a lone run.
        let dims = [8, 16, 12, 12];
        let x = Tensor::from_fn(dims, |i| ((i * 7919) % 1000) as f32 * 0.01).unwrap();
        let p = params([3, 3])
            .stride([2, 2])
            .padding([1, 1])
            .build()
            .unwrap();
        let all = max_pool2d(&x, &p).unwrap();
        let avg = avg_pool2d(&x, &p).unwrap();
        let plane = 144;
        for k in [0, 37, 127] {
            let one = t([1, 1, 12, 12], &x.data()[k * plane..(k + 1) * plane]);
            let single = max_pool2d(&one, &p).unwrap();
            assert_eq!(
                single.output.data(),
                &all.output.data()[k * 36..(k + 1) * 36]
            );
            assert_eq!(single.indices, &all.indices[k * 36..(k + 1) * 36]);
            let single = avg_pool2d(&one, &p).unwrap();
            assert_eq!(single.data(), &avg.data()[k * 36..(k + 1) * 36]);
        }
    }

    #[test]
    fn empty_batch_gives_empty_outputs() {
        let x = Tensor::zeros([0, 3, 4, 4]).unwrap();
        let p = params([2, 2]).build().unwrap();
        assert_eq!(max_pool2d(&x, &p).unwrap().output.dims(), &[0, 3, 2, 2]);
        assert_eq!(avg_pool2d(&x, &p).unwrap().dims(), &[0, 3, 2, 2]);
        assert_eq!(global_avg_pool2d(&x).unwrap().dims(), &[0, 3, 1, 1]);
    }

    // -----------------------------------------------------------------------------------------
    // Errors

    fn build_err(p: Pool2dParamsBuilder) -> String {
        p.build().unwrap_err().to_string()
    }

    #[test]
    fn zero_kernel_stride_dilation_or_divisor_are_parameter_errors() {
        assert_eq!(
            build_err(params([0, 2])),
            "pool2d: invalid kernel: must be at least 1 on both axes, got 0x2"
        );
        assert_eq!(
            build_err(params([2, 2]).stride([2, 0])),
            "pool2d: invalid stride: must be at least 1 on both axes, got 2x0"
        );
        assert!(build_err(params([2, 2]).dilation([0, 1])).contains("invalid dilation"));
        assert_eq!(
            build_err(params([2, 2]).divisor_override(Some(0))),
            "pool2d: invalid divisor_override: must not be 0"
        );
    }

    #[test]
    fn padding_above_half_the_kernel_is_an_error() {
        assert_eq!(
            build_err(params([3, 4]).padding([2, 1])),
            "pool2d: invalid padding: must be at most half the kernel size on each axis (as in \
             PyTorch), got padding 2x1 for kernel 3x4 (at most 1x2)"
        );
        // The rule is k / 2 even when a dilation widens the kernel (PyTorch's
        // pool2d_shape_check), and exactly half is allowed.
        assert!(build_err(params([3, 3]).padding([2, 0]).dilation([2, 2])).contains("padding"));
        assert!(params([2, 2]).padding([1, 1]).build().is_ok());
    }

    #[test]
    fn inputs_must_be_4d_with_non_empty_planes() {
        let p = params([2, 2]).build().unwrap();
        let x3 = Tensor::zeros([1, 4, 4]).unwrap();
        let err = max_pool2d(&x3, &p).unwrap_err().to_string();
        assert_eq!(
            err,
            "max_pool2d: input must be 4-D (N, C, H, W), got shape [1, 4, 4] (3-D)"
        );
        assert!(
            avg_pool2d(&x3, &p)
                .unwrap_err()
                .to_string()
                .starts_with("avg_pool2d: input")
        );
        assert!(
            global_max_pool2d(&x3)
                .unwrap_err()
                .to_string()
                .contains("must be 4-D")
        );
        let empty = Tensor::zeros([1, 2, 0, 4]).unwrap();
        let err = adaptive_avg_pool2d(&empty, [2, 2]).unwrap_err().to_string();
        assert!(err.contains("empty channel, height or width"), "{err}");
    }

    #[test]
    fn kernel_larger_than_the_padded_input_is_explained() {
        let p = params([5, 5]).padding([1, 1]).build().unwrap();
        let err = max_pool2d(&Tensor::zeros([1, 1, 2, 6]).unwrap(), &p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_pool2d: kernel 5x5 (dilation 1x1, spans 5x5) is larger than the padded input \
             4x8 (input 2x6, padding 1x1 on each side)"
        );
    }

    #[test]
    fn avg_pool_rejects_dilation() {
        let p = params([2, 2]).dilation([2, 2]).build().unwrap();
        let err = avg_pool2d(&Tensor::zeros([1, 1, 6, 6]).unwrap(), &p).unwrap_err();
        assert!(
            err.to_string().starts_with("avg_pool2d: invalid dilation"),
            "{err}"
        );
    }

    #[test]
    fn grad_output_of_the_wrong_shape_names_both_shapes() {
        let p = params([2, 2]).build().unwrap();
        let g = Tensor::zeros([1, 1, 3, 3]).unwrap();
        let err = avg_pool2d_backward(&g, [1, 1, 4, 4], &p).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "avg_pool2d_backward: grad_output has shape [1, 1, 3, 3] but the output for input \
             [1, 1, 4, 4] has shape [1, 1, 2, 2]"
        );
        let err = global_avg_pool2d_backward(&g, [1, 1, 4, 4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("grad_output has shape [1, 1, 3, 3]") && err.contains("[1, 1, 1, 1]"));
        let err = adaptive_avg_pool2d_backward(&g, [1, 2, 4, 4])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1, 1, 3, 3]") && err.contains("[1, 2, 4, 4]"),
            "{err}"
        );
        let err = max_pool2d_backward(&g, &[0; 9], [2, 1, 4, 4])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1, 1, 3, 3]") && err.contains("[2, 1, 4, 4]"),
            "{err}"
        );
    }

    #[test]
    fn max_pool_backward_rejects_bad_indices() {
        let g = Tensor::zeros([1, 1, 2, 2]).unwrap();
        let err = max_pool2d_backward(&g, &[0, 1, 16, 2], [1, 1, 4, 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "max_pool2d_backward: invalid indices: indices[2] = 16 is outside the 4x4 input \
             plane (16 positions)"
        );
        let err = max_pool2d_backward(&g, &[0, 1], [1, 1, 4, 4]).unwrap_err();
        assert!(err.to_string().contains("indices holds 2 values"), "{err}");
    }

    #[test]
    fn adaptive_output_size_zero_is_an_error() {
        let x = Tensor::zeros([1, 1, 4, 4]).unwrap();
        let err = adaptive_avg_pool2d(&x, [0, 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "adaptive_avg_pool2d: invalid output size: must be at least 1x1, got 0x2"
        );
        assert!(
            adaptive_max_pool2d(&x, [2, 0])
                .unwrap_err()
                .to_string()
                .contains("output size")
        );
    }
}
