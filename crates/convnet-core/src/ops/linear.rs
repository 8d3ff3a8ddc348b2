//! Fully connected layer, forward and backward, as `torch.nn.functional.linear`.
//!
//! | | formula | shape |
//! |---|---|---|
//! | forward | `output = input · weightᵀ + bias` | `[N, in] · [in, out] → [N, out]` |
//! | `grad_input` | `grad_output · weight` | `[N, out] · [out, in] → [N, in]` |
//! | `grad_weight` | `grad_outputᵀ · input` | `[out, N] · [N, in] → [out, in]` |
//! | `grad_bias` | column sums of `grad_output` (in f64) | `[out]` |
//!
//! Every product goes to the `gemm` crate through `cpu::linalg`; transposes are strided
//! views, never copies. The GEMM itself is multi-threaded when the product is large enough
//! (`PARALLEL_MIN_MACS` multiply-adds); a narrow one (fewer than `SPLIT_ROWS_BELOW_COLS`
//! columns, which the gemm crate leaves to one thread) is split by rows of the result.
//!
//! The kernels are written once over `LinearFloat`: `f32` multiplies with the `gemm` crate,
//! `f64` (for the finite-difference tests) with a literal triple loop over the same strided
//! views.
//!
//! Unlike `F.linear`, the input must be exactly 2-D `[N, in]` (flatten leading dimensions
//! first); `N = 0` (an empty batch) and `in = 0` are allowed, as in PyTorch.

use num_traits::Float;

use rayon::prelude::*;

use crate::cpu::linalg::{self, Mat, MatMut};
use crate::error::{Error, Result};
use crate::ops::GradRequest;
use crate::tensor::Tensor;

const OP: &str = "linear";
const BACKWARD_OP: &str = "linear_backward";

/// Multiply-adds from which a GEMM is split over rayon's threads.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Products with fewer columns than this are split over threads by rows of the result (the
/// gemm crate's own split, by columns, left 128 columns to one thread).
const SPLIT_ROWS_BELOW_COLS: usize = 256;

/// The gradients [`linear_backward`] computed (`None` where not requested).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearGrads {
    /// `[N, in]`.
    pub grad_input: Option<Tensor>,
    /// `[out, in]`.
    pub grad_weight: Option<Tensor>,
    /// `[out]`.
    pub grad_bias: Option<Tensor>,
}

/// `input · weightᵀ + bias`, as `torch.nn.functional.linear`.
///
/// Shapes: input `[N, in]`, weight `[out, in]`, bias `[out]`; output `[N, out]`.
///
/// ```
/// use convnet_core::{Tensor, linear};
/// let x = Tensor::new([1, 2], vec![1.0, 2.0])?;
/// let w = Tensor::new([3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0])?;
/// let b = Tensor::new([3], vec![0.5, 0.5, 0.5])?;
/// assert_eq!(linear(&x, &w, Some(&b))?.data(), &[1.5, 2.5, 3.5]);
/// # Ok::<(), convnet_core::Error>(())
/// ```
pub fn linear(input: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let d = Dims::new(OP, input, weight)?;
    if let Some(b) = bias
        && b.dims() != [d.out_features]
    {
        return Err(Error::shape(
            OP,
            format!(
                "bias must have shape [{}] (one per output feature of weight {}), got {}",
                d.out_features,
                weight.shape(),
                b.shape()
            ),
        ));
    }
    let mut y = vec![0.0; d.batch * d.out_features];
    forward(
        d,
        input.data(),
        weight.data(),
        bias.map(Tensor::data),
        &mut y,
    );
    Ok(Tensor::from_parts(vec![d.batch, d.out_features], y))
}

