//! Run-time choice of instruction set for hand-vectorised kernels.
//!
//! A kernel is written once, generic over `Simd`: a zero-sized token whose methods are vector
//! operations on real vector registers (`__m512`, `__m256`, or a portable fallback). A token
//! can only be obtained from `detect()`, after `is_x86_feature_detected!` confirmed the CPU has
//! its instructions, which is what makes its methods sound. `Simd::vectorize` runs code
//! inside a `#[target_feature]` function for the token's instruction set, and
//! `multiversion!` picks the best token at run time and vectorizes a kernel with it; every
//! other CPU runs the portable build. Nothing depends on compile-time `target-cpu`.
//!
//! [`set_max_simd_level`] (or the `CONVNET_SIMD` environment variable) caps the level, so
//! tests and benchmarks can run the other builds on a CPU that has AVX-512.

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction sets the hand-vectorised kernels are built for, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// Plain Rust, any CPU.
    Portable = 0,
    /// x86-64 AVX2 with FMA.
    Avx2 = 1,
    /// x86-64 AVX-512F.
    Avx512 = 2,
}

const UNSET: u8 = u8::MAX;
static MAX_LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// Use at most `level` from now on (for tests and benchmarks of the other builds). The CPU's
/// own support still applies: asking for AVX-512 on a CPU without it gives AVX2 or portable.
pub fn set_max_simd_level(level: SimdLevel) {
    MAX_LEVEL.store(level as u8, Ordering::SeqCst);
    LEVEL.store(UNSET, Ordering::SeqCst);
}

/// [`simd_level`] as found (`UNSET`: not yet, or the cap changed since).
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

/// The instruction set the kernels use, as a [`SimdLevel`] number: one load once found. A
/// kernel's dispatch asks on every call, and the batch-norm and pooling kernels are called
/// per plane (100K+ calls in a training step of the reference model), so the CPU's features
/// and the cap are checked once, not each time.
#[inline(always)]
fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        UNSET => find_level(),
        v => v,
    }
}

#[cold]
fn find_level() -> u8 {
    loop {
        // The cap as stored (set from the environment first if it was not yet).
        max_simd_level();
        let raw = MAX_LEVEL.load(Ordering::SeqCst);
        let cap = match raw {
            0 => SimdLevel::Portable,
            1 => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        #[cfg(target_arch = "x86_64")]
        let found = if cap >= SimdLevel::Avx512
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            SimdLevel::Avx512
        } else if cap >= SimdLevel::Avx2
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            SimdLevel::Avx2
        } else {
            SimdLevel::Portable
        };
        #[cfg(not(target_arch = "x86_64"))]
        let found = {
            let _ = cap;
            SimdLevel::Portable
        };
        LEVEL.store(found as u8, Ordering::SeqCst);
        // A cap set meanwhile (whose reset this store may have undone): find it again.
        if MAX_LEVEL.load(Ordering::SeqCst) == raw {
            return found as u8;
        }
    }
}

/// The cap set by [`set_max_simd_level`], else by the `CONVNET_SIMD` environment variable
/// (`portable`, `avx2` or `avx512`), else none.
pub fn max_simd_level() -> SimdLevel {
    let mut v = MAX_LEVEL.load(Ordering::Relaxed);
    if v == UNSET {
        let level = match std::env::var("CONVNET_SIMD").as_deref() {
            Ok("portable") => SimdLevel::Portable,
            Ok("avx2") => SimdLevel::Avx2,
            _ => SimdLevel::Avx512,
        };
        v = level as u8;
        // Only the first reader decides; a concurrent `set_max_simd_level` wins.
        let _ = MAX_LEVEL.compare_exchange(UNSET, v, Ordering::Relaxed, Ordering::Relaxed);
        v = MAX_LEVEL.load(Ordering::Relaxed);
    }
    match v {
        0 => SimdLevel::Portable,
        1 => SimdLevel::Avx2,
        _ => SimdLevel::Avx512,
    }
}

/// The instruction set the kernels use on this CPU under the current cap.
pub fn simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if Avx512::detect().is_some() {
            return SimdLevel::Avx512;
        }
        if Avx2::detect().is_some() {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Portable
}

