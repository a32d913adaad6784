//! A vectorisable `exp` for f32 (libm's `expf` is an opaque call, so loops around it stay scalar).
//!
//! `exp(x) = 2^n · exp(r)` with `n = round(x / ln 2)` and `r = x − n·ln 2` in `[−ln2/2, ln2/2]` (ln 2 split into a
//! high part exact in f32 and a low correction, Cody & Waite); `exp(r)` by its degree-7 Taylor polynomial, whose
//! truncation error `|r|^8/8! ≤ 5e-9` is below half an f32 ulp; `2^n` is built directly in the exponent bits (as two halves, to reach n = 128).
//! Rounding `n` uses the `1.5·2^23` trick, so every step is plain arithmetic that LLVM turns into SIMD.
//! Measured error ≤ 2 ulp over the normal range (see `tests/exp.rs`); `x < −87.3` (including −∞) gives 0,
//! `x > 88.7` gives +∞, NaN stays NaN.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO, with LN2_HI having few enough mantissa bits that `n·LN2_HI` is exact for |n| ≤ 128.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting 1.5·2^23 rounds an f32 of magnitude < 2^22 to the nearest integer.
const ROUND: f32 = 12_582_912.0;
/// Below this, exp(x) is under the smallest normal f32 and the result is flushed to 0.
const MIN_ARG: f32 = -87.33;
/// Above this, exp(x) overflows f32.
const MAX_ARG: f32 = 88.72;

/// `2^n` for −126 ≤ n ≤ 127, built in the exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `e^x` in f32 to within 2 ulp, written for auto-vectorisation.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let clamped = x.clamp(MIN_ARG, MAX_ARG);
    let n = (clamped * LOG2_E + ROUND) - ROUND;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    // Horner form of Σ_{k ≤ 7} r^k / k!.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n as two factors 2^(n/2)·2^(n − n/2), so n = 128 (x near 88.7) does not overflow the exponent field.
    let n = n as i32;
    let half = n >> 1;
    let y = p * pow2(half) * pow2(n - half);
    if x < MIN_ARG {
        0.0
    } else if x > MAX_ARG {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}