/// The gradients of [`linear`] that `request` asks for, given `grad_output` `[N, out]` and
/// the forward pass's input `[N, in]` and weight `[out, in]`. `grad_bias` does not depend on
/// whether the forward pass had a bias; don't request it if it had none.
pub fn linear_backward(
    grad_output: &Tensor,
    input: &Tensor,
    weight: &Tensor,
    request: GradRequest,
) -> Result<LinearGrads> {
    let d = Dims::new(BACKWARD_OP, input, weight)?;
    if grad_output.dims() != [d.batch, d.out_features] {
        return Err(Error::shape(
            BACKWARD_OP,
            format!(
                "grad_output has shape {} but the output of input {} and weight {} is [{}, {}]",
                grad_output.shape(),
                input.shape(),
                weight.shape(),
                d.batch,
                d.out_features
            ),
        ));
    }
    let gy = grad_output.data();
    let grad_input = request.input.then(|| {
        let mut gx = vec![0.0; d.batch * d.in_features];
        input_grad(d, gy, weight.data(), &mut gx);
        Tensor::from_parts(vec![d.batch, d.in_features], gx)
    });
    let grad_weight = request.weight.then(|| {
        let mut gw = vec![0.0; d.out_features * d.in_features];
        weight_grad(d, gy, input.data(), &mut gw);
        Tensor::from_parts(vec![d.out_features, d.in_features], gw)
    });
    let grad_bias = request.bias.then(|| {
        let mut gb = vec![0.0; d.out_features];
        bias_grad(d, gy, &mut gb);
        Tensor::from_parts(vec![d.out_features], gb)
    });
    Ok(LinearGrads {
        grad_input,
        grad_weight,
        grad_bias,
    })
}

/// The sizes of one linear problem.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    in_features: usize,
    out_features: usize,
}

