//! Unit tests of batch normalization: finite-difference gradient checks in f64 on both loop
//! orders, the vector kernels on every instruction set, the f32 API against the f64 kernels,
//! hand-checked statistics and every error.

use std::mem::MaybeUninit;

use super::eval::{eval_backward, eval_forward};
use super::simd::{affine_f32_impl, grad_input_f32_impl};
use super::*;

// Finite differences (crate::testing): with inputs in [-1, 1), `invstd` stays below ~5 on
// these shapes and |f'''| below ~1e3, so truncation error < 1e-9; rounding < 1e-8.
use crate::testing::{Rng, check_grad, for_each_simd};

fn layout(dims: &[usize]) -> Layout {
    Layout::new("test", &Tensor::zeros(dims.to_vec()).unwrap()).unwrap()
}

/// Row path (`s < 16`) and plane path (`s >= 16`), each with 2-D, 3-D and 4-D inputs.
const SHAPES: [&[usize]; 8] = [
    &[5, 3],
    &[2, 3],
    &[3, 2, 4],
    &[2, 3, 2, 3],
    &[1, 2, 3, 3],
    &[2, 2, 17],
    &[2, 2, 4, 4],
    &[1, 3, 4, 5],
];

fn train_fwd(x: &[f64], l: Layout, w: Option<&[f64]>, b: Option<&[f64]>) -> Vec<f64> {
    train_forward(x, l, w, b, 1e-3, false).0
}

fn eval_fwd(x: &[f64], l: Layout, rm: &[f64], rv: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    eval_forward(x, l, rm, rv, Some(w), Some(b), 0.1)
}

#[test]
fn training_gradients_match_finite_differences() {
    for (seed, dims) in SHAPES.into_iter().enumerate() {
        let l = layout(dims);
        let numel: usize = dims.iter().product();
        let mut rng = Rng(seed as u64 + 1);
        let x = rng.values(numel);
        let w: Vec<f64> = rng.values(l.c).iter().map(|v| v + 1.5).collect();
        let b = rng.values(l.c);
        let wts = rng.values(numel);
        for affine in [true, false] {
            let (wo, bo) = if affine {
                (Some(w.as_slice()), Some(b.as_slice()))
            } else {
                (None, None)
            };
            let (_, stats) = train_forward(&x, l, wo, bo, 1e-3, false);
            let mean: Vec<f64> = stats.iter().map(|s| s.mean).collect();
            let invstd: Vec<f64> = stats.iter().map(|s| s.invstd).collect();
            let (gx, sums) = train_backward(&wts, &x, l, &mean, &invstd, wo, None);
            let name = format!("batch_norm_train {dims:?} affine={affine}");
            check_grad(
                &format!("{name}: input"),
                &x,
                &wts,
                |x| train_fwd(x, l, wo, bo),
                &gx,
            );
            if affine {
                let gw: Vec<f64> = sums
                    .iter()
                    .zip(&stats)
                    .map(|(s, st)| s.dot * st.invstd)
                    .collect();
                let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
                check_grad(
                    &format!("{name}: weight"),
                    &w,
                    &wts,
                    |w| train_fwd(&x, l, Some(w), bo),
                    &gw,
                );
                check_grad(
                    &format!("{name}: bias"),
                    &b,
                    &wts,
                    |b| train_fwd(&x, l, wo, Some(b)),
                    &gb,
                );
            }
        }
    }
}