/// Vector operations on `LANES` packed `f32`.
pub(crate) trait Simd: Copy + Send + Sync {
    const LANES: usize;
    type V: Copy;
    /// Run `f` compiled for this instruction set. `f` must be an `#[inline(always)]` closure:
    /// it is inlined into a `#[target_feature]` function, so the vector operations it calls
    /// inline as single instructions. (Closures do not inherit the target features of the
    /// function they are written in, e.g. rayon tasks inside a multiversioned kernel.)
    fn vectorize<R>(self, f: impl FnOnce() -> R) -> R;
    fn splat(self, v: f32) -> Self::V;
    /// The first `LANES` values of `s` (panics if `s` is shorter: a caller bug).
    fn load(self, s: &[f32]) -> Self::V;
    /// Write `v` to the first `LANES` values of `s` (panics if `s` is shorter).
    fn store(self, s: &mut [f32], v: Self::V);
    /// `LANES` values from `ptr`.
    ///
    /// # Safety
    /// `ptr .. ptr + LANES` must be readable.
    unsafe fn load_ptr(self, ptr: *const f32) -> Self::V;
    /// The first `n` values of `s` (`n <= LANES`, `n <= s.len()`), zeros in the other lanes;
    /// nothing past `s[n - 1]` is read.
    fn load_partial(self, s: &[f32], n: usize) -> Self::V;
    /// Write the first `n` lanes of `v` to `s` (`n <= LANES`, `n <= s.len()`); nothing past
    /// `s[n - 1]` is written.
    fn store_partial(self, s: &mut [f32], v: Self::V, n: usize);
    /// Write `v` to `ptr .. ptr + LANES`, which may be uninitialised.
    ///
    /// # Safety
    /// `ptr .. ptr + LANES` must be writable.
    unsafe fn store_ptr(self, ptr: *mut f32, v: Self::V);
    /// Write the first `n` lanes of `v` (`n <= LANES`) to `ptr .. ptr + n`, which may be
    /// uninitialised; nothing past them is written.
    ///
    /// # Safety
    /// `ptr .. ptr + n` must be writable.
    unsafe fn store_partial_ptr(self, ptr: *mut f32, v: Self::V, n: usize);
    /// `a * b + c`, fused where the instruction set has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a * b`.
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// The even and the odd elements of `a` then `b` (the `2 * LANES` values `a[0..]`,
    /// `b[0..]` in order), each as one vector.
    fn deinterleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    /// `a[0], b[0], a[1], b[1], ...` as two vectors (the inverse of `deinterleave`).
    fn interleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V);
    fn reduce_sum(self, v: Self::V) -> f32;
    /// One step of PyTorch's max-pool scan, lane by lane and without branches: `(v, tap)`
    /// where `v > best || v.is_nan()`, else `(best, best_tap)`.
    fn take_max(
        self,
        best: Self::V,
        best_tap: Self::V,
        v: Self::V,
        tap: Self::V,
    ) -> (Self::V, Self::V);
    /// `v` where `a == b`, else `+0.0`, lane by lane.
    fn select_eq(self, a: Self::V, b: Self::V, v: Self::V) -> Self::V;
    /// `+0.0` where `a <= b`, else `v` (also where either is NaN), lane by lane: ReLU's
    /// backward, `if y <= 0 { 0 } else { g }`.
    fn zero_where_le(self, a: Self::V, b: Self::V, v: Self::V) -> Self::V;
    /// Transposes the `LANES x LANES` block `m[..LANES]` in place: lane `j` of `m[i]` moves
    /// to lane `i` of `m[j]`. (Entries from `LANES` on are left alone.) In registers:
    /// log2(LANES) rounds of interleaving row `i` with row `i + LANES / 2`.
    #[inline(always)]
    fn transpose(self, m: &mut [Self::V; MAX_LANES]) {
        let lanes = Self::LANES;
        let mut step = 1;
        while step < lanes {
            let mut next = *m;
            for i in 0..lanes / 2 {
                let (a, b) = self.interleave(m[i], m[i + lanes / 2]);
                next[2 * i] = a;
                next[2 * i + 1] = b;
            }
            *m = next;
            step *= 2;
        }
    }
}

