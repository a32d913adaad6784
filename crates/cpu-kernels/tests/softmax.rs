//! Row softmax / log-softmax against an f64 reference, and their backward passes against finite differences.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::softmax::{log_softmax, log_softmax_backward, softmax, softmax_backward};
use proptest::prelude::*;

fn reference_log_softmax(cols: usize, x: &[f64]) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.iter().map(move |v| v - lse)
        })
        .collect()
}

fn reference_softmax(cols: usize, x: &[f64]) -> Vec<f64> {
    reference_log_softmax(cols, x)
        .into_iter()
        .map(f64::exp)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn softmax_and_log_softmax_match_reference(rows in 1usize..9, cols in 1usize..70, seed in 0u64..1000, spread in 0.1f32..30.0) {
        let x: Vec<f32> = values(seed, rows * cols).iter().map(|v| v * spread).collect();
        let mut y = vec![0.0; x.len()];
        softmax(rows, cols, &x, &mut y).unwrap();
        // Each output is exp(x − m) / s: x − m (up to 2·spread in size) is rounded once, by up to spread·2^-23,
        // which exp turns into that relative error; add a few ulp for exp and the division and cols·2^-24 from the sum.
        let rtol = (2.0 * f64::from(spread) + cols as f64 + 4.0) * 2f64.powi(-24);
        assert_close("softmax", &y, &reference_softmax(cols, &to_f64(&x)), rtol, 1e-30);
        log_softmax(rows, cols, &x, &mut y).unwrap();
        // log-softmax is x − (m + ln s): absolute error ~ ulp(|x|) + cols·2^-24 from the sum.
        let atol = (f64::from(spread) + cols as f64) * 2f64.powi(-22);
        assert_close("log_softmax", &y, &reference_log_softmax(cols, &to_f64(&x)), 0.0, atol);
    }

    #[test]
    fn softmax_backward_matches_finite_differences(rows in 1usize..4, cols in 1usize..20, seed in 0u64..1000) {
        let x: Vec<f32> = values(seed, rows * cols).iter().map(|v| 3.0 * v).collect();
        let w = to_f64(&values(seed + 1, rows * cols));
        let mut y = vec![0.0; x.len()];
        let gy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let mut gx = vec![0.0; x.len()];

        softmax(rows, cols, &x, &mut y).unwrap();
        softmax_backward(rows, cols, &y, &gy, &mut gx).unwrap();
        let fd = finite_differences(&to_f64(&x), |x| weighted_sum(&w, &reference_softmax(cols, x)));
        // Gradient entries are O(1) products of f32 values and a cols-term dot product: abs error ~ cols·2^-22.
        assert_close("softmax grad", &gx, &fd, 0.0, (cols as f64 + 4.0) * 2f64.powi(-21));

        log_softmax(rows, cols, &x, &mut y).unwrap();
        log_softmax_backward(rows, cols, &y, &gy, &mut gx).unwrap();
        let fd = finite_differences(&to_f64(&x), |x| weighted_sum(&w, &reference_log_softmax(cols, x)));
        assert_close("log_softmax grad", &gx, &fd, 0.0, (cols as f64 + 4.0) * 2f64.powi(-21));
    }
}

#[test]
fn softmax_is_stable_for_large_inputs_and_masked_rows() {
    let x = [
        1000.0,
        1001.0,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut y = [0.0; 6];
    softmax(2, 3, &x, &mut y).unwrap();
    let e = 1.0 / (1.0 + std::f64::consts::E);
    assert_close("softmax", &y, &[e, 1.0 - e, 0.0, 0.0, 0.0, 0.0], 1e-6, 0.0);
    log_softmax(2, 3, &x, &mut y).unwrap();
    assert!((y[1] - (-(1.0 + (-1.0f32).exp()).ln())).abs() < 1e-6);
    assert_eq!(y[2], f32::NEG_INFINITY);
    assert!(y[3..].iter().all(|&v| v == f32::NEG_INFINITY));
}

#[test]
fn softmax_does_not_depend_on_the_thread_count() {
    let (rows, cols) = (301, 97);
    let x = values(3, rows * cols);
    let gy = values(4, rows * cols);
    let run = |threads| {
        with_threads(threads, || {
            let mut y = vec![0.0; x.len()];
            let mut gx = vec![0.0; x.len()];
            softmax(rows, cols, &x, &mut y).unwrap();
            softmax_backward(rows, cols, &y, &gy, &mut gx).unwrap();
            (y, gx)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn softmax_rejects_mismatched_lengths() {
    let mut y = vec![0.0; 5];
    let err = softmax(2, 3, &[0.0; 6], &mut y).unwrap_err();
    assert_eq!(err.op, "softmax");
    assert!(
        err.message
            .contains("y has 5 elements but its shape implies 6"),
        "{err}"
    );
    let err = log_softmax_backward(2, 3, &[0.0; 6], &[0.0; 4], &mut [0.0; 6]).unwrap_err();
    assert!(err.message.contains("grad_y"), "{err}");
    assert!(softmax(usize::MAX, 2, &[], &mut []).is_err());
}

#[test]
fn empty_matrices_are_accepted() {
    softmax(0, 5, &[], &mut []).unwrap();
    log_softmax(4, 0, &[], &mut []).unwrap();
}