#[test]
fn eval_gradients_match_finite_differences() {
    for (seed, dims) in SHAPES.into_iter().enumerate() {
        let l = layout(dims);
        let numel: usize = dims.iter().product();
        let mut rng = Rng(20 + seed as u64);
        let x = rng.values(numel);
        let rm = rng.values(l.c);
        let rv: Vec<f64> = rng.values(l.c).iter().map(|v| v + 1.2).collect();
        let w = rng.values(l.c);
        let b = rng.values(l.c);
        let wts = rng.values(numel);
        let (gx, invstd, sums) = eval_backward(&wts, &x, l, &rm, &rv, Some(&w), 0.1);
        let gw: Vec<f64> = sums.iter().zip(&invstd).map(|(s, i)| s.dot * i).collect();
        let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
        let name = format!("batch_norm_eval {dims:?}");
        let f = |x: &[f64], w: &[f64], b: &[f64]| eval_fwd(x, l, &rm, &rv, w, b);
        check_grad(&format!("{name}: input"), &x, &wts, |x| f(x, &w, &b), &gx);
        check_grad(&format!("{name}: weight"), &w, &wts, |w| f(&x, w, &b), &gw);
        check_grad(&format!("{name}: bias"), &b, &wts, |b| f(&x, &w, b), &gb);
    }
}

/// The element-wise kernels of every instruction set against the scalar loops, on every
/// length around the vector widths (the reductions are tested in `reduce.rs`).
#[test]
fn vector_kernels_match_scalar_loops_on_every_instruction_set() {
    // SAFETY: every element was initialised by `MaybeUninit::new` (and maybe rewritten).
    let read = |v: &[MaybeUninit<f32>]| -> Vec<f32> {
        v.iter().map(|v| unsafe { v.assume_init() }).collect()
    };
    for_each_simd!(|name, simd| {
        for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 100] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.0).collect();
            let g: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5).collect();
            let (mean, a, b, q, r) = (0.37f32, 1.7f32, -0.2f32, 0.45f32, -0.05f32);
            // One extra slot: nothing past the end is written.
            for relu in [false, true] {
                let mut y = vec![MaybeUninit::new(f32::NAN); n + 1];
                affine_f32_impl(simd, &x, mean, a, b, relu, &mut y[..n]);
                let y = read(&y);
                for i in 0..n {
                    let v = (f64::from(x[i]) - f64::from(mean)) * f64::from(a) + f64::from(b);
                    let exact = if relu { v.max(0.0) } else { v };
                    assert!(
                        (f64::from(y[i]) - exact).abs() < 1e-6,
                        "{name} affine relu={relu} n={n} i={i}"
                    );
                }
                assert!(y[n].is_nan(), "{name} affine wrote past the end");
                let mut gx = vec![MaybeUninit::new(f32::NAN); n + 1];
                let mask = relu.then_some((a, b));
                grad_input_f32_impl(simd, &g, &x, mean, [a, q, r], mask, &mut gx[..n]);
                let gx = read(&gx);
                for i in 0..n {
                    let passes = !relu || (x[i] - mean) * a + b > 0.0;
                    let g = if passes { f64::from(g[i]) } else { 0.0 };
                    let exact = g * f64::from(a)
                        + ((f64::from(x[i]) - f64::from(mean)) * f64::from(q) + f64::from(r));
                    assert!(
                        (f64::from(gx[i]) - exact).abs() < 1e-6,
                        "{name} grad relu={relu} n={n} i={i}"
                    );
                }
                assert!(gx[n].is_nan(), "{name} grad_input wrote past the end");
            }
        }
    });
}

