//! The hybrid objective of a variance-predicting network against a direct f64 computation of improved DDPM's
//! formulas (the KL of two Gaussians per element, the discretised-Gaussian decoder at t = 0), its gradient against
//! finite differences of that computation, and the stop-gradient on the mean.

use diffuse_autograd::Var;
use diffuse_diffusion::learned_range::training_log_variance_bounds;
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_diffusion::train::hybrid::{hybrid_terms, vlb_bits_per_dim, Batch};
use diffuse_diffusion::train::Prediction;
use diffuse_tensor::{Device, Tensor};

const SHAPE: [usize; 4] = [4, 2, 3, 3];
const TIMESTEPS: [usize; 4] = [0, 1, 500, 999];

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap()
}

fn uniform(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    Tensor::rand(&[len], seed, 0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .map(|u| lo + (hi - lo) * u)
        .collect()
}

/// Clean images on the 256 levels of [−1, 1], the end levels included (they take the open bins).
fn x0() -> Vec<f32> {
    let len: usize = SHAPE.iter().product();
    (0..len)
        .map(|i| match i % 7 {
            0 => -1.0,
            1 => 1.0,
            _ => ((i * 37) % 256) as f32 / 127.5 - 1.0,
        })
        .collect()
}

/// The standard normal CDF as improved DDPM approximates it.
fn cdf(z: f64) -> f64 {
    0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z.powi(3))).tanh())
}

/// `L_t` in bits per dimension for each sample, straight from the formulas, in f64: the mean channels `mean`, the
/// variance channels `v`, all (N, C, H, W) flattened.
fn direct_vlb(
    prediction: Prediction,
    x0: &[f32],
    x_t: &[f32],
    mean: &[f64],
    v: &[f64],
) -> Vec<f64> {
    let s = schedule();
    let per = x0.len() / SHAPE[0];
    (0..SHAPE[0])
        .map(|n| {
            let t = TIMESTEPS[n];
            let ab = s.alphas_cumprod[t];
            let ab_prev = if t == 0 { 1.0 } else { s.alphas_cumprod[t - 1] };
            let beta = s.betas[t];
            let posterior = |t: usize| {
                let prev = if t == 0 { 1.0 } else { s.alphas_cumprod[t - 1] };
                s.betas[t] * (1.0 - prev) / (1.0 - s.alphas_cumprod[t])
            };
            let min_log = posterior(t.max(1)).ln();
            let max_log = beta.ln();
            let c1 = beta * ab_prev.sqrt() / (1.0 - ab);
            let c2 = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
            let mut total = 0.0;
            for i in n * per..(n + 1) * per {
                let (x, xt) = (f64::from(x0[i]), f64::from(x_t[i]));
                let x0_hat = match prediction {
                    Prediction::Epsilon => (xt - (1.0 - ab).sqrt() * mean[i]) / ab.sqrt(),
                    Prediction::VPrediction => ab.sqrt() * xt - (1.0 - ab).sqrt() * mean[i],
                    Prediction::Sample => mean[i],
                };
                let frac = (v[i] + 1.0) / 2.0;
                let log_var = frac * max_log + (1.0 - frac) * min_log;
                let mu_q = c1 * x + c2 * xt;
                let mu_p = c1 * x0_hat + c2 * xt;
                total += if t == 0 {
                    let inv_std = (-0.5 * log_var).exp();
                    let upper = cdf(inv_std * (x - mu_p + 1.0 / 255.0));
                    let lower = cdf(inv_std * (x - mu_p - 1.0 / 255.0));
                    let p = if x < -0.999 {
                        upper
                    } else if x > 0.999 {
                        1.0 - lower
                    } else {
                        upper - lower
                    };
                    -p.max(1e-12).ln()
                } else {
                    0.5 * (-1.0 + log_var - min_log
                        + (min_log - log_var).exp()
                        + (mu_q - mu_p).powi(2) * (-log_var).exp())
                };
            }
            total / per as f64 / std::f64::consts::LN_2
        })
        .collect()
}

struct Case {
    x0: Vec<f32>,
    x_t: Vec<f32>,
    target: Vec<f32>,
    output: Vec<f32>,
}

