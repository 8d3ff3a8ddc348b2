//! Geometry a person designing a CNN asks about: output sizes, 'same' padding, receptive
//! fields, parameter counts and FLOPs.
//!
//! Every kernel and every shape inference goes through [`conv_output_len`] (and the pooling
//! variant [`pool_output_len`]), so the formula lives in one place:
//!
//! `out = floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1`

use crate::error::{Error, Result};

/// Extent of a dilated kernel along one axis: `dilation * (kernel - 1) + 1`.
///
/// `None` if the kernel or dilation is 0 or the product overflows.
pub fn effective_kernel(kernel: usize, dilation: usize) -> Option<usize> {
    if kernel == 0 || dilation == 0 {
        return None;
    }
    dilation.checked_mul(kernel - 1)?.checked_add(1)
}

/// Output length of a convolution (or pooling without `ceil_mode`) along one axis.
///
/// `None` when the (dilated) kernel does not fit the padded input, when stride, kernel or
/// dilation is 0, or when a sum overflows.
pub fn conv_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    pad_after: usize,
) -> Option<usize> {
    if stride == 0 {
        return None;
    }
    let padded = input.checked_add(pad_before)?.checked_add(pad_after)?;
    let span = effective_kernel(kernel, dilation)?;
    let room = padded.checked_sub(span)?;
    Some(room / stride + 1)
}

/// Output length of a pooling window along one axis: PyTorch's `pooling_output_shape`.
///
/// `floor((in + 2 pad - dilation (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0)) / stride) + 1`,
/// rounding toward minus infinity; in `ceil_mode` a last window that would start in the right
/// padding is dropped. So ceil mode also accepts a kernel that overhangs the padded input by
/// less than one stride (one clipped window). `None` if no window fits, or for a stride,
/// kernel or dilation of 0.
pub fn pool_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if stride == 0 {
        return None;
    }
    let span = effective_kernel(kernel, dilation)? as i128;
    let (input, stride, pad) = (input as i128, stride as i128, pad as i128);
    let round_up = if ceil_mode { stride - 1 } else { 0 };
    let mut out = (input + 2 * pad - span + round_up).div_euclid(stride) + 1;
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    (out >= 1).then(|| usize::try_from(out).ok()).flatten()
}

/// Padding that keeps the size of a stride-1 convolution, PyTorch's `padding='same'` rule:
/// total `dilation * (kernel - 1)`, split as `(total / 2, total - total / 2)`, so an even
/// kernel gets its extra row/column at the bottom/right.
///
/// Returns `(before, after)`; `None` if the kernel or dilation is 0 or the product overflows.
pub fn same_padding(kernel: usize, dilation: usize) -> Option<(usize, usize)> {
    let total = effective_kernel(kernel, dilation)? - 1;
    let before = total / 2;
    Some((before, total - before))
}

/// Output height and width of a 2-D convolution, with an error that says what does not fit.
///
/// `pad` is `[top, bottom, left, right]`.
pub fn conv2d_output_hw(
    op: &'static str,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 4],
) -> Result<[usize; 2]> {
    check_positive(op, "stride", stride)?;
    check_positive(op, "dilation", dilation)?;
    check_positive(op, "kernel size", kernel)?;
    let [top, bottom, left, right] = pad;
    let padded = [
        input[0]
            .checked_add(top)
            .and_then(|v| v.checked_add(bottom)),
        input[1]
            .checked_add(left)
            .and_then(|v| v.checked_add(right)),
    ];
    let span = [
        effective_kernel(kernel[0], dilation[0]),
        effective_kernel(kernel[1], dilation[1]),
    ];
    let (Some(ph), Some(pw), Some(sh), Some(sw)) = (padded[0], padded[1], span[0], span[1]) else {
        return Err(Error::overflow(
            op,
            format!(
                "input {}x{}, kernel {}x{}, dilation {}x{}, padding {pad:?}",
                input[0], input[1], kernel[0], kernel[1], dilation[0], dilation[1]
            ),
        ));
    };
    if sh > ph || sw > pw {
        return Err(Error::shape(
            op,
            format!(
                "kernel {}x{} (dilation {}x{}, spans {sh}x{sw}) is larger than the padded input \
                 {ph}x{pw} (input {}x{}, padding top {top} bottom {bottom} left {left} right {right})",
                kernel[0], kernel[1], dilation[0], dilation[1], input[0], input[1]
            ),
        ));
    }
    Ok([(ph - sh) / stride[0] + 1, (pw - sw) / stride[1] + 1])
}

