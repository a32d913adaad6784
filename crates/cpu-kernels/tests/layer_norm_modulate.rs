//! The modulated layer norm of adaLN against a naive f64 reference, its backward against finite differences in f64.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::layer_norm_modulate::{
    layer_norm_modulate_backward, layer_norm_modulate_forward, ModulateShape,
};
use proptest::prelude::*;

/// `y[n, l] = (x[n, l] − mean)/sqrt(var + eps)·(1 + scale[n]) + shift[n]`, the definition, in f64.
fn reference(s: &ModulateShape, x: &[f64], scale: &[f64], shift: &[f64]) -> Vec<f64> {
    let d = s.dim;
    let mut y = Vec::with_capacity(x.len());
    for (row, values) in x.chunks(d).enumerate() {
        let n = row / s.tokens;
        let mean = values.iter().sum::<f64>() / d as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + f64::from(s.eps)).sqrt();
        for (c, v) in values.iter().enumerate() {
            y.push((v - mean) * rstd * (1.0 + scale[n * d + c]) + shift[n * d + c]);
        }
    }
    y
}

struct Case {
    s: ModulateShape,
    x: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

fn case(batch: usize, tokens: usize, dim: usize, seed: u64) -> Case {
    let s = ModulateShape {
        batch,
        tokens,
        dim,
        eps: 1e-6,
    };
    Case {
        s,
        x: values(seed, batch * tokens * dim)
            .iter()
            .map(|v| 0.5 + 2.0 * v)
            .collect(),
        scale: values(seed + 1, batch * dim),
        shift: values(seed + 2, batch * dim),
    }
}

struct Outputs {
    y: Vec<f32>,
    grad_x: Vec<f32>,
    grad_scale: Vec<f32>,
    grad_shift: Vec<f32>,
}

fn run(c: &Case, gy: &[f32]) -> Outputs {
    let rows = c.s.batch * c.s.tokens;
    let (mut y, mut mean, mut rstd) = (vec![0.0; c.x.len()], vec![0.0; rows], vec![0.0; rows]);
    layer_norm_modulate_forward(&c.s, &c.x, &c.scale, &c.shift, &mut y, &mut mean, &mut rstd)
        .unwrap();
    // Stale values in every output buffer: the kernel must overwrite them all.
    let cond = c.scale.len();
    let (mut gx, mut gs, mut gb) = (vec![7.0; c.x.len()], vec![7.0; cond], vec![7.0; cond]);
    layer_norm_modulate_backward(
        &c.s, &c.x, &c.scale, &mean, &rstd, gy, &mut gx, &mut gs, &mut gb,
    )
    .unwrap();
    Outputs {
        y,
        grad_x: gx,
        grad_scale: gs,
        grad_shift: gb,
    }
}

/// The largest `rstd` over the rows of `x [_, dim]` (eps 1e-6), in f64: the factor by which rounding in a row's mean
/// is amplified in its outputs.
fn max_rstd(x: &[f64], dim: usize) -> f64 {
    x.chunks(dim)
        .map(|row| {
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64;
            1.0 / (var + 1e-6).sqrt()
        })
        .fold(1.0f64, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn layer_norm_modulate_forward_matches_reference(
        batch in 1usize..4, tokens in 1usize..40, dim in 1usize..70, seed in 0u64..1000,
    ) {
        let c = case(batch, tokens, dim, seed);
        let out = run(&c, &vec![0.0; c.x.len()]);
        // A handful of f32 roundings of terms |x̂|·|1 + scale| + |shift| ≤ ~8 give 2^-17. The f32 mean's rounding
        // (≤ 2^-24·|mean|, |mean| ≤ 2.5) enters x − mean and is amplified by rstd·|1 + scale| (≤ 2·rstd), which for a
        // row of two nearly equal values (rstd up to 1/sqrt(eps) = 1000) dominates.
        let atol = 2f64.powi(-17) + max_rstd(&to_f64(&c.x), dim) * 2f64.powi(-21);
        let want = reference(&c.s, &to_f64(&c.x), &to_f64(&c.scale), &to_f64(&c.shift));
        assert_close("y", &out.y, &want, 0.0, atol);
    }

    #[test]
    fn layer_norm_modulate_backward_matches_finite_differences(
        batch in 1usize..4, tokens in 1usize..20, dim in 1usize..9, seed in 0u64..1000,
    ) {
        let c = case(batch, tokens, dim, seed);
        let w = to_f64(&values(seed + 3, c.x.len()));
        let gy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let out = run(&c, &gy);
        let (x, scale, shift) = (to_f64(&c.x), to_f64(&c.scale), to_f64(&c.shift));
        let loss = |x: &[f64], scale: &[f64], shift: &[f64]| weighted_sum(&w, &reference(&c.s, x, scale, shift));
        // grad_x is O(rstd·|a g|) with a handful of f32 roundings per term, and x̂ carries the f32 mean's rounding
        // (≤ 2^-24·|mean|) times rstd, multiplied by rstd again: the layer norm's tolerance, rstd reaching 1/sqrt(eps)
        // for a (nearly) constant row. Ordinary rows (rstd ~ 1) keep ~2e-5.
        let rstd_max = max_rstd(&x, dim);
        let grad_x_tol = rstd_max * 2f64.powi(-16) + rstd_max * rstd_max * 2f64.powi(-20);
        assert_close("grad_x", &out.grad_x, &finite_differences(&x, |x| loss(x, &scale, &shift)), 0.0, grad_x_tol);
        // ∂scale and ∂shift sum `tokens` f64 terms of f32 inputs: a few f32 roundings each, times rstd for x̂.
        let atol = tokens as f64 * 2f64.powi(-20);
        assert_close("grad_scale", &out.grad_scale, &finite_differences(&scale, |v| loss(&x, v, &shift)), 0.0, atol * rstd_max);
        assert_close("grad_shift", &out.grad_shift, &finite_differences(&shift, |v| loss(&x, &scale, v)), 0.0, atol);
    }
}

#[test]
fn layer_norm_modulate_at_zero_conditioning_is_the_plain_layer_norm() {
    // scale = shift = 0: y = x̂ exactly as the plain layer norm with γ = 1, β = 0 computes it.
    let c = Case {
        scale: vec![0.0; 3 * 40],
        shift: vec![0.0; 3 * 40],
        ..case(3, 17, 40, 9)
    };
    let out = run(&c, &vec![0.0; c.x.len()]);
    let rows = c.s.batch * c.s.tokens;
    let (mut y, mut mean, mut rstd) = (vec![0.0; c.x.len()], vec![0.0; rows], vec![0.0; rows]);
    let plain = diffuse_cpu_kernels::layer_norm::LayerNormShape {
        rows,
        dim: c.s.dim,
        eps: c.s.eps,
    };
    let (ones, zeros) = (vec![1.0; c.s.dim], vec![0.0; c.s.dim]);
    diffuse_cpu_kernels::layer_norm::layer_norm_forward(
        &plain, &c.x, &ones, &zeros, &mut y, &mut mean, &mut rstd,
    )
    .unwrap();
    assert_eq!(out.y, y);
}

#[test]
fn layer_norm_modulate_does_not_depend_on_the_thread_count() {
    // 37 tokens: two full blocks of 16 and a ragged one per sample.
    let c = case(3, 37, 67, 3);
    let gy = values(4, c.x.len());
    let bits = |o: Outputs| {
        [o.y, o.grad_x, o.grad_scale, o.grad_shift]
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    assert_eq!(
        bits(with_threads(1, || run(&c, &gy))),
        bits(with_threads(3, || run(&c, &gy)))
    );
}

#[test]
fn layer_norm_modulate_of_an_empty_batch_zeroes_the_condition_gradients() {
    let c = case(2, 0, 5, 1);
    let out = run(&c, &[]);
    assert!(out.y.is_empty() && out.grad_x.is_empty());
    assert_eq!(out.grad_scale, vec![0.0; 10]);
    assert_eq!(out.grad_shift, vec![0.0; 10]);
}

#[test]
fn layer_norm_modulate_rejects_bad_shapes_and_lengths() {
    let s = ModulateShape {
        batch: 2,
        tokens: 3,
        dim: 4,
        eps: 1e-6,
    };
    let (x, cond) = (vec![0.0; 24], vec![0.0; 8]);
    let (mut y, mut m, mut r) = (vec![0.0; 24], vec![0.0; 6], vec![0.0; 6]);
    let err =
        layer_norm_modulate_forward(&s, &x, &cond[..4], &cond, &mut y, &mut m, &mut r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer_norm_modulate_forward: scale has 4 elements but its shape implies 8"
    );
    let zero_dim = ModulateShape { dim: 0, ..s };
    let err =
        layer_norm_modulate_forward(&zero_dim, &[], &[], &[], &mut [], &mut m, &mut r).unwrap_err();
    assert!(err.message.contains("dim is 0"), "{err}");
    let (mut gx, mut gs, mut gb) = (vec![0.0; 24], vec![0.0; 8], vec![0.0; 7]);
    let err = layer_norm_modulate_backward(&s, &x, &cond, &m, &r, &x, &mut gx, &mut gs, &mut gb)
        .unwrap_err();
    assert!(err.message.contains("grad_shift has 7 elements"), "{err}");
}
