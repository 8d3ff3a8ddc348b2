//! Unit tests of pooling: finite-difference gradient checks of every kernel in f64, hand-checked
//! cases, and every error.

use super::max::max_pool_forward;
use super::plan::adaptive_range;
use super::*;

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

// Finite-difference gradient checks (f64)

#[test]
fn max_pool_gradients_match_finite_differences() {
    let dims = [2, 3, 7, 8];
    check_max_pool("2x2 default stride", params([2, 2]), dims, 1);
    check_max_pool(
        "3x3 stride 1 (overlapping)",
        params([3, 3]).with_stride([1, 1]),
        dims,
        2,
    );
    check_max_pool(
        "3x3 stride 2 padding 1",
        params([3, 3]).with_stride([2, 2]).with_padding([1, 1]),
        dims,
        3,
    );
    check_max_pool(
        "3x2 stride 2x1 padding 1x1 dilation 2x3",
        params([3, 2])
            .with_stride([2, 1])
            .with_padding([1, 1])
            .with_dilation([2, 3]),
        dims,
        4,
    );
    check_max_pool(
        "3x3 stride 2 ceil_mode",
        params([3, 3]).with_stride([2, 2]).with_ceil_mode(true),
        [1, 2, 6, 7],
        5,
    );
    check_max_pool(
        "2x2 stride 2 padding 1 ceil_mode dilation 2",
        params([2, 2])
            .with_padding([1, 1])
            .with_ceil_mode(true)
            .with_dilation([2, 2]),
        [1, 2, 5, 6],
        6,
    );
    check_max_pool(
        "ceil_mode overhang",
        params([3, 3]).with_stride([2, 2]).with_ceil_mode(true),
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
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_count_include_pad(include),
            dims,
            12,
        );
        check_avg_pool(
            &format!("3x2 stride 2x1 padding 1x1 ceil_mode count_include_pad={include}"),
            params([3, 2])
                .with_stride([2, 1])
                .with_padding([1, 1])
                .with_ceil_mode(true)
                .with_count_include_pad(include),
            dims,
            13,
        );
    }
    check_avg_pool(
        "3x3 padding 1 divisor_override 5",
        params([3, 3])
            .with_stride([1, 2])
            .with_padding([1, 1])
            .with_divisor_override(Some(5)),
        dims,
        14,
    );
    check_avg_pool(
        "ceil_mode overhang",
        params([3, 3])
            .with_stride([2, 2])
            .with_ceil_mode(true)
            .with_count_include_pad(false),
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
        .with_stride([2, 2])
        .with_padding([1, 1])
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
        .with_padding([1, 1])
        .with_ceil_mode(true)
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
    let floor = params([1, 3]).with_stride([1, 2]).build().unwrap();
    let ceil = params([1, 3])
        .with_stride([1, 2])
        .with_ceil_mode(true)
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
        .with_stride([2, 2])
        .with_ceil_mode(true)
        .build()
        .unwrap();
    let out = max_pool2d(&x, &ceil).unwrap();
    assert_eq!(
        (out.output.data(), out.indices.as_slice()),
        (&[4.0f32][..], &[1][..])
    );
    // pool_size = min(0 + 3, 2 + 0) - 0 = 2 per axis, so the divisor is 4 either way.
    assert_eq!(avg_pool2d(&x, &ceil).unwrap().data(), &[2.5]);
    let floor = params([3, 3]).with_stride([2, 2]).build().unwrap();
    let err = max_pool2d(&x, &floor).unwrap_err();
    assert!(
        err.to_string().contains("larger than the padded input"),
        "{err}"
    );
    // An overhang of a whole stride is too much even in ceil mode.
    let ceil1 = params([3, 3])
        .with_stride([1, 1])
        .with_ceil_mode(true)
        .build()
        .unwrap();
    assert!(max_pool2d(&x, &ceil1).is_err());
}

#[test]
fn avg_pool_count_include_pad_false_at_a_corner() {
    // 3x3 kernel, padding 1 on 1..9: the corner window holds 1, 2, 4, 5.
    let x = Tensor::from_fn([1, 1, 3, 3], |i| i as f32 + 1.0).unwrap();
    let base = params([3, 3]).with_stride([1, 1]).with_padding([1, 1]);
    let exclude = avg_pool2d(&x, &base.with_count_include_pad(false).build().unwrap()).unwrap();
    assert_eq!(exclude.data()[0], 3.0);
    assert_eq!(exclude.data()[4], 5.0);
    let include = avg_pool2d(&x, &base.build().unwrap()).unwrap();
    assert_eq!(include.data()[0], 12.0 / 9.0);
    let over = avg_pool2d(&x, &base.with_divisor_override(Some(2)).build().unwrap()).unwrap();
    assert_eq!(over.data()[0], 6.0);
    // Backward at the corner: each of the 4 inputs gets 1/4 with count_include_pad=false.
    let p = base.with_count_include_pad(false).build().unwrap();
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
    let p = params([1, 2]).with_stride([1, 1]).build().unwrap();
    let x = t([1, 1, 1, 3], &[1.0, 3.0, 2.0]);
    let out = max_pool2d(&x, &p).unwrap();
    assert_eq!(out.indices, [1, 1]);
    let gx =
        max_pool2d_backward(&t([1, 1, 1, 2], &[0.5, 0.25]), &out.indices, [1, 1, 1, 3]).unwrap();
    assert_eq!(gx.data(), &[0.0, 0.75, 0.0]);
}

