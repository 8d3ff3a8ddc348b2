//! Property tests: on random small problems covering every option (odd sizes, stride larger
//! than the kernel, dilation, groups, every padding kind and mode, both conv modes), every fast
//! path gives what the reference gives, forward and for each gradient, within 1e-4 (relative
//! to the magnitude where values exceed 1).

mod common;

use common::random;
use convnet_core::cpu::simd::{SimdLevel, set_max_simd_level, simd_level};
use convnet_core::{
    Conv2dAlgo, Conv2dParams, ConvMode, GradRequest, Padding, PaddingMode, Tensor,
    ops::conv2d::{
        conv2d_backward_with, forward_into, grad_bias_into, grad_input_into, grad_weight_into,
        is_depthwise, is_pointwise,
    },
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const TOL: f32 = 1e-4;

#[derive(Debug, Clone)]
struct Problem {
    n: usize,
    groups: usize,
    cg: usize,
    kg: usize,
    hw: [usize; 2],
    kernel: [usize; 2],
    params: Conv2dParams,
    bias: bool,
    seed: u64,
}

fn modes() -> impl Strategy<Value = (PaddingMode, ConvMode)> {
    (
        prop_oneof![
            3 => Just(PaddingMode::Zeros),
            1 => Just(PaddingMode::Reflect),
            1 => Just(PaddingMode::Replicate),
            1 => Just(PaddingMode::Circular),
        ],
        prop_oneof![
            Just(ConvMode::CrossCorrelation),
            Just(ConvMode::Convolution)
        ],
    )
}

/// Any problem; `cg`/`kernel`/`stride` strategies steer it towards one path.
fn problem(
    cg: impl Strategy<Value = usize>,
    kernel: impl Strategy<Value = [usize; 2]>,
    stride: impl Strategy<Value = [usize; 2]>,
    padded: bool,
) -> impl Strategy<Value = Problem> {
    (
        (1usize..=3, 1usize..=3, cg, 1usize..=4),
        (kernel, stride, prop::array::uniform2(1usize..=3)),
        (prop::array::uniform4(0usize..=3), 0u8..3, modes()),
        (
            prop::array::uniform2(0usize..=5),
            any::<bool>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            move |(
                (n, groups, cg, kg),
                (kernel, stride, dilation),
                (pads, pad_kind, (pm, mode)),
                (extra, bias, seed),
            )| {
                let padding = if !padded {
                    Padding::Valid
                } else {
                    match pad_kind {
                        0 => Padding::Explicit {
                            top: pads[0],
                            bottom: pads[1],
                            left: pads[2],
                            right: pads[3],
                        },
                        1 if stride == [1, 1] => Padding::Same,
                        _ => Padding::Valid,
                    }
                };
                let params = Conv2dParams::builder()
                    .with_stride(stride)
                    .with_dilation(dilation)
                    .with_groups(groups)
                    .with_padding(padding)
                    .with_padding_mode(pm)
                    .with_mode(mode)
                    .build()
                    .unwrap();
                let pad = params.resolve_padding(kernel).unwrap();
                // Smallest input the kernel fits, and that reflect/circular padding allows.
                let size = |axis: usize| {
                    let span = dilation[axis] * (kernel[axis] - 1) + 1;
                    let (before, after) = (pad[2 * axis], pad[2 * axis + 1]);
                    let fit = span.saturating_sub(before + after).max(1);
                    let mode_min = match pm {
                        PaddingMode::Reflect => before.max(after) + 1,
                        PaddingMode::Circular => before.max(after),
                        _ => 1,
                    };
                    fit.max(mode_min) + extra[axis]
                };
                Problem {
                    n,
                    groups,
                    cg,
                    kg,
                    hw: [size(0), size(1)],
                    kernel,
                    params,
                    bias,
                    seed,
                }
            },
        )
}

fn close(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dims() != want.dims() {
        return Err(format!("shape {} vs {}", got.shape(), want.shape()));
    }
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        let within = (a - b).abs() <= TOL * b.abs().max(1.0);
        // NaN (an element never written) is never within.
        if !within {
            return Err(format!("element {i}: {a} vs reference {b}"));
        }
    }
    Ok(())
}

/// Runs `algo` and the reference through the slice API, with outputs pre-filled with NaN so a
/// kernel that accumulates instead of overwriting (or skips an element) fails.
fn check(p: &Problem, algo: Conv2dAlgo) -> Result<(), TestCaseError> {
    let c = p.groups * p.cg;
    let k = p.groups * p.kg;
    let x = random(&[p.n, c, p.hw[0], p.hw[1]], p.seed);
    let w = random(&[k, p.cg, p.kernel[0], p.kernel[1]], p.seed.wrapping_add(1));
    let b = p.bias.then(|| random(&[k], p.seed.wrapping_add(2)));
    let g = p
        .params
        .geometry(x.dims4("test", "x").unwrap(), w.dims4("test", "w").unwrap())
        .unwrap();
    let gy = random(&g.output_dims(), p.seed.wrapping_add(3));
    let b = b.as_ref().map(Tensor::data);
    let run = |algo| -> [Tensor; 3] {
        let mut y = Tensor::full(g.output_dims(), f32::NAN).unwrap();
        let mut gx = Tensor::full(g.input_dims(), f32::NAN).unwrap();
        let mut gw = Tensor::full(g.weight_dims(), f32::NAN).unwrap();
        forward_into(x.data(), w.data(), b, y.data_mut(), &g, algo).unwrap();
        grad_input_into(gy.data(), w.data(), gx.data_mut(), &g, algo).unwrap();
        grad_weight_into(gy.data(), x.data(), gw.data_mut(), &g, algo).unwrap();
        [y, gx, gw]
    };
    let want = run(Conv2dAlgo::Reference);
    let got = run(algo);
    for (name, got, want) in ["forward", "grad_input", "grad_weight"]
        .iter()
        .zip(&got)
        .zip(&want)
        .map(|((n, g), w)| (n, g, w))
    {
        close(got, want).map_err(|e| TestCaseError::fail(format!("{algo:?} {name}: {e}")))?;
    }
    // grad_bias has one definition: the per-channel sum in f64, checked against a plain loop.
    let mut gb = vec![f32::NAN; k];
    grad_bias_into(gy.data(), &mut gb, g.output_dims());
    // The combined backward (the direct path sums grad_bias inside the weight gradient, in
    // per-thread f64 totals) gives the same bits as the separate passes. One thread: the f64
    // totals are then added in the same order (with more, only the last bit of an f64 could
    // move, not its f32 rounding in practice, but a test should not bet on it).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let both = pool
        .install(|| {
            conv2d_backward_with(
                &gy,
                &x,
                &w,
                &p.params,
                GradRequest {
                    input: false,
                    weight: true,
                    bias: true,
                },
                algo,
            )
        })
        .unwrap();
    let mut gw_alone = vec![f32::NAN; w.numel()];
    pool.install(|| grad_weight_into(gy.data(), x.data(), &mut gw_alone, &g, algo))
        .unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    prop_assert_eq!(
        bits(both.grad_bias.as_ref().unwrap().data()),
        bits(&gb),
        "{:?}: grad_bias of the combined backward",
        algo
    );
    prop_assert_eq!(
        bits(both.grad_weight.as_ref().unwrap().data()),
        bits(&gw_alone),
        "{:?}: grad_weight of the combined backward",
        algo
    );
    let plane = g.out_hw[0] * g.out_hw[1];
    for (ch, v) in gb.iter().enumerate() {
        let want: f32 = (0..p.n)
            .map(|n| {
                gy.data()[(n * k + ch) * plane..][..plane]
                    .iter()
                    .sum::<f32>()
            })
            .sum();
        prop_assert!(
            (v - want).abs() <= TOL * want.abs().max(1.0),
            "grad_bias[{ch}]: {v} vs {want}"
        );
    }
    Ok(())
}

/// [`check`] for the forward pass alone.
fn check_forward(p: &Problem, algo: Conv2dAlgo) -> Result<(), String> {
    let x = random(&[p.n, p.groups * p.cg, p.hw[0], p.hw[1]], p.seed);
    let w = random(
        &[p.groups * p.kg, p.cg, p.kernel[0], p.kernel[1]],
        p.seed.wrapping_add(1),
    );
    let b = p
        .bias
        .then(|| random(&[p.groups * p.kg], p.seed.wrapping_add(2)));
    let g = p
        .params
        .geometry(x.dims4("test", "x").unwrap(), w.dims4("test", "w").unwrap())
        .unwrap();
    let run = |algo| {
        let mut y = Tensor::full(g.output_dims(), f32::NAN).unwrap();
        let b = b.as_ref().map(Tensor::data);
        forward_into(x.data(), w.data(), b, y.data_mut(), &g, algo).unwrap();
        y
    };
    close(&run(algo), &run(Conv2dAlgo::Reference))
}

/// The geometry the fast paths see: padding modes other than zeros are materialised first.
fn canonical_geometry(p: &Problem) -> convnet_core::Conv2dGeometry {
    let c = p.groups * p.cg;
    let mut g = p
        .params
        .geometry(
            [p.n, c, p.hw[0], p.hw[1]],
            [p.groups * p.kg, p.cg, p.kernel[0], p.kernel[1]],
        )
        .unwrap();
    if p.params.padding_mode() != PaddingMode::Zeros {
        g.in_hw = g.padded_hw();
        g.pad = [0; 4];
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn im2col_direct_and_auto_match_reference(
        p in problem(1usize..=3, prop::array::uniform2(1usize..=5), prop::array::uniform2(1usize..=4), true)
    ) {
        check(&p, Conv2dAlgo::Im2col)?;
        check(&p, Conv2dAlgo::Direct)?;
        check(&p, Conv2dAlgo::Auto)?;
    }

    #[test]
    fn depthwise_matches_reference(
        p in problem(Just(1usize), prop::array::uniform2(1usize..=5), prop::array::uniform2(1usize..=4), true)
    ) {
        prop_assert!(is_depthwise(&canonical_geometry(&p)));
        check(&p, Conv2dAlgo::Depthwise)?;
    }

    #[test]
    fn pointwise_matches_reference(
        p in problem(1usize..=6, Just([1usize, 1]), Just([1usize, 1]), false)
    ) {
        prop_assert!(is_pointwise(&canonical_geometry(&p)));
        check(&p, Conv2dAlgo::Pointwise)?;
    }
}

/// 3x3, stride 1, no dilation, one group (what Winograd computes), any padding and mode; up
/// to 20 channels each side, planes of odd and even sizes and rows of more than one vector
/// of tiles.
fn winograd_problem() -> impl Strategy<Value = Problem> {
    (
        (1usize..=3, 1usize..=20, 1usize..=20),
        (prop::array::uniform4(0usize..=3), any::<bool>(), modes()),
        (
            prop::array::uniform2(1usize..=40),
            any::<bool>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((n, cg, kg), (pads, same, (pm, mode)), (hw, bias, seed))| {
                let padding = if same {
                    Padding::Same
                } else {
                    Padding::Explicit {
                        top: pads[0],
                        bottom: pads[1],
                        left: pads[2],
                        right: pads[3],
                    }
                };
                let params = Conv2dParams::builder()
                    .with_padding(padding)
                    .with_padding_mode(pm)
                    .with_mode(mode)
                    .build()
                    .unwrap();
                let pad = params.resolve_padding([3, 3]).unwrap();
                // Large enough for the kernel, and for reflect/circular padding.
                let size = |axis: usize| {
                    let (before, after) = (pad[2 * axis], pad[2 * axis + 1]);
                    hw[axis]
                        .max(3usize.saturating_sub(before + after))
                        .max(before.max(after) + 1)
                };
                Problem {
                    n,
                    groups: 1,
                    cg,
                    kg,
                    hw: [size(0), size(1)],
                    kernel: [3, 3],
                    params,
                    bias,
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn winograd_matches_reference(p in winograd_problem()) {
        check(&p, Conv2dAlgo::Winograd)?;
        check(&p, Conv2dAlgo::Auto)?;
    }
}

#[test]
fn winograd_refuses_what_it_cannot_compute() {
    let x = Tensor::zeros([1, 4, 8, 8]).unwrap();
    let stride = Conv2dParams::builder().with_stride([2, 1]).build().unwrap();
    let dilation = Conv2dParams::builder()
        .with_dilation([1, 2])
        .build()
        .unwrap();
    let groups = Conv2dParams::builder().with_groups(2).build().unwrap();
    for (kernel, params, names) in [
        (3, stride, "stride [2, 1]"),
        (3, dilation, "dilation [1, 2]"),
        (3, groups, "2 group(s)"),
        (5, Conv2dParams::default(), "kernel 5x5"),
    ] {
        let w = Tensor::zeros([4, 4 / params.groups(), kernel, kernel]).unwrap();
        let g = params
            .geometry(x.dims4("t", "x").unwrap(), w.dims4("t", "w").unwrap())
            .unwrap();
        let mut y = vec![0.0; g.output_dims().iter().product()];
        let err = forward_into(x.data(), w.data(), None, &mut y, &g, Conv2dAlgo::Winograd)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Winograd does not apply"), "{err}");
        assert!(err.contains(names), "{err} should name {names}");
    }
}

#[test]
fn wide_rows_cross_vector_boundaries() {
    // Rows longer than one SIMD vector, with a width that is a multiple of it, stride 2 and
    // dilation 2: exercises the depthwise phase planes' extra column and the im2col tiling.
    let params = Conv2dParams::builder()
        .with_stride([2, 2])
        .with_dilation([2, 2])
        .with_padding(Padding::Explicit {
            top: 2,
            bottom: 1,
            left: 3,
            right: 2,
        })
        .with_groups(4)
        .build()
        .unwrap();
    for (cg, kg) in [(1, 2), (2, 3)] {
        let p = Problem {
            n: 2,
            groups: 4,
            cg,
            kg,
            hw: [37, 66],
            kernel: [3, 4],
            params,
            bias: true,
            seed: 7,
        };
        check(&p, Conv2dAlgo::Im2col).unwrap();
        check(&p, Conv2dAlgo::Direct).unwrap();
        check(&p, Conv2dAlgo::Auto).unwrap();
    }
}

#[test]
fn long_rows_split_into_bands_in_every_padding_mode() {
    // Forward only: this is the filtering path, and the weight gradient of a plane this large
    // sums 18,000 products whose f32 rounding exceeds the small problems' tolerance in the
    // reference as much as in the fast paths.
    // Image-filter shapes: rows of many vectors (whole blocks plus a tail), planes split into
    // bands of rows across threads, and the border read straight from the input in every
    // padding mode, both conv modes, stride 1 and 2.
    for pm in [
        PaddingMode::Zeros,
        PaddingMode::Reflect,
        PaddingMode::Replicate,
        PaddingMode::Circular,
    ] {
        for (stride, kernel, mode) in [
            (1, [5, 5], ConvMode::CrossCorrelation),
            (2, [3, 4], ConvMode::Convolution),
        ] {
            let params = Conv2dParams::builder()
                .with_stride([stride, stride])
                .with_padding(Padding::Explicit {
                    top: 2,
                    bottom: 1,
                    left: 2,
                    right: 3,
                })
                .with_padding_mode(pm)
                .with_mode(mode)
                .with_groups(2)
                .build()
                .unwrap();
            let p = Problem {
                n: 1,
                groups: 2,
                cg: 1,
                kg: 1,
                hw: [61, 300],
                kernel,
                params,
                bias: true,
                seed: 11,
            };
            for algo in [Conv2dAlgo::Auto, Conv2dAlgo::Depthwise] {
                check_forward(&p, algo).unwrap_or_else(|e| panic!("{pm:?} {mode:?} {algo:?}: {e}"));
            }
        }
    }
}

#[test]
fn mobilenet_depthwise_layers_with_many_channels() {
    // MobileNetV2's depthwise layers: 3x3, padding 1, stride 1 and 2, many channels (each
    // plane one task, or bands of rows when planes are few), planes from several vectors a
    // row down to less than one (7 px), odd sizes whose last stride-2 window ends inside the
    // padding; every padding mode for the border's column table.
    for (channels, hw, stride) in [
        (96, [29, 29], 2),
        (144, [14, 14], 2),
        (192, [7, 7], 1),
        (160, [7, 7], 2),
        (32, [40, 37], 1),
        (24, [40, 37], 2),
    ] {
        for pm in [PaddingMode::Zeros, PaddingMode::Reflect] {
            let params = Conv2dParams::builder()
                .with_stride([stride, stride])
                .with_padding(Padding::Explicit {
                    top: 1,
                    bottom: 1,
                    left: 1,
                    right: 1,
                })
                .with_padding_mode(pm)
                .with_groups(channels)
                .build()
                .unwrap();
            let p = Problem {
                n: 2,
                groups: channels,
                cg: 1,
                kg: 1,
                hw,
                kernel: [3, 3],
                params,
                bias: true,
                seed: channels as u64,
            };
            for algo in [Conv2dAlgo::Auto, Conv2dAlgo::Depthwise] {
                check(&p, algo)
                    .unwrap_or_else(|e| panic!("{channels} {hw:?} s{stride} {pm:?}: {e}"));
            }
        }
    }
}

#[test]
fn every_simd_build_matches_reference() {
    // Other tests in this binary may run meanwhile under the capped level: every level must
    // be exact, so that only changes which build they exercise.
    for level in [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512] {
        set_max_simd_level(level);
        assert!(simd_level() <= level);
        let mut runner = TestRunner::new(Config::with_cases(64));
        let depthwise = problem(
            Just(1usize),
            prop::array::uniform2(1usize..=5),
            prop::array::uniform2(1usize..=4),
            true,
        );
        runner
            .run(&depthwise, |p| check(&p, Conv2dAlgo::Depthwise))
            .unwrap_or_else(|e| panic!("{level:?}: {e}"));
        let any = problem(
            1usize..=3,
            prop::array::uniform2(1usize..=5),
            prop::array::uniform2(1usize..=4),
            true,
        );
        runner
            .run(&any, |p| check(&p, Conv2dAlgo::Direct))
            .unwrap_or_else(|e| panic!("{level:?}: {e}"));
        runner
            .run(&winograd_problem(), |p| check(&p, Conv2dAlgo::Winograd))
            .unwrap_or_else(|e| panic!("{level:?}: {e}"));
    }
    set_max_simd_level(SimdLevel::Avx512);
}

/// `Auto` takes Winograd on wide 3x3 layers where the CPU runs AVX-512, and the direct path
/// elsewhere; either way it matches the reference.
#[test]
fn auto_takes_winograd_on_wide_3x3_layers_and_matches_the_reference() {
    use convnet_core::ops::conv2d::{WINOGRAD_MIN_CHANNELS, prefers_winograd};
    let wide = WINOGRAD_MIN_CHANNELS;
    let geometry = |c: usize, k: usize, params: &Conv2dParams| {
        params.geometry([1, c, 9, 7], [k, c, 3, 3]).unwrap()
    };
    let same = Conv2dParams::builder()
        .with_padding(Padding::Same)
        .build()
        .unwrap();
    // (`every_simd_build_matches_reference` may cap the level meanwhile: only "never
    // without AVX-512" holds whatever the timing.)
    if prefers_winograd(&geometry(wide, wide, &same)) {
        #[cfg(target_arch = "x86_64")]
        assert!(std::is_x86_feature_detected!("avx512f"));
        #[cfg(not(target_arch = "x86_64"))]
        panic!("Winograd preferred without AVX-512");
    }
    assert!(!prefers_winograd(&geometry(wide / 2, wide, &same)));
    assert!(!prefers_winograd(&geometry(wide, wide / 2, &same)));
    let strided = Conv2dParams::builder().with_stride([2, 2]).build().unwrap();
    assert!(!prefers_winograd(&geometry(wide, wide, &strided)));

    let p = Problem {
        n: 2,
        groups: 1,
        cg: wide,
        kg: wide + 3,
        hw: [9, 7],
        kernel: [3, 3],
        params: same,
        bias: true,
        seed: 7,
    };
    check(&p, Conv2dAlgo::Auto).unwrap();
}
