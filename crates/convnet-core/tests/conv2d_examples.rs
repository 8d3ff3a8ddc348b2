//! The worked examples of the conv-layer documentation, as named tests through the public API.

use convnet_core::{
    Conv2dParams, ConvMode, Padding, Tensor, conv2d,
    geometry::{RfLayer, conv2d_param_count, receptive_fields},
};

fn matrix(rows: &[&[f32]]) -> Tensor {
    let (h, w) = (rows.len(), rows[0].len());
    Tensor::new([1, 1, h, w], rows.concat()).unwrap()
}

#[test]
fn vertical_edge_kernel_on_the_docs_patch_gives_minus_60() {
    let x = matrix(&[&[10., 20., 30.], &[15., 25., 35.], &[20., 30., 40.]]);
    let k = matrix(&[&[1., 0., -1.], &[1., 0., -1.], &[1., 0., -1.]]);
    let y = conv2d(&x, &k, None, &Conv2dParams::default()).unwrap();
    // (10 + 15 + 20) - (30 + 35 + 40) = 45 - 105
    assert_eq!(y.dims(), &[1, 1, 1, 1]);
    assert_eq!(y.data(), &[-60.0]);
}

#[test]
fn vertical_edge_kernel_flipped_is_the_mathematical_convolution() {
    // Convolution flips the kernel: [[-1, 0, 1]] x 3, so the same patch gives +60.
    let x = matrix(&[&[10., 20., 30.], &[15., 25., 35.], &[20., 30., 40.]]);
    let k = matrix(&[&[1., 0., -1.], &[1., 0., -1.], &[1., 0., -1.]]);
    let p = Conv2dParams::builder()
        .with_mode(ConvMode::Convolution)
        .build()
        .unwrap();
    assert_eq!(conv2d(&x, &k, None, &p).unwrap().data(), &[60.0]);
}

fn output_dims(input: [usize; 4], weight: [usize; 4], params: Conv2dParams) -> Vec<usize> {
    let x = Tensor::full(input, 1.0).unwrap();
    let w = Tensor::full(weight, 1.0).unwrap();
    conv2d(&x, &w, None, &params).unwrap().dims().to_vec()
}

#[test]
fn input_4x4_with_kernel_2x2_gives_3x3() {
    assert_eq!(
        output_dims([1, 1, 4, 4], [1, 1, 2, 2], Conv2dParams::default()),
        [1, 1, 3, 3]
    );
}

#[test]
fn input_4x4_with_kernel_2x2_stride_2_gives_2x2() {
    let p = Conv2dParams::builder().with_stride([2, 2]).build().unwrap();
    assert_eq!(output_dims([1, 1, 4, 4], [1, 1, 2, 2], p), [1, 1, 2, 2]);
}

#[test]
fn input_5x5_with_kernel_3x3_gives_3x3() {
    assert_eq!(
        output_dims([1, 1, 5, 5], [1, 1, 3, 3], Conv2dParams::default()),
        [1, 1, 3, 3]
    );
}

#[test]
fn image_32x32x3_with_six_5x5x3_filters_and_same_padding_gives_32x32x6() {
    let p = Conv2dParams::builder()
        .with_padding(Padding::Same)
        .build()
        .unwrap();
    assert_eq!(output_dims([1, 3, 32, 32], [6, 3, 5, 5], p), [1, 6, 32, 32]);
    // Each of the six filters has 5*5*3 weights and a bias.
    assert_eq!(
        conv2d_param_count(3, 6, [5, 5], 1, true).unwrap(),
        6 * (75 + 1)
    );
}

#[test]
fn one_7x7_filter_has_49_weights_three_stacked_3x3_have_27_and_see_as_far() {
    assert_eq!(conv2d_param_count(1, 1, [7, 7], 1, false).unwrap(), 49);
    assert_eq!(3 * conv2d_param_count(1, 1, [3, 3], 1, false).unwrap(), 27);
    let rf = receptive_fields(&[RfLayer::new([3, 3], [1, 1]); 3]).unwrap();
    assert_eq!(
        rf.iter().map(|r| r.size).collect::<Vec<_>>(),
        [[3, 3], [5, 5], [7, 7]]
    );
    assert_eq!(
        receptive_fields(&[RfLayer::new([7, 7], [1, 1])]).unwrap()[0].size,
        [7, 7]
    );
}

/// The multi-channel example: two 3x3 input channels and a two-channel 2x2 kernel; each
/// output is the sum over channels of the per-channel cross-correlations.
fn two_channel_example() -> (Tensor, Tensor) {
    let x = Tensor::new(
        [1, 2, 3, 3],
        vec![
            0., 1., 2., 3., 4., 5., 6., 7., 8., 1., 2., 3., 4., 5., 6., 7., 8., 9.,
        ],
    )
    .unwrap();
    let k = Tensor::new([1, 2, 2, 2], vec![0., 1., 2., 3., 1., 2., 3., 4.]).unwrap();
    (x, k)
}

#[test]
fn multi_channel_2x2_example_sums_over_input_channels() {
    let (x, k) = two_channel_example();
    let y = conv2d(&x, &k, None, &Conv2dParams::default()).unwrap();
    // Top-left: (0*0 + 1*1 + 3*2 + 4*3) + (1*1 + 2*2 + 4*3 + 5*4) = 19 + 37.
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[56., 72., 104., 120.]);
}

#[test]
fn multi_channel_2x2_example_with_three_output_channels() {
    // Three filters K, K + 1, K + 2 give three output channels.
    let (x, k) = two_channel_example();
    let stacked: Vec<f32> = (0..3)
        .flat_map(|i| k.data().iter().map(move |v| v + i as f32))
        .collect();
    let k3 = Tensor::new([3, 2, 2, 2], stacked).unwrap();
    let y = conv2d(&x, &k3, None, &Conv2dParams::default()).unwrap();
    assert_eq!(y.dims(), &[1, 3, 2, 2]);
    assert_eq!(
        y.data(),
        &[
            56., 72., 104., 120., 76., 100., 148., 172., 96., 128., 192., 224.
        ]
    );
}
