//! 2-D convolution, forward and backward, exactly as `torch.nn.functional.conv2d` (plus
//! `torch.nn.Conv2d`'s padding modes and an optional flipped kernel).
//!
//! # Dispatch
//! Every call goes through the same steps, for the forward pass and each gradient:
//!
//! 1. **Check** the shapes against the parameters ([`Conv2dParams::geometry`]): one output-size
//!    formula for every path.
//! 2. **Canonicalize**, so the fast paths see only zero padding and cross-correlation:
//!    - [`ConvMode::Convolution`] flips the kernel (and flips the weight gradient back);
//!    - reflect / replicate / circular padding materialises the padded input (`pad.rs`), runs
//!      with no padding, and folds the input gradient back onto the input.
//!
//!    The depthwise forward pass skips this: it flips the kernel itself and reads any padding
//!    mode's border straight from the input while laying out each band of rows.
//! 3. **Pick a path**, first match wins (or the one named by [`Conv2dAlgo`]):
//!    1. [`is_depthwise`]: every filter sees one input channel (depthwise convolution, or
//!       a single-channel input) → `depthwise.rs`, direct loops vectorised over the row;
//!    2. [`is_pointwise`]: 1x1 kernel, stride 1, no padding → `pointwise.rs`, one GEMM per
//!       image and group with no im2col;
//!    3. otherwise → `im2col.rs`, tiled im2col + GEMM, for any stride, dilation and groups.
//!
//! `reference.rs` is never picked by `Auto`: it is the formula written literally, the oracle
//! every path is tested against ([`Conv2dAlgo::Reference`] runs it on demand).
//!
//! Gradients are named `grad_input`, `grad_weight`, `grad_bias` throughout.

mod depthwise;
mod direct;
mod im2col;
mod pad;
mod params;
mod phases;
mod pointwise;
pub(crate) mod reference;

use std::borrow::Cow;

pub use params::{
    Conv2dGeometry, Conv2dParams, Conv2dParamsBuilder, ConvMode, Padding, PaddingMode, Tap,
};

use crate::error::{Error, Result};
use crate::scratch::Scratch;
use crate::tensor::{Tensor, fmt_dims};

const OP: &str = "conv2d";

/// Which implementation computes a conv2d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conv2dAlgo {
    /// The first path whose predicate holds (see the module documentation).
    #[default]
    Auto,
    /// The literal formula: slow, exact, every option.
    Reference,
    /// Tiled im2col + GEMM: every option.
    Im2col,
    /// Register-blocked direct convolution over a padded copy of the input: every option.
    Direct,
    /// Direct GEMM without im2col: 1x1 kernels with stride 1 and no padding.
    Pointwise,
    /// Direct loops: one input channel per filter (depthwise, or single-channel input).
    Depthwise,
}

/// Every filter sees exactly one input channel: depthwise convolution (groups = channels,
/// any channel multiplier) or a single-channel input.
pub fn is_depthwise(g: &Conv2dGeometry) -> bool {
    g.in_per_group() == 1
}

/// A 1x1 kernel with stride 1 and no padding: the convolution is a matrix product.
pub fn is_pointwise(g: &Conv2dGeometry) -> bool {
    g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0; 4]
}

impl Conv2dAlgo {
    /// The path that runs a canonical problem, or an error if `self` does not apply to it.
    fn resolve(self, g: &Conv2dGeometry) -> Result<Conv2dAlgo> {
        let fits = match self {
            Conv2dAlgo::Auto => {
                return Ok(if is_depthwise(g) {
                    Conv2dAlgo::Depthwise
                } else if is_pointwise(g) {
                    Conv2dAlgo::Pointwise
                } else {
                    Conv2dAlgo::Direct
                });
            }
            Conv2dAlgo::Reference | Conv2dAlgo::Im2col | Conv2dAlgo::Direct => true,
            Conv2dAlgo::Pointwise => is_pointwise(g),
            Conv2dAlgo::Depthwise => is_depthwise(g),
        };
        if fits {
            Ok(self)
        } else {
            Err(Error::param(
                OP,
                "algorithm",
                format!(
                    "{self:?} does not apply to kernel {}x{}, stride {:?}, padding {:?}, \
                     {} input channel(s) per group",
                    g.kernel[0],
                    g.kernel[1],
                    g.stride,
                    g.pad,
                    g.in_per_group()
                ),
            ))
        }
    }
}

/// Which gradients a backward pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradRequest {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

impl GradRequest {
    /// All three gradients.
    pub const ALL: GradRequest = GradRequest {
        input: true,
        weight: true,
        bias: true,
    };
}

