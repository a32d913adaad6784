//! The adaptive Dormand–Prince solver on ODEs with known solutions, the Hutchinson divergence estimator against
//! exact traces, and the probability-flow likelihood of Gaussian data against its exact log density.

use diffuse_autograd::Var;
use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::sde::rk45::{dormand_prince_step, solve};
use diffuse_diffusion::sde::{
    divergence_estimate, ode_likelihood, DifferentiableScore, LikelihoodOptions, Probe, ScoreModel,
    Sde, Tolerances,
};
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};
use std::f64::consts::{LN_2, PI};

/// y' = cos(t)·y on a vector of starting values: y(t) = y(0)·exp(sin t).
fn cos_rhs(t: f64, y: &Tensor) -> Result<Tensor> {
    Ok(y.mul_scalar(t.cos() as f32)?)
}

fn start() -> Tensor {
    Tensor::from_vec(vec![1.0, -0.5, 2.0, 0.25], &[4], Device::Cpu).unwrap()
}

/// Largest |y − y(0)·exp(sin t)| / max |exact| over the components.
fn error_at(y: &Tensor, t: f64) -> f64 {
    let (y, y0) = (y.to_vec().unwrap(), start().to_vec().unwrap());
    let exact: Vec<f64> = y0.iter().map(|&v| f64::from(v) * t.sin().exp()).collect();
    let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
    y.iter()
        .zip(&exact)
        .map(|(&a, b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max)
        / scale
}

/// One step of size h from (0, y0), its three results in f64.
fn one_step(f: &mut dyn FnMut(f64, &Tensor) -> Result<Tensor>, y0: f32, h: f64) -> (f64, f64) {
    let y = Tensor::from_vec(vec![y0], &[1], Device::Cpu).unwrap();
    let k1 = f(0.0, &y).unwrap();
    let step = dormand_prince_step(f, 0.0, &y, &k1, h).unwrap();
    (
        f64::from(step.y.to_vec().unwrap()[0]),
        f64::from(step.error.to_vec().unwrap()[0]),
    )
}

/// The order, exactly rather than from error ratios (the method's error constants are so small that in f32 the
/// rounding floor is reached before the asymptotic h⁵ regime): a step of y' = λy multiplies by the method's
/// stability polynomial R(z) = Σ_{k≤5} z^k/k! + z⁶/600, which agrees with e^z through z⁵ (local error O(h⁶),
/// global O(h⁵)), and a step of y' = p(t) integrates every polynomial of degree ≤ 4 exactly but not t⁵ (the
/// quadrature order conditions Σ b_i c_i^k = 1/(k+1), k ≤ 4). Tolerance: a few f32 roundings of values ≤ 3.
#[test]
fn dormand_prince_step_is_exact_to_fifth_order() {
    for (lambda, h) in [(1.0, 1.0), (-2.0, 0.75), (0.5, 0.3)] {
        let mut f = |_t: f64, y: &Tensor| Ok(y.mul_scalar(lambda as f32)?);
        let z: f64 = lambda * h;
        let taylor: f64 = (0..=5)
            .map(|k| z.powi(k) / (1..=k).product::<i32>() as f64)
            .sum();
        let (y, _) = one_step(&mut f, 1.0, h);
        let r = taylor + z.powi(6) / 600.0;
        assert!((y - r).abs() < 1e-6, "z = {z}: step {y}, R(z) = {r}");
        assert!((r - z.exp()).abs() > 1e-6 || z.abs() < 0.5, "z = {z}");
    }
    for degree in 0..=5 {
        let mut f = move |t: f64, y: &Tensor| {
            Ok(y.mul_scalar(0.0)?
                .add_scalar((t.powi(degree) * (degree + 1) as f64) as f32)?)
        };
        let h = 1.5;
        let (y, _) = one_step(&mut f, 0.0, h);
        let exact = h.powi(degree + 1);
        let err = (y - exact).abs();
        if degree <= 4 {
            assert!(err < 1e-5, "degree {degree}: {y} vs {exact}");
        } else {
            assert!(err > 1e-3, "degree 5 must not be exact: {y} vs {exact}");
        }
    }
}

/// The adaptive solve meets its tolerance: the global error stays within a small multiple of rtol (the local
/// error per step is held below rtol over ~5–10 steps; observed 2e-5 at rtol 1e-3 and 1e-4, 2e-6 at 1e-5), and a
/// tighter tolerance costs more evaluations. Backwards in time too.
#[test]
fn rk45_meets_its_tolerance_in_either_direction() {
    let mut previous_nfe = 0;
    for rtol in [1e-3, 1e-4, 1e-5] {
        let tol = Tolerances { rtol, atol: 1e-8 };
        let (y, stats) = solve(&mut cos_rhs, 0.0, 3.0, &start(), tol).unwrap();
        let err = error_at(&y, 3.0);
        eprintln!("rtol {rtol:e}: error {err:.2e}, {stats:?}");
        assert!(err < 10.0 * rtol, "rtol {rtol:e}: error {err:e}");
        assert_eq!(
            stats.nfe,
            2 + 6 * (stats.accepted_steps + stats.rejected_steps)
        );
        assert!(stats.nfe > previous_nfe, "rtol {rtol:e}: {stats:?}");
        previous_nfe = stats.nfe;
        // From t = 3 back to 0 returns to the start.
        let (back, _) = solve(&mut cos_rhs, 3.0, 0.0, &y, tol).unwrap();
        let (b, s) = (back.to_vec().unwrap(), start().to_vec().unwrap());
        for (x, y) in b.iter().zip(&s) {
            assert!(((x - y) / 2.0).abs() < 20.0 * rtol as f32, "{b:?} vs {s:?}");
        }
    }
}

#[test]
fn non_positive_or_too_tight_tolerances_are_refused() {
    for (rtol, atol, what) in [
        (0.0, 1e-5, "rtol"),
        (-1e-3, 1e-5, "rtol"),
        (1e-5, 0.0, "atol"),
        (1e-5, f64::NAN, "atol"),
        (1e-9, 1e-5, "f32"),
    ] {
        let err = solve(&mut cos_rhs, 0.0, 1.0, &start(), Tolerances { rtol, atol })
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "{err}");
    }
}