impl Dims {
    fn new(op: &'static str, input: &Tensor, weight: &Tensor) -> Result<Dims> {
        let [batch, in_features] = *input.dims() else {
            return Err(Error::shape(
                op,
                format!(
                    "input must be 2-D [N, in_features], got shape {} ({}-D)",
                    input.shape(),
                    input.rank()
                ),
            ));
        };
        let [out_features, w_in] = *weight.dims() else {
            return Err(Error::shape(
                op,
                format!(
                    "weight must be 2-D [out_features, in_features], got shape {} ({}-D)",
                    weight.shape(),
                    weight.rank()
                ),
            ));
        };
        if w_in != in_features {
            return Err(Error::shape(
                op,
                format!(
                    "input {} has {in_features} features but weight {} expects {w_in}",
                    input.shape(),
                    weight.shape()
                ),
            ));
        }
        Ok(Dims {
            batch,
            in_features,
            out_features,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// A strided `rows x cols` matrix over a slice: element `(r, c)` at `r * rs + c * cs`.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> View<'a, T> {
    fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        View {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    fn t(self) -> Self {
        View {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// The element types the kernels run on: `f32` (GEMM) and `f64` (finite-difference tests).
trait LinearFloat: Float + Send + Sync {
    /// `dst = lhs · rhs` (or `dst += lhs · rhs` when `accumulate`), `dst` row-major
    /// `lhs.rows x rhs.cols`.
    fn matmul(dst: &mut [Self], lhs: View<'_, Self>, rhs: View<'_, Self>, accumulate: bool);
}

impl LinearFloat for f32 {
    fn matmul(dst: &mut [f32], lhs: View<'_, f32>, rhs: View<'_, f32>, accumulate: bool) {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let threads = if m.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        if threads > 1 && n < SPLIT_ROWS_BELOW_COLS && m >= 2 * threads {
            // The gemm crate splits a product over blocks of its columns, so a narrow one
            // (a classifier's forward pass: 128 columns) ran on one thread. Rows of `dst`
            // per thread instead; each value is the same sum as in one call.
            let rows_per = m.div_ceil(threads);
            dst.par_chunks_mut(rows_per * n)
                .enumerate()
                .for_each(|(part, dst)| {
                    let (first, rows) = (part * rows_per, dst.len() / n);
                    linalg::gemm(
                        MatMut::row_major(dst, rows, n),
                        Mat::new(&lhs.data[first * lhs.rs..], rows, k, lhs.rs, lhs.cs),
                        Mat::new(rhs.data, k, n, rhs.rs, rhs.cs),
                        accumulate,
                        1,
                    );
                });
            return;
        }
        linalg::gemm(
            MatMut::row_major(dst, m, n),
            Mat::new(lhs.data, m, k, lhs.rs, lhs.cs),
            Mat::new(rhs.data, k, n, rhs.rs, rhs.cs),
            accumulate,
            threads,
        );
    }
}

impl LinearFloat for f64 {
    fn matmul(dst: &mut [f64], lhs: View<'_, f64>, rhs: View<'_, f64>, accumulate: bool) {
        let n = rhs.cols;
        for i in 0..lhs.rows {
            for j in 0..n {
                let dot: f64 = (0..lhs.cols)
                    .map(|p| lhs.data[i * lhs.rs + p * lhs.cs] * rhs.data[p * rhs.rs + j * rhs.cs])
                    .sum();
                let out = &mut dst[i * n + j];
                *out = if accumulate { *out + dot } else { dot };
            }
        }
    }
}

/// `y = x · wᵀ + b`; `y` is overwritten.
fn forward<T: LinearFloat>(d: Dims, x: &[T], w: &[T], b: Option<&[T]>, y: &mut [T]) {
    if d.out_features == 0 {
        return;
    }
    match b {
        Some(b) => {
            for row in y.chunks_exact_mut(d.out_features) {
                row.copy_from_slice(b);
            }
        }
        None => y.fill(T::zero()),
    }
    if d.in_features == 0 {
        return;
    }
    T::matmul(
        y,
        View::row_major(x, d.batch, d.in_features),
        View::row_major(w, d.out_features, d.in_features).t(),
        true,
    );
}

/// `gx = gy · w`; `gx` is overwritten.
fn input_grad<T: LinearFloat>(d: Dims, gy: &[T], w: &[T], gx: &mut [T]) {
    if d.out_features == 0 {
        gx.fill(T::zero());
        return;
    }
    T::matmul(
        gx,
        View::row_major(gy, d.batch, d.out_features),
        View::row_major(w, d.out_features, d.in_features),
        false,
    );
}

/// `gw = gyᵀ · x`; `gw` is overwritten.
fn weight_grad<T: LinearFloat>(d: Dims, gy: &[T], x: &[T], gw: &mut [T]) {
    if d.batch == 0 {
        gw.fill(T::zero());
        return;
    }
    T::matmul(
        gw,
        View::row_major(gy, d.batch, d.out_features).t(),
        View::row_major(x, d.batch, d.in_features),
        false,
    );
}

/// `gb[j] = sum over rows of gy[., j]`, accumulated in f64; `gb` is overwritten.
fn bias_grad<T: LinearFloat>(d: Dims, gy: &[T], gb: &mut [T]) {
    let mut acc = vec![0.0f64; d.out_features];
    if d.out_features > 0 {
        for row in gy.chunks_exact(d.out_features) {
            for (a, &g) in acc.iter_mut().zip(row) {
                *a += g.to_f64().unwrap_or(f64::NAN);
            }
        }
    }
    for (gb, a) in gb.iter_mut().zip(acc) {
        *gb = T::from(a).unwrap_or_else(T::nan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Finite differences (crate::testing): the loss is bilinear in (input, weight) and linear
    // in bias, so there is no truncation error; rounding < 1e-8.
    use crate::testing::{Rng, check_grad};

    fn dims(batch: usize, in_features: usize, out_features: usize) -> Dims {
        Dims {
            batch,
            in_features,
            out_features,
        }
    }

    #[test]
    fn linear_gradients_match_finite_differences() {
        for (seed, (n, i, o)) in [(1, 5, 3), (4, 7, 5), (3, 1, 2), (6, 3, 1)]
            .into_iter()
            .enumerate()
        {
            let d = dims(n, i, o);
            let mut rng = Rng(seed as u64 + 1);
            let (x, w, b) = (rng.values(n * i), rng.values(o * i), rng.values(o));
            let wts = rng.values(n * o);
            let run = |x: &[f64], w: &[f64], b: &[f64]| {
                let mut y = vec![f64::NAN; n * o];
                forward(d, x, w, Some(b), &mut y);
                y
            };
            let mut gx = vec![f64::NAN; n * i];
            let mut gw = vec![f64::NAN; o * i];
            let mut gb = vec![f64::NAN; o];
            input_grad(d, &wts, &w, &mut gx);
            weight_grad(d, &wts, &x, &mut gw);
            bias_grad(d, &wts, &mut gb);
            let name = format!("linear N={n} in={i} out={o}");
            check_grad(&format!("{name}: input"), &x, &wts, |x| run(x, &w, &b), &gx);
            check_grad(
                &format!("{name}: weight"),
                &w,
                &wts,
                |w| run(&x, w, &b),
                &gw,
            );
            check_grad(&format!("{name}: bias"), &b, &wts, |b| run(&x, &w, b), &gb);
        }
    }

    /// The f32 GEMM path (threaded for the larger shapes) against the f64 loops.
    #[test]
    fn products_split_by_rows_over_threads_give_the_bits_of_one_thread() {
        // Narrow products (the forward pass here: 128 and 40 columns) split by rows over
        // threads; the wide ones (the gradients) by the gemm crate. Every value is the same
        // on one thread and on three (the last part shorter).
        for (n, i, o) in [(128, 3136, 128), (301, 900, 40), (7, 4000, 10)] {
            let mut rng = Rng(7 + n as u64);
            let t = |dims: [usize; 2], rng: &mut Rng| {
                let v = rng
                    .values(dims[0] * dims[1])
                    .iter()
                    .map(|&v| v as f32)
                    .collect();
                Tensor::new(dims, v).unwrap()
            };
            let (x, w, gy) = (
                t([n, i], &mut rng),
                t([o, i], &mut rng),
                t([n, o], &mut rng),
            );
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let y = linear(&x, &w, None).unwrap();
                    let g = linear_backward(&gy, &x, &w, GradRequest::ALL).unwrap();
                    let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect();
                    let grads: Vec<Vec<u32>> = [g.grad_input, g.grad_weight, g.grad_bias]
                        .iter()
                        .map(|t| bits(t.as_ref().unwrap()))
                        .collect();
                    (bits(&y), grads)
                })
            };
            assert_eq!(run(1), run(3), "[{n}, {i}] -> {o}");
        }
    }

    #[test]
    fn gemm_path_matches_the_f64_loops() {
        for (seed, (n, i, o)) in [(1, 3, 2), (5, 17, 9), (128, 96, 40), (300, 70, 33)]
            .into_iter()
            .enumerate()
        {
            let mut rng = Rng(100 + seed as u64);
            let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
            let to64 = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
            let x = to32(&rng.values(n * i));
            let w = to32(&rng.values(o * i));
            let b = to32(&rng.values(o));
            let gy = to32(&rng.values(n * o));
            let xt = Tensor::new([n, i], x.clone()).unwrap();
            let wt = Tensor::new([o, i], w.clone()).unwrap();
            let bt = Tensor::new([o], b.clone()).unwrap();
            let gyt = Tensor::new([n, o], gy.clone()).unwrap();
            let y = linear(&xt, &wt, Some(&bt)).unwrap();
            let grads = linear_backward(&gyt, &xt, &wt, GradRequest::ALL).unwrap();
            let d = dims(n, i, o);
            let mut y64 = vec![0.0; n * o];
            forward(d, &to64(&x), &to64(&w), Some(&to64(&b)), &mut y64);
            let mut gx64 = vec![0.0; n * i];
            input_grad(d, &to64(&gy), &to64(&w), &mut gx64);
            let mut gw64 = vec![0.0; o * i];
            weight_grad(d, &to64(&gy), &to64(&x), &mut gw64);
            let mut gb64 = vec![0.0; o];
            bias_grad(d, &to64(&gy), &mut gb64);
            let close = |what: &str, got: &Tensor, want: &[f64]| {
                for (k, (&g, &w)) in got.data().iter().zip(want).enumerate() {
                    assert!(
                        (f64::from(g) - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{what} [{n}, {i}, {o}] at {k}: {g} vs {w}"
                    );
                }
            };
            close("output", &y, &y64);
            close("grad_input", grads.grad_input.as_ref().unwrap(), &gx64);
            close("grad_weight", grads.grad_weight.as_ref().unwrap(), &gw64);
            close("grad_bias", grads.grad_bias.as_ref().unwrap(), &gb64);
        }
    }

    #[test]
    fn hand_checked_example_and_requested_gradients_only() {
        let x = Tensor::new([2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let w = Tensor::new([1, 2], vec![0.5, -1.0]).unwrap();
        let y = linear(&x, &w, None).unwrap();
        assert_eq!(y.dims(), &[2, 1]);
        assert_eq!(y.data(), &[-1.5, -2.5]);
        let g = Tensor::new([2, 1], vec![1.0, 2.0]).unwrap();
        let req = GradRequest {
            input: false,
            weight: true,
            bias: true,
        };
        let grads = linear_backward(&g, &x, &w, req).unwrap();
        assert!(grads.grad_input.is_none());
        assert_eq!(grads.grad_weight.unwrap().data(), &[7.0, 10.0]);
        assert_eq!(grads.grad_bias.unwrap().data(), &[3.0]);
    }

    #[test]
    fn empty_batch_and_zero_features_follow_pytorch() {
        // N = 0: an empty output; grad_weight and grad_bias are zeros.
        let x = Tensor::zeros([0, 3]).unwrap();
        let w = Tensor::full([2, 3], 1.0).unwrap();
        let b = Tensor::full([2], 1.0).unwrap();
        assert_eq!(linear(&x, &w, Some(&b)).unwrap().dims(), &[0, 2]);
        let g = Tensor::zeros([0, 2]).unwrap();
        let grads = linear_backward(&g, &x, &w, GradRequest::ALL).unwrap();
        assert_eq!(grads.grad_weight.unwrap().data(), &[0.0; 6]);
        assert_eq!(grads.grad_bias.unwrap().data(), &[0.0; 2]);
        // in = 0: the output is the bias.
        let x = Tensor::zeros([2, 0]).unwrap();
        let w = Tensor::zeros([2, 0]).unwrap();
        let b = Tensor::new([2], vec![1.0, -1.0]).unwrap();
        assert_eq!(
            linear(&x, &w, Some(&b)).unwrap().data(),
            &[1.0, -1.0, 1.0, -1.0]
        );
        // out = 0.
        let x = Tensor::full([2, 3], 1.0).unwrap();
        let w = Tensor::zeros([0, 3]).unwrap();
        assert_eq!(linear(&x, &w, None).unwrap().dims(), &[2, 0]);
        let g = Tensor::zeros([2, 0]).unwrap();
        let grads = linear_backward(&g, &x, &w, GradRequest::ALL).unwrap();
        assert_eq!(grads.grad_input.unwrap().data(), &[0.0; 6]);
    }

    #[test]
    fn bad_shapes_are_errors_naming_the_shapes() {
        let x = Tensor::zeros([4, 3]).unwrap();
        let w = Tensor::zeros([5, 3]).unwrap();
        let err = linear(&Tensor::zeros([4, 3, 1]).unwrap(), &w, None).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "linear: input must be 2-D [N, in_features], got shape [4, 3, 1] (3-D)"
        );
        let err = linear(&x, &Tensor::zeros([15]).unwrap(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linear: weight must be 2-D [out_features, in_features], got shape [15] (1-D)"
        );
        let err = linear(&x, &Tensor::zeros([5, 4]).unwrap(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linear: input [4, 3] has 3 features but weight [5, 4] expects 4"
        );
        let err = linear(&x, &w, Some(&Tensor::zeros([3]).unwrap())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linear: bias must have shape [5] (one per output feature of weight [5, 3]), got [3]"
        );
        let err =
            linear_backward(&Tensor::zeros([4, 3]).unwrap(), &x, &w, GradRequest::ALL).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linear_backward: grad_output has shape [4, 3] but the output of input [4, 3] and \
             weight [5, 3] is [4, 5]"
        );
        let err =
            linear_backward(&x, &x, &Tensor::zeros([5, 2]).unwrap(), GradRequest::ALL).unwrap_err();
        assert!(
            err.to_string().starts_with("linear_backward: input [4, 3]"),
            "{err}"
        );
    }
}