/// The fused batch norm + ReLU against the two run one after the other, to the bit, forward
/// and backward, on both loop orders, with and without weight and bias: channel 0 holds
/// -1, 0, 1 in turn (mean exactly 0, so the output is exactly 0 where the input is 0 and the
/// bias is 0: the ReLU's `<= 0` edge), and one shape has a NaN (the gradient passes NaN).
#[test]
fn fused_relu_is_batch_norm_then_relu_to_the_bit() {
    use crate::{Activation, activation, activation_backward};
    // Bits, every NaN as one (which NaN an operation returns depends on operand order).
    let bits = |t: &Tensor| {
        (t.data().iter())
            .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
            .collect::<Vec<_>>()
    };
    let shapes: [&[usize]; 5] = [
        &[6, 40],
        &[3, 4, 5],
        &[3, 7, 9, 11],
        &[6, 3, 17],
        &[12, 32, 28, 28],
    ];
    for (seed, dims) in shapes.into_iter().enumerate() {
        let l = layout(dims);
        let numel: usize = dims.iter().product();
        let mut rng = Rng(70 + seed as u64);
        let x = edge_input(dims, &mut rng, seed == 3);
        let gy: Vec<f32> = rng.values(numel).iter().map(|&v| v as f32).collect();
        let gy = Tensor::new(dims.to_vec(), gy).unwrap();
        let (w, b) = weight_and_bias(l.c, &mut rng);
        for (wo, bo) in [(Some(&w), Some(&b)), (None, None), (Some(&w), None)] {
            let name = format!("{dims:?} weight={} bias={}", wo.is_some(), bo.is_some());
            let bn = batch_norm_train(&x, wo, bo, 1e-5).unwrap();
            let relu = activation(&bn.output, Activation::Relu);
            let fused = batch_norm_train_relu(&x, wo, bo, 1e-5).unwrap();
            assert_eq!(bits(&fused.output), bits(&relu), "{name}: output");
            assert_eq!(bits(&fused.mean), bits(&bn.mean), "{name}: mean");
            assert_eq!(bits(&fused.invstd), bits(&bn.invstd), "{name}: invstd");
            let g_bn = activation_backward(&gy, &bn.output, &relu, Activation::Relu).unwrap();
            let want = batch_norm_backward(&g_bn, &x, &bn.mean, &bn.invstd, wo).unwrap();
            let got =
                batch_norm_relu_backward(&gy, &x, &fused.mean, &fused.invstd, wo, bo).unwrap();
            assert_eq!(
                bits(&got.grad_input),
                bits(&want.grad_input),
                "{name}: grad_input"
            );
            for (g, w, what) in [
                (&got.grad_weight, &want.grad_weight, "grad_weight"),
                (&got.grad_bias, &want.grad_bias, "grad_bias"),
            ] {
                assert_eq!(g.as_ref().map(bits), w.as_ref().map(bits), "{name}: {what}");
            }
            if seed == 0 {
                // Channel 0's zero outputs pass no gradient; some other outputs do.
                let zeros = (relu.data().iter().zip(g_bn.data()))
                    .filter(|&(&y, &g)| y == 0.0 && g == 0.0)
                    .count();
                assert!(zeros > 0 && zeros < numel, "{name}: {zeros} masked");
            }
        }
    }
}

