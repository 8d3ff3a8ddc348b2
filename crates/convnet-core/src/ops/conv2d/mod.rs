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
//!    1. [`prefers_depthwise`]: every filter sees one input channel (depthwise convolution,
//!       or a single-channel input), with fewer than [`DEPTHWISE_MAX_FILTERS`] filters per
//!       channel → `depthwise.rs`, direct loops vectorised over the row;
//!    2. [`is_pointwise`]: 1x1 kernel, stride 1, no padding → `pointwise.rs`, one GEMM per
//!       image and group with no im2col;
//!    3. [`prefers_winograd`]: 3x3, stride 1, one group, 128+ channels each side, on AVX-512
//!       → `winograd.rs` (forward and input gradient; the weight gradient stays direct);
//!    4. otherwise → `direct.rs`, register-blocked direct convolution for any stride,
//!       dilation and groups: the micro-kernels of `microkernel.rs` over the input laid out
//!       by `phases.rs`. Its input gradient is, for stride 1 (and padding no wider than the
//!       dilated kernel), the forward pass of `grad_output` with the flipped, channel-swapped
//!       kernel, and otherwise `im2col.rs`'s col2im.
//!
//! `im2col.rs` (tiled im2col + GEMM) is otherwise chosen only by name
//! ([`Conv2dAlgo::Im2col`]): a second general path the property tests check the first
//! against. `winograd.rs` (F(2x2, 3x3): 3x3, stride 1, no dilation, one group; 16
//! products per 2x2 outputs instead of 36) runs under `Auto` only where it measured faster
//! than the direct path, [`prefers_winograd`] (AVX-512, 128+ channels each side), and
//! otherwise by name ([`Conv2dAlgo::Winograd`]; see its module documentation).
//! `reference.rs` is never picked by `Auto`: it is the formula written literally, the oracle
//! every path is tested against ([`Conv2dAlgo::Reference`] runs it on demand).
//!
//! # Files
//! This file holds the public functions, their checks, the canonical form and the dispatch;
//! `params.rs` the hyper-parameters ([`Conv2dParams`], checked once) and the resolved
//! [`Conv2dGeometry`]; `pad.rs` the padding modes and their adjoint. A new path is one more
//! file with `forward`, `input_grad` and `weight_grad` over a canonical geometry, a
//! `Conv2dAlgo` and a `FastPath` variant, and their arms in the dispatch matches (which name
//! every path, so the compiler lists each place to add one).
//!
//! The public gradients are named `grad_input`, `grad_weight`, `grad_bias` throughout
//! ([`conv2d_grad_input`], [`grad_input_into`], [`Conv2dGrads`], ...).

mod depthwise;
mod direct;
mod im2col;
mod microkernel;
pub(crate) mod pad;
mod params;
mod phases;
mod pointwise;
pub(crate) mod reference;
mod winograd;

use std::borrow::Cow;
use std::mem::MaybeUninit;

pub use params::{
    Conv2dGeometry, Conv2dParams, Conv2dParamsBuilder, ConvMode, Padding, PaddingMode, Tap,
};

use super::GradRequest;
use crate::cpu::scratch::Scratch;
use crate::cpu::simd::{Simd, multiversion};
use crate::error::{Error, Result};
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
    /// Winograd F(2x2, 3x3): 3x3 kernels, stride 1, no dilation, one group (`Auto` runs it
    /// where [`prefers_winograd`]: AVX-512, 128+ channels each side).
    Winograd,
}

/// Every filter sees exactly one input channel: depthwise convolution (groups = channels,
/// any channel multiplier) or a single-channel input.
pub fn is_depthwise(g: &Conv2dGeometry) -> bool {
    g.in_per_group() == 1
}

/// Depthwise problems with fewer filters per input channel than this go to the depthwise
/// path; with more (e.g. a single-channel input and many filters), the direct path's
/// register tiles share each input load among several filters and are faster.
pub const DEPTHWISE_MAX_FILTERS: usize = 8;

/// What `Auto` runs on the depthwise path: [`is_depthwise`], with fewer than
/// [`DEPTHWISE_MAX_FILTERS`] filters per input channel.
pub fn prefers_depthwise(g: &Conv2dGeometry) -> bool {
    is_depthwise(g) && g.out_per_group() < DEPTHWISE_MAX_FILTERS
}