/// The portable fallback: eight lanes as an array, left to the compiler.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl Simd for Portable {
    const LANES: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
        f()
    }
    #[inline(always)]
    fn splat(self, v: f32) -> Self::V {
        [v; 8]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> Self::V {
        s[..8].try_into().expect("8 lanes")
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], v: Self::V) {
        s[..8].copy_from_slice(&v);
    }
    #[inline(always)]
    unsafe fn load_ptr(self, ptr: *const f32) -> Self::V {
        // SAFETY: 8 readable values (caller's contract).
        unsafe { std::ptr::read_unaligned(ptr as *const [f32; 8]) }
    }
    #[inline(always)]
    fn load_partial(self, s: &[f32], n: usize) -> Self::V {
        let mut v = [0.0; 8];
        v[..n].copy_from_slice(&s[..n]);
        v
    }
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], v: Self::V, n: usize) {
        s[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    unsafe fn store_ptr(self, ptr: *mut f32, v: Self::V) {
        // SAFETY: 8 writable values (caller's contract).
        unsafe { std::ptr::write_unaligned(ptr as *mut [f32; 8], v) }
    }
    #[inline(always)]
    unsafe fn store_partial_ptr(self, ptr: *mut f32, v: Self::V, n: usize) {
        assert!(n <= 8);
        // SAFETY: `n` writable values (caller's contract), `n <= 8` readable in `v`.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), ptr, n) }
    }
    #[inline(always)]
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    fn add(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    fn sub(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] - b[l])
    }
    #[inline(always)]
    fn mul(self, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    fn deinterleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V) {
        let at = |i: usize| if i < 8 { a[i] } else { b[i - 8] };
        (
            std::array::from_fn(|l| at(2 * l)),
            std::array::from_fn(|l| at(2 * l + 1)),
        )
    }
    #[inline(always)]
    fn interleave(self, a: Self::V, b: Self::V) -> (Self::V, Self::V) {
        let at = |i: usize| {
            if i.is_multiple_of(2) {
                a[i / 2]
            } else {
                b[i / 2]
            }
        };
        (std::array::from_fn(at), std::array::from_fn(|l| at(8 + l)))
    }
    #[inline(always)]
    fn reduce_sum(self, v: Self::V) -> f32 {
        v.iter().sum()
    }
    #[inline(always)]
    fn take_max(
        self,
        best: Self::V,
        best_tap: Self::V,
        v: Self::V,
        tap: Self::V,
    ) -> (Self::V, Self::V) {
        let take: [bool; 8] = std::array::from_fn(|l| v[l] > best[l] || v[l].is_nan());
        (
            std::array::from_fn(|l| if take[l] { v[l] } else { best[l] }),
            std::array::from_fn(|l| if take[l] { tap[l] } else { best_tap[l] }),
        )
    }
    #[inline(always)]
    fn select_eq(self, a: Self::V, b: Self::V, v: Self::V) -> Self::V {
        std::array::from_fn(|l| if a[l] == b[l] { v[l] } else { 0.0 })
    }
    #[inline(always)]
    fn zero_where_le(self, a: Self::V, b: Self::V, v: Self::V) -> Self::V {
        std::array::from_fn(|l| if a[l] <= b[l] { 0.0 } else { v[l] })
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Simd;

    /// AVX-512F: 16 lanes. Only made by [`Avx512::detect`].
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(());

    impl Avx512 {
        /// A token if the CPU has AVX-512F, AVX2 and FMA and the cap allows AVX-512 (what
        /// `find_level` checked).
        #[inline(always)]
        pub(crate) fn detect() -> Option<Self> {
            (super::level() >= super::SimdLevel::Avx512 as u8).then_some(Avx512(()))
        }
    }

    // SAFETY (every `unsafe` block below): an `Avx512` exists only if the CPU has AVX-512F
    // (checked in `detect`), and loads/stores are bounds-checked against the slice first.
    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        #[inline(always)]
        fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[inline]
            fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            unsafe { with_avx512(f) }
        }
        #[inline(always)]
        fn splat(self, v: f32) -> __m512 {
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m512 {
            assert!(s.len() >= 16);
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, s: &mut [f32], v: __m512) {
            assert!(s.len() >= 16);
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        unsafe fn load_ptr(self, ptr: *const f32) -> __m512 {
            // SAFETY: 16 readable values (caller's contract), AVX-512F present.
            unsafe { _mm512_loadu_ps(ptr) }
        }
        #[inline(always)]
        fn load_partial(self, s: &[f32], n: usize) -> __m512 {
            assert!(n <= 16 && n <= s.len());
            let mask = ((1u32 << n) - 1) as u16;
            // Masked-off lanes are not read (and cannot fault).
            unsafe { _mm512_maskz_loadu_ps(mask, s.as_ptr()) }
        }
        #[inline(always)]
        fn store_partial(self, s: &mut [f32], v: __m512, n: usize) {
            assert!(n <= 16 && n <= s.len());
            let mask = ((1u32 << n) - 1) as u16;
            unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), mask, v) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, ptr: *mut f32, v: __m512) {
            // SAFETY: 16 writable values (caller's contract), AVX-512F present.
            unsafe { _mm512_storeu_ps(ptr, v) }
        }
        #[inline(always)]
        unsafe fn store_partial_ptr(self, ptr: *mut f32, v: __m512, n: usize) {
            assert!(n <= 16);
            let mask = ((1u32 << n) - 1) as u16;
            // SAFETY: `n` writable values (caller's contract); masked-off lanes are not written.
            unsafe { _mm512_mask_storeu_ps(ptr, mask, v) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m512, b: __m512) -> __m512 {
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn deinterleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
            unsafe {
                let even =
                    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                let odd =
                    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
                (
                    _mm512_permutex2var_ps(a, even, b),
                    _mm512_permutex2var_ps(a, odd, b),
                )
            }
        }
        #[inline(always)]
        fn interleave(self, a: __m512, b: __m512) -> (__m512, __m512) {
            unsafe {
                let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                let hi =
                    _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
                (
                    _mm512_permutex2var_ps(a, lo, b),
                    _mm512_permutex2var_ps(a, hi, b),
                )
            }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m512) -> f32 {
            unsafe { _mm512_reduce_add_ps(v) }
        }
        #[inline(always)]
        fn take_max(
            self,
            best: __m512,
            best_tap: __m512,
            v: __m512,
            tap: __m512,
        ) -> (__m512, __m512) {
            unsafe {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                (
                    _mm512_mask_blend_ps(take, best, v),
                    _mm512_mask_blend_ps(take, best_tap, tap),
                )
            }
        }
        #[inline(always)]
        fn select_eq(self, a: __m512, b: __m512, v: __m512) -> __m512 {
            unsafe { _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b), v) }
        }
        #[inline(always)]
        fn zero_where_le(self, a: __m512, b: __m512, v: __m512) -> __m512 {
            // A whole load of `v`, then the select (see `opaque`).
            let v = unsafe { opaque(v) };
            unsafe { _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a, b), v) }
        }
    }

    /// `v`, through an empty `asm!` the compiler cannot see into: a select of a value just
    /// loaded is otherwise folded into a masked load, and on memory out of cache masked loads
    /// stall (AMD Zen 5: the ReLU-masked batch-norm gradient sums, whose every load of the
    /// gradient became one, took 1.21-1.33x the unmasked sums' time; 1.09-1.21x with this).
    ///
    /// # Safety
    /// The CPU must have AVX-512F (callers hold an [`Avx512`]).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn opaque(mut v: __m512) -> __m512 {
        // SAFETY: the assembly is empty; it only names `v`'s register.
        unsafe {
            std::arch::asm!(
                "/* {v} */",
                v = inout(zmm_reg) v,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        v
    }

    /// Lanes `0..n` set (all bits), for AVX2's masked loads and stores.
    #[inline(always)]
    fn lane_mask(n: usize) -> __m256i {
        // SAFETY: plain AVX integer operations; callers run with AVX2 present.
        unsafe {
            let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), iota)
        }
    }

    /// AVX2 with FMA: 8 lanes. Only made by [`Avx2::detect`].
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        /// A token if the CPU has AVX2 and FMA and the cap allows AVX2 (what `find_level`
        /// checked; a CPU with AVX-512 passed these checks too).
        #[inline(always)]
        pub(crate) fn detect() -> Option<Self> {
            (super::level() >= super::SimdLevel::Avx2 as u8).then_some(Avx2(()))
        }
    }

    // SAFETY (every `unsafe` block below): an `Avx2` exists only if the CPU has AVX2 and FMA
    // (checked in `detect`), and loads/stores are bounds-checked against the slice first.
    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        #[inline(always)]
        fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
            #[target_feature(enable = "avx2,fma")]
            #[inline]
            fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            unsafe { with_avx2(f) }
        }
        #[inline(always)]
        fn splat(self, v: f32) -> __m256 {
            unsafe { _mm256_set1_ps(v) }
        }
        #[inline(always)]
        fn load(self, s: &[f32]) -> __m256 {
            assert!(s.len() >= 8);
            unsafe { _mm256_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn store(self, s: &mut [f32], v: __m256) {
            assert!(s.len() >= 8);
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        unsafe fn load_ptr(self, ptr: *const f32) -> __m256 {
            // SAFETY: 8 readable values (caller's contract), AVX present.
            unsafe { _mm256_loadu_ps(ptr) }
        }
        #[inline(always)]
        fn load_partial(self, s: &[f32], n: usize) -> __m256 {
            assert!(n <= 8 && n <= s.len());
            // Masked-off lanes are not read (and cannot fault).
            unsafe { _mm256_maskload_ps(s.as_ptr(), lane_mask(n)) }
        }
        #[inline(always)]
        fn store_partial(self, s: &mut [f32], v: __m256, n: usize) {
            assert!(n <= 8 && n <= s.len());
            unsafe { _mm256_maskstore_ps(s.as_mut_ptr(), lane_mask(n), v) }
        }
        #[inline(always)]
        unsafe fn store_ptr(self, ptr: *mut f32, v: __m256) {
            // SAFETY: 8 writable values (caller's contract), AVX present.
            unsafe { _mm256_storeu_ps(ptr, v) }
        }
        #[inline(always)]
        unsafe fn store_partial_ptr(self, ptr: *mut f32, v: __m256, n: usize) {
            assert!(n <= 8);
            // SAFETY: `n` writable values (caller's contract); masked-off lanes are not written.
            unsafe { _mm256_maskstore_ps(ptr, lane_mask(n), v) }
        }
        #[inline(always)]
        fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn add(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_add_ps(a, b) }
        }
        #[inline(always)]
        fn sub(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_sub_ps(a, b) }
        }
        #[inline(always)]
        fn mul(self, a: __m256, b: __m256) -> __m256 {
            unsafe { _mm256_mul_ps(a, b) }
        }
        #[inline(always)]
        fn deinterleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
            unsafe {
                // a0 a2 b0 b2 | a4 a6 b4 b6, then the 64-bit pairs in the order 0, 2, 1, 3.
                let even = _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0b10_00_10_00));
                let odd = _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0b11_01_11_01));
                (
                    _mm256_castpd_ps(_mm256_permute4x64_pd(even, 0b11_01_10_00)),
                    _mm256_castpd_ps(_mm256_permute4x64_pd(odd, 0b11_01_10_00)),
                )
            }
        }
        #[inline(always)]
        fn interleave(self, a: __m256, b: __m256) -> (__m256, __m256) {
            unsafe {
                // a0 b0 a1 b1 | a4 b4 a5 b5 and a2 b2 a3 b3 | a6 b6 a7 b7, halves rejoined.
                let lo = _mm256_unpacklo_ps(a, b);
                let hi = _mm256_unpackhi_ps(a, b);
                (
                    _mm256_permute2f128_ps(lo, hi, 0x20),
                    _mm256_permute2f128_ps(lo, hi, 0x31),
                )
            }
        }
        #[inline(always)]
        fn reduce_sum(self, v: __m256) -> f32 {
            unsafe {
                let hi = _mm256_extractf128_ps(v, 1);
                let s = _mm_add_ps(_mm256_castps256_ps128(v), hi);
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                _mm_cvtss_f32(s)
            }
        }
        #[inline(always)]
        fn take_max(
            self,
            best: __m256,
            best_tap: __m256,
            v: __m256,
            tap: __m256,
        ) -> (__m256, __m256) {
            unsafe {
                let take = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                );
                (
                    _mm256_blendv_ps(best, v, take),
                    _mm256_blendv_ps(best_tap, tap, take),
                )
            }
        }
        #[inline(always)]
        fn select_eq(self, a: __m256, b: __m256, v: __m256) -> __m256 {
            unsafe { _mm256_and_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, b), v) }
        }
        #[inline(always)]
        fn zero_where_le(self, a: __m256, b: __m256, v: __m256) -> __m256 {
            unsafe { _mm256_and_ps(_mm256_cmp_ps::<_CMP_NLE_UQ>(a, b), v) }
        }
    }
}

