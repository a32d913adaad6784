//! Vectorisable f32 elementary functions: libm's `expf`, `logf` and `sincosf` are opaque calls, so any loop
//! around them stays scalar. These are plain arithmetic that LLVM turns into SIMD, with no fused multiply-adds, so
//! every build (baseline or AVX2) gives bit-identical results.
//!
//! **exp.** `exp(x) = 2^n · exp(r)` with `n = round(x / ln 2)` and `r = x − n·ln 2` in `[−ln2/2, ln2/2]` (ln 2 split into a
//! high part exact in f32 and a low correction, Cody & Waite); `exp(r)` by its degree-7 Taylor polynomial, whose
//! truncation error `|r|^8/8! ≤ 5e-9` is below half an f32 ulp; `2^n` is built directly in the exponent bits (as two halves, to reach n = 128).
//! Rounding `n` uses the `1.5·2^23` trick, so every step is plain arithmetic that LLVM turns into SIMD; the integer `n`
//! is read back from the bits of that sum ([`round_to_int`]), because Rust's saturating `as i32` cast compiles to a
//! scalar conversion, compare and select per lane and would keep the loop scalar.
//! Error ≤ 2 ulp over the normal range (`tests/math.rs`); `x < −87.33` (including −∞) gives 0, `x > 88.72` gives
//! +∞, NaN stays NaN.
//!
//! **2^x for a softmax** ([`exp2_shifted`]). A softmax whose scores are kept in base 2 needs `2^x` only for `x ≤ 0` up
//! to rounding; the reduction `r = x − round(x)` is then exact, and a degree-6 polynomial evaluated in three levels
//! (Estrin) keeps the dependency chain short. Fused multiply-adds, so only for routines compiled through `dispatch!`.
//!
//! **ln** (for positive normal x). `x = m·2^e` with `m ∈ [√½, √2)`; `ln m = 2·atanh(s) = 2(s + s³/3 + … + s⁹/9)`
//! with `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172`, truncation `2|s|¹¹/11 < 1e-9`; `ln x = e·ln 2 + ln m` (Cody–Waite ln 2).
//!
//! **sin/cos of a turn** (`θ = 2π·u`). `t = 4u` is exact; `q = round(t)` is the quadrant and
//! `φ = (t − q)·π/2 ∈ [−π/4, π/4]` (no large-argument reduction, and no rounding of `2π·u` before it); `sin φ`,
//! `cos φ` by Taylor polynomials to degree 9 and 10 (truncation < 2e-9), then rotated by `q` quarter turns.

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

/// `(round(x), round(x) as i32)` for |x| < 2^22: adding 1.5·2^23 leaves the float with an ulp of 1, so the sum is
/// rounded to an integer, and that integer is the sum's bit pattern minus the pattern of 1.5·2^23 (integer
/// arithmetic, which vectorises, unlike a float-to-int cast).
#[inline(always)]
fn round_to_int(x: f32) -> (f32, i32) {
    let shifted = x + ROUND;
    (
        shifted - ROUND,
        shifted.to_bits() as i32 - ROUND.to_bits() as i32,
    )
}