pub(crate) fn check_positive(op: &'static str, param: &'static str, v: [usize; 2]) -> Result<()> {
    if v[0] == 0 || v[1] == 0 {
        return Err(Error::param(
            op,
            param,
            format!("must be at least 1 on both axes, got {}x{}", v[0], v[1]),
        ));
    }
    Ok(())
}

/// One layer as the receptive-field recurrence sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfLayer {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
}

impl RfLayer {
    /// A layer with the given kernel and stride and no dilation.
    pub fn new(kernel: [usize; 2], stride: [usize; 2]) -> Self {
        RfLayer {
            kernel,
            stride,
            dilation: [1, 1],
        }
    }

    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
}

/// Receptive field of a unit after some layers, per axis (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptiveField {
    /// How many input pixels one output unit sees.
    pub size: [usize; 2],
    /// Distance in input pixels between neighbouring output units (product of the strides).
    pub jump: [usize; 2],
}

/// Receptive field after each layer of a stack:
/// `r_l = 1 + sum_i (k_i - 1) * prod_{j<i} s_j`, with `k_i` the effective (dilated) kernel.
///
/// Element `l` of the result describes the output of layer `l`.
pub fn receptive_fields(layers: &[RfLayer]) -> Result<Vec<ReceptiveField>> {
    let mut rf = ReceptiveField {
        size: [1, 1],
        jump: [1, 1],
    };
    let mut out = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        rf = grow_receptive_field(rf, *layer).map_err(|e| match e {
            Error::InvalidParameter { op, param, reason } => Error::InvalidParameter {
                op,
                param,
                reason: format!("layer {i}: {reason}"),
            },
            Error::Overflow { op, reason } => Error::Overflow {
                op,
                reason: format!("at layer {i}: {reason}"),
            },
            other => other,
        })?;
        out.push(rf);
    }
    Ok(out)
}

/// The receptive field after one more layer: each axis grows by `(k - 1) * jump` (with `k` the
/// dilated kernel) and the jump is multiplied by the stride. Every step is checked: sizes
/// that overflow are an error, never a wrapped number.
pub fn grow_receptive_field(rf: ReceptiveField, layer: RfLayer) -> Result<ReceptiveField> {
    const OP: &str = "receptive field";
    check_positive(OP, "stride", layer.stride)?;
    let mut next = rf;
    for axis in 0..2 {
        let k = effective_kernel(layer.kernel[axis], layer.dilation[axis]).ok_or_else(|| {
            Error::param(
                OP,
                "kernel size",
                format!(
                    "kernel {:?} with dilation {:?} is not a valid kernel",
                    layer.kernel, layer.dilation
                ),
            )
        })?;
        let size = (k - 1)
            .checked_mul(rf.jump[axis])
            .and_then(|g| rf.size[axis].checked_add(g));
        let jump = rf.jump[axis].checked_mul(layer.stride[axis]);
        let (Some(size), Some(jump)) = (size, jump) else {
            return Err(Error::overflow(
                OP,
                format!(
                    "a kernel spanning {k} at jump {} with stride {}: the field or the jump \
                     does not fit in usize",
                    rf.jump[axis], layer.stride[axis]
                ),
            ));
        };
        next.size[axis] = size;
        next.jump[axis] = jump;
    }
    Ok(next)
}

/// Learnable parameters of a conv layer: `c_out * (c_in / groups) * kh * kw` weights, plus
/// `c_out` biases when `bias` is set.
pub fn conv2d_param_count(
    c_in: usize,
    c_out: usize,
    kernel: [usize; 2],
    groups: usize,
    bias: bool,
) -> Result<u64> {
    const OP: &str = "parameter count";
    if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        return Err(Error::param(
            OP,
            "groups",
            format!("{groups} must divide in_channels {c_in} and out_channels {c_out}"),
        ));
    }
    let weights = [c_out, c_in / groups, kernel[0], kernel[1]]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    weights
        .and_then(|w| w.checked_add(if bias { c_out as u64 } else { 0 }))
        .ok_or_else(|| Error::overflow(OP, "conv2d parameter count"))
}

