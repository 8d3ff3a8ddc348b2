//! Vectorised reductions shared by the kernels.

use crate::cpu::simd::{Simd, multiversion};

multiversion!(pub(crate) fn sum(v: &[f32]) -> f32 => sum_impl);
multiversion!(pub(crate) fn sum_sq_dev(v: &[f32], mean: f32) -> f32 => sum_sq_dev_impl);
multiversion!(
    pub(crate) fn sum_and_centered_dot(g: &[f32], x: &[f32], mean: f32) -> (f32, f32)
        => sum_and_centered_dot_impl
);
multiversion!(
    pub(crate) fn sum_and_centered_dot_relu(
        g: &[f32],
        x: &[f32],
        mean: f32,
        a: f32,
        b: f32,
    ) -> (f32, f32) => sum_and_centered_dot_relu_impl
);

/// The sum of `v`, in f32 vector lanes (four independent accumulators), reduced at the end.
#[inline(always)]
fn sum_impl<S: Simd>(s: S, v: &[f32]) -> f32 {
    const ACCS: usize = 4;
    let mut acc = [s.splat(0.0); ACCS];
    let mut chunks = v.chunks_exact(S::LANES * ACCS);
    for chunk in &mut chunks {
        for (a, part) in acc.iter_mut().zip(chunk.chunks_exact(S::LANES)) {
            *a = s.add(*a, s.load(part));
        }
    }
    let mut rest = chunks.remainder();
    while !rest.is_empty() {
        let n = rest.len().min(S::LANES);
        acc[0] = s.add(acc[0], s.load_partial(rest, n));
        rest = &rest[n..];
    }
    let total = acc.iter().fold(s.splat(0.0), |a, &b| s.add(a, b));
    s.reduce_sum(total)
}

/// `sum((v - mean)^2)`: the centred sum of squares (batch-norm variance), in f32 vector lanes
/// (four independent accumulators). `v - mean` is rounded to f32 first, then squared and
/// added with one fused multiply-add.
#[inline(always)]
fn sum_sq_dev_impl<S: Simd>(s: S, v: &[f32], mean: f32) -> f32 {
    const ACCS: usize = 4;
    let neg_mean = s.splat(-mean);
    let mut acc = [s.splat(0.0); ACCS];
    let mut chunks = v.chunks_exact(S::LANES * ACCS);
    for chunk in &mut chunks {
        for (a, part) in acc.iter_mut().zip(chunk.chunks_exact(S::LANES)) {
            let d = s.add(s.load(part), neg_mean);
            *a = s.mul_add(d, d, *a);
        }
    }
    let mut rest = chunks.remainder();
    while !rest.is_empty() {
        let n = rest.len().min(S::LANES);
        // Masked-off lanes load 0 and would add mean^2: mask the difference instead.
        let mut d = [0.0f32; crate::cpu::simd::MAX_LANES];
        for (d, &x) in d.iter_mut().zip(&rest[..n]) {
            *d = x - mean;
        }
        let d = s.load_partial(&d, n);
        acc[0] = s.mul_add(d, d, acc[0]);
        rest = &rest[n..];
    }
    let total = acc.iter().fold(s.splat(0.0), |a, &b| s.add(a, b));
    s.reduce_sum(total)
}

/// `(sum(g), sum(g * (x - mean)))` over two slices of the same length (batch-norm backward:
/// the gradient's sum and its dot product with the centred input), in f32 vector lanes.
#[inline(always)]
fn sum_and_centered_dot_impl<S: Simd>(s: S, g: &[f32], x: &[f32], mean: f32) -> (f32, f32) {
    centred_sums(s, g, x, mean, None)
}

/// [`sum_and_centered_dot_impl`] of the gradient through a ReLU applied to
/// `y = (x - mean) * a + b` (batch norm's output, recomputed as its forward pass computed it):
/// `g` counts where `y > 0` (or NaN), as ReLU's backward `if y <= 0 { 0 } else { g }` passes
/// it. The same sums, in the same order, as of that masked gradient.
#[inline(always)]
fn sum_and_centered_dot_relu_impl<S: Simd>(
    s: S,
    g: &[f32],
    x: &[f32],
    mean: f32,
    a: f32,
    b: f32,
) -> (f32, f32) {
    centred_sums(s, g, x, mean, Some((a, b)))
}