/// The fused batch norm + ReLU + max pooling against the three run one after the other, to
/// the bit, forward and backward: 2x2 stride-2 pooling on the plane path (even and odd
/// planes, the reference model's 28x28 and 14x14), on the row path (planes under 16 values),
/// and another pooling (which runs after the batch norm); with and without weight and bias.
/// Channel 0 holds -1, 0, 1 in turn (exact zeros after the ReLU: ties in the windows), and
/// one shape has a NaN. `batch_norm_train_output` gives the ReLU's output again.
#[test]
fn fused_relu_and_max_pool_are_the_three_layers_to_the_bit() {
    use crate::{Pool2dParams, max_pool2d_backward_from_input, max_pool2d_output};
    // The first value whose bits differ (every NaN as one), if any, and the shapes.
    let differ = |a: &Tensor, b: &Tensor| {
        let bits = |v: f32| if v.is_nan() { u32::MAX } else { v.to_bits() };
        let at = (a.data().iter().zip(b.data())).position(|(&x, &y)| bits(x) != bits(y));
        let shapes = a.dims() != b.dims();
        (shapes || at.is_some())
            .then(|| format!("{:?} vs {:?}, first at {at:?}", a.dims(), b.dims()))
    };
    let two = Pool2dParams::builder([2, 2]).build().unwrap();
    let three = Pool2dParams::builder([3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .build()
        .unwrap();
    let cases: [(&[usize], &Pool2dParams); 6] = [
        (&[12, 32, 28, 28], &two),
        (&[5, 8, 14, 14], &two),
        (&[3, 4, 9, 11], &two),
        (&[4, 3, 3, 3], &two),
        (&[3, 4, 9, 11], &three),
        (
            &[2, 3, 1, 40],
            &Pool2dParams::builder([1, 2]).build().unwrap(),
        ),
    ];
    for (seed, (dims, pool)) in cases.into_iter().enumerate() {
        let l = layout(dims);
        let mut rng = Rng(90 + seed as u64);
        let x = edge_input(dims, &mut rng, seed == 2);
        let (w, b) = weight_and_bias(l.c, &mut rng);
        for (wo, bo) in [(Some(&w), Some(&b)), (None, None), (Some(&w), None)] {
            let name = format!("{dims:?} weight={} bias={}", wo.is_some(), bo.is_some());
            let bn = batch_norm_train_relu(&x, wo, bo, 1e-5).unwrap();
            let pooled = max_pool2d_output(&bn.output, pool).unwrap();
            let fused = batch_norm_train_relu_max_pool2d(&x, wo, bo, 1e-5, pool).unwrap();
            assert_eq!(differ(&fused.output, &pooled), None, "{name}: output");
            for (got, want, what) in [
                (&fused.mean, &bn.mean, "mean"),
                (&fused.invstd, &bn.invstd, "invstd"),
                (&fused.var_unbiased, &bn.var_unbiased, "var_unbiased"),
            ] {
                assert_eq!(differ(got, want), None, "{name}: {what}");
            }
            let again = batch_norm_train_output(&x, &bn.mean, &bn.invstd, wo, bo, true).unwrap();
            assert_eq!(differ(&again, &bn.output), None, "{name}: output again");
            let gy: Vec<f32> = rng
                .values(pooled.numel())
                .iter()
                .map(|&v| v as f32)
                .collect();
            let gy = Tensor::new(pooled.dims().to_vec(), gy).unwrap();
            let g_relu = max_pool2d_backward_from_input(&gy, &bn.output, pool).unwrap();
            let want = batch_norm_relu_backward(&g_relu, &x, &bn.mean, &bn.invstd, wo, bo).unwrap();
            let got =
                batch_norm_relu_max_pool2d_backward(&gy, &x, &bn.mean, &bn.invstd, wo, bo, pool)
                    .unwrap();
            fn grads(g: &BatchNormGrads) -> [Option<&Tensor>; 3] {
                [
                    Some(&g.grad_input),
                    g.grad_weight.as_ref(),
                    g.grad_bias.as_ref(),
                ]
            }
            for ((g, w), what) in grads(&got).into_iter().zip(grads(&want)).zip([
                "grad_input",
                "grad_weight",
                "grad_bias",
            ]) {
                assert_eq!(g.is_some(), w.is_some(), "{name}: {what}");
                if let (Some(g), Some(w)) = (g, w) {
                    assert_eq!(differ(g, w), None, "{name}: {what}");
                }
            }
            // Some gradient passes (not every value masked or pooled away).
            assert!(got.grad_input.data().iter().any(|&v| v != 0.0), "{name}");
        }
    }
}

#[test]
fn fused_max_pool_refuses_what_the_layers_refuse() {
    use crate::Pool2dParams;
    let two = Pool2dParams::builder([2, 2]).build().unwrap();
    let x = Tensor::from_fn([2, 3, 8, 8], |i| (i % 7) as f32).unwrap();
    let one = Tensor::new([3], vec![1.0; 3]).unwrap();
    // Not an image batch.
    let flat = Tensor::from_fn([2, 3, 64], |i| (i % 7) as f32).unwrap();
    let err = batch_norm_train_relu_max_pool2d(&flat, None, None, 1e-5, &two).unwrap_err();
    assert!(err.to_string().contains("input"), "{err}");
    // A window larger than the input.
    let tiny = Tensor::from_fn([2, 3, 1, 1], |i| i as f32).unwrap();
    assert!(batch_norm_train_relu_max_pool2d(&tiny, None, None, 1e-5, &two).is_err());
    // A gradient that is not the pooled shape.
    let fwd = batch_norm_train_relu_max_pool2d(&x, Some(&one), Some(&one), 1e-5, &two).unwrap();
    assert_eq!(fwd.output.dims(), [2, 3, 4, 4]);
    let wrong = Tensor::zeros(vec![2, 3, 8, 8]).unwrap();
    let err = batch_norm_relu_max_pool2d_backward(
        &wrong,
        &x,
        &fwd.mean,
        &fwd.invstd,
        Some(&one),
        Some(&one),
        &two,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("grad_output [2, 3, 8, 8]"),
        "{err}"
    );
    // Statistics of another channel count.
    let err = batch_norm_train_output(&x, &one, &stats(&[1.0; 2]), None, None, true).unwrap_err();
    assert!(err.to_string().contains("invstd"), "{err}");
}

/// An input for the fused tests: random values, but channel 0 holds -1, 0, 1 in turn (its
/// mean is exactly 0, so its output is exactly 0 where the input is 0 and the bias is 0: the
/// ReLU's `<= 0` edge, and ties in pooling windows), and with `nan` one value of channel 1
/// is NaN.
fn edge_input(dims: &[usize], rng: &mut Rng, nan: bool) -> Tensor {
    let l = layout(dims);
    let numel: usize = dims.iter().product();
    let mut x: Vec<f32> = rng.values(numel).iter().map(|&v| v as f32).collect();
    let mut k = 0;
    for i in 0..l.n {
        for v in &mut x[l.plane(i, 0)] {
            *v = [-1.0, 0.0, 1.0][k % 3];
            k += 1;
        }
    }
    if nan {
        x[l.plane(1, 1).start + 2] = f32::NAN;
    }
    Tensor::new(dims.to_vec(), x).unwrap()
}

/// A weight (around 1.5) and a bias per channel, channel 0's bias 0 (see [`edge_input`]).
fn weight_and_bias(c: usize, rng: &mut Rng) -> (Tensor, Tensor) {
    let w: Vec<f32> = rng.values(c).iter().map(|&v| (v + 1.5) as f32).collect();
    let mut b: Vec<f32> = rng.values(c).iter().map(|&v| v as f32).collect();
    b[0] = 0.0;
    (stats(&w), stats(&b))
}

/// A statistic per channel, as `batch_norm_train` returns it.
fn stats(v: &[f32]) -> Tensor {
    Tensor::new([v.len()], v.to_vec()).unwrap()
}

fn tensor(dims: &[usize], v: &[f64]) -> Tensor {
    Tensor::new(dims.to_vec(), v.iter().map(|&v| v as f32).collect()).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol * w.abs().max(1.0),
            "{what} at {i}: {g} vs {w}"
        );
    }
}