/// The widest vector any instruction set here uses; buffers padded to whole vectors round up
/// to this.
pub(crate) const MAX_LANES: usize = 16;

/// `multiversion!(vis fn name(args) -> Ret => generic_impl);` defines `name`, which calls
/// `generic_impl(simd, args)` compiled for the best instruction set found at run time.
/// `generic_impl` must be `#[inline(always)]`.
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:ident) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[allow(unused_imports)]
            use $crate::cpu::simd::Simd as _;
            #[cfg(target_arch = "x86_64")]
            {
                if let Some(s) = $crate::cpu::simd::Avx512::detect() {
                    return s.vectorize(#[inline(always)] || $imp(s, $($arg),*));
                }
                if let Some(s) = $crate::cpu::simd::Avx2::detect() {
                    return s.vectorize(#[inline(always)] || $imp(s, $($arg),*));
                }
            }
            $imp($crate::cpu::simd::Portable, $($arg),*)
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise<S: Simd>(s: S) {
        let n = S::LANES;
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| 2.0 + i as f32).collect();
        let c = s.mul_add(s.load(&a), s.load(&b), s.splat(1.0));
        let mut out = vec![0.0; n];
        s.store(&mut out, s.sub(s.add(c, s.splat(1.0)), s.splat(0.5)));
        for (i, v) in out.iter().enumerate() {
            assert_eq!(*v, (i * (i + 2)) as f32 + 1.5);
        }
        let (even, odd) = s.deinterleave(s.load(&a), s.load(&b));
        let (lo, hi) = s.interleave(even, odd);
        let mut pairs = vec![0.0; 2 * n];
        s.store(&mut pairs[..n], lo);
        s.store(&mut pairs[n..], hi);
        assert_eq!(pairs, [a.clone(), b.clone()].concat());
        s.store(&mut pairs[..n], even);
        s.store(&mut pairs[n..], odd);
        for i in 0..n {
            let at = |i: usize| if i < n { a[i] } else { b[i - n] };
            assert_eq!((pairs[i], pairs[n + i]), (at(2 * i), at(2 * i + 1)));
        }
        // take_max: greater wins, ties keep the first, NaN always wins (so the last NaN).
        let lane = |v: [f32; 4]| -> Vec<f32> { (0..n).map(|l| v[l % 4]).collect() };
        let best = s.load(&lane([1.0, 2.0, f32::NAN, 1.0]));
        let v = s.load(&lane([2.0, 2.0, 1.0, f32::NAN]));
        let (m, t) = s.take_max(best, s.splat(0.0), v, s.splat(1.0));
        let (mut got, mut taps) = (vec![0.0; n], vec![0.0; n]);
        s.store(&mut got, m);
        s.store(&mut taps, t);
        for l in 0..n {
            let (want, tap) = [(2.0, 1.0), (2.0, 0.0), (f32::NAN, 0.0), (f32::NAN, 1.0)][l % 4];
            assert!(
                got[l] == want || (got[l].is_nan() && want.is_nan()),
                "lane {l}"
            );
            assert_eq!(taps[l], tap, "lane {l}");
        }
        // select_eq: `v` where equal (-0 == +0, NaN never), else +0.
        let x = s.load(&lane([1.0, -0.0, f32::NAN, 3.0]));
        let y = s.load(&lane([1.0, 0.0, f32::NAN, 2.0]));
        let v = s.load(&lane([-0.0, f32::NAN, 5.0, 7.0]));
        s.store(&mut got, s.select_eq(x, y, v));
        for l in 0..n {
            let want = [-0.0f32, f32::NAN, 0.0, 0.0][l % 4];
            assert_eq!(got[l].to_bits(), want.to_bits(), "select_eq lane {l}");
        }
        // zero_where_le: +0 where x <= y (-0 <= +0), `v` where greater or either is NaN.
        let x = s.load(&lane([1.0, -0.0, f32::NAN, 3.0]));
        let y = s.load(&lane([2.0, 0.0, 0.0, f32::NAN]));
        let v = s.load(&lane([-0.0, -7.0, 5.0, 7.0]));
        s.store(&mut got, s.zero_where_le(x, y, v));
        for l in 0..n {
            let want = [0.0f32, 0.0, 5.0, 7.0][l % 4];
            assert_eq!(got[l].to_bits(), want.to_bits(), "zero_where_le lane {l}");
        }
        s.store(&mut got, s.zero_where_le(y, x, v));
        for l in 0..n {
            let want = [-0.0f32, 0.0, 5.0, 7.0][l % 4];
            assert_eq!(got[l].to_bits(), want.to_bits(), "zero_where_le lane {l}");
        }
        s.store(&mut got, s.mul(s.load(&a), s.load(&b)));
        for l in 0..n {
            assert_eq!(got[l], a[l] * b[l], "mul lane {l}");
        }
        // transpose: value (i, j) moves to (j, i); entries past LANES are untouched.
        let values: Vec<f32> = (0..n * n).map(|v| v as f32).collect();
        let mut m = [s.splat(-1.0); MAX_LANES];
        for (i, row) in m.iter_mut().take(n).enumerate() {
            *row = s.load(&values[i * n..]);
        }
        s.transpose(&mut m);
        for (j, row) in m.iter().enumerate() {
            s.store(&mut got, *row);
            for (i, v) in got.iter().enumerate() {
                let want = if j < n { (i * n + j) as f32 } else { -1.0 };
                assert_eq!(*v, want, "transpose: row {j} lane {i}");
            }
        }
        let want: f32 = out.iter().sum();
        assert_eq!(s.reduce_sum(s.load(&out)), want);
        for k in 0..=n {
            let mut dst = vec![-1.0; n + 1];
            // SAFETY: `dst` holds n + 1 values.
            unsafe { s.store_partial_ptr(dst.as_mut_ptr(), s.load(&a), k) };
            for (i, v) in dst.iter().enumerate() {
                assert_eq!(*v, if i < k { a[i] } else { -1.0 }, "k = {k}");
            }
        }
        let mut dst = vec![-1.0; n + 1];
        // SAFETY: as above.
        unsafe { s.store_ptr(dst.as_mut_ptr(), s.load(&a)) };
        assert_eq!(&dst[..n], &a[..]);
        assert_eq!(dst[n], -1.0);
        for k in 0..=n {
            // Exactly k values readable and writable: nothing past them is touched.
            let mut dst = vec![-1.0; n + 1];
            s.store_partial(&mut dst[..k], s.load_partial(&a[..k], k), k);
            for (i, v) in dst.iter().enumerate() {
                assert_eq!(*v, if i < k { a[i] } else { -1.0 }, "k = {k}");
            }
        }
    }

    #[test]
    fn every_instruction_set_computes_the_same() {
        exercise(Portable);
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(s) = Avx512::detect() {
                exercise(s);
            }
            if let Some(s) = Avx2::detect() {
                exercise(s);
            }
        }
    }
}
