//! Philox4x32-10 against the published Random123 known answers, and the stream built on it.

use diffuse_cpu_kernels::philox::{fill_normal, fill_uniform, normal_at, philox4x32_10};

/// Random123 `tests/kat_vectors`, the three `philox4x32 10` lines: counter, key, expected output.
const KNOWN_ANSWERS: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0; 4],
        [0; 2],
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
    ),
    (
        [u32::MAX; 4],
        [u32::MAX; 2],
        [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
    ),
    (
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
        [0xa409_3822, 0x299f_31d0],
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
    ),
];

#[test]
fn philox4x32_10_matches_random123_known_answers() {
    for (counter, key, expected) in KNOWN_ANSWERS {
        assert_eq!(
            philox4x32_10(counter, key),
            expected,
            "counter {counter:08x?} key {key:08x?}"
        );
    }
}

#[test]
fn uniform_stream_follows_the_definition() {
    let seed = 0x0123_4567_89ab_cdef_u64;
    let mut out = vec![0.0f32; 2000]; // several 8-block lane groups and 64-block batches
    fill_uniform(seed, 5, &mut out);
    for (i, &u) in out.iter().enumerate() {
        let j = 5 + i as u64;
        let w = philox4x32_10(
            [(j / 4) as u32, ((j / 4) >> 32) as u32, 0, 0],
            [seed as u32, (seed >> 32) as u32],
        );
        let expected = ((w[(j % 4) as usize] >> 8) as f32 + 0.5) * 2f32.powi(-24);
        assert_eq!(u, expected, "element {j}");
        assert!(u > 0.0 && u < 1.0);
    }
}

#[test]
fn normal_stream_is_box_muller_on_word_pairs() {
    let seed = 42;
    let blocks = 4096u32;
    let mut out = vec![0.0f32; 4 * blocks as usize];
    fill_normal(seed, 0, &mut out);
    for b in 0..blocks {
        let w = philox4x32_10([b, 0, 0, 0], [42, 0]);
        for pair in 0..2 {
            let ua = f64::from(((w[2 * pair] >> 8) as f32 + 0.5) * 2f32.powi(-24));
            let ub = f64::from(((w[2 * pair + 1] >> 8) as f32 + 0.5) * 2f32.powi(-24));
            let r = (-2.0 * ua.ln()).sqrt();
            let theta = std::f64::consts::TAU * ub;
            let i = 4 * b as usize + 2 * pair;
            // f32 evaluation: ln within 2 ulp, sqrt, sin/cos within 2^-23, two products. Relative to r the error is
            // ≲ 4·2^-24 + |ln u|·2·2^-24/(2|ln u|) + 2^-23 < 2^-20; near u_a → 1 (r → 0) the absolute 1e-7 covers it.
            for (z, exact) in [(out[i], r * theta.cos()), (out[i + 1], r * theta.sin())] {
                assert!(
                    (f64::from(z) - exact).abs() <= 2f64.powi(-20) * r + 1e-7,
                    "block {b}: {z} vs {exact}"
                );
            }
        }
    }
}

#[test]
fn fill_with_offset_equals_the_tail_of_a_fill_from_zero() {
    let seed = 7;
    let len = 3 * (1 << 14) + 37; // several parallel chunks and a ragged end
    let mut whole = vec![0.0f32; len];
    fill_normal(seed, 0, &mut whole);
    for k in [0usize, 1, 2, 3, 5, 4097, 16_385] {
        let mut tail = vec![0.0f32; len - k];
        fill_normal(seed, k as u64, &mut tail);
        assert_eq!(tail, whole[k..], "normal offset {k}");
        let mut uniform_whole = vec![0.0f32; len];
        let mut uniform_tail = vec![0.0f32; len - k];
        fill_uniform(seed, 0, &mut uniform_whole);
        fill_uniform(seed, k as u64, &mut uniform_tail);
        assert_eq!(uniform_tail, uniform_whole[k..], "uniform offset {k}");
    }
    for j in [0usize, 1, 2, 3, 4, 1000, len - 1] {
        assert_eq!(normal_at(seed, j as u64), whole[j], "normal_at({j})");
    }
}

#[test]
fn counters_above_32_bits_use_the_high_word() {
    let seed = 9;
    let j = (5u64 << 34) + 6; // block (5 << 32) + 1
    let mut out = [0.0f32; 2];
    fill_uniform(seed, j, &mut out);
    let w = philox4x32_10([1, 5, 0, 0], [9, 0]);
    assert_eq!(out[0], ((w[2] >> 8) as f32 + 0.5) * 2f32.powi(-24));
    assert_eq!(out[1], ((w[3] >> 8) as f32 + 0.5) * 2f32.powi(-24));
    assert_eq!(normal_at(seed, j), {
        let mut z = [0.0f32; 1];
        fill_normal(seed, j, &mut z);
        z[0]
    });
}

#[test]
fn normals_have_unit_moments_and_no_lag_one_correlation() {
    let n = 1_000_000usize;
    let mut z = vec![0.0f32; n];
    fill_normal(2024, 0, &mut z);
    let nf = n as f64;
    let mean = z.iter().map(|&x| f64::from(x)).sum::<f64>() / nf;
    let var = z
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / nf;
    let lag1 = z
        .windows(2)
        .map(|w| (f64::from(w[0]) - mean) * (f64::from(w[1]) - mean))
        .sum::<f64>()
        / (nf - 1.0)
        / var;
    // Standard errors for N(0,1) samples: mean 1/sqrt(n) = 1e-3, variance sqrt(2/n) = 1.4e-3, lag-1 correlation
    // 1/sqrt(n) = 1e-3. Five standard errors leave a false-failure chance below 1e-6 per statistic.
    assert!(mean.abs() < 5.0 * (1.0 / nf).sqrt(), "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(),
        "variance {var}"
    );
    assert!(
        lag1.abs() < 5.0 * (1.0 / nf).sqrt(),
        "lag-1 correlation {lag1}"
    );
}

#[test]
fn fills_do_not_depend_on_the_thread_count() {
    let len = 5 * (1 << 14) + 3;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut z = vec![0.0f32; len];
            let mut u = vec![0.0f32; len];
            fill_normal(11, 3, &mut z);
            fill_uniform(11, 3, &mut u);
            (z, u)
        })
    };
    assert_eq!(run(1), run(3));
}