/// The public f32 API (vector loops for planes of 16+ values, parallel channels) against
/// the f64 kernels on the same (f32-representable) data, with inputs far from zero mean.
#[test]
fn f32_api_matches_f64_kernels() {
    let shapes: [&[usize]; 5] = [
        &[64, 40],
        &[5, 7, 9, 11],
        &[3, 4, 33],
        &[8, 32, 28, 28],
        &[2, 3, 5],
    ];
    for (seed, dims) in shapes.into_iter().enumerate() {
        let l = layout(dims);
        let numel: usize = dims.iter().product();
        let mut rng = Rng(40 + seed as u64);
        let round = |v: Vec<f64>| v.iter().map(|&v| f64::from(v as f32)).collect::<Vec<_>>();
        let x = round(rng.values(numel).iter().map(|v| 3.0 + 2.0 * v).collect());
        let gy = round(rng.values(numel));
        let w = round(rng.values(l.c).iter().map(|v| v + 1.5).collect());
        let b = round(rng.values(l.c));
        let (xt, gyt, wt, bt) = (
            tensor(dims, &x),
            tensor(dims, &gy),
            tensor(&[l.c], &w),
            tensor(&[l.c], &b),
        );
        let name = format!("{dims:?}");
        // Training.
        let bn = batch_norm_train(&xt, Some(&wt), Some(&bt), 1e-5).unwrap();
        let (y, stats) = train_forward(&x, l, Some(&w), Some(&b), f64::from(1e-5f32), false);
        assert_close(&format!("{name} output"), bn.output.data(), &y, 1e-5);
        let mean: Vec<f64> = stats.iter().map(|s| s.mean).collect();
        let invstd: Vec<f64> = stats.iter().map(|s| s.invstd).collect();
        let var_unbiased: Vec<f64> = stats.iter().map(|s| s.var_unbiased).collect();
        assert_close(&format!("{name} mean"), bn.mean.data(), &mean, 1e-6);
        assert_close(&format!("{name} invstd"), bn.invstd.data(), &invstd, 1e-6);
        assert_close(
            &format!("{name} var_unbiased"),
            bn.var_unbiased.data(),
            &var_unbiased,
            1e-6,
        );
        let grads = batch_norm_backward(&gyt, &xt, &bn.mean, &bn.invstd, Some(&wt)).unwrap();
        let (gx, sums) = train_backward(&gy, &x, l, &mean, &invstd, Some(&w), None);
        assert_close(
            &format!("{name} grad_input"),
            grads.grad_input.data(),
            &gx,
            1e-5,
        );
        let gw: Vec<f64> = sums.iter().zip(&invstd).map(|(s, i)| s.dot * i).collect();
        let gb: Vec<f64> = sums.iter().map(|s| s.sum).collect();
        assert_close(
            &format!("{name} grad_weight"),
            grads.grad_weight.unwrap().data(),
            &gw,
            1e-5,
        );
        assert_close(
            &format!("{name} grad_bias"),
            grads.grad_bias.unwrap().data(),
            &gb,
            1e-5,
        );
        // Evaluation, with the batch statistics as running statistics.
        let rm = tensor(&[l.c], &mean);
        let rv = tensor(&[l.c], &var_unbiased);
        let ye = batch_norm_eval(&xt, &rm, &rv, Some(&wt), Some(&bt), 1e-3).unwrap();
        let (rm64, rv64) = (round(mean.clone()), round(var_unbiased.clone()));
        let y = eval_forward(&x, l, &rm64, &rv64, Some(&w), Some(&b), f64::from(1e-3f32));
        assert_close(&format!("{name} eval output"), ye.data(), &y, 1e-5);
        let ge = batch_norm_eval_backward(&gyt, &xt, &rm, &rv, Some(&wt), 1e-3).unwrap();
        let (gx, inv, sums) = eval_backward(&gy, &x, l, &rm64, &rv64, Some(&w), f64::from(1e-3f32));
        assert_close(
            &format!("{name} eval grad_input"),
            ge.grad_input.data(),
            &gx,
            1e-5,
        );
        let gw: Vec<f64> = sums.iter().zip(&inv).map(|(s, i)| s.dot * i).collect();
        assert_close(
            &format!("{name} eval grad_weight"),
            ge.grad_weight.unwrap().data(),
            &gw,
            1e-5,
        );
    }
}