/// Channels, in and out, from which `Auto` runs a layer that Winograd computes on that path
/// (with AVX-512 only, see [`prefers_winograd`]).
pub const WINOGRAD_MIN_CHANNELS: usize = 128;

/// What `Auto` runs on the Winograd path: a problem it computes (3x3, stride 1, no dilation,
/// one group) with at least [`WINOGRAD_MIN_CHANNELS`] input and output channels, on a CPU
/// whose kernels run AVX-512. Measured interleaved on 2 AVX-512 cores: 1.11x to 1.66x the
/// direct path's forward speed at 128 and 256 channels, but 0.7x to 1.1x at 32 and 64
/// (products of depth `C` too short for their transforms), and slower at every width on
/// AVX2 (16 registers).
pub fn prefers_winograd(g: &Conv2dGeometry) -> bool {
    winograd::applies(g)
        && g.in_channels >= WINOGRAD_MIN_CHANNELS
        && g.out_channels >= WINOGRAD_MIN_CHANNELS
        && crate::cpu::simd::simd_level() == crate::cpu::simd::SimdLevel::Avx512
}

/// A 1x1 kernel with stride 1 and no padding: the convolution is a matrix product.
pub fn is_pointwise(g: &Conv2dGeometry) -> bool {
    g.kernel == [1, 1] && g.stride == [1, 1] && g.pad == [0; 4]
}

/// How a call runs: the literal formula on the problem as given, or a fast path on its
/// canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Reference,
    Fast(FastPath),
}

/// The fast paths, one file each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FastPath {
    Depthwise,
    Pointwise,
    Direct,
    Im2col,
    Winograd,
}

impl Conv2dAlgo {
    /// How a problem whose canonical form is `canonical` runs, or an error if `self` does not
    /// apply to it.
    fn route(self, canonical: &Conv2dGeometry) -> Result<Route> {
        let g = canonical;
        let (path, fits) = match self {
            Conv2dAlgo::Reference => return Ok(Route::Reference),
            Conv2dAlgo::Auto => {
                let path = if prefers_depthwise(g) {
                    FastPath::Depthwise
                } else if is_pointwise(g) {
                    FastPath::Pointwise
                } else if prefers_winograd(g) {
                    FastPath::Winograd
                } else {
                    FastPath::Direct
                };
                return Ok(Route::Fast(path));
            }
            Conv2dAlgo::Im2col => (FastPath::Im2col, true),
            Conv2dAlgo::Direct => (FastPath::Direct, true),
            Conv2dAlgo::Pointwise => (FastPath::Pointwise, is_pointwise(g)),
            Conv2dAlgo::Depthwise => (FastPath::Depthwise, is_depthwise(g)),
            Conv2dAlgo::Winograd => (FastPath::Winograd, winograd::applies(g)),
        };
        if fits {
            Ok(Route::Fast(path))
        } else {
            Err(Error::param(
                OP,
                "algorithm",
                format!(
                    "{self:?} does not apply to kernel {}x{}, stride {:?}, dilation {:?}, \
                     padding {:?}, {} group(s), {} input channel(s) per group",
                    g.kernel[0],
                    g.kernel[1],
                    g.stride,
                    g.dilation,
                    g.pad,
                    g.groups,
                    g.in_per_group()
                ),
            ))
        }
    }
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
    conv2d_with(input, weight, bias, params, Conv2dAlgo::Auto)
}

/// [`conv2d`] computed by a chosen implementation.
pub fn conv2d_with(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: &Conv2dParams,
    algo: Conv2dAlgo,
) -> Result<Tensor> {
    let g = params.geometry(input.dims4(OP, "input")?, weight.dims4(OP, "weight")?)?;
    if let Some(b) = bias {
        check_bias(&g, b.dims())?;
    }
    let n = g.output_dims().iter().product();
    let mut y = crate::cpu::alloc::uninit(n);
    forward_uninit(
        input.data(),
        weight.data(),
        bias.map(Tensor::data),
        &mut y.spare_capacity_mut()[..n],
        &g,
        algo,
    )?;
    // SAFETY: `forward_uninit` returned Ok, so it wrote all `n` values.
    unsafe { y.set_len(n) };
    Ok(Tensor::from_parts(g.output_dims().to_vec(), y))
}

