//! Sizes that come from users: every workspace of conv2d is sized from the output and the
//! input it reads, never from the stride (property tests against the reference with huge
//! strides and dilations, on every path), and one bound refuses outputs and padded inputs
//! too large for a tensor, naming the parameter, before anything is allocated.

mod common;

use common::{TOL, random};
use convnet_core::tensor::MAX_TENSOR_ELEMENTS;
use convnet_core::{
    Conv2dAlgo, Conv2dGeometry, Conv2dParams, ConvMode, Error, Padding, PaddingMode, Pool2dParams,
    Tensor, adaptive_avg_pool2d, avg_pool2d_backward, conv2d, conv2d_grad_input,
    max_pool2d_backward,
    ops::conv2d::{forward_into, grad_input_into, grad_weight_into},
};
use proptest::prelude::*;

/// Forward, input gradient and weight gradient of `algo` (outputs pre-filled with NaN, so an
/// element left unwritten fails).
fn run(algo: Conv2dAlgo, g: &Conv2dGeometry, x: &Tensor, w: &Tensor, gy: &Tensor) -> [Tensor; 3] {
    let mut y = Tensor::full(g.output_dims(), f32::NAN).unwrap();
    let mut gx = Tensor::full(g.input_dims(), f32::NAN).unwrap();
    let mut gw = Tensor::full(g.weight_dims(), f32::NAN).unwrap();
    forward_into(x.data(), w.data(), None, y.data_mut(), g, algo).unwrap();
    grad_input_into(gy.data(), w.data(), gx.data_mut(), g, algo).unwrap();
    grad_weight_into(gy.data(), x.data(), gw.data_mut(), g, algo).unwrap();
    [y, gx, gw]
}

/// Every path that applies to `g` against the reference.
fn check_all_paths(g: &Conv2dGeometry, seed: u64) -> Result<(), String> {
    let x = random(&g.input_dims(), seed);
    let w = random(&g.weight_dims(), seed ^ 0x5eed);
    let gy = random(&g.output_dims(), seed ^ 0xface);
    let want = run(Conv2dAlgo::Reference, g, &x, &w, &gy);
    let depthwise = g.in_per_group() == 1;
    let mut algos = vec![Conv2dAlgo::Auto, Conv2dAlgo::Direct, Conv2dAlgo::Im2col];
    if depthwise {
        algos.push(Conv2dAlgo::Depthwise);
    }
    for algo in algos {
        let got = run(algo, g, &x, &w, &gy);
        for (name, (got, want)) in ["forward", "grad_input", "grad_weight"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
                // (NaN, an element never written, is never within.)
                let within = (a - b).abs() <= TOL * b.abs().max(1.0);
                if !within {
                    return Err(format!("{algo:?} {name}[{i}]: {a} vs reference {b}"));
                }
            }
        }
    }
    Ok(())
}

/// Strides from 1 to `usize::MAX`: a stride past the input leaves one output per axis.
fn stride() -> impl Strategy<Value = usize> {
    prop_oneof![
        1usize..=3,
        Just(7usize),
        Just(100_000_000usize),
        Just(1usize << 40),
        Just(usize::MAX),
    ]
}

#[derive(Debug, Clone)]
struct Problem {
    params: Conv2dParams,
    input: [usize; 4],
    weight: [usize; 4],
    seed: u64,
}

