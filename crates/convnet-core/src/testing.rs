//! Shared by the kernels' unit tests: a dependency-free random generator, the f64
//! finite-difference gradient check, and a loop over the instruction sets.

/// SplitMix64: a small deterministic generator, so the tests need no dependency.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    pub(crate) fn values(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// Uniform in [-3, 3) with `|x| > 1e-3`: a step of [`H`] never crosses a kink at 0.
    pub(crate) fn away_from_zero(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                loop {
                    let v = 3.0 * self.uniform();
                    if v.abs() > 1e-3 {
                        break v;
                    }
                }
            })
            .collect()
    }

    /// `n` values at least 0.01 apart in random order, so a step of [`H`] never changes which
    /// one is a window's maximum.
    pub(crate) fn distinct(&mut self, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 - 0.5).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Finite-difference step.
pub(crate) const H: f64 = 1e-6;

/// Pass when `|numeric - analytic| <= TOL * max(1, |analytic|)`. With h = 1e-6, central
/// differences have truncation error ~h² |f'''| / 6 and rounding error ~1e-16 |loss| / h.
/// Each caller's module says why both stay far below 1e-6 for its functions; 1e-6 still
/// catches any wrong term (a missing term is O(1)).
pub(crate) const TOL: f64 = 1e-6;

/// Compares `analytic` with central differences of `loss(v) = sum(f(v) * weights)`.
pub(crate) fn check_grad(
    name: &str,
    v: &[f64],
    weights: &[f64],
    f: impl Fn(&[f64]) -> Vec<f64>,
    analytic: &[f64],
) {
    assert_eq!(v.len(), analytic.len(), "{name}: gradient length");
    assert_eq!(
        f(v).len(),
        weights.len(),
        "{name}: weights do not match the output"
    );
    let loss = |v: &[f64]| -> f64 { f(v).iter().zip(weights).map(|(y, w)| y * w).sum() };
    let mut vp = v.to_vec();
    for i in 0..v.len() {
        vp[i] = v[i] + H;
        let up = loss(&vp);
        vp[i] = v[i] - H;
        let down = loss(&vp);
        vp[i] = v[i];
        let numeric = (up - down) / (2.0 * H);
        let err = (numeric - analytic[i]).abs();
        assert!(
            err <= TOL * analytic[i].abs().max(1.0),
            "{name}: d loss / d v[{i}]: numeric {numeric} vs analytic {}",
            analytic[i]
        );
    }
}

/// `for_each_simd!(|name, s| { ... })` runs the block once per instruction set this CPU has
/// (portable always), with `s` that set's [`Simd`](crate::cpu::simd::Simd) token and `name`
/// its name. The block is compiled inside `s.vectorize`, so the `#[inline(always)]` kernels
/// it calls are the instruction set's own build.
macro_rules! for_each_simd {
    (|$name:ident, $s:ident| $body:block) => {{
        #[allow(unused_imports)]
        use $crate::cpu::simd::Simd as _;
        {
            let ($name, $s) = ("portable", $crate::cpu::simd::Portable);
            $body
        }
        #[cfg(target_arch = "x86_64")]
        {
            if let Some($s) = $crate::cpu::simd::Avx512::detect() {
                let $name = "avx512";
                $s.vectorize(
                    #[inline(always)]
                    || $body,
                );
            }
            if let Some($s) = $crate::cpu::simd::Avx2::detect() {
                let $name = "avx2";
                $s.vectorize(
                    #[inline(always)]
                    || $body,
                );
            }
        }
    }};
}

pub(crate) use for_each_simd;