/// The gradients a backward pass computed (`None` where not requested).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dGrads {
    pub grad_input: Option<Tensor>,
    pub grad_weight: Option<Tensor>,
    pub grad_bias: Option<Tensor>,
}

/// `conv2d(input, weight) + bias`.
///
/// Shapes: input `[N, C, H, W]`, weight `[K, C / groups, kh, kw]`, bias `[K]`; output
/// `[N, K, Ho, Wo]` with `Ho = floor((H + pad_t + pad_b - d_h (kh - 1) - 1) / s_h) + 1`.
///
/// ```
/// use convnet_core::{Conv2dParams, Tensor, conv2d};
/// // The vertical-edge detector on a 3x3 patch.
/// let x = Tensor::new([1, 1, 3, 3], vec![10., 20., 30., 15., 25., 35., 20., 30., 40.])?;
/// let w = Tensor::new([1, 1, 3, 3], vec![1., 0., -1., 1., 0., -1., 1., 0., -1.])?;
/// let y = conv2d(&x, &w, None, &Conv2dParams::default())?;
/// assert_eq!(y.data(), &[-60.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
) -> Result<Tensor> {
    conv2d_with(Conv2dAlgo::Auto, input, weight, bias, params)
}

/// [`conv2d`] computed by a chosen implementation.
pub fn conv2d_with(
    algo: Conv2dAlgo,
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = params.geometry(input.dims4(OP, "input")?, weight.dims4(OP, "weight")?)?;
    if let Some(b) = bias {
        check_bias(&g, b.dims())?;
    }
    let mut y = crate::alloc::zeroed(g.output_dims().iter().product());
    forward_into(
        algo,
        &g,
        input.data(),
        weight.data(),
        bias.map(Tensor::data),
        &mut y,
    )?;
    Ok(Tensor::from_parts(g.output_dims().to_vec(), y))
}

/// `grad_input` of [`conv2d`]: the gradient w.r.t. an input of shape `input_dims`.
pub fn conv2d_input_grad(
    grad_output: &Tensor,
    weight: &Tensor,
    input_dims: [usize; 4],
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = params.geometry(input_dims, weight.dims4(OP, "weight")?)?;
    check_grad_output(&g, grad_output)?;
    let mut gx = crate::alloc::zeroed(input_dims.iter().product());
    input_grad_into(
        Conv2dAlgo::Auto,
        &g,
        grad_output.data(),
        weight.data(),
        &mut gx,
    )?;
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// `grad_weight` of [`conv2d`]: the gradient w.r.t. a weight of shape `weight_dims`.
pub fn conv2d_weight_grad(
    grad_output: &Tensor,
    input: &Tensor,
    weight_dims: [usize; 4],
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = params.geometry(input.dims4(OP, "input")?, weight_dims)?;
    check_grad_output(&g, grad_output)?;
    let mut gw = vec![0.0; weight_dims.iter().product()];
    weight_grad_into(
        Conv2dAlgo::Auto,
        &g,
        grad_output.data(),
        input.data(),
        &mut gw,
    )?;
    Ok(Tensor::from_parts(weight_dims.to_vec(), gw))
}

/// `grad_bias` of [`conv2d`]: `grad_output` `[N, K, Ho, Wo]` summed to `[K]`.
pub fn conv2d_bias_grad(grad_output: &Tensor) -> Result<Tensor> {
    let [n, k, ho, wo] = grad_output.dims4(OP, "grad_output")?;
    let mut gb = vec![0.0; k];
    bias_grad_into(grad_output.data(), [n, k, ho, wo], &mut gb);
    Ok(Tensor::from_parts(vec![k], gb))
}

/// The gradients of [`conv2d`] that `request` asks for.
pub fn conv2d_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    params: &Conv2dParams,
    request: GradRequest,
) -> Result<Conv2dGrads> {
    conv2d_backward_with(
        Conv2dAlgo::Auto,
        grad_output,
        input,
        weight,
        params,
        request,
    )
}

/// [`conv2d_backward`] computed by a chosen implementation.
pub fn conv2d_backward_with(
    algo: Conv2dAlgo,
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    params: &Conv2dParams,
    request: GradRequest,
) -> Result<Conv2dGrads> {
    let g = params.geometry(input.dims4(OP, "input")?, weight.dims4(OP, "weight")?)?;
    check_grad_output(&g, grad_output)?;
    let gy = grad_output.data();
    let grad_input = if request.input {
        let mut gx = crate::alloc::zeroed(input.numel());
        input_grad_into(algo, &g, gy, weight.data(), &mut gx)?;
        Some(Tensor::from_parts(input.dims().to_vec(), gx))
    } else {
        None
    };
    let grad_weight = if request.weight {
        let mut gw = vec![0.0; weight.numel()];
        weight_grad_into(algo, &g, gy, input.data(), &mut gw)?;
        Some(Tensor::from_parts(weight.dims().to_vec(), gw))
    } else {
        None
    };
    let grad_bias = match (request.bias, algo) {
        (false, _) => None,
        (true, Conv2dAlgo::Reference) => {
            let mut gb = vec![0.0; g.out_channels];
            reference::bias_grad(&g, gy, &mut gb);
            Some(Tensor::from_parts(vec![g.out_channels], gb))
        }
        (true, _) => Some(conv2d_bias_grad(grad_output)?),
    };
    Ok(Conv2dGrads {
        grad_input,
        grad_weight,
        grad_bias,
    })
}

