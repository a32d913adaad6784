//! `sum_columns` (sums over leading axes, in place) against a naive f64 column sum and against `reduce_rows` on the
//! copied transpose, which must agree bit for bit: both accumulate each sum in f64 over the same terms in the same
//! order. Shapes: no rows, one row, one column, column counts off the 64-column task width, enough rows to split.

mod common;

use common::{random_vec, with_threads};
use diffuse_cpu_kernels::reduce::{reduce_rows, sum_columns, ReduceOp};

/// `[n, rows]`, the transpose of the row-major `[rows, n]` buffer `src`.
fn transpose(rows: usize, n: usize, src: &[f32]) -> Vec<f32> {
    (0..n)
        .flat_map(|c| (0..rows).map(move |r| src[r * n + c]))
        .collect()
}

const SHAPES: [(usize, usize); 11] = [
    (0, 5),
    (1, 1),
    (1, 70),
    (3, 1),
    (5, 63),
    (5, 64),
    (7, 65),
    (49, 192),
    (130, 129),
    (3136, 3),
    (600, 200),
];

#[test]
fn sum_columns_equals_row_sums_of_the_transpose_bit_for_bit() {
    for (seed, &(rows, n)) in SHAPES.iter().enumerate() {
        let src: Vec<f32> = random_vec(rows * n, seed as u64)
            .iter()
            .map(|x| x * 100.0)
            .collect();
        let mut got = vec![f32::NAN; n];
        sum_columns(rows, n, &src, &mut got).unwrap();
        let mut via_rows = vec![f32::NAN; n];
        reduce_rows(
            ReduceOp::Sum,
            n,
            rows,
            &transpose(rows, n, &src),
            &mut via_rows,
        )
        .unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&via_rows), "rows {rows}, n {n}");
        for (c, &g) in got.iter().enumerate() {
            // The f64 sum of at most 3136 f32 terms is exact to far below an f32 ulp, so the output is it rounded
            // once to f32: within the unit roundoff of it.
            let want: f64 = (0..rows).map(|r| f64::from(src[r * n + c])).sum();
            let bound = want.abs() * common::F32_UNIT_ROUNDOFF;
            assert!(
                (f64::from(g) - want).abs() <= bound,
                "rows {rows}, n {n}, column {c}: {g} vs {want}"
            );
        }
    }
}

#[test]
fn sum_columns_does_not_depend_on_the_thread_count() {
    let (rows, n) = (700, 333);
    let src = random_vec(rows * n, 9);
    let run = |threads| {
        with_threads(threads, || {
            let mut out = vec![0.0; n];
            sum_columns(rows, n, &src, &mut out).unwrap();
            out
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn sum_columns_rejects_buffers_of_the_wrong_length() {
    let mut out = vec![0.0; 4];
    let err = sum_columns(3, 4, &[0.0; 11], &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("source") && err.contains("12"), "{err}");
    let err = sum_columns(3, 4, &[0.0; 12], &mut out[..3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("output"), "{err}");
    assert!(sum_columns(usize::MAX, 2, &[], &mut out).is_err());
}
