//! The per-sample MSE against its definition in f64, its backward against finite differences in f64.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::sample_mse::{sample_mse_backward, sample_mse_forward, SampleShape};
use proptest::prelude::*;

/// `mse[n] = (1/D) Σ_i (p[n, i] − t[n, i])²`, in f64.
fn reference(s: &SampleShape, p: &[f64], t: &[f64]) -> Vec<f64> {
    (0..s.batch)
        .map(|n| {
            let range = n * s.len..(n + 1) * s.len;
            let sum: f64 = p[range.clone()]
                .iter()
                .zip(&t[range])
                .map(|(p, t)| (p - t) * (p - t))
                .sum();
            sum / s.len as f64
        })
        .collect()
}

struct Case {
    s: SampleShape,
    p: Vec<f32>,
    t: Vec<f32>,
    g: Vec<f32>,
}

fn case(batch: usize, len: usize, seed: u64) -> Case {
    Case {
        s: SampleShape { batch, len },
        p: values(seed, batch * len).iter().map(|v| 2.0 * v).collect(),
        t: values(seed + 1, batch * len),
        g: values(seed + 2, batch),
    }
}

fn run(c: &Case) -> (Vec<f32>, Vec<f32>) {
    let (mut mse, mut gp) = (vec![7.0; c.s.batch], vec![7.0; c.p.len()]);
    sample_mse_forward(&c.s, &c.p, &c.t, &mut mse).unwrap();
    sample_mse_backward(&c.s, &c.p, &c.t, &c.g, &mut gp).unwrap();
    (mse, gp)
}

/// The backward pass's exact value `(2/D)·g[n]·(p − t)`, in f64.
fn gradient_reference(c: &Case) -> Vec<f64> {
    (0..c.p.len())
        .map(|i| {
            let n = i / c.s.len;
            2.0 / c.s.len as f64 * f64::from(c.g[n]) * (f64::from(c.p[i]) - f64::from(c.t[i]))
        })
        .collect()
}

// The forward sums in f64 and rounds once to f32 (2^-24 relative; the f64 sum's own error, ≤ D·2^-53, is far
// below). The backward rounds three times (the factor 2g/D, the difference, the product): 3·2^-24 relative, so
// 2^-22 bounds both with margin.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sample_mse_is_the_definition_and_its_gradient_the_derivative(
        batch in 1usize..4, len in 1usize..60, seed in 0u64..1000,
    ) {
        let c = case(batch, len, seed);
        let (mse, gp) = run(&c);
        let (p, t) = (to_f64(&c.p), to_f64(&c.t));
        assert_close("mse", &mse, &reference(&c.s, &p, &t), 2f64.powi(-22), 0.0);
        // L = Σ_n g[n]·mse[n] is quadratic in p, so central differences are exact but for the f64 rounding of the
        // loss (|L| ≤ 4·batch·16, rounding ≤ 1e-14) divided by the 2e-5 step: 1e-8 absolute covers it.
        let w = to_f64(&c.g);
        let fd = finite_differences(&p, |p| weighted_sum(&w, &reference(&c.s, p, &t)));
        assert_close("grad_prediction", &gp, &fd, 2f64.powi(-22), 1e-8);
    }
}

#[test]
fn samples_longer_than_a_block_straddle_blocks_exactly() {
    // 8192 elements per block: samples of 8197 make blocks that straddle two samples and a ragged last block, and
    // the 3 × 8197 elements take the parallel path. Checked against the exact gradient (finite differences over
    // 24,591 inputs would take minutes).
    let c = case(3, 8197, 11);
    let (mse, gp) = run(&c);
    let (p, t) = (to_f64(&c.p), to_f64(&c.t));
    assert_close("mse", &mse, &reference(&c.s, &p, &t), 2f64.powi(-22), 0.0);
    assert_close(
        "grad_prediction",
        &gp,
        &gradient_reference(&c),
        2f64.powi(-22),
        0.0,
    );
}

#[test]
fn sample_mse_does_not_depend_on_the_thread_count() {
    for (batch, len) in [(1, 20_000), (5, 3001), (64, 784)] {
        let c = case(batch, len, 3);
        assert_eq!(with_threads(1, || run(&c)), with_threads(3, || run(&c)));
    }
}

#[test]
fn sample_mse_of_equal_tensors_is_zero_and_so_is_its_gradient() {
    let mut c = case(2, 33, 4);
    c.t = c.p.clone();
    let (mse, gp) = run(&c);
    assert_eq!(mse, vec![0.0; 2]);
    assert!(gp.iter().all(|&v| v == 0.0));
}

#[test]
fn sample_mse_of_empty_samples_is_zero() {
    let c = case(3, 0, 1);
    let (mse, gp) = run(&c);
    assert_eq!(mse, vec![0.0; 3]);
    assert!(gp.is_empty());
}

#[test]
fn sample_mse_rejects_bad_lengths() {
    let s = SampleShape { batch: 2, len: 3 };
    let x = vec![0.0; 6];
    let mut mse = vec![0.0; 2];
    let err = sample_mse_forward(&s, &x, &x[..5], &mut mse).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sample_mse_forward: target has 5 elements but its shape implies 6"
    );
    let mut gp = vec![0.0; 6];
    let err = sample_mse_backward(&s, &x, &x, &[1.0], &mut gp).unwrap_err();
    assert!(err.message.contains("grad_mse has 1 elements"), "{err}");
}