/// A fixed matrix applied to every row: `f(x)_b = A x_b`, whose divergence is tr A.
fn matrix(dim: usize, seed: u64) -> Tensor {
    Tensor::randn(&[dim, dim], seed, 0, Device::Cpu).unwrap()
}

fn linear(a: &Tensor) -> impl Fn(&Var) -> Result<Var> + '_ {
    move |x: &Var| Ok(x.matmul(&Var::constant(a.transpose(0, 1).unwrap()))?)
}

/// Over 20,000 probes the mean Hutchinson estimate equals the exact trace within 4 standard errors, for both probe
/// kinds; with Rademacher probes a diagonal Jacobian is estimated exactly (vᵢ² = 1).
#[test]
fn hutchinson_estimate_is_unbiased() {
    let (dim, n) = (6, 20_000);
    let a = matrix(dim, 1);
    let values = a.to_vec().unwrap();
    let trace: f64 = (0..dim).map(|i| f64::from(values[i * dim + i])).sum();
    let x = Tensor::randn(&[n, dim], 2, 0, Device::Cpu).unwrap();
    for probe in [Probe::Rademacher, Probe::Gaussian] {
        let v = probe.draw(&[n, dim], 3, 0, Device::Cpu).unwrap();
        let (_, estimates) = divergence_estimate(&linear(&a), &x, &v).unwrap();
        let e: Vec<f64> = estimates
            .to_vec()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let mean = e.iter().sum::<f64>() / n as f64;
        let se = (e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0) / n as f64)
            .sqrt();
        eprintln!("{probe:?}: mean {mean:.4} ± {se:.4}, trace {trace:.4}");
        assert!(
            (mean - trace).abs() < 4.0 * se,
            "{probe:?}: {mean} ± {se} vs {trace}"
        );
    }
    let diagonal = Tensor::from_vec(
        (0..dim * dim)
            .map(|k| {
                if k % (dim + 1) == 0 {
                    0.5 + k as f32
                } else {
                    0.0
                }
            })
            .collect(),
        &[dim, dim],
        Device::Cpu,
    )
    .unwrap();
    let exact: f32 = (0..dim).map(|i| 0.5 + (i * (dim + 1)) as f32).sum();
    let v = Probe::Rademacher
        .draw(&[5, dim], 4, 0, Device::Cpu)
        .unwrap();
    let (_, estimates) =
        divergence_estimate(&linear(&diagonal), &x.narrow(0, 0, 5).unwrap(), &v).unwrap();
    for e in estimates.to_vec().unwrap() {
        assert!((e - exact).abs() < 1e-4, "{e} vs {exact}");
    }
}

/// Data `N(μ, τ² I)`: every marginal is Gaussian, `N(m μ, (m²τ² + s²) I)`, so the score is affine in x and the
/// density at the data end is known exactly.
struct GaussianData {
    sde: Sde,
    mu: f64,
    tau: f64,
}

impl GaussianData {
    fn variance(&self, t: f64) -> f64 {
        let (m, s) = (self.sde.mean_scale(t), self.sde.std(t));
        m * m * self.tau * self.tau + s * s
    }

    fn log_density(&self, x: &[f32], t: f64) -> f64 {
        let (v, mean) = (self.variance(t), self.sde.mean_scale(t) * self.mu);
        x.iter()
            .map(|&x| -0.5 * (2.0 * PI * v).ln() - (f64::from(x) - mean).powi(2) / (2.0 * v))
            .sum()
    }
}

impl ScoreModel for GaussianData {
    fn score(&self, x: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        Ok(self
            .score_var(&Var::constant(x.clone()), t, cond)?
            .tensor()
            .clone())
    }

    fn sde(&self) -> &Sde {
        &self.sde
    }
}