/// `grad_input` of [`conv2d`]: the gradient w.r.t. an input of shape `input_dims`.
pub fn conv2d_grad_input(
    grad_output: &Tensor,
    weight: &Tensor,
    input_dims: [usize; 4],
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = params.geometry(input_dims, weight.dims4(OP, "weight")?)?;
    check_grad_output(&g, grad_output)?;
    let mut gx = crate::cpu::alloc::zeroed(input_dims.iter().product());
    grad_input_into(
        grad_output.data(),
        weight.data(),
        &mut gx,
        &g,
        Conv2dAlgo::Auto,
    )?;
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

/// `grad_weight` of [`conv2d`]: the gradient w.r.t. a weight of shape `weight_dims`.
pub fn conv2d_grad_weight(
    grad_output: &Tensor,
    input: &Tensor,
    weight_dims: [usize; 4],
    params: &Conv2dParams,
) -> Result<Tensor> {
    let g = params.geometry(input.dims4(OP, "input")?, weight_dims)?;
    check_grad_output(&g, grad_output)?;
    let mut gw = vec![0.0; weight_dims.iter().product()];
    grad_weight_into(
        grad_output.data(),
        input.data(),
        &mut gw,
        &g,
        Conv2dAlgo::Auto,
    )?;
    Ok(Tensor::from_parts(weight_dims.to_vec(), gw))
}

/// `grad_bias` of [`conv2d`]: `grad_output` `[N, K, Ho, Wo]` summed to `[K]`.
pub fn conv2d_grad_bias(grad_output: &Tensor) -> Result<Tensor> {
    let [n, k, ho, wo] = grad_output.dims4(OP, "grad_output")?;
    let mut gb = vec![0.0; k];
    grad_bias_into(grad_output.data(), &mut gb, [n, k, ho, wo]);
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
        grad_output,
        input,
        weight,
        params,
        request,
        Conv2dAlgo::Auto,
    )
}

