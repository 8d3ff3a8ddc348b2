//! Vectorised reductions shared by the kernels.

use crate::simd::{Simd, multiversion};

multiversion!(pub(crate) fn sum(v: &[f32]) -> f32 => sum_impl);

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

#[cfg(test)]
mod tests {
    #[test]
    fn sums_any_length() {
        for n in [0, 1, 7, 16, 63, 64, 65, 1000] {
            let v: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            assert_eq!(super::sum(&v), v.iter().sum::<f32>(), "n = {n}");
        }
    }
}
