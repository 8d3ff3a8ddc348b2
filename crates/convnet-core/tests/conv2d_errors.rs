//! Bad input gets an error that names the parameter and the problem; nothing panics.

use convnet_core::{
    Conv2dParams, Error, GradRequest, Padding, PaddingMode, Tensor, conv2d, conv2d_backward,
    conv2d_grad_input,
};

fn ones(dims: &[usize]) -> Tensor {
    Tensor::full(dims.to_vec(), 1.0).unwrap()
}

fn conv_err(x: &[usize], w: &[usize], p: Conv2dParams) -> Error {
    conv2d(&ones(x), &ones(w), None, &p).unwrap_err()
}

#[test]
fn stride_zero_is_refused() {
    let err = Conv2dParams::builder()
        .with_stride([1, 0])
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: invalid stride: must be at least 1 on both axes, got 1x0"
    );
}

#[test]
fn dilation_zero_is_refused() {
    let err = Conv2dParams::builder()
        .with_dilation([0, 2])
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: invalid dilation: must be at least 1 on both axes, got 0x2"
    );
}

#[test]
fn groups_zero_is_refused() {
    let err = Conv2dParams::builder().with_groups(0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: invalid groups: must be at least 1, got 0"
    );
}

#[test]
fn groups_not_dividing_input_channels_is_refused() {
    let p = Conv2dParams::builder().with_groups(2).build().unwrap();
    let err = conv_err(&[1, 3, 5, 5], &[4, 1, 3, 3], p);
    assert_eq!(
        err.to_string(),
        "conv2d: invalid groups: 2 groups do not divide the input's 3 channels"
    );
}

#[test]
fn groups_not_dividing_output_channels_is_refused() {
    let p = Conv2dParams::builder().with_groups(2).build().unwrap();
    let err = conv_err(&[1, 4, 5, 5], &[3, 2, 3, 3], p);
    assert_eq!(
        err.to_string(),
        "conv2d: invalid groups: 2 groups do not divide the weight's 3 output channels"
    );
}

#[test]
fn channel_mismatch_between_input_and_weight_is_refused() {
    let err = conv_err(&[1, 4, 5, 5], &[6, 3, 3, 3], Conv2dParams::default());
    assert_eq!(
        err.to_string(),
        "conv2d: channel mismatch: weight [6, 3, 3, 3] with 1 group(s) expects input with 3 \
         channels, but input [1, 4, 5, 5] has 4"
    );
}

#[test]
fn kernel_larger_than_padded_input_is_refused() {
    let p = Conv2dParams::builder()
        .with_padding(Padding::symmetric([0, 1]))
        .build()
        .unwrap();
    let err = conv_err(&[1, 1, 4, 4], &[1, 1, 5, 5], p);
    assert_eq!(
        err.to_string(),
        "conv2d: kernel 5x5 (dilation 1x1, spans 5x5) is larger than the padded input 4x6 \
         (input 4x4, padding top 0 bottom 0 left 1 right 1)"
    );
}

#[test]
fn dilated_kernel_larger_than_input_is_refused() {
    let p = Conv2dParams::builder()
        .with_dilation([3, 3])
        .build()
        .unwrap();
    let err = conv_err(&[1, 1, 6, 6], &[1, 1, 3, 3], p);
    assert!(
        err.to_string()
            .contains("kernel 3x3 (dilation 3x3, spans 7x7) is larger"),
        "{err}"
    );
}

#[test]
fn same_padding_with_stride_is_refused() {
    let err = Conv2dParams::builder()
        .with_padding(Padding::Same)
        .with_stride([2, 2])
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: invalid padding: 'same' padding needs stride 1 (as in PyTorch), got stride 2x2"
    );
}

#[test]
fn non_4d_input_is_refused() {
    let err = conv_err(&[3, 5, 5], &[1, 3, 3, 3], Conv2dParams::default());
    assert_eq!(
        err.to_string(),
        "conv2d: input must be 4-D (N, C, H, W), got shape [3, 5, 5] (3-D)"
    );
}

