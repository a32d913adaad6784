//! Run-time selection of an AVX-512 or AVX2 + FMA build of a hot routine.
//!
//! The kernels are written as plain loops that LLVM auto-vectorises, but the default x86-64 target only allows SSE2.
//! `dispatch!` compiles the routine twice more, inlined into `#[target_feature]` wrappers, and calls the widest build
//! the CPU supports:
//!
//! - AVX-512 (`avx512f,avx512bw,avx512dq,avx512vl` plus `avx2,fma`): 16-lane zmm vectors, masked loop tails;
//! - AVX2 + FMA: 8-lane ymm vectors;
//! - the baseline SSE2 build otherwise.
//!
//! The arithmetic is the same in every build: Rust never contracts `a * b + c` on its own, LLVM never reassociates
//! floating-point sums without fast-math flags (so a vectorised loop adds in the written order), and an explicit
//! `f32::mul_add` is a single-rounding fused multiply-add in every build (an instruction with FMA, libm's exact
//! `fmaf` without). Results are therefore bit-identical across the three builds; the kernels' tests that compare a
//! dispatched routine with its scalar definition bit for bit hold on any of them.

/// Calls the `#[inline(always)]` routine `$f` through the widest `#[target_feature]` wrapper the CPU supports (the
/// routine is inlined into, and so compiled for, each wrapper), otherwise its baseline build.
macro_rules! dispatch {
    ($f:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn with_avx512($($arg: $ty),*) {
                $f($($arg),*)
            }
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn with_avx2($($arg: $ty),*) {
                $f($($arg),*)
            }
            if $crate::dispatch::has_avx512() {
                // SAFETY: `with_avx512` only requires the features `has_avx512` just checked the CPU supports.
                unsafe { with_avx512($($arg),*) }
            } else if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
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

/// Whether the CPU supports every feature of `dispatch!`'s AVX-512 build.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    use std::arch::is_x86_feature_detected;
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
}

pub(crate) use dispatch;