fn check_bias(g: &Conv2dGeometry, dims: &[usize]) -> Result<()> {
    if dims != [g.out_channels] {
        return Err(Error::shape(
            OP,
            format!(
                "bias must have shape [{}] (one per output channel), got {}",
                g.out_channels,
                fmt_dims(dims)
            ),
        ));
    }
    Ok(())
}

fn check_grad_output(g: &Conv2dGeometry, grad_output: &Tensor) -> Result<()> {
    if grad_output.dims() != g.output_dims() {
        return Err(Error::shape(
            OP,
            format!(
                "grad_output has shape {} but the output of input {} and weight {} is {}",
                grad_output.shape(),
                fmt_dims(&g.input_dims()),
                fmt_dims(&g.weight_dims()),
                fmt_dims(&g.output_dims())
            ),
        ));
    }
    Ok(())
}

fn check_len(what: &str, len: usize, dims: [usize; 4]) -> Result<()> {
    let want: usize = dims.iter().product();
    if len != want {
        return Err(Error::shape(
            OP,
            format!(
                "{what} holds {len} values, but shape {} needs {want}",
                fmt_dims(&dims)
            ),
        ));
    }
    Ok(())
}

/// A problem the fast paths can run: zero padding, cross-correlation.
struct Canonical<'a> {
    geom: Conv2dGeometry,
    /// The input, padded if the padding mode is not zeros.
    x: Cow<'a, [f32]>,
    /// The weight, flipped for `ConvMode::Convolution`.
    w: Cow<'a, [f32]>,
}

fn needs_materialized_padding(g: &Conv2dGeometry) -> bool {
    g.padding_mode != PaddingMode::Zeros && g.pad != [0; 4]
}

/// The canonical form of `g`; `x` and `w` may be empty when the caller does not need them.
fn canonicalize<'a>(g: &Conv2dGeometry, x: &'a [f32], w: &'a [f32]) -> Canonical<'a> {
    let mut geom = *g;
    let x = if needs_materialized_padding(g) {
        let [ph, pw] = g.padded_hw();
        geom.in_hw = [ph, pw];
        geom.pad = [0; 4];
        if x.is_empty() {
            Cow::Borrowed(x)
        } else {
            Cow::Owned(pad::pad_input(x, g.input_dims(), g.pad, g.padding_mode))
        }
    } else {
        Cow::Borrowed(x)
    };
    geom.padding_mode = PaddingMode::Zeros;
    let w = if g.mode == ConvMode::Convolution {
        geom.mode = ConvMode::CrossCorrelation;
        Cow::Owned(flip_kernels(w, g.kernel))
    } else {
        Cow::Borrowed(w)
    };
    Canonical { geom, x, w }
}

/// Each `kh x kw` kernel rotated by 180 degrees (its own inverse).
fn flip_kernels(w: &[f32], [kh, kw]: [usize; 2]) -> Vec<f32> {
    let mut out = w.to_vec();
    for kernel in out.chunks_exact_mut(kh * kw) {
        kernel.reverse();
    }
    out
}

/// Forward pass on raw NCHW slices described by `g`; `y` is overwritten. For callers that
/// keep their own buffers (layers in a training loop).
pub fn forward_into(
    algo: Conv2dAlgo,
    g: &Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    check_len("input", x.len(), g.input_dims())?;
    check_len("weight", w.len(), g.weight_dims())?;
    check_len("output", y.len(), g.output_dims())?;
    if let Some(b) = b {
        check_bias(g, &[b.len()])?;
    }
    if algo == Conv2dAlgo::Reference {
        reference::forward(g, x, w, b, y);
        return Ok(());
    }
    if matches!(algo, Conv2dAlgo::Auto | Conv2dAlgo::Depthwise) && is_depthwise(g) {
        // The depthwise path reads any padding mode's border straight from the input.
        let w = if g.mode == ConvMode::Convolution {
            Cow::Owned(flip_kernels(w, g.kernel))
        } else {
            Cow::Borrowed(w)
        };
        depthwise::forward(g, x, &w, b, y);
        return Ok(());
    }
    let c = canonicalize(g, x, w);
    match algo.resolve(&c.geom)? {
        Conv2dAlgo::Depthwise => depthwise::forward(&c.geom, &c.x, &c.w, b, y),
        Conv2dAlgo::Pointwise => pointwise::forward(&c.geom, &c.x, &c.w, b, y),
        Conv2dAlgo::Direct => direct::forward(&c.geom, &c.x, &c.w, b, y),
        _ => im2col::forward(&c.geom, &c.x, &c.w, b, y),
    }
    Ok(())
}