#[inline(always)]
fn centred_sums<S: Simd>(
    s: S,
    g: &[f32],
    x: &[f32],
    mean: f32,
    relu: Option<(f32, f32)>,
) -> (f32, f32) {
    const ACCS: usize = 2;
    assert_eq!(g.len(), x.len(), "sum_and_centered_dot: lengths differ");
    let neg_mean = s.splat(-mean);
    let zero = s.splat(0.0);
    let relu = relu.map(|(a, b)| (s.splat(a), s.splat(b)));
    let mut sum = [zero; ACCS];
    let mut dot = [zero; ACCS];
    let step = S::LANES * ACCS;
    let whole = g.len() / step * step;
    for (gc, xc) in g[..whole]
        .chunks_exact(step)
        .zip(x[..whole].chunks_exact(step))
    {
        for i in 0..ACCS {
            let d = s.add(s.load(&xc[i * S::LANES..]), neg_mean);
            let gv = through_relu(s, s.load(&gc[i * S::LANES..]), d, relu);
            sum[i] = s.add(sum[i], gv);
            dot[i] = s.mul_add(gv, d, dot[i]);
        }
    }
    let (mut g, mut x) = (&g[whole..], &x[whole..]);
    while !g.is_empty() {
        let n = g.len().min(S::LANES);
        // Masked-off lanes of g load 0 (and stay 0 through the mask), so their (x - mean)
        // does not matter.
        let d = s.add(s.load_partial(x, n), neg_mean);
        let gv = through_relu(s, s.load_partial(g, n), d, relu);
        sum[0] = s.add(sum[0], gv);
        dot[0] = s.mul_add(gv, d, dot[0]);
        g = &g[n..];
        x = &x[n..];
    }
    let fold = |v: [S::V; ACCS]| s.reduce_sum(v.iter().fold(s.splat(0.0), |a, &b| s.add(a, b)));
    (fold(sum), fold(dot))
}

/// The gradient `g` that reaches the batch norm at centred input `d`: through the ReLU's mask
/// (`relu`: its `(a, b)`) if there is one.
#[inline(always)]
fn through_relu<S: Simd>(s: S, g: S::V, d: S::V, relu: Option<(S::V, S::V)>) -> S::V {
    match relu {
        Some((a, b)) => s.zero_where_le(s.add(s.mul(d, a), b), s.splat(0.0), g),
        None => g,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::for_each_simd;

    #[test]
    fn centred_sums_match_f64_for_any_length_and_instruction_set() {
        for_each_simd!(|name, simd| {
            for n in [0, 1, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 1000] {
                let x: Vec<f32> = (0..n)
                    .map(|i| ((i * 37) % 11) as f32 * 0.25 - 1.0)
                    .collect();
                let g: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5).collect();
                let mean = 0.375f32;
                let want_sq: f64 = x.iter().map(|&v| (f64::from(v) - 0.375).powi(2)).sum();
                let got = f64::from(sum_sq_dev_impl(simd, &x, mean));
                assert!(
                    (got - want_sq).abs() <= 1e-5 * want_sq.max(1.0),
                    "{name} n = {n}"
                );
                let want_sum: f64 = g.iter().map(|&v| f64::from(v)).sum();
                let want_dot: f64 = g
                    .iter()
                    .zip(&x)
                    .map(|(&g, &x)| f64::from(g) * (f64::from(x) - 0.375))
                    .sum();
                let (s, d) = sum_and_centered_dot_impl(simd, &g, &x, mean);
                assert!(
                    (f64::from(s) - want_sum).abs() <= 1e-5 * want_sum.abs().max(1.0),
                    "{name} n = {n}"
                );
                assert!(
                    (f64::from(d) - want_dot).abs() <= 1e-5 * want_dot.abs().max(1.0),
                    "{name} n = {n}"
                );
            }
        });
    }

    #[test]
    fn relu_sums_are_the_sums_of_the_masked_gradient_to_the_bit() {
        for_each_simd!(|name, simd| {
            for n in [0, 1, 7, 8, 15, 16, 17, 31, 33, 64, 65, 1000] {
                // y = (x - mean) * a + b crosses zero, lands on it exactly (x = 0.5: y = 0)
                // and, for one length, is NaN where x is (the gradient passes).
                let x: Vec<f32> = (0..n)
                    .map(|i| match i % 13 {
                        5 => 0.5,
                        11 if n == 17 => f32::NAN,
                        k => k as f32 * 0.17 - 1.0,
                    })
                    .collect();
                let g: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.5 - 1.5).collect();
                let (mean, a, b) = (0.25f32, 2.0f32, -0.5f32);
                let masked: Vec<f32> = g
                    .iter()
                    .zip(&x)
                    .map(|(&g, &x)| if (x - mean) * a + b <= 0.0 { 0.0 } else { g })
                    .collect();
                let want = sum_and_centered_dot_impl(simd, &masked, &x, mean);
                let got = sum_and_centered_dot_relu_impl(simd, &g, &x, mean, a, b);
                assert_eq!(
                    (got.0.to_bits(), got.1.to_bits()),
                    (want.0.to_bits(), want.1.to_bits()),
                    "{name} n = {n}"
                );
            }
        });
    }

    #[test]
    fn sums_any_length() {
        for n in [0, 1, 7, 16, 63, 64, 65, 1000] {
            let v: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            assert_eq!(super::sum(&v), v.iter().sum::<f32>(), "n = {n}");
        }
    }
}
