//! Helpers shared by the kernel tests: reproducible random data, tolerance checks, thread pools, finite differences.

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

pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

pub fn assert_close(what: &str, actual: &[f32], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (f64::from(a) - e).abs();
        assert!(
            err <= atol + rtol * e.abs(),
            "{what}[{i}]: kernel {a} vs reference {e} (|error| {err:e})"
        );
    }
}

pub fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f64 / (1u64 << 23) as f64 - 1.0) as f32
        })
        .collect()
}

pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

pub fn finite_differences(x: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-5;
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let plus = loss(&probe);
            probe[i] = x[i] - h;
            let minus = loss(&probe);
            probe[i] = x[i];
            (plus - minus) / (2.0 * h)
        })
        .collect()
}

pub fn weighted_sum(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}
