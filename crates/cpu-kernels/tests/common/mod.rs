//! Helpers shared by the kernel tests: reproducible random data, tolerance checks, thread pools, finite differences.

#![allow(dead_code)] // each test binary uses its own subset

/// Unit roundoff of f32: every correctly rounded f32 operation is exact up to a relative 2^-24.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// Whether two runs of floats are the same length and equal bit for bit (for results that must not depend on a
/// loop order, a thread count or a layout).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

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

/// The error function in f64, the GELU's reference: the rational approximation of W. J. Cody (1969), whose error
/// (below 1e-15 relative) is far under one f32 ulp. The coefficients are kept exactly as published.
#[allow(clippy::excessive_precision)]
pub fn erf_f64(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 0.5 {
        // erf(x) = x · P(x²)/Q(x²) on |x| < 0.5.
        const P: [f64; 5] = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 5] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
            1.0,
        ];
        let z = x * x;
        let num = P[0] + z * (P[1] + z * (P[2] + z * (P[3] + z * P[4])));
        let den = Q[0] + z * (Q[1] + z * (Q[2] + z * (Q[3] + z * Q[4])));
        return x * num / den;
    } else if ax < 4.0 {
        // erfc(|x|) = exp(−x²) · P(|x|)/Q(|x|) on 0.5 ≤ |x| < 4.
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_5e3,
            1.712_047_612_634_070_6e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_700_9e-1,
            2.153_115_354_744_038_5e-8,
        ];
        const Q: [f64; 9] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_2e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_5e1,
            1.0,
        ];
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * ax + p);
        let den = Q.iter().rev().fold(0.0, |acc, &q| acc * ax + q);
        1.0 - (-ax * ax).exp() * num / den
    } else {
        // erfc(|x|) = exp(−x²)/|x| · (1/√π + 1/x² · P(1/x²)/Q(1/x²)) on |x| ≥ 4.
        const P: [f64; 6] = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_5e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_8e-2,
        ];
        const Q: [f64; 6] = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_131_9e-2,
            5.278_905_347_532_218_7e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822_4,
            1.0,
        ];
        let z = 1.0 / (ax * ax);
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * z + p);
        let den = Q.iter().rev().fold(0.0, |acc, &q| acc * z + q);
        let frac_1_sqrt_pi = 0.564_189_583_547_756_3;
        1.0 - (-ax * ax).exp() / ax * (frac_1_sqrt_pi + z * num / den)
    };
    r.copysign(x)
}

/// The exact GELU x·Φ(x) in f64 (the reference: `erf_f64` is far more accurate than f32 wherever the values the
/// tests compare are not below their absolute floor).
pub fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_f64(x / std::f64::consts::SQRT_2))
}
