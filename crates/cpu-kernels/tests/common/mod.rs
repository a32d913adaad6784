//! Helpers shared by the integration tests: reproducible random data and tolerance checks.

#![allow(dead_code)] // each test binary uses its own subset

/// Unit roundoff of f32: every correctly rounded f32 operation is exact up to a relative 2^-24.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// `len` floats uniform in [-1, 1), reproducible from `seed` (xorshift64*; quality is irrelevant here).
pub fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 random bits
            (bits as f32 / (1u32 << 23) as f32) - 1.0
        })
        .collect()
}

/// Asserts `|actual[i] − expected[i]| ≤ bound[i]` everywhere (an expected NaN must come out NaN), naming the first
/// offending index.
pub fn assert_within(actual: &[f32], expected: &[f64], bound: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, ((&got, &want), &tol)) in actual.iter().zip(expected).zip(bound).enumerate() {
        if want.is_nan() {
            assert!(got.is_nan(), "{what}: element {i} is {got}, expected NaN");
            continue;
        }
        let err = (f64::from(got) - want).abs();
        assert!(
            err <= tol,
            "{what}: element {i} is {got}, expected {want} (error {err:e} > tolerance {tol:e})"
        );
    }
}