#[test]
fn non_4d_weight_is_refused() {
    let err = conv_err(&[1, 3, 5, 5], &[3, 3, 3], Conv2dParams::default());
    assert_eq!(
        err.to_string(),
        "conv2d: weight must be 4-D (N, C, H, W), got shape [3, 3, 3] (3-D)"
    );
}

#[test]
fn bias_of_wrong_length_is_refused() {
    let err = conv2d(
        &ones(&[1, 1, 4, 4]),
        &ones(&[2, 1, 3, 3]),
        Some(&ones(&[3])),
        &Conv2dParams::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: bias must have shape [2] (one per output channel), got [3]"
    );
}

#[test]
fn reflect_padding_as_wide_as_the_input_is_refused() {
    let p = Conv2dParams::builder()
        .with_padding(Padding::symmetric([3, 1]))
        .with_padding_mode(PaddingMode::Reflect)
        .build()
        .unwrap();
    let err = conv_err(&[1, 1, 3, 5], &[1, 1, 3, 3], p);
    assert_eq!(
        err.to_string(),
        "conv2d: invalid padding: reflect padding must be smaller than the input height 3, got 3 before and 3 after"
    );
}

#[test]
fn circular_padding_wrapping_twice_is_refused() {
    let p = Conv2dParams::builder()
        .with_padding(Padding::symmetric([1, 4]))
        .with_padding_mode(PaddingMode::Circular)
        .build()
        .unwrap();
    let err = conv_err(&[1, 1, 5, 3], &[1, 1, 3, 3], p);
    assert!(
        err.to_string()
            .contains("circular padding must be at most the input width 3"),
        "{err}"
    );
}

#[test]
fn sizes_whose_product_overflows_are_refused() {
    // The tensor itself cannot exist...
    assert!(matches!(
        Tensor::zeros([1 << 40, 1 << 40]).unwrap_err(),
        Error::Overflow { .. }
    ));
    // ...nor can an output whose size overflows, even from small tensors: huge padding.
    let p = Conv2dParams::builder()
        .with_padding(Padding::Explicit {
            top: usize::MAX / 2,
            bottom: usize::MAX / 2,
            left: 0,
            right: 0,
        })
        .build()
        .unwrap();
    let err = conv_err(&[1, 1, 3, 3], &[1, 1, 3, 3], p);
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    // And the geometry refuses an output of more than usize::MAX elements.
    let p = Conv2dParams::builder()
        .with_padding(Padding::Explicit {
            top: 1 << 31,
            bottom: 1 << 31,
            left: 1 << 31,
            right: 1 << 31,
        })
        .build()
        .unwrap();
    let err = p
        .geometry([1 << 8, 1 << 8, 1, 1], [1 << 8, 1 << 8, 1, 1])
        .unwrap_err();
    assert!(matches!(err, Error::Overflow { .. }), "{err}");
    assert!(err.to_string().contains("do not fit in usize"), "{err}");
}

#[test]
fn grad_output_of_the_wrong_shape_is_refused() {
    let x = ones(&[1, 1, 5, 5]);
    let w = ones(&[2, 1, 3, 3]);
    let gy = ones(&[1, 2, 4, 4]);
    let err = conv2d_backward(&gy, &x, &w, &Conv2dParams::default(), GradRequest::ALL).unwrap_err();
    assert_eq!(
        err.to_string(),
        "conv2d: grad_output has shape [1, 2, 4, 4] but the output of input [1, 1, 5, 5] and weight [2, 1, 3, 3] is [1, 2, 3, 3]"
    );
    let err = conv2d_grad_input(&gy, &w, [1, 1, 5, 5], &Conv2dParams::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("grad_output has shape [1, 2, 4, 4]"),
        "{err}"
    );
}

#[test]
fn empty_channel_counts_are_refused() {
    let err = conv_err(&[1, 0, 5, 5], &[1, 0, 3, 3], Conv2dParams::default());
    assert_eq!(
        err.to_string(),
        "conv2d: input [1, 0, 5, 5] has no channels"
    );
    let err = conv_err(&[1, 1, 5, 5], &[0, 1, 3, 3], Conv2dParams::default());
    assert_eq!(
        err.to_string(),
        "conv2d: weight [0, 1, 3, 3] has no output channels"
    );
}