/// Learnable parameters of a linear layer: `in * out` weights plus `out` biases.
pub fn linear_param_count(in_features: usize, out_features: usize, bias: bool) -> Result<u64> {
    (in_features as u64)
        .checked_mul(out_features as u64)
        .and_then(|w| w.checked_add(if bias { out_features as u64 } else { 0 }))
        .ok_or_else(|| Error::overflow("parameter count", "linear parameter count"))
}

/// Floating-point operations of one conv2d forward pass, counting a multiply-add as two:
/// `2 * N * c_out * Ho * Wo * (c_in / groups) * kh * kw`. The backward pass (input and weight
/// gradients) costs twice that again.
pub fn conv2d_flops(
    batch: usize,
    c_in: usize,
    c_out: usize,
    out_hw: [usize; 2],
    kernel: [usize; 2],
    groups: usize,
) -> Result<u64> {
    if groups == 0 {
        return Err(Error::param("flops", "groups", "must be at least 1"));
    }
    [
        2,
        batch,
        c_out,
        out_hw[0],
        out_hw[1],
        c_in / groups,
        kernel[0],
        kernel[1],
    ]
    .iter()
    .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    .ok_or_else(|| Error::overflow("flops", "conv2d FLOP count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out_hw(input: usize, kernel: usize, stride: usize, pad: usize) -> [usize; 2] {
        conv2d_output_hw(
            "test",
            [input, input],
            [kernel, kernel],
            [stride, stride],
            [1, 1],
            [pad; 4],
        )
        .unwrap()
    }

    #[test]
    fn docs_4x4_input_with_2x2_kernel_gives_3x3() {
        assert_eq!(out_hw(4, 2, 1, 0), [3, 3]);
    }

    #[test]
    fn docs_4x4_input_with_2x2_kernel_stride_2_gives_2x2() {
        assert_eq!(out_hw(4, 2, 2, 0), [2, 2]);
    }

    #[test]
    fn docs_5x5_input_with_3x3_kernel_gives_3x3() {
        assert_eq!(out_hw(5, 3, 1, 0), [3, 3]);
    }

    #[test]
    fn docs_32x32_with_5x5_same_padding_keeps_32x32() {
        let (before, after) = same_padding(5, 1).unwrap();
        assert_eq!((before, after), (2, 2));
        assert_eq!(out_hw(32, 5, 1, 2), [32, 32]);
    }

    #[test]
    fn same_padding_of_even_kernel_puts_the_extra_row_after() {
        assert_eq!(same_padding(4, 1), Some((1, 2)));
        assert_eq!(same_padding(2, 1), Some((0, 1)));
        assert_eq!(same_padding(3, 2), Some((2, 2)));
        assert_eq!(same_padding(4, 3), Some((4, 5)));
    }

    #[test]
    fn docs_7x7_has_49_weights_and_three_3x3_have_27_with_the_same_receptive_field() {
        assert_eq!(conv2d_param_count(1, 1, [7, 7], 1, false).unwrap(), 49);
        let three = 3 * conv2d_param_count(1, 1, [3, 3], 1, false).unwrap();
        assert_eq!(three, 27);
        let stacked = receptive_fields(&[RfLayer::new([3, 3], [1, 1]); 3]).unwrap();
        let single = receptive_fields(&[RfLayer::new([7, 7], [1, 1])]).unwrap();
        assert_eq!(stacked[2].size, [7, 7]);
        assert_eq!(stacked.last().unwrap().size, single[0].size);
    }

    #[test]
    fn receptive_field_follows_the_strides() {
        // ResNet-style stem: 7x7/2 conv, 3x3/2 max pool, then two 3x3/1 convs.
        let layers = [
            RfLayer::new([7, 7], [2, 2]),
            RfLayer::new([3, 3], [2, 2]),
            RfLayer::new([3, 3], [1, 1]),
            RfLayer::new([3, 3], [1, 1]),
        ];
        let rf = receptive_fields(&layers).unwrap();
        let sizes: Vec<usize> = rf.iter().map(|r| r.size[0]).collect();
        // 1 + 6 = 7; 7 + 2*2 = 11; 11 + 2*4 = 19; 19 + 2*4 = 27.
        assert_eq!(sizes, [7, 11, 19, 27]);
        assert_eq!(rf[3].jump, [4, 4]);
    }

    #[test]
    fn receptive_field_sizes_that_overflow_are_errors_not_wrapped_numbers() {
        let huge = RfLayer::new([2, 2], [1 << 40, 1 << 40]);
        let err = receptive_fields(&[huge, huge]).unwrap_err();
        assert!(matches!(err, Error::Overflow { .. }), "{err}");
        assert!(err.to_string().contains("at layer 1"), "{err}");
    }

    #[test]
    fn dilation_widens_the_receptive_field() {
        let rf = receptive_fields(&[RfLayer::new([3, 3], [1, 1]).with_dilation([2, 2])]).unwrap();
        assert_eq!(rf[0].size, [5, 5]);
    }

    #[test]
    fn output_len_matches_the_formula() {
        // floor((W + Pb + Pa - D(F-1) - 1)/S) + 1
        for input in 1..12 {
            for kernel in 1..5 {
                for stride in 1..4 {
                    for dilation in 1..3 {
                        for pb in 0..3 {
                            for pa in 0..3 {
                                let num =
                                    (input + pb + pa) as i64 - (dilation * (kernel - 1)) as i64 - 1;
                                let expected = if num < 0 {
                                    None
                                } else {
                                    Some(num as usize / stride + 1)
                                };
                                assert_eq!(
                                    conv_output_len(input, kernel, stride, dilation, pb, pa),
                                    expected
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pool_ceil_mode_drops_a_window_starting_in_the_right_padding() {
        // MaxPool2d(2, stride=2, padding=1, ceil_mode=True) on 5: rounding up gives 4 windows,
        // but the 4th would start at 6 >= 5 + 1 (inside the right padding), so PyTorch has 3.
        assert_eq!(pool_output_len(5, 2, 2, 1, 1, true), Some(3));
        assert_eq!(pool_output_len(4, 2, 2, 1, 1, true), Some(3));
        assert_eq!(pool_output_len(6, 3, 2, 1, 0, true), Some(3));
        assert_eq!(pool_output_len(6, 3, 2, 1, 0, false), Some(2));
    }

    #[test]
    fn pool_ceil_mode_keeps_one_clipped_window_when_the_kernel_overhangs_by_less_than_a_stride() {
        // PyTorch: MaxPool2d(3, stride=2, ceil_mode=True) on 2 gives 1; without ceil_mode, 0.
        assert_eq!(pool_output_len(2, 3, 2, 1, 0, true), Some(1));
        assert_eq!(pool_output_len(2, 3, 2, 1, 0, false), None);
        // Overhang of a whole stride: nothing fits.
        assert_eq!(pool_output_len(1, 3, 2, 1, 0, true), None);
    }

    #[test]
    fn kernel_larger_than_padded_input_is_explained() {
        let err = conv2d_output_hw("conv2d", [3, 3], [5, 5], [1, 1], [1, 1], [0; 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conv2d: kernel 5x5 (dilation 1x1, spans 5x5) is larger than the padded input 3x3 \
             (input 3x3, padding top 0 bottom 0 left 0 right 0)"
        );
    }

    #[test]
    fn zero_stride_and_dilation_are_parameter_errors() {
        let err = conv2d_output_hw("conv2d", [8, 8], [3, 3], [0, 1], [1, 1], [0; 4]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conv2d: invalid stride: must be at least 1 on both axes, got 0x1"
        );
        let err = conv2d_output_hw("conv2d", [8, 8], [3, 3], [1, 1], [1, 0], [0; 4]).unwrap_err();
        assert!(err.to_string().contains("invalid dilation"), "{err}");
    }

    #[test]
    fn huge_padding_overflows_cleanly() {
        let err = conv2d_output_hw(
            "conv2d",
            [8, 8],
            [3, 3],
            [1, 1],
            [1, 1],
            [usize::MAX, 1, 0, 0],
        )
        .unwrap_err();
        assert!(matches!(err, Error::Overflow { .. }), "{err}");
    }

    #[test]
    fn flops_match_the_suite_definition() {
        // 2*N*K*Ho*Wo*(C/g)*R*R
        assert_eq!(
            conv2d_flops(64, 1, 32, [28, 28], [3, 3], 1).unwrap(),
            2 * 64 * 32 * 28 * 28 * 9
        );
        assert_eq!(
            conv2d_flops(8, 128, 128, [56, 56], [3, 3], 128).unwrap(),
            2 * 8 * 128 * 56 * 56 * 9
        );
    }
}