#[test]
fn statistics_are_the_textbook_formulas() {
    // One channel of 4 values: mean 2.5, biased var 1.25, unbiased 5/3.
    let x = Tensor::new([2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let bn = batch_norm_train(&x, None, None, 0.75).unwrap();
    assert_eq!(bn.mean.data(), [2.5]);
    assert_eq!(bn.invstd.data(), [(1.0f64 / 2.0f64.sqrt()) as f32]);
    assert_eq!(bn.var_unbiased.data(), [(5.0f64 / 3.0) as f32]);
    let s = 1.0 / 2.0f32.sqrt();
    assert_eq!(bn.output.data(), &[-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]);
    // The smallest batch PyTorch accepts: M = 2.
    let x = Tensor::new([2, 2], vec![1.0, 5.0, 3.0, 5.0]).unwrap();
    let bn = batch_norm_train(&x, None, None, 1e-5).unwrap();
    assert_eq!(bn.mean.data(), [2.0, 5.0]);
    assert_eq!(bn.var_unbiased.data(), [2.0, 0.0]);
    // A constant channel: output 0 (not NaN), invstd 1/sqrt(eps).
    assert_eq!(bn.output.data()[1], 0.0);
    assert_eq!(
        bn.invstd.data()[1],
        (1.0 / f64::from(1e-5f32).sqrt()) as f32
    );
    // Without weight there are no parameter gradients; with one, both.
    let g = Tensor::new([2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let grads = batch_norm_backward(&g, &x, &bn.mean, &bn.invstd, None).unwrap();
    assert!(grads.grad_weight.is_none() && grads.grad_bias.is_none());
    let w = Tensor::new([2], vec![1.0, 1.0]).unwrap();
    let with_w = batch_norm_backward(&g, &x, &bn.mean, &bn.invstd, Some(&w)).unwrap();
    assert_eq!(with_w.grad_input, grads.grad_input);
    assert_eq!(with_w.grad_bias.unwrap().data(), &[4.0, 6.0]);
    let rm = Tensor::new([2], vec![0.0, 1.0]).unwrap();
    let rv = Tensor::new([2], vec![3.0, 0.0]).unwrap();
    let ge = batch_norm_eval_backward(&g, &x, &rm, &rv, None, 1.0).unwrap();
    assert_eq!(ge.grad_input.data(), &[0.5, 2.0, 1.5, 4.0]);
    assert!(ge.grad_weight.is_none() && ge.grad_bias.is_none());
    let y = batch_norm_eval(&x, &rm, &rv, None, None, 1.0).unwrap();
    assert_eq!(y.data(), &[0.5, 4.0, 1.5, 4.0]);
}

#[test]
fn bad_inputs_are_errors_naming_what_is_wrong() {
    let x = Tensor::zeros([4, 3, 2, 2]).unwrap();
    let c3 = Tensor::zeros([3]).unwrap();
    let c4 = Tensor::zeros([4]).unwrap();
    let msg = |r: Result<BatchNormTrainOutput>| r.unwrap_err().to_string();
    assert_eq!(
        msg(batch_norm_train(
            &Tensor::zeros([6]).unwrap(),
            None,
            None,
            1e-5
        )),
        "batch_norm_train: input must be [N, C], [N, C, L] or [N, C, H, W], got shape [6] (1-D)"
    );
    assert!(
        msg(batch_norm_train(
            &Tensor::zeros([1, 2, 3, 4, 5]).unwrap(),
            None,
            None,
            1e-5
        ))
        .contains("got shape [1, 2, 3, 4, 5] (5-D)")
    );
    for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
        let err = batch_norm_train(&x, None, None, eps).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("batch_norm_train: invalid eps: must be positive and finite, got {eps}")
        );
    }
    assert_eq!(
        msg(batch_norm_train(&x, Some(&c4), None, 1e-5)),
        "batch_norm_train: weight must have shape [3] (one per channel of input \
         [4, 3, 2, 2]), got [4]"
    );
    assert!(
        msg(batch_norm_train(&x, Some(&c3), Some(&c4), 1e-5)).contains("bias must have shape [3]")
    );
    assert_eq!(
        msg(batch_norm_train(
            &Tensor::zeros([1, 3]).unwrap(),
            None,
            None,
            1e-5
        )),
        "batch_norm_train: expected more than 1 value per channel when training, got input \
         [1, 3] (as PyTorch: the unbiased variance of one value is undefined)"
    );
    assert!(
        msg(batch_norm_train(
            &Tensor::zeros([1, 3, 1, 1]).unwrap(),
            None,
            None,
            1e-5
        ))
        .contains("more than 1 value per channel")
    );
    assert_eq!(
        msg(batch_norm_train(
            &Tensor::zeros([0, 3, 2, 2]).unwrap(),
            None,
            None,
            1e-5
        )),
        "batch_norm_train: input [0, 3, 2, 2] has no values per channel (N * spatial = 0): \
         the batch statistics are undefined"
    );
    assert!(
        msg(batch_norm_train(
            &Tensor::zeros([2, 3, 0]).unwrap(),
            None,
            None,
            1e-5
        ))
        .contains("no values per channel")
    );
    // Evaluation.
    let err = batch_norm_eval(&x, &c4, &c3, None, None, 1e-5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch_norm_eval: running_mean must have shape [3] (one per channel of input \
         [4, 3, 2, 2]), got [4]"
    );
    let err =
        batch_norm_eval(&x, &c3, &Tensor::zeros([3, 1]).unwrap(), None, None, 1e-5).unwrap_err();
    assert!(
        err.to_string().contains("running_var must have shape [3]"),
        "{err}"
    );
    let err = batch_norm_eval(&x, &c3, &c3, None, None, 0.0).unwrap_err();
    assert!(
        err.to_string().starts_with("batch_norm_eval: invalid eps"),
        "{err}"
    );
    // Backward.
    let g = Tensor::zeros([4, 3, 2, 2]).unwrap();
    let err = batch_norm_backward(
        &Tensor::zeros([4, 3, 4]).unwrap(),
        &x,
        &stats(&[0.0; 3]),
        &stats(&[1.0; 3]),
        None,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch_norm_backward: grad_output has shape [4, 3, 4] but the input has shape \
         [4, 3, 2, 2]"
    );
    let err = batch_norm_backward(&g, &x, &stats(&[0.0; 2]), &stats(&[1.0; 3]), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch_norm_backward: mean has 2 values but input [4, 3, 2, 2] has 3 channels"
    );
    let err = batch_norm_backward(&g, &x, &stats(&[0.0; 3]), &stats(&[1.0; 4]), None).unwrap_err();
    assert!(err.to_string().contains("invstd has 4 values"), "{err}");
    let err =
        batch_norm_backward(&g, &x, &stats(&[0.0; 3]), &stats(&[1.0; 3]), Some(&c4)).unwrap_err();
    assert!(
        err.to_string().contains("weight must have shape [3]"),
        "{err}"
    );
    // The fused ReLU's: its bias too, and the same checks as the batch norm's.
    let (m3, i3) = (stats(&[0.0; 3]), stats(&[1.0; 3]));
    let err = batch_norm_relu_backward(&g, &x, &m3, &i3, Some(&c3), Some(&c4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "batch_norm_backward: bias must have shape [3] (one per channel of input \
         [4, 3, 2, 2]), got [4]"
    );
    let err = batch_norm_relu_backward(&x, &g, &m3, &stats(&[1.0; 2]), None, None).unwrap_err();
    assert!(err.to_string().contains("invstd has 2 values"), "{err}");
    assert!(
        msg(batch_norm_train_relu(&x, Some(&c4), None, 1e-5)).contains("weight must have shape")
    );
    assert!(msg(batch_norm_train_relu(&x, None, None, 0.0)).contains("invalid eps"));
    let e = Tensor::zeros([0, 3]).unwrap();
    let err = batch_norm_backward(&e, &e, &stats(&[0.0; 3]), &stats(&[1.0; 3]), None).unwrap_err();
    assert!(err.to_string().contains("no values per channel"), "{err}");
    let err = batch_norm_eval_backward(&g, &x, &c3, &c3, None, -1.0).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("batch_norm_eval_backward: invalid eps"),
        "{err}"
    );
    let err = batch_norm_eval_backward(&x, &x, &c3, &c4, None, 1e-5).unwrap_err();
    assert!(
        err.to_string().contains("running_var must have shape [3]"),
        "{err}"
    );
    // An empty batch is fine in evaluation mode.
    let y = batch_norm_eval(&e, &c3, &c3, None, None, 1e-5).unwrap();
    assert_eq!(y.dims(), &[0, 3]);
}
