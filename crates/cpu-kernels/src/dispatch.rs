//! Run-time selection of an AVX2 + FMA build of a hot routine.
//!
//! The kernels are written as plain loops that LLVM auto-vectorises, but the default x86-64 target only allows SSE2.
//! `dispatch!` compiles the routine a second time inside a `#[target_feature(enable = "avx2,fma")]` wrapper and calls
//! that build when the CPU supports both. The arithmetic is the same in both builds: Rust never contracts
//! `a * b + c` on its own, and an explicit `f32::mul_add` is a single-rounding fused multiply-add in every build
//! (an instruction with FMA, libm's exact `fmaf` without), so results are bit-identical.

/// Calls the `#[inline(always)]` routine `$f` through a `#[target_feature(enable = "avx2,fma")]` wrapper when the
/// CPU has AVX2 and FMA (the routine is inlined into, and so compiled for, the wrapper), otherwise its baseline build.
macro_rules! dispatch {
    ($f:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn with_avx2($($arg: $ty),*) {
                $f($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: `with_avx2` only requires AVX2 and FMA, which the CPU was just checked to support.
                unsafe { with_avx2($($arg),*) }
            } else {
                $f($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $f($($arg),*)
        }
    }};
}

pub(crate) use dispatch;