/// Small problems with huge strides and large dilations, every padding mode, both conv
/// modes, depthwise or not.
fn problem() -> impl Strategy<Value = Problem> {
    (
        (
            stride(),
            stride(),
            1usize..=3,
            prop_oneof![1usize..=3, 9usize..=40],
        ),
        (1usize..=3, 1usize..=3, 1usize..=2, 1usize..=2, 1usize..=3),
        (0usize..=2, 0usize..=3, 0usize..=3, 0usize..=4),
        (0u8..4, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (sh, sw, dh, dw),
                (kh, kw, groups, cg, kg),
                (pad_h, pad_w, extra_h, extra_w),
                (pm, flip, seed),
            )| {
                let padding_mode = [
                    PaddingMode::Zeros,
                    PaddingMode::Reflect,
                    PaddingMode::Replicate,
                    PaddingMode::Circular,
                ][pm as usize];
                // Inputs the dilated kernel fits, and wide enough for the reflect/circular rule.
                let size = |k: usize, d: usize, pad: usize, extra: usize| {
                    (d * (k - 1) + 1).max(pad + 1) + extra
                };
                let params = Conv2dParams::builder()
                    .with_stride([sh, sw])
                    .with_dilation([dh, dw])
                    .with_groups(groups)
                    .with_padding(Padding::symmetric([pad_h, pad_w]))
                    .with_padding_mode(padding_mode)
                    .with_mode(if flip {
                        ConvMode::Convolution
                    } else {
                        ConvMode::CrossCorrelation
                    })
                    .build()
                    .unwrap();
                Problem {
                    params,
                    input: [
                        2,
                        groups * cg,
                        size(kh, dh, pad_h, extra_h),
                        size(kw, dw, pad_w, extra_w),
                    ],
                    weight: [groups * kg, cg, kh, kw],
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn huge_strides_and_dilations_match_the_reference_on_every_path(p in problem()) {
        let g = p.params.geometry(p.input, p.weight).unwrap();
        check_all_paths(&g, p.seed).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn conv_with_stride_usize_max_allocates_from_the_output_not_the_stride() {
    // Before, the phase layout held `stride` columns per row: 13 GB for a stride of 1e8, and a
    // capacity overflow for usize::MAX. One output per axis now reads one window.
    for stride in [100_000_000, 1 << 40, usize::MAX] {
        for (input, weight, groups) in [
            ([1, 1, 2, 2], [1, 1, 2, 2], 1),
            ([1, 3, 5, 4], [2, 3, 2, 2], 1),
            ([2, 4, 3, 3], [4, 1, 3, 1], 4),
        ] {
            let params = Conv2dParams::builder()
                .with_stride([stride, stride])
                .with_groups(groups)
                .build()
                .unwrap();
            let g = params.geometry(input, weight).unwrap();
            assert_eq!(g.out_hw, [1, 1]);
            check_all_paths(&g, stride as u64).unwrap();
        }
    }
}

#[test]
fn im2col_splits_a_row_wider_than_a_tile() {
    // 64 channels x 3x3 taps make an im2col column of 576 values; 300 output columns of them
    // are more than one tile holds, so rows are cut into parts. Strided, for the input gradient
    // (im2col's col2im) as well.
    for stride in [1, 2] {
        let params = Conv2dParams::builder()
            .with_stride([1, stride])
            .with_padding(Padding::symmetric([1, 2]))
            .build()
            .unwrap();
        let g = params
            .geometry([1, 64, 3, 300 * stride], [2, 64, 3, 3])
            .unwrap();
        assert!(g.out_hw[1] >= 300);
        check_all_paths(&g, 3).unwrap();
    }
}

fn too_large(err: &Error) -> (&'static str, &str) {
    match err {
        Error::TooLarge { param, reason, .. } => (param, reason.as_str()),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn conv_with_huge_padding_is_refused_naming_the_padding_and_the_sizes() {
    let x = Tensor::new([1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let w = Tensor::new([1, 1, 2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let params = Conv2dParams::builder()
        .with_padding(Padding::symmetric([100_000, 100_000]))
        .build()
        .unwrap();
    let err = conv2d(&x, &w, None, &params).unwrap_err();
    let (param, reason) = too_large(&err);
    assert_eq!(param, "padding");
    assert_eq!(
        err.to_string(),
        "conv2d: padding too large: input [1, 1, 2, 2] padded by top 100000, bottom 100000, \
         left 100000, right 100000 ([1, 1, 200002, 200002]) would hold 40000800004 values, \
         more than the 2147483648 one tensor may hold"
    );
    assert!(reason.contains("200002"), "{reason}");
    // Every entry point resolves shapes through the same check: the input gradient too.
    let gy = Tensor::zeros([1, 1, 1, 1]).unwrap();
    let err = conv2d_grad_input(&gy, &w, [1, 1, 2, 2], &params).unwrap_err();
    assert_eq!(too_large(&err).0, "padding");
}

#[test]
fn conv_whose_output_is_too_large_is_refused_naming_the_output() {
    // The input fits; a million filters over it would not.
    let params = Conv2dParams::default();
    let err = params
        .geometry([1, 1, 2048, 2048], [1_000_000, 1, 1, 1])
        .unwrap_err();
    assert_eq!(too_large(&err).0, "output");
    assert!(
        err.to_string().contains("output [1, 1000000, 2048, 2048]"),
        "{err}"
    );
    // At the bound itself it is accepted.
    let side = 1 << 15;
    assert_eq!(side * side * 2, MAX_TENSOR_ELEMENTS);
    assert!(params.geometry([2, 1, side, side], [1, 1, 1, 1]).is_ok());
}

#[test]
fn pooling_to_a_huge_output_is_refused_naming_the_output_size() {
    let x = Tensor::zeros([1, 1, 4, 4]).unwrap();
    let err = adaptive_avg_pool2d(&x, [1 << 20, 1 << 20]).unwrap_err();
    assert_eq!(too_large(&err).0, "output size");
    // Backward passes size their result from the caller's input shape: bounded too.
    let gy = Tensor::zeros([1, 1, 1, 1]).unwrap();
    let err = max_pool2d_backward(&gy, &[0], [1, 1, 1 << 20, 1 << 20]).unwrap_err();
    assert_eq!(too_large(&err).0, "input");
    let p = Pool2dParams::builder([2, 2]).build().unwrap();
    let err = avg_pool2d_backward(&gy, [1, 1, 1 << 20, 1 << 20], &p).unwrap_err();
    assert_eq!(too_large(&err).0, "input");
}

#[test]
fn tensors_beyond_the_bound_are_refused_before_allocating() {
    let err = Tensor::full([1usize << 40], 0.25).unwrap_err();
    assert_eq!(too_large(&err).0, "shape");
}
