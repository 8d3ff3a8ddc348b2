//! Resizing image planes: `F.interpolate` of `[N, C, H, W]` in modes `nearest` (PyTorch's
//! legacy nearest, which is ONNX `Resize` nearest with `asymmetric` coordinates and `floor`
//! rounding) and `bilinear` (`align_corners` false: ONNX `half_pixel`; true:
//! `align_corners`), forward and backward.
//!
//! Each output row and column reads at most two input rows and columns, with weights that
//! depend on the axis alone: `taps` computes them once per axis, in PyTorch's float32
//! arithmetic, and the kernels combine a row's and a column's taps. Planes run in parallel.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::tensor::{Tensor, check_elements};

const OP: &str = "resize";

/// How output positions read the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// The input position `floor(out * in_size / out_size)` (or `/ scale`).
    Nearest,
    /// Linear along each axis between the two nearest input positions.
    Bilinear { align_corners: bool },
}

/// The output size of a resize and how it was given (a scale changes the source
/// coordinates as `F.interpolate(scale_factor=...)` does: `out / scale` rather than
/// `out * in_size / out_size`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resize2dParams {
    out_hw: [usize; 2],
    scale: Option<[f64; 2]>,
    mode: ResizeMode,
}

impl Resize2dParams {
    /// Resize to `out_hw` (each at least 1).
    pub fn to_size(out_hw: [usize; 2], mode: ResizeMode) -> Result<Self> {
        if out_hw.contains(&0) {
            return Err(Error::param(
                OP,
                "size",
                format!("must be at least 1x1, got {}x{}", out_hw[0], out_hw[1]),
            ));
        }
        Ok(Resize2dParams {
            out_hw,
            scale: None,
            mode,
        })
    }

    /// Resize `in_hw` by `scale` (finite, above 0): the output is `floor(in * scale)`, at
    /// least 1, within the tensor bound.
    pub fn by_scale(in_hw: [usize; 2], scale: [f64; 2], mode: ResizeMode) -> Result<Self> {
        if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::param(
                OP,
                "scale",
                format!("must be finite and above 0, got {scale:?}"),
            ));
        }
        let out = [0, 1].map(|i| (in_hw[i] as f64 * scale[i]).floor());
        if out
            .iter()
            .any(|&o| o < 1.0 || o > crate::tensor::MAX_TENSOR_ELEMENTS as f64)
        {
            return Err(Error::TooLarge {
                op: OP,
                param: "scale",
                reason: format!(
                    "{}x{} scaled by {scale:?} gives {}x{}: each side must be at least 1 and \
                     the output at most {} values",
                    in_hw[0],
                    in_hw[1],
                    out[0],
                    out[1],
                    crate::tensor::MAX_TENSOR_ELEMENTS
                ),
            });
        }
        Ok(Resize2dParams {
            out_hw: out.map(|o| o as usize),
            scale: Some(scale),
            mode,
        })
    }

    pub fn out_hw(&self) -> [usize; 2] {
        self.out_hw
    }

    /// The output dims of an input of `dims`, bounded.
    pub fn output_dims(&self, [n, c, _, _]: [usize; 4]) -> Result<[usize; 4]> {
        let out = [n, c, self.out_hw[0], self.out_hw[1]];
        check_elements(OP, "size", "the resized output", &out)?;
        Ok(out)
    }

    /// The taps of axis `i` (0: height) for an input side of `len`.
    fn taps(&self, i: usize, len: usize) -> Vec<Tap> {
        taps(len, self.out_hw[i], self.scale.map(|s| s[i]), self.mode)
    }
}