#[test]
fn parallel_planes_match_one_plane_at_a_time() {
    // Enough planes to cross the parallel threshold; each plane equals a lone run.
    let dims = [8, 16, 12, 12];
    let x = Tensor::from_fn(dims, |i| ((i * 7919) % 1000) as f32 * 0.01).unwrap();
    let p = params([3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
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
fn pooling_without_indices_and_the_gradient_from_the_input_match_the_indexed_pair() {
    // The 2x2 stride-2 fast path (even and odd sizes), and windows it does not take
    // (overlapping, padded, dilated, ceil mode), on values with ties, signed zeros and NaNs.
    let cases = [
        (params([2, 2]), [2, 3, 14, 14]),
        (params([2, 2]), [1, 2, 7, 9]),
        (
            params([3, 3]).with_stride([2, 2]).with_padding([1, 1]),
            [2, 2, 9, 8],
        ),
        (
            params([2, 3]).with_dilation([2, 1]).with_stride([1, 2]),
            [1, 3, 7, 10],
        ),
        (params([2, 2]).with_ceil_mode(true), [1, 2, 5, 5]),
    ];
    let mut rng = Rng(21);
    for (p, dims) in cases {
        let p = p.build().unwrap();
        let x = Tensor::from_fn(dims, |i| match i % 7 {
            0 | 1 => 0.0,
            2 => -0.0,
            3 if i % 5 == 0 => f32::NAN,
            _ => rng.uniform() as f32,
        })
        .unwrap();
        let indexed = max_pool2d(&x, &p).unwrap();
        let y = max_pool2d_output(&x, &p).unwrap();
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(y.dims(), indexed.output.dims(), "{dims:?}");
        assert_eq!(bits(y.data()), bits(indexed.output.data()), "{dims:?}");
        let gy = Tensor::from_fn(y.dims().to_vec(), |i| i as f32 - 3.5).unwrap();
        let want = max_pool2d_backward(&gy, &indexed.indices, dims).unwrap();
        let got = max_pool2d_backward_from_input(&gy, &x, &p).unwrap();
        assert_eq!(got.dims(), &dims[..]);
        assert_eq!(bits(got.data()), bits(want.data()), "{dims:?}");
    }
    // A gradient of another shape is an error naming both.
    let x = Tensor::zeros([1, 1, 4, 4]).unwrap();
    let gy = Tensor::zeros([1, 1, 3, 2]).unwrap();
    let err = max_pool2d_backward_from_input(&gy, &x, &params([2, 2]).build().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 1, 3, 2]") && err.contains("[1, 1, 2, 2]"),
        "{err}"
    );
}

#[test]
fn empty_batch_gives_empty_outputs() {
    let x = Tensor::zeros([0, 3, 4, 4]).unwrap();
    let p = params([2, 2]).build().unwrap();
    assert_eq!(max_pool2d(&x, &p).unwrap().output.dims(), &[0, 3, 2, 2]);
    assert_eq!(avg_pool2d(&x, &p).unwrap().dims(), &[0, 3, 2, 2]);
    assert_eq!(global_avg_pool2d(&x).unwrap().dims(), &[0, 3, 1, 1]);
}

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
        build_err(params([2, 2]).with_stride([2, 0])),
        "pool2d: invalid stride: must be at least 1 on both axes, got 2x0"
    );
    assert!(build_err(params([2, 2]).with_dilation([0, 1])).contains("invalid dilation"));
    assert_eq!(
        build_err(params([2, 2]).with_divisor_override(Some(0))),
        "pool2d: invalid divisor_override: must not be 0"
    );
}

#[test]
fn padding_above_half_the_kernel_is_an_error() {
    assert_eq!(
        build_err(params([3, 4]).with_padding([2, 1])),
        "pool2d: invalid padding: must be at most half the kernel size on each axis (as in \
         PyTorch), got padding 2x1 for kernel 3x4 (at most 1x2)"
    );
    // The rule is k / 2 even when a dilation widens the kernel (PyTorch's
    // pool2d_shape_check), and exactly half is allowed.
    assert!(
        build_err(params([3, 3]).with_padding([2, 0]).with_dilation([2, 2])).contains("padding")
    );
    assert!(params([2, 2]).with_padding([1, 1]).build().is_ok());
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
    let p = params([5, 5]).with_padding([1, 1]).build().unwrap();
    let err = max_pool2d(&Tensor::zeros([1, 1, 2, 6]).unwrap(), &p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "max_pool2d: kernel 5x5 (dilation 1x1, spans 5x5) is larger than the padded input \
         4x8 (input 2x6, padding 1x1 on each side)"
    );
}

#[test]
fn avg_pool_rejects_dilation() {
    let p = params([2, 2]).with_dilation([2, 2]).build().unwrap();
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
