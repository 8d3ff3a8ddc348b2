//! Run-time choice of instruction set for hand-vectorised loops.
//!
//! A kernel is written once as an `#[inline(always)]` function generic over `const FMA: bool`,
//! in plain Rust over fixed-size lane arrays that the compiler turns into vector registers.
//! [`multiversion!`] compiles it again inside `#[target_feature]`
//! functions (AVX-512, AVX2+FMA) and picks one at run time with `is_x86_feature_detected!`;
//! every other CPU runs the portable build. Nothing depends on compile-time `target-cpu`.

/// Lanes in one hand-vectorised step: one AVX-512 register, two AVX2 registers.
pub(crate) const LANES: usize = 16;

/// `a * b + c`, fused where the CPU has FMA (the `FMA` builds), else two operations (a
/// software fused multiply-add would be slow).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `acc[l] += w * x[l]` over one lane array.
#[inline(always)]
pub(crate) fn axpy_lanes<const FMA: bool>(acc: &mut [f32; LANES], w: f32, x: &[f32]) {
    let x: &[f32; LANES] = x[..LANES].try_into().expect("LANES elements");
    for l in 0..LANES {
        acc[l] = madd::<FMA>(w, x[l], acc[l]);
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// `multiversion!(vis fn name(args) => generic_impl);` defines `name`, which calls
/// `generic_impl::<FMA>(args)` compiled for the best instruction set found at run time.
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $imp:ident) => {
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $imp::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $imp::<true>($($arg),*)
                }
                if $crate::simd::has_avx512() {
                    // SAFETY: the CPU has the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::simd::has_avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp::<false>($($arg),*)
        }
    };
}

pub(crate) use multiversion;