impl DifferentiableScore for GaussianData {
    fn score_var(&self, x: &Var, t: &[f64], _cond: Condition<'_>) -> Result<Var> {
        let (v, mean) = (self.variance(t[0]), self.sde.mean_scale(t[0]) * self.mu);
        Ok(x.affine((-1.0 / v) as f32, (mean / v) as f32)?)
    }
}

/// The probability-flow likelihood of Gaussian data equals the exact log density within 1 %, for each SDE.
/// Rademacher probes are exact on the score's multiple-of-identity Jacobian `−I/v`, so what remains is the solver
/// and the prior: the VE prior N(0, σ_max² I) ignores the data's mean and variance, so the VE data are centred
/// (with mean 0.3 the mismatch, ≈ 0.3·x(1)/σ_max² per dimension with |x(1)| up to 20, costs 0.6 %).
///
/// Gaussian probes give `v_bᵀ(c I)v_b = c‖v‖²` with `c = Δ/D`, Δ = ∫∇·f̃ dt the divergence integral, so their
/// estimate of Δ has standard deviation |Δ|·√(2/(D·P)) over P probes: 4.4 % of a |Δ| of 40–70 nats at D = 16,
/// P = 64, which is 20 % of −ln p. They are checked against that standard deviation (4 of them).
#[test]
fn probability_flow_likelihood_of_gaussian_data_is_exact() {
    let dim = 16;
    for sde in [
        Sde::ve(0.01, 20.0).unwrap(),
        Sde::vp(0.1, 20.0).unwrap(),
        Sde::sub_vp(0.1, 20.0).unwrap(),
    ] {
        let mu = if matches!(sde, Sde::Ve { .. }) {
            0.0
        } else {
            0.3
        };
        let model = GaussianData {
            sde: sde.clone(),
            mu,
            tau: 0.5,
        };
        let images = Tensor::randn(&[3, dim], 21, 0, Device::Cpu)
            .unwrap()
            .affine(0.5, mu as f32)
            .unwrap();
        // Δ = ∫ ∇·f̃ dt = (D/2)·ln(v(1)/v(ε)) + D·∫f: the exact divergence integral.
        let delta = 0.5 * dim as f64 * (model.variance(1.0) / model.variance(1e-5)).ln()
            + dim as f64 * (sde.mean_scale(1.0) / sde.mean_scale(1e-5)).ln();
        for (probe, probes) in [(Probe::Rademacher, 1), (Probe::Gaussian, 64)] {
            let options = LikelihoodOptions {
                probe,
                probes,
                dequantize: false,
                batch: 2,
                ..LikelihoodOptions::default()
            };
            let result = ode_likelihood(&model, &images, Condition::NONE, &options).unwrap();
            let values = images.to_vec().unwrap();
            for (i, x) in values.chunks(dim).enumerate() {
                let exact = -model.log_density(x, options.eps) / (dim as f64 * LN_2);
                let got = result.per_image[i];
                let rel = ((got - exact) / exact).abs();
                eprintln!(
                    "{} {probe:?}×{probes}: image {i}: {got:.5} bits/dim, exact {exact:.5} ({:.3} %)",
                    sde.name(),
                    100.0 * rel
                );
                match probe {
                    Probe::Rademacher => {
                        assert!(rel < 0.01, "{} {probe:?}: {got} vs {exact}", sde.name())
                    }
                    Probe::Gaussian => {
                        let sd = delta.abs() * (2.0 / (dim * probes) as f64).sqrt()
                            / (dim as f64 * LN_2);
                        assert!(
                            (got - exact).abs() < 4.0 * sd,
                            "{} {probe:?}: {got} vs {exact} (sd {sd})",
                            sde.name()
                        )
                    }
                }
            }
            assert_eq!(result.solves, 2);
        }
    }
}

/// Dequantised 8-bit data: each value is moved within its own bin (width 1/128 in [−1, 1]) and the result carries
/// the 7 bits/dim of the bin width; the same seed gives the same answer.
#[test]
fn dequantised_likelihood_adds_the_bin_width_and_is_reproducible() {
    let model = GaussianData {
        sde: Sde::vp(0.1, 20.0).unwrap(),
        mu: 0.0,
        tau: 0.5,
    };
    let levels: Vec<f32> = (0..32).map(|i| (i * 8) as f32 / 127.5 - 1.0).collect();
    let images = Tensor::from_vec(levels, &[2, 16], Device::Cpu).unwrap();
    let options = LikelihoodOptions {
        seed: 9,
        ..LikelihoodOptions::default()
    };
    let a = ode_likelihood(&model, &images, Condition::NONE, &options).unwrap();
    let b = ode_likelihood(&model, &images, Condition::NONE, &options).unwrap();
    assert_eq!(a, b);
    let continuous = ode_likelihood(
        &model,
        &images,
        Condition::NONE,
        &LikelihoodOptions {
            dequantize: false,
            ..options
        },
    )
    .unwrap();
    for (d, c) in a.per_image.iter().zip(&continuous.per_image) {
        // The dequantised values differ from the levels by < 1/128, which moves −ln p by < D·|x|/(v·128) nats.
        assert!((d - 7.0 - c).abs() < 0.05, "{d} vs {c} + 7");
    }
}