/// `grad_input` on raw slices; `gx` is overwritten.
pub fn input_grad_into(
    algo: Conv2dAlgo,
    g: &Conv2dGeometry,
    gy: &[f32],
    w: &[f32],
    gx: &mut [f32],
) -> Result<()> {
    check_len("grad_output", gy.len(), g.output_dims())?;
    check_len("weight", w.len(), g.weight_dims())?;
    check_len("grad_input", gx.len(), g.input_dims())?;
    if algo == Conv2dAlgo::Reference {
        reference::input_grad(g, gy, w, gx);
        return Ok(());
    }
    let c = canonicalize(g, &[], w);
    let path = algo.resolve(&c.geom)?;
    let run = |gx: &mut [f32]| match path {
        Conv2dAlgo::Depthwise => depthwise::input_grad(&c.geom, gy, &c.w, gx),
        Conv2dAlgo::Pointwise => pointwise::input_grad(&c.geom, gy, &c.w, gx),
        Conv2dAlgo::Direct => match direct::transposed_problem(&c.geom) {
            Some(t) => {
                let mut wt = Scratch::take(c.w.len());
                direct::transposed_weights(&c.geom, &c.w, &mut wt);
                direct::forward(&t, gy, &wt, None, gx);
            }
            None => im2col::input_grad(&c.geom, gy, &c.w, gx),
        },
        _ => im2col::input_grad(&c.geom, gy, &c.w, gx),
    };
    if needs_materialized_padding(g) {
        let padded_len = c.geom.input_dims().iter().product();
        let mut gxp = vec![0.0; padded_len];
        run(&mut gxp);
        let folded = pad::fold_padded_grad(&gxp, g.input_dims(), g.pad, g.padding_mode);
        gx.copy_from_slice(&folded);
    } else {
        run(gx);
    }
    Ok(())
}

/// `grad_weight` on raw slices; `gw` is overwritten.
pub fn weight_grad_into(
    algo: Conv2dAlgo,
    g: &Conv2dGeometry,
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
) -> Result<()> {
    check_len("grad_output", gy.len(), g.output_dims())?;
    check_len("input", x.len(), g.input_dims())?;
    check_len("grad_weight", gw.len(), g.weight_dims())?;
    if algo == Conv2dAlgo::Reference {
        reference::weight_grad(g, gy, x, gw);
        return Ok(());
    }
    let c = canonicalize(g, x, &[]);
    match algo.resolve(&c.geom)? {
        Conv2dAlgo::Depthwise => depthwise::weight_grad(&c.geom, gy, &c.x, gw),
        Conv2dAlgo::Pointwise => pointwise::weight_grad(&c.geom, gy, &c.x, gw),
        Conv2dAlgo::Direct => direct::weight_grad(&c.geom, gy, &c.x, gw),
        _ => im2col::weight_grad(&c.geom, gy, &c.x, gw),
    }
    if g.mode == ConvMode::Convolution {
        for kernel in gw.chunks_exact_mut(g.kernel[0] * g.kernel[1]) {
            kernel.reverse();
        }
    }
    Ok(())
}

/// `grad_bias` on raw slices: `gy` `[N, K, Ho, Wo]` summed into `gb` `[K]` (overwritten).
/// Summed in f64, so each value is the f32 rounding of the exact sum whatever the number of
/// positions; channels in parallel.
pub fn bias_grad_into(gy: &[f32], [n, k, ho, wo]: [usize; 4], gb: &mut [f32]) {
    use rayon::prelude::*;
    let plane = ho * wo;
    gb.par_iter_mut().enumerate().for_each(|(ch, out)| {
        let total: f64 = (0..n)
            .map(|img| sum_f64(&gy[(img * k + ch) * plane..][..plane]))
            .sum();
        *out = total as f32;
    });
}

/// The sum of `v` in f64, in eight independent lanes (which the compiler vectorises).
fn sum_f64(v: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f64::from(x);
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    acc.iter().sum::<f64>() + rest
}
