//! Padding of image planes on their own (`F.pad` of `[N, C, H, W]`, ONNX `Pad` over H and W),
//! forward and backward, on conv2d's padding code (`conv2d::pad`): the same source index per
//! border position, and its adjoint for the gradient.

use crate::error::{Error, Result};
use crate::ops::conv2d::PaddingMode;
use crate::ops::conv2d::pad::{fold_padded_grad, pad_input};
use crate::tensor::{Tensor, check_elements};

const OP: &str = "pad";

/// The padded dims of `dims` `[N, C, H, W]` by `pad` `[top, bottom, left, right]`, checked
/// against what `mode` allows (reflect: less than the side, circular: at most the side)
/// and against the tensor bound.
pub fn padded_dims(dims: [usize; 4], pad: [usize; 4], mode: PaddingMode) -> Result<[usize; 4]> {
    let [n, c, h, w] = dims;
    let [top, bottom, left, right] = pad;
    let fits = |p: usize, side: usize| match mode {
        PaddingMode::Zeros => true,
        PaddingMode::Replicate => side > 0 || p == 0,
        PaddingMode::Reflect => p < side || p == 0,
        PaddingMode::Circular => p <= side,
    };
    if !(fits(top, h) && fits(bottom, h) && fits(left, w) && fits(right, w)) {
        return Err(Error::param(
            OP,
            "pads",
            format!(
                "{mode:?} padding of [top {top}, bottom {bottom}, left {left}, right {right}] \
                 does not fit a {h}x{w} plane (reflect needs each amount below the side, \
                 circular at most the side)"
            ),
        ));
    }
    let grow = |a: usize, b: usize, side: usize| side.checked_add(a)?.checked_add(b);
    let (hp, wp) = match (grow(top, bottom, h), grow(left, right, w)) {
        (Some(hp), Some(wp)) => (hp, wp),
        _ => return Err(Error::overflow(OP, format!("padding {pad:?} overflows"))),
    };
    let out = [n, c, hp, wp];
    check_elements(OP, "pads", format!("the padded output {out:?}"), &out)?;
    Ok(out)
}

/// `input` `[N, C, H, W]` padded by `pad` `[top, bottom, left, right]`: with `value` for
/// [`PaddingMode::Zeros`] (a constant border), else reflected, replicated or wrapped around.
///
/// ```
/// use convnet_core::{PaddingMode, Tensor, pad2d};
/// let x = Tensor::new([1, 1, 1, 2], vec![1.0, 2.0])?;
/// let y = pad2d(&x, [0, 0, 1, 1], PaddingMode::Zeros, 9.0)?;
/// assert_eq!(y.data(), &[9.0, 1.0, 2.0, 9.0]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn pad2d(input: &Tensor, pad: [usize; 4], mode: PaddingMode, value: f32) -> Result<Tensor> {
    let dims = input.dims4(OP, "input")?;
    let out = padded_dims(dims, pad, mode)?;
    let mut y = pad_input(input.data(), dims, pad, mode);
    if mode == PaddingMode::Zeros && value != 0.0 {
        fill_border(&mut y, out, pad, value);
    }
    Ok(Tensor::from_parts(out.to_vec(), y))
}

/// Set every border position of the padded planes `y` (`out` dims) to `value`.
fn fill_border(y: &mut [f32], [_, _, hp, wp]: [usize; 4], pad: [usize; 4], value: f32) {
    let [top, bottom, left, right] = pad;
    for plane in y.chunks_exact_mut(hp * wp) {
        for (i, row) in plane.chunks_exact_mut(wp).enumerate() {
            if i < top || i >= hp - bottom {
                row.fill(value);
            } else {
                row[..left].fill(value);
                row[wp - right..].fill(value);
            }
        }
    }
}

/// `grad_input` of [`pad2d`]: each padded position's gradient added to the input position it
/// was read from (a constant border's gradient is dropped).
pub fn pad2d_backward(
    grad_output: &Tensor,
    input_dims: [usize; 4],
    pad: [usize; 4],
    mode: PaddingMode,
) -> Result<Tensor> {
    let out = padded_dims(input_dims, pad, mode)?;
    if grad_output.dims() != out {
        return Err(Error::shape(
            OP,
            format!(
                "a gradient of shape {} for a padded output of {out:?}",
                grad_output.shape()
            ),
        ));
    }
    let gx = fold_padded_grad(grad_output.data(), input_dims, pad, mode);
    Ok(Tensor::from_parts(input_dims.to_vec(), gx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_border_holds_the_value_and_passes_no_gradient() {
        let x = Tensor::from_fn([1, 1, 2, 2], |i| i as f32).unwrap();
        let y = pad2d(&x, [1, 0, 0, 2], PaddingMode::Zeros, -1.0).unwrap();
        assert_eq!(
            y.data(),
            &[-1., -1., -1., -1., 0., 1., -1., -1., 2., 3., -1., -1.]
        );
        let g = pad2d_backward(
            &Tensor::full([1, 1, 3, 4], 1.0).unwrap(),
            [1, 1, 2, 2],
            [1, 0, 0, 2],
            PaddingMode::Zeros,
        )
        .unwrap();
        assert_eq!(g.data(), &[1.0; 4]);
    }

    #[test]
    fn amounts_a_mode_cannot_take_and_outputs_beyond_the_bound_are_refused() {
        let err = padded_dims([1, 1, 3, 3], [3, 0, 0, 0], PaddingMode::Reflect).unwrap_err();
        assert!(
            err.to_string().contains("does not fit a 3x3 plane"),
            "{err}"
        );
        assert!(padded_dims([1, 1, 3, 3], [3, 3, 3, 3], PaddingMode::Circular).is_ok());
        let err =
            padded_dims([1, 1, 3, 3], [1 << 20, 0, 1 << 20, 0], PaddingMode::Zeros).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
}