/// Where one output position reads along one axis: `w0 * x[i0] + w1 * x[i1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// PyTorch's `area_pixel_compute_scale`: input positions per output position.
fn ratio(len: usize, out: usize, scale: Option<f64>, align_corners: bool) -> f32 {
    if align_corners {
        if out > 1 {
            (len as f32 - 1.0) / (out as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        match scale {
            Some(s) => (1.0 / s) as f32,
            None => len as f32 / out as f32,
        }
    }
}

/// The taps of every output position of an axis of `len` resized to `out`.
fn taps(len: usize, out: usize, scale: Option<f64>, mode: ResizeMode) -> Vec<Tap> {
    let last = len.saturating_sub(1);
    (0..out)
        .map(|o| match mode {
            ResizeMode::Nearest => {
                let r = ratio(len, out, scale, false);
                let i = ((o as f32 * r).floor() as usize).min(last);
                Tap {
                    i0: i,
                    i1: i,
                    w0: 1.0,
                    w1: 0.0,
                }
            }
            ResizeMode::Bilinear { align_corners } => {
                let r = ratio(len, out, scale, align_corners);
                let src = if align_corners {
                    r * o as f32
                } else {
                    (r * (o as f32 + 0.5) - 0.5).max(0.0)
                };
                let i0 = (src as usize).min(last);
                let i1 = if i0 < last { i0 + 1 } else { i0 };
                let w1 = src - i0 as f32;
                Tap {
                    i0,
                    i1,
                    w0: 1.0 - w1,
                    w1,
                }
            }
        })
        .collect()
}

/// `input` `[N, C, H, W]` resized to `[N, C, Ho, Wo]`.
///
/// ```
/// use convnet_core::{Resize2dParams, ResizeMode, Tensor, resize2d};
/// let x = Tensor::new([1, 1, 1, 2], vec![1.0, 2.0])?;
/// let p = Resize2dParams::by_scale([1, 2], [1.0, 2.0], ResizeMode::Nearest)?;
/// assert_eq!(resize2d(&x, &p)?.data(), &[1.0, 1.0, 2.0, 2.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn resize2d(input: &Tensor, params: &Resize2dParams) -> Result<Tensor> {
    let dims = input.dims4(OP, "input")?;
    let out = params.output_dims(dims)?;
    let [_, _, h, w] = dims;
    let [_, _, ho, wo] = out;
    let (rows, cols) = (params.taps(0, h), params.taps(1, w));
    let mut y = vec![0.0; out.iter().product()];
    if h * w > 0 && ho * wo > 0 {
        (y.par_chunks_mut(ho * wo)
            .zip(input.data().par_chunks(h * w)))
        .for_each(|(y, x)| {
            for (y, r) in y.chunks_exact_mut(wo).zip(&rows) {
                let (x0, x1) = (&x[r.i0 * w..][..w], &x[r.i1 * w..][..w]);
                for (y, c) in y.iter_mut().zip(&cols) {
                    let top = c.w0 * x0[c.i0] + c.w1 * x0[c.i1];
                    let bottom = c.w0 * x1[c.i0] + c.w1 * x1[c.i1];
                    *y = r.w0 * top + r.w1 * bottom;
                }
            }
        });
    }
    Ok(Tensor::from_parts(out.to_vec(), y))
}

/// `grad_input` of [`resize2d`] for an input of `input_dims`: each output gradient spread
/// back onto the input positions it read, with the same weights.
pub fn resize2d_backward(
    grad_output: &Tensor,
    input_dims: [usize; 4],
    params: &Resize2dParams,
) -> Result<Tensor> {
    let out = params.output_dims(input_dims)?;
    if grad_output.dims() != out {
        return Err(Error::shape(
            OP,
            format!(
                "a gradient of shape {} for a resized output of {out:?}",
                grad_output.shape()
            ),
        ));
    }
    let [_, _, h, w] = input_dims;
    let [_, _, ho, wo] = out;
    let (rows, cols) = (params.taps(0, h), params.taps(1, w));
    let mut gx = vec![0.0; input_dims.iter().product()];
    if h * w > 0 && ho * wo > 0 {
        (gx.par_chunks_mut(h * w)
            .zip(grad_output.data().par_chunks(ho * wo)))
        .for_each(|(gx, g)| {
            for (g, r) in g.chunks_exact(wo).zip(&rows) {
                for (&g, c) in g.iter().zip(&cols) {
                    for (i, wr) in [(r.i0, r.w0), (r.i1, r.w1)] {
                        let row = &mut gx[i * w..][..w];
                        row[c.i0] += wr * c.w0 * g;
                        row[c.i1] += wr * c.w1 * g;
                    }
                }
            }
        });
    }
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_upscaling_by_two_repeats_each_value() {
        let x = Tensor::from_fn([1, 1, 2, 2], |i| i as f32).unwrap();
        let p = Resize2dParams::by_scale([2, 2], [2.0, 2.0], ResizeMode::Nearest).unwrap();
        let y = resize2d(&x, &p).unwrap();
        assert_eq!(
            y.data(),
            &[
                0., 0., 1., 1., 0., 0., 1., 1., 2., 2., 3., 3., 2., 2., 3., 3.
            ]
        );
        let g =
            resize2d_backward(&Tensor::full([1, 1, 4, 4], 1.0).unwrap(), [1, 1, 2, 2], &p).unwrap();
        assert_eq!(g.data(), &[4.0; 4]);
    }

    #[test]
    fn bilinear_with_aligned_corners_keeps_the_corners() {
        let x = Tensor::from_fn([1, 1, 2, 2], |i| i as f32).unwrap();
        let mode = ResizeMode::Bilinear {
            align_corners: true,
        };
        let y = resize2d(&x, &Resize2dParams::to_size([3, 3], mode).unwrap()).unwrap();
        assert_eq!(y.data(), &[0., 0.5, 1., 1., 1.5, 2., 2., 2.5, 3.]);
    }

    #[test]
    fn a_zero_scale_or_an_output_beyond_the_bound_is_refused_naming_the_setting() {
        let err = Resize2dParams::by_scale([4, 4], [0.0, 1.0], ResizeMode::Nearest).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resize: invalid scale: must be finite and above 0, got [0.0, 1.0]"
        );
        let err = Resize2dParams::by_scale([4, 4], [0.1, 1.0], ResizeMode::Nearest).unwrap_err();
        assert!(
            err.to_string().contains("each side must be at least 1"),
            "{err}"
        );
        let p = Resize2dParams::to_size([1 << 16, 1 << 16], ResizeMode::Nearest).unwrap();
        let err = p.output_dims([1, 3, 4, 4]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
}