fn case() -> Case {
    let len: usize = SHAPE.iter().product();
    let mut output = Vec::with_capacity(2 * len);
    let (mean, v) = (uniform(len, 1, -2.0, 2.0), uniform(len, 2, -1.0, 1.0));
    let per = len / SHAPE[0];
    for n in 0..SHAPE[0] {
        output.extend_from_slice(&mean[n * per..(n + 1) * per]);
        output.extend_from_slice(&v[n * per..(n + 1) * per]);
    }
    Case {
        x0: x0(),
        x_t: uniform(len, 3, -2.0, 2.0),
        target: uniform(len, 4, -2.0, 2.0),
        output,
    }
}

/// Splits the (N, 2C, H, W) output into its mean and variance halves, flattened.
fn halves(output: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let per = output.len() / SHAPE[0] / 2;
    let (mut mean, mut v) = (vec![], vec![]);
    for chunk in output.chunks(2 * per) {
        mean.extend(chunk[..per].iter().map(|&x| f64::from(x)));
        v.extend(chunk[per..].iter().map(|&x| f64::from(x)));
    }
    (mean, v)
}

fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape, Device::Cpu).unwrap()
}

#[test]
fn the_variational_term_matches_the_direct_computation() {
    let c = case();
    let (x0, x_t, target) = (
        tensor(&c.x0, &SHAPE),
        tensor(&c.x_t, &SHAPE),
        tensor(&c.target, &SHAPE),
    );
    let doubled = [SHAPE[0], 2 * SHAPE[1], SHAPE[2], SHAPE[3]];
    for prediction in [Prediction::Epsilon, Prediction::VPrediction] {
        let output = Var::leaf(tensor(&c.output, &doubled));
        let batch = Batch {
            x0: &x0,
            x_t: &x_t,
            target: &target,
            timesteps: &TIMESTEPS,
        };
        let terms = hybrid_terms(&schedule(), prediction, &output, &batch).unwrap();
        let (mean, v) = halves(&c.output);
        let want = direct_vlb(prediction, &c.x0, &c.x_t, &mean, &v);
        // f32 against f64: each element's KL is a sum of terms of size up to |log σ² − log β̃| ≲ 5, e^{…} ≲ 150 and
        // (μ̃ − μ_θ)²/σ² ≲ 1e3 (t = 1, where 1/β̃ is largest), each carrying a few roundings of 2⁻²⁴ relative:
        // 1e-5 relative to the sample's bound covers it with room; the decoder's logs are O(10) and also within it.
        // Where the bound is tiny (t = 999, ~1e-6), r + e^{−r} − 1 with r = log σ² − log β̃ = O(1) cancels to ~r²/2 and
        // keeps an absolute error of a few 2⁻²⁴ per element: the 1e-6 absolute term.
        for (n, (got, want)) in terms
            .vlb
            .tensor()
            .to_vec()
            .unwrap()
            .iter()
            .zip(&want)
            .enumerate()
        {
            let got = f64::from(*got);
            assert!(
                (got - want).abs() <= 1e-5 * want.abs() + 1e-6,
                "{prediction:?} sample {n} (t = {}): {got} bits/dim, direct {want}",
                TIMESTEPS[n]
            );
        }
        // The squared error of the mean channels against the target.
        let mse = terms.mse.tensor().to_vec().unwrap();
        let per = c.target.len() / SHAPE[0];
        for (n, got) in mse.iter().enumerate() {
            let want = (n * per..(n + 1) * per)
                .map(|i| (mean[i] - f64::from(c.target[i])).powi(2))
                .sum::<f64>()
                / per as f64;
            assert!((f64::from(*got) - want).abs() <= 1e-6 * want, "mse {n}");
        }
    }
}