/// `2^n` for −127 ≤ n ≤ 127, built in the exponent bits (`n = −127` gives the bit pattern 0: the float 0).
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `e^x` in f32 to within 2 ulp, written for auto-vectorisation.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`] with its polynomial evaluated by fused multiply-adds (7 instead of 14 operations), to within 2 ulp
/// as well. Only for routines compiled through `dispatch!`: with FMA, `mul_add` is one instruction; a build
/// without it calls libm's exact (and slow, scalar) `fmaf`, which gives the same bits.
#[inline(always)]
pub fn exp_fused(x: f32) -> f32 {
    exp_with::<true>(x)
}

/// `2^x` for `x ≤ 127`: a softmax's shifted scores kept in base 2 (`log2(e)·(s − max)`, or `s − lse` in base 2),
/// to within 2 ulp down to `x = −126`. Below, results under the smallest normal f32 are flushed to 0, including
/// exactly 0 for every `x ≤ −127` and −∞; NaN stays NaN. Only for routines compiled through `dispatch!`, like
/// [`exp_fused`].
///
/// In base 2 the reduction is exact: `n = round(x)`, `r = x − n ∈ [−½, ½]` with no rounding, so no Cody–Waite
/// split and no multiply by `log2 e`. `2^r` is the degree-6 polynomial that interpolates it at the Chebyshev nodes of
/// `[−½, ½]` (relative error 1.9e-8, a sixth of an ulp, with the coefficients rounded to f32), evaluated by Estrin's
/// scheme: `(c0 + c1·r) + r²·(c2 + c3·r) + r⁴·(c4 + c5·r + c6·r²)`. That is three levels of fused multiply-adds
/// where Horner's rule chains six, and in a softmax row the latency of that chain, not the number of operations, is
/// what bounds the loop. `2^n` is the exponent field alone: for `n = −127` its bit pattern is 0, the float 0, which is
/// what makes the lower clamp give exactly 0.
#[inline(always)]
pub fn exp2_shifted(x: f32) -> f32 {
    const C: [f32; 7] = [
        1.0,
        std::f32::consts::LN_2, // the interpolant's c1 rounds to the same f32 as ln 2
        0.240_226_5,
        0.055_503_27,
        0.009_618_057,
        0.001_340_042_8,
        0.000_154_614_45,
    ];
    // A compare-and-select, not `f32::max`, so that NaN passes through (as NaN) in one instruction.
    let clamped = if x < -127.0 { -127.0 } else { x };
    let (n, n_int) = round_to_int(clamped);
    let r = clamped - n;
    let (r2, r4) = (r * r, (r * r) * (r * r));
    let low = C[3].mul_add(r, C[2]).mul_add(r2, C[1].mul_add(r, C[0]));
    let high = C[6].mul_add(r2, C[5].mul_add(r, C[4]));
    high.mul_add(r4, low) * pow2(n_int)
}

/// `a·b + c`, fused (one rounding) or not.
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn exp_with<const FUSED: bool>(x: f32) -> f32 {
    let clamped = x.clamp(MIN_ARG, MAX_ARG);
    let (n, n_int) = round_to_int(clamped * LOG2_E);
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    // Horner form of Σ_{k ≤ 7} r^k / k!.
    let step = |coefficient: f32, acc: f32| mul_add::<FUSED>(r, acc, coefficient);
    let p = step(
        1.0,
        step(
            1.0,
            step(
                0.5,
                step(
                    1.0 / 6.0,
                    step(
                        1.0 / 24.0,
                        step(1.0 / 120.0, step(1.0 / 720.0, 1.0 / 5040.0)),
                    ),
                ),
            ),
        ),
    );
    // 2^n as two factors 2^(n/2)·2^(n − n/2), so n = 128 (x near 88.7) does not overflow the exponent field.
    let half = n_int >> 1;
    let y = p * pow2(half) * pow2(n_int - half);
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

/// `ln x` for positive, normal, finite `x`, to within 2 ulp; written for auto-vectorisation.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // Split x = m·2^e with m in [√½, √2): take the exponent of x·√2, i.e. shift the mantissa window down by half an
    // octave, by adding (1.0 − √½)'s offset in the bit pattern.
    let offset = 0x3f80_0000 - 0x3f35_04f3; // bits(1.0) − bits(√½)
    let shifted = bits.wrapping_add(offset as u32);
    let e = (shifted >> 23) as i32 - 127;
    let m = f32::from_bits((shifted & 0x007f_ffff) + 0x3f35_04f3);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        s * (2.0 + s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0)))));
    let e = e as f32;
    e * LN2_HI + (series + e * LN2_LO)
}

/// `(sin 2πu, cos 2πu)` for `u ∈ [0, 1]`, to within a few ulp of the result's scale; written for auto-vectorisation.
#[inline(always)]
pub fn sin_cos_turns(u: f32) -> (f32, f32) {
    let t = 4.0 * u;
    let (q, q_int) = round_to_int(t);
    let phi = (t - q) * std::f32::consts::FRAC_PI_2;
    let p2 = phi * phi;
    let sin = phi
        * (1.0
            - p2 * (1.0 / 6.0 - p2 * (1.0 / 120.0 - p2 * (1.0 / 5040.0 - p2 * (1.0 / 362_880.0)))));
    let cos = 1.0
        - p2 * (0.5
            - p2 * (1.0 / 24.0
                - p2 * (1.0 / 720.0 - p2 * (1.0 / 40_320.0 - p2 * (1.0 / 3_628_800.0)))));
    // Rotate (cos φ, sin φ) by q quarter turns: (c, s) → (−s, c) → (−c, −s) → (s, −c).
    let quadrant = q_int & 3;
    let (s_out, c_out) = if quadrant & 1 == 1 {
        (cos, -sin)
    } else {
        (sin, cos)
    };
    if quadrant & 2 == 2 {
        (-s_out, -c_out)
    } else {
        (s_out, c_out)
    }
}