/// [`conv2d_backward`] computed by a chosen implementation.
pub fn conv2d_backward_with(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    params: &Conv2dParams,
    request: GradRequest,
    algo: Conv2dAlgo,
) -> Result<Conv2dGrads> {
    let g = params.geometry(input.dims4(OP, "input")?, weight.dims4(OP, "weight")?)?;
    check_grad_output(&g, grad_output)?;
    let gy = grad_output.data();
    let grad_input = if request.input {
        let n = input.numel();
        let mut gx = crate::cpu::alloc::uninit(n);
        grad_input_uninit(
            gy,
            weight.data(),
            &mut gx.spare_capacity_mut()[..n],
            &g,
            algo,
        )?;
        // SAFETY: `grad_input_uninit` returned Ok, so it wrote all `n` values.
        unsafe { gx.set_len(n) };
        Some(Tensor::from_parts(input.dims().to_vec(), gx))
    } else {
        None
    };
    if request.weight {
        // Both from one pass over `grad_output` where the path allows.
        let mut gw = vec![0.0; weight.numel()];
        let mut gb = vec![0.0; if request.bias { g.out_channels } else { 0 }];
        let bias = request.bias.then_some(&mut gb[..]);
        grad_weight_bias_into(gy, input.data(), &mut gw, bias, &g, algo)?;
        return Ok(Conv2dGrads {
            grad_input,
            grad_weight: Some(Tensor::from_parts(weight.dims().to_vec(), gw)),
            grad_bias: request
                .bias
                .then(|| Tensor::from_parts(vec![g.out_channels], gb)),
        });
    }
    let grad_bias = if request.bias {
        Some(match algo {
            Conv2dAlgo::Reference => {
                let mut gb = vec![0.0; g.out_channels];
                reference::bias_grad(&g, gy, &mut gb);
                Tensor::from_parts(vec![g.out_channels], gb)
            }
            // Every fast path shares one bias gradient.
            Conv2dAlgo::Auto
            | Conv2dAlgo::Im2col
            | Conv2dAlgo::Direct
            | Conv2dAlgo::Pointwise
            | Conv2dAlgo::Depthwise
            | Conv2dAlgo::Winograd => conv2d_grad_bias(grad_output)?,
        })
    } else {
        None
    };
    Ok(Conv2dGrads {
        grad_input,
        grad_weight: None,
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

/// The geometry of `g`'s canonical form: a padding mode's border materialised into the
/// input, cross-correlation.
fn canonical_geometry(g: &Conv2dGeometry) -> Conv2dGeometry {
    let mut geom = *g;
    if needs_materialized_padding(g) {
        geom.in_hw = g.padded_hw();
        geom.pad = [0; 4];
    }
    geom.padding_mode = PaddingMode::Zeros;
    geom.mode = ConvMode::CrossCorrelation;
    geom
}

/// The canonical form of `g`; `x` and `w` may be empty when the caller does not need them.
fn canonicalize<'a>(g: &Conv2dGeometry, x: &'a [f32], w: &'a [f32]) -> Canonical<'a> {
    let x = if needs_materialized_padding(g) && !x.is_empty() {
        Cow::Owned(pad::pad_input(x, g.input_dims(), g.pad, g.padding_mode))
    } else {
        Cow::Borrowed(x)
    };
    Canonical {
        geom: canonical_geometry(g),
        x,
        w: cross_correlation_kernel(g, w),
    }
}

/// The weight as cross-correlation reads it: flipped for `ConvMode::Convolution`.
fn cross_correlation_kernel<'a>(g: &Conv2dGeometry, w: &'a [f32]) -> Cow<'a, [f32]> {
    match g.mode {
        ConvMode::CrossCorrelation => Cow::Borrowed(w),
        ConvMode::Convolution => Cow::Owned(flip_kernels(w, g.kernel)),
    }
}

/// Each `kh x kw` kernel rotated by 180 degrees (its own inverse).
fn flip_kernels(w: &[f32], [kh, kw]: [usize; 2]) -> Vec<f32> {
    let mut out = w.to_vec();
    for kernel in out.chunks_exact_mut(kh * kw) {
        kernel.reverse();
    }
    out
}

/// [`forward_into`] into uninitialised memory; on success every value of `y` was written.
/// The direct path writes straight into it; the others take it zeroed.
fn forward_uninit(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    if forward_checks(x, w, b, y.len(), g, algo)? == Route::Fast(FastPath::Direct) {
        let c = canonicalize(g, x, w);
        direct::forward_uninit(&c.geom, &c.x, &c.w, b, y);
        return Ok(());
    }
    y.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was initialised just above; `MaybeUninit<f32>` has `f32`'s layout.
    let y = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
    forward_into(x, w, b, y, g, algo)
}

/// The checks of [`forward_into`] (with an output of `y_len` values), and its route.
fn forward_checks(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y_len: usize,
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<Route> {
    check_len("input", x.len(), g.input_dims())?;
    check_len("weight", w.len(), g.weight_dims())?;
    check_len("output", y_len, g.output_dims())?;
    if let Some(b) = b {
        check_bias(g, &[b.len()])?;
    }
    algo.route(&canonical_geometry(g))
}

/// Forward pass on raw NCHW slices described by `g`; `y` is overwritten. For callers that
/// keep their own buffers (layers in a training loop).
pub fn forward_into(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    let path = match forward_checks(x, w, b, y.len(), g, algo)? {
        Route::Reference => {
            reference::forward(g, x, w, b, y);
            return Ok(());
        }
        Route::Fast(path) => path,
    };
    match path {
        // The depthwise forward pass reads any padding mode's border straight from the input.
        FastPath::Depthwise => depthwise::forward(g, x, &cross_correlation_kernel(g, w), b, y),
        FastPath::Pointwise => {
            let c = canonicalize(g, x, w);
            pointwise::forward(&c.geom, &c.x, &c.w, b, y);
        }
        FastPath::Direct => {
            let c = canonicalize(g, x, w);
            direct::forward(&c.geom, &c.x, &c.w, b, y);
        }
        FastPath::Winograd => {
            let c = canonicalize(g, x, w);
            winograd::forward(&c.geom, &c.x, &c.w, b, y);
        }
        FastPath::Im2col => {
            let c = canonicalize(g, x, w);
            im2col::forward(&c.geom, &c.x, &c.w, b, y);
        }
    }
    Ok(())
}

/// `grad_input` on raw slices; `gx` is overwritten.
pub fn grad_input_into(
    gy: &[f32],
    w: &[f32],
    gx: &mut [f32],
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    let path = match grad_input_checks(gy, w, gx.len(), g, algo)? {
        Route::Reference => {
            reference::input_grad(g, gy, w, gx);
            return Ok(());
        }
        Route::Fast(path) => path,
    };
    let c = canonicalize(g, &[], w);
    let run = |gx: &mut [f32]| match path {
        FastPath::Depthwise => depthwise::input_grad(&c.geom, gy, &c.w, gx),
        FastPath::Pointwise => pointwise::input_grad(&c.geom, gy, &c.w, gx),
        FastPath::Direct | FastPath::Winograd => match direct::transposed_problem(&c.geom) {
            // Winograd reads the transposed kernels from the weights as it packs them.
            Some(t) if path == FastPath::Winograd => {
                winograd::input_grad_transposed(&t, gy, &c.w, gx)
            }
            Some(t) => {
                let mut wt = Scratch::take(c.w.len());
                direct::transposed_weights(&c.geom, &c.w, &mut wt);
                direct::input_grad_transposed(&t, gy, &wt, gx);
            }
            None => im2col::input_grad(&c.geom, gy, &c.w, gx),
        },
        FastPath::Im2col => im2col::input_grad(&c.geom, gy, &c.w, gx),
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

/// The checks of [`grad_input_into`] (with a result of `gx_len` values), and its route.
fn grad_input_checks(
    gy: &[f32],
    w: &[f32],
    gx_len: usize,
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<Route> {
    check_len("grad_output", gy.len(), g.output_dims())?;
    check_len("weight", w.len(), g.weight_dims())?;
    check_len("grad_input", gx_len, g.input_dims())?;
    algo.route(&canonical_geometry(g))
}

/// [`grad_input_into`] into uninitialised memory; on success every value of `gx` was
/// written. The direct path of a stride-1 problem with zero padding writes straight into it;
/// the others take it zeroed.
fn grad_input_uninit(
    gy: &[f32],
    w: &[f32],
    gx: &mut [MaybeUninit<f32>],
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    let route = grad_input_checks(gy, w, gx.len(), g, algo)?;
    if route == Route::Fast(FastPath::Direct) && !needs_materialized_padding(g) {
        let c = canonicalize(g, &[], w);
        if let Some(t) = direct::transposed_problem(&c.geom) {
            let mut wt = Scratch::take(c.w.len());
            direct::transposed_weights(&c.geom, &c.w, &mut wt);
            direct::input_grad_transposed_uninit(&t, gy, &wt, gx);
            return Ok(());
        }
    }
    gx.fill(MaybeUninit::new(0.0));
    // SAFETY: every value was initialised just above; `MaybeUninit<f32>` has `f32`'s layout.
    let gx = unsafe { &mut *(gx as *mut [MaybeUninit<f32>] as *mut [f32]) };
    grad_input_into(gy, w, gx, g, algo)
}

/// `grad_weight` on raw slices; `gw` is overwritten.
pub fn grad_weight_into(
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    grad_weight_bias_into(gy, x, gw, None, g, algo)
}

/// `grad_weight` and, with `gb` (`[K]`), `grad_bias` on raw slices (both overwritten). The
/// direct path sums the bias gradient while `grad_output` is in cache for the weight
/// gradient (one read from memory, not two); the values are [`grad_bias_into`]'s. `gb`, when
/// given, holds one value per output channel (the callers allocate it).
fn grad_weight_bias_into(
    gy: &[f32],
    x: &[f32],
    gw: &mut [f32],
    mut gb: Option<&mut [f32]>,
    g: &Conv2dGeometry,
    algo: Conv2dAlgo,
) -> Result<()> {
    check_len("grad_output", gy.len(), g.output_dims())?;
    check_len("input", x.len(), g.input_dims())?;
    check_len("grad_weight", gw.len(), g.weight_dims())?;
    let path = match algo.route(&canonical_geometry(g))? {
        Route::Reference => {
            reference::weight_grad(g, gy, x, gw);
            if let Some(gb) = gb {
                reference::bias_grad(g, gy, gb);
            }
            return Ok(());
        }
        Route::Fast(path) => path,
    };
    let c = canonicalize(g, x, &[]);
    match path {
        FastPath::Depthwise => depthwise::weight_grad(&c.geom, gy, &c.x, gw),
        FastPath::Pointwise => pointwise::weight_grad(&c.geom, gy, &c.x, gw),
        // Winograd computes the forward pass and the input gradient; its weight gradient is
        // the direct path's.
        FastPath::Direct | FastPath::Winograd => {
            direct::weight_grad(&c.geom, gy, &c.x, gw, gb.take())
        }
        FastPath::Im2col => im2col::weight_grad(&c.geom, gy, &c.x, gw),
    }
    if let Some(gb) = gb {
        grad_bias_into(gy, gb, g.output_dims());
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
pub fn grad_bias_into(gy: &[f32], gb: &mut [f32], [n, k, ho, wo]: [usize; 4]) {
    use rayon::prelude::*;
    let plane = ho * wo;
    gb.par_iter_mut().enumerate().for_each(|(ch, out)| {
        let total: f64 = (0..n)
            .map(|img| sum_f64(&gy[(img * k + ch) * plane..][..plane]))
            .sum();
        *out = total as f32;
    });
}

// Compiled per instruction set: the baseline build widens two floats at a time.
multiversion!(fn sum_f64(v: &[f32]) -> f64 => sum_f64_impl);

/// The sum of `v` in f64, in eight independent lanes (which the compiler vectorises; the
/// order of the additions, and so the result, is the same on every instruction set).
#[inline(always)]
pub(super) fn sum_f64_impl<S: Simd>(_: S, v: &[f32]) -> f64 {
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

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::*;
    use crate::testing::Rng;

    /// Input, weight, stride, padding, dilation, groups, padding mode.
    type Case = (
        [usize; 4],
        [usize; 4],
        usize,
        usize,
        usize,
        usize,
        PaddingMode,
    );

    /// The paths into uninitialised memory must write every value. Buffers start as NaN, so
    /// a value left unwritten shows.
    #[test]
    fn outputs_written_into_uninitialised_memory_are_whole() {
        use PaddingMode::{Circular, Reflect, Replicate, Zeros};
        let cases: [Case; 7] = [
            ([2, 3, 9, 14], [5, 3, 3, 3], 1, 1, 1, 1, Zeros),
            ([1, 4, 7, 33], [8, 2, 3, 3], 2, 1, 1, 2, Reflect),
            ([2, 2, 28, 28], [17, 2, 5, 5], 1, 2, 1, 1, Zeros),
            ([1, 6, 11, 5], [9, 2, 3, 3], 1, 2, 2, 3, Replicate),
            ([3, 1, 6, 6], [4, 1, 1, 1], 1, 0, 1, 1, Zeros),
            ([1, 8, 16, 20], [16, 8, 3, 3], 1, 1, 1, 1, Circular),
            ([2, 32, 14, 14], [64, 32, 3, 3], 1, 1, 1, 1, Zeros),
        ];
        let mut rng = Rng(3);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform() as f32).collect() };
        let nan = |n: usize| vec![MaybeUninit::new(f32::NAN); n];
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (input, weight, stride, pad, dilation, groups, mode) in cases {
            let params = Conv2dParams::builder()
                .with_stride([stride; 2])
                .with_padding(Padding::symmetric([pad; 2]))
                .with_dilation([dilation; 2])
                .with_groups(groups)
                .with_padding_mode(mode)
                .build()
                .unwrap();
            let g = params.geometry(input, weight).unwrap();
            let (x, w) = (
                values(g.input_dims().iter().product()),
                values(weight.iter().product()),
            );
            let b = values(weight[0]);
            let gy = values(g.output_dims().iter().product());
            for algo in [Conv2dAlgo::Auto, Conv2dAlgo::Direct, Conv2dAlgo::Im2col] {
                let what = format!("{input:?} {weight:?} {algo:?}");
                let mut want = vec![0.0; gy.len()];
                forward_into(&x, &w, Some(&b), &mut want, &g, algo).unwrap();
                let mut got = nan(gy.len());
                forward_uninit(&x, &w, Some(&b), &mut got, &g, algo).unwrap();
                // SAFETY: initialised (NaN) above, and written over.
                let got: Vec<f32> = got.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(bits(&got), bits(&want), "forward {what}");

                let mut want = vec![0.0; x.len()];
                grad_input_into(&gy, &w, &mut want, &g, algo).unwrap();
                let mut got = nan(x.len());
                grad_input_uninit(&gy, &w, &mut got, &g, algo).unwrap();
                // SAFETY: as above.
                let got: Vec<f32> = got.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert_eq!(bits(&got), bits(&want), "grad_input {what}");
            }
        }
    }
}