#[test]
fn the_variational_term_trains_the_variance_alone() {
    let c = case();
    let (x0, x_t, target) = (
        tensor(&c.x0, &SHAPE),
        tensor(&c.x_t, &SHAPE),
        tensor(&c.target, &SHAPE),
    );
    let doubled = [SHAPE[0], 2 * SHAPE[1], SHAPE[2], SHAPE[3]];
    let output = Var::leaf(tensor(&c.output, &doubled));
    let batch = Batch {
        x0: &x0,
        x_t: &x_t,
        target: &target,
        timesteps: &TIMESTEPS,
    };
    let terms = hybrid_terms(&schedule(), Prediction::Epsilon, &output, &batch).unwrap();
    let grads = terms.vlb.sum_all().unwrap().backward().unwrap();
    let g = grads.get(&output).unwrap().to_vec().unwrap();
    let (mean_grad, v_grad) = halves(&g);
    assert!(
        mean_grad.iter().all(|&x| x == 0.0),
        "L_vlb reached the mean: stop-gradient broken"
    );
    assert!(v_grad.iter().any(|&x| x != 0.0));

    // ∂(Σ_n L_n)/∂v against central differences of the direct f64 computation (h = 1e-4: truncation ~h²·|L'''|, far
    // below the f32 gradient's own error of ~1e-6 relative to terms of size ≲ 1e3/(per-sample elements)).
    let (mean, v) = halves(&c.output);
    let total = |v: &[f64]| {
        direct_vlb(Prediction::Epsilon, &c.x0, &c.x_t, &mean, v)
            .iter()
            .sum::<f64>()
    };
    let mut probe = v.clone();
    for i in 0..v.len() {
        let h = 1e-4;
        probe[i] = v[i] + h;
        let up = total(&probe);
        probe[i] = v[i] - h;
        let down = total(&probe);
        probe[i] = v[i];
        let fd = (up - down) / (2.0 * h);
        assert!(
            (v_grad[i] - fd).abs() <= 1e-4 * fd.abs() + 1e-5,
            "element {i}: backward {}, finite differences {fd}",
            v_grad[i]
        );
    }
}

#[test]
fn the_mse_alone_trains_the_mean() {
    let c = case();
    let (x0, x_t, target) = (
        tensor(&c.x0, &SHAPE),
        tensor(&c.x_t, &SHAPE),
        tensor(&c.target, &SHAPE),
    );
    let doubled = [SHAPE[0], 2 * SHAPE[1], SHAPE[2], SHAPE[3]];
    let output = Var::leaf(tensor(&c.output, &doubled));
    let batch = Batch {
        x0: &x0,
        x_t: &x_t,
        target: &target,
        timesteps: &TIMESTEPS,
    };
    let terms = hybrid_terms(&schedule(), Prediction::Epsilon, &output, &batch).unwrap();
    let g = terms.mse.sum_all().unwrap().backward().unwrap();
    let (_, v_grad) = halves(&g.get(&output).unwrap().to_vec().unwrap());
    assert!(v_grad.iter().all(|&x| x == 0.0));
}

#[test]
fn the_bounds_replace_the_zero_posterior_variance_of_the_first_step() {
    let s = schedule();
    let (lo0, hi0) = training_log_variance_bounds(&s, 0).unwrap();
    let (lo1, _) = training_log_variance_bounds(&s, 1).unwrap();
    assert_eq!(lo0, lo1, "β̃_0 = 0 is replaced by β̃_1");
    assert_eq!(hi0, s.betas[0].ln());
    assert!(training_log_variance_bounds(&s, 1000).is_err());
}

#[test]
fn a_mismatched_output_is_a_clear_error() {
    let c = case();
    let (x0, x_t, target) = (
        tensor(&c.x0, &SHAPE),
        tensor(&c.x_t, &SHAPE),
        tensor(&c.target, &SHAPE),
    );
    let batch = Batch {
        x0: &x0,
        x_t: &x_t,
        target: &target,
        timesteps: &TIMESTEPS,
    };
    let wrong = Var::constant(tensor(&c.x0, &SHAPE));
    let err = hybrid_terms(&schedule(), Prediction::Epsilon, &wrong, &batch)
        .err()
        .unwrap();
    assert!(err.to_string().contains("not twice the channels"), "{err}");
    let v = Var::constant(tensor(&c.x0, &SHAPE));
    let err = vlb_bits_per_dim(
        &schedule(),
        Prediction::Epsilon,
        &x0,
        &v,
        &Batch {
            timesteps: &TIMESTEPS[..3],
            ..batch
        },
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("3 timesteps for a batch of 4"),
        "{err}"
    );
}
