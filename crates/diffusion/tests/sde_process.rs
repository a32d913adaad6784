//! The SDEs' coefficients against the equations they must satisfy, the score parameterisations against exact
//! scores, the score-matching loss against its formula and its minimiser, the scheduler configs against diffusers'
//! files, and the refusals of bad input.

use diffuse_autograd::Var;
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule, SchedulerConfig};
use diffuse_diffusion::sde::{
    predictor_corrector, DenoiserScore, LangevinOptions, PcOptions, PhiloxNoise, Predictor,
    ScoreMatching, ScoreModel, ScoreNetwork, ScoreParameterization, ScoreSdeConfig, ScoreWeighting,
    Sde,
};
use diffuse_diffusion::sde::{Corrector, NoiseSource};
use diffuse_diffusion::train::TrainableModel;
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};
use std::f64::consts::PI;
use std::path::Path;

fn all_sdes() -> Vec<Sde> {
    let cosine =
        NoiseSchedule::new(BetaSchedule::SquaredcosCapV2, 1000, 1e-4, 0.02, false).unwrap();
    let linear = NoiseSchedule::new(BetaSchedule::Linear, 50, 1e-4, 0.2, false).unwrap();
    vec![
        Sde::ve(0.01, 50.0).unwrap(),
        Sde::vp(0.1, 20.0).unwrap(),
        Sde::sub_vp(0.1, 20.0).unwrap(),
        Sde::vp_discrete(&cosine).unwrap(),
        Sde::vp_discrete(&linear).unwrap(),
    ]
}

/// For `dx = f x dt + g dw` started at a point, the mean `m` and variance `s²` of `x_t` solve `m' = f·m` and
/// `(s²)' = 2f·s² + g²`; checked by central differences (h = 10⁻⁶ inside one interval of the discrete schedules,
/// whose β is constant there; error O(h²) plus rounding 10⁻¹⁶/h, far below 10⁻⁶ relative).
#[test]
fn mean_and_variance_solve_the_moment_equations() {
    let h = 1e-6;
    for sde in all_sdes() {
        for t in [0.0123, 0.2468, 0.5011, 0.7531, 0.9876] {
            let (f, g) = (sde.drift(t), sde.diffusion(t));
            let dm = (sde.mean_scale(t + h) - sde.mean_scale(t - h)) / (2.0 * h);
            let var = |t: f64| sde.std(t).powi(2);
            let dv = (var(t + h) - var(t - h)) / (2.0 * h);
            let (m, v) = (sde.mean_scale(t), var(t));
            assert!(
                (dm - f * m).abs() <= 1e-6 * (f * m).abs().max(1e-9),
                "{} at t = {t}: m' = {dm}, f·m = {}",
                sde.name(),
                f * m
            );
            let want = 2.0 * f * v + g * g;
            assert!(
                (dv - want).abs() <= 1e-6 * want.abs(),
                "{} at t = {t}: (s²)' = {dv}, 2f·s² + g² = {want}",
                sde.name()
            );
        }
    }
}

/// The ends of each SDE: VE from σ_min to σ_max; VP and sub-VP from the data (m = 1, s = 0) to nearly the prior.
#[test]
fn each_sde_runs_from_the_data_to_its_prior() {
    let ve = Sde::ve(0.01, 50.0).unwrap();
    assert!((ve.std(0.0) - 0.01).abs() < 1e-15 && (ve.std(1.0) - 50.0).abs() < 1e-12);
    assert_eq!((ve.mean_scale(0.7), ve.prior_std()), (1.0, 50.0));
    for sde in [Sde::vp(0.1, 20.0).unwrap(), Sde::sub_vp(0.1, 20.0).unwrap()] {
        assert_eq!((sde.mean_scale(0.0), sde.std(0.0)), (1.0, 0.0));
        // B(1) = 0.1 + 19.9/2 = 10.05: m(1) = e^{−5.025}.
        assert!((sde.mean_scale(1.0) - (-5.025f64).exp()).abs() < 1e-15);
        assert!(sde.std(1.0) > 0.9999 && sde.prior_std() == 1.0);
    }
    // sub-VP has less variance than VP at every t: 1 − e^{−B} ≤ √(1 − e^{−B}).
    let (vp, sub) = (Sde::vp(0.1, 20.0).unwrap(), Sde::sub_vp(0.1, 20.0).unwrap());
    for t in [0.01, 0.1, 0.5] {
        assert!(sub.std(t) < vp.std(t));
    }
}

/// A discrete schedule as a VP SDE passes through its own ᾱ: m(i/(T − 1))² = ᾱ_i.
#[test]
fn the_discrete_vp_sde_interpolates_its_schedule() {
    let schedule =
        NoiseSchedule::new(BetaSchedule::SquaredcosCapV2, 1000, 1e-4, 0.02, false).unwrap();
    let sde = Sde::vp_discrete(&schedule).unwrap();
    for i in [0, 1, 17, 500, 998, 999] {
        let t = i as f64 / 999.0;
        let ab = schedule.alphas_cumprod[i];
        assert!(
            (sde.mean_scale(t).powi(2) - ab).abs() <= 1e-12 * ab.max(1e-3),
            "ᾱ_{i}"
        );
        assert!((sde.std(t).powi(2) - (1.0 - ab)).abs() <= 1e-12);
    }
}

/// The prior density is N(0, σ_p² I) summed over each sample, and prior samples have standard deviation σ_p.
#[test]
fn prior_density_and_samples_match_the_prior() {
    let sde = Sde::ve(0.01, 3.0).unwrap();
    let x = Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0], &[2, 2], Device::Cpu).unwrap();
    let log_p = sde.prior_log_density(&x).unwrap();
    let formula = |a: f64, b: f64| -(2.0 * PI * 9.0).ln() - (a * a + b * b) / 18.0;
    assert!((log_p[0] - formula(0.5, -1.0)).abs() < 1e-12);
    assert!((log_p[1] - formula(2.0, 0.0)).abs() < 1e-12);
    let z = sde
        .prior_sample(&[20_000], &mut PhiloxNoise::new(1), Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    let var = z.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / z.len() as f64;
    // Standard error of the variance: 9·√(2/20000) ≈ 0.09.
    assert!((var - 9.0).abs() < 0.4, "variance {var}");
}

/// Gaussian data N(μ, τ²): a network returning the exact ε, x_0, v or score, read through its parameterisation,
/// gives the exact score `(m μ − x)/(m²τ² + s²)`. The network recovers `t` from the time input it is given, so the
/// time mapping is checked too.
struct ExactNetwork {
    sde: Sde,
    network: ScoreNetwork,
    steps: usize,
    mu: f64,
    tau: f64,
}

impl ExactNetwork {
    fn time_of(&self, input: f64) -> f64 {
        match (self.network, &self.sde) {
            (
                ScoreNetwork::NoiseConditional,
                Sde::Ve {
                    sigma_min,
                    sigma_max,
                },
            ) => (input / sigma_min).ln() / (sigma_max / sigma_min).ln(),
            (ScoreNetwork::NoiseConditional, _) => panic!("only VE inverts σ here"),
            _ => input / (self.steps - 1) as f64,
        }
    }
}

impl Denoiser for ExactNetwork {
    fn predict(&self, x: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let out: Vec<f32> = x
            .to_vec()?
            .iter()
            .zip(t)
            .map(|(&x, &input)| {
                let t = self.time_of(input);
                let (m, s) = (self.sde.mean_scale(t), self.sde.std(t));
                let x = f64::from(x);
                let v = m * m * self.tau * self.tau + s * s;
                let score = (m * self.mu - x) / v;
                let eps = -s * score;
                let x0 = (x - s * eps) / m;
                (match self.network {
                    ScoreNetwork::NoiseConditional => score,
                    ScoreNetwork::Epsilon => eps,
                    ScoreNetwork::Sample => x0,
                    ScoreNetwork::VPrediction => m * eps - s * x0,
                }) as f32
            })
            .collect();
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }

    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

#[test]
fn every_parameterisation_reads_as_the_exact_score() {
    let ve = Sde::ve(0.01, 50.0).unwrap();
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap();
    let discrete = Sde::vp_discrete(&schedule).unwrap();
    let cases = [
        (ve.clone(), ScoreNetwork::NoiseConditional),
        (ve, ScoreNetwork::Epsilon),
        (discrete.clone(), ScoreNetwork::Epsilon),
        (discrete.clone(), ScoreNetwork::Sample),
        (discrete, ScoreNetwork::VPrediction),
        (Sde::sub_vp(0.1, 20.0).unwrap(), ScoreNetwork::VPrediction),
    ];
    let x = Tensor::from_vec(vec![0.7, -1.3, 2.2, 0.1], &[4, 1], Device::Cpu).unwrap();
    let t = [0.05, 0.3, 0.61, 0.97];
    for (sde, network) in cases {
        let exact = ExactNetwork {
            sde: sde.clone(),
            network,
            steps: 1000,
            mu: 0.3,
            tau: 0.4,
        };
        let model = DenoiserScore {
            denoiser: &exact,
            sde: sde.clone(),
            parameterization: ScoreParameterization {
                network,
                num_train_timesteps: 1000,
            },
        };
        let score = model
            .score(&x, &t, Condition::NONE)
            .unwrap()
            .to_vec()
            .unwrap();
        for ((&got, &x), &t) in score.iter().zip(&x.to_vec().unwrap()).zip(&t) {
            let (m, s) = (sde.mean_scale(t), sde.std(t));
            let want = (m * 0.3 - f64::from(x)) / (m * m * 0.16 + s * s);
            // f32 outputs, and coefficients up to 1/s² ≈ 10² for x_0 near t = 0.05: 1e-4 relative.
            assert!(
                (f64::from(got) - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{} {network:?} at t = {t}: {got} vs {want}",
                sde.name()
            );
        }
    }
}

/// `out = a·x` whatever the time, as a trainable model.
struct Slope(f32);

impl TrainableModel for Slope {
    fn forward(&self, sample: &Var, _t: &[f64], _cond: Condition<'_>) -> Result<Var> {
        Ok(sample.mul_scalar(self.0)?)
    }
    fn config_json(&self) -> String {
        "{}".into()
    }
}

/// The loss is `mean_b w_b·mean((s·(a x_t + b·out) + z)²)` with `x_t = m x_0 + s z`, recomputed here in f64 for
/// both weightings and two parameterisations.
#[test]
fn score_matching_loss_matches_its_formula() {
    let x0 = Tensor::from_vec(vec![0.5, -0.25, 1.0, 0.0], &[2, 2], Device::Cpu).unwrap();
    let z = Tensor::from_vec(vec![0.3, -1.2, 0.7, 2.0], &[2, 2], Device::Cpu).unwrap();
    let times = [0.2, 0.9];
    for (sde, network) in [
        (Sde::ve(0.05, 10.0).unwrap(), ScoreNetwork::NoiseConditional),
        (Sde::vp(0.1, 20.0).unwrap(), ScoreNetwork::Epsilon),
    ] {
        for weighting in [ScoreWeighting::Variance, ScoreWeighting::Likelihood] {
            let objective = ScoreMatching {
                sde: sde.clone(),
                parameterization: ScoreParameterization {
                    network,
                    num_train_timesteps: 1000,
                },
                weighting,
                eps: 1e-5,
                noise_levels: None,
            };
            let slope = -0.8;
            let loss = objective
                .loss(&Slope(slope), &x0, &z, &times, Condition::NONE)
                .unwrap();
            let (x0v, zv) = (x0.to_vec().unwrap(), z.to_vec().unwrap());
            let mut want = 0.0;
            for (b, &t) in times.iter().enumerate() {
                let (m, s, g) = (sde.mean_scale(t), sde.std(t), sde.diffusion(t));
                let per_sample: f64 = (0..2)
                    .map(|i| {
                        let (x, e) = (f64::from(x0v[2 * b + i]), f64::from(zv[2 * b + i]));
                        let xt = m * x + s * e;
                        let out = f64::from(slope) * xt;
                        let score = match network {
                            ScoreNetwork::NoiseConditional => out,
                            _ => -out / s,
                        };
                        (s * score + e).powi(2)
                    })
                    .sum::<f64>()
                    / 2.0;
                let w = match weighting {
                    ScoreWeighting::Variance => 1.0,
                    ScoreWeighting::Likelihood => g * g / (s * s),
                };
                assert!((loss.weights[b] - w).abs() <= 1e-12 * w);
                want += w * per_sample / 2.0;
            }
            let got = f64::from(loss.loss.tensor().to_scalar().unwrap());
            assert!(
                (got - want).abs() <= 1e-5 * want,
                "{} {network:?} {weighting:?}: {got} vs {want}",
                sde.name()
            );
        }
    }
}

/// Denoising score matching is minimised by the true score: for data N(0, τ²) noised at one time, the loss of
/// the exact slope −1/v (v = τ² + s²) is lower than that of slopes 20 % off either way. The expected excess of a
/// slope off by δ is δ²s²/v = 3.3e-3 here; on the same 20,000 samples the sampling noise of the difference is
/// 2δ·(s/v)·τ/√n = 7.8e-4, so the ordering holds by more than 4 standard deviations.
#[test]
fn denoising_score_matching_is_minimised_by_the_true_score() {
    let sde = Sde::ve(0.05, 10.0).unwrap();
    let (t, tau) = (0.3, 0.8);
    let n = 20_000;
    let x0 = Tensor::randn(&[n, 1], 1, 0, Device::Cpu)
        .unwrap()
        .mul_scalar(tau as f32)
        .unwrap();
    let z = Tensor::randn(&[n, 1], 2, 0, Device::Cpu).unwrap();
    let objective = ScoreMatching {
        sde: sde.clone(),
        parameterization: ScoreParameterization {
            network: ScoreNetwork::NoiseConditional,
            num_train_timesteps: 1000,
        },
        weighting: ScoreWeighting::Variance,
        eps: 1e-5,
        noise_levels: None,
    };
    let exact = -1.0 / (tau * tau + sde.std(t).powi(2));
    let loss = |slope: f64| {
        let l = objective
            .loss(&Slope(slope as f32), &x0, &z, &vec![t; n], Condition::NONE)
            .unwrap();
        f64::from(l.loss.tensor().to_scalar().unwrap())
    };
    let (low, best, high) = (loss(0.8 * exact), loss(exact), loss(1.2 * exact));
    assert!(best < low && best < high, "{low} {best} {high}");
    // At the optimum the residual s·score + z = z − s²(x_t)/v has variance τ²/v = 1 − s²/v.
    let want = tau * tau / (tau * tau + sde.std(t).powi(2));
    assert!((best - want).abs() < 0.03 * want, "{best} vs {want}");
}

/// NCSN training draws from exactly the levels that annealed Langevin visits, and continuous training from (ε, 1).
#[test]
fn training_times_are_the_levels_or_the_interval() {
    let mut objective = ScoreMatching {
        sde: Sde::ve(0.01, 50.0).unwrap(),
        parameterization: ScoreParameterization {
            network: ScoreNetwork::NoiseConditional,
            num_train_timesteps: 1000,
        },
        weighting: ScoreWeighting::Variance,
        eps: 1e-3,
        noise_levels: Some(5),
    };
    let mut rng = diffuse_diffusion::rng::SplitMix64::new(4);
    let levels = diffuse_diffusion::sde::time_grid(5, 1e-3);
    for t in objective.draw_times(&mut rng, 200) {
        assert!(levels.contains(&t), "{t}");
    }
    objective.noise_levels = None;
    for t in objective.draw_times(&mut rng, 200) {
        assert!((1e-3..1.0).contains(&t), "{t}");
    }
}

#[test]
fn diffusers_scheduler_configs_read_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score_sde_ve");
    let text =
        std::fs::read_to_string(dir.join("defaults_one_sample/scheduler_config.json")).unwrap();
    let config = ScoreSdeConfig::from_json_str(&text).unwrap();
    assert_eq!(config, ScoreSdeConfig::ve(0.01, 1348.0).unwrap());
    let text = std::fs::read_to_string(dir.join("two_corrections/scheduler_config.json")).unwrap();
    let config = ScoreSdeConfig::from_json_str(&text).unwrap();
    assert_eq!(
        (config.snr, config.correct_steps, config.sampling_eps),
        (0.2, 2, 1e-4)
    );
    // Read through the DDPM-family parser (as the command line reads any scheduler folder), the same config.
    let as_ddpm = SchedulerConfig::from_json_str(&text).unwrap();
    let via = ScoreSdeConfig::from_scheduler_config(&as_ddpm).unwrap();
    assert_eq!(via.as_ref(), Some(&config));
    assert_eq!(
        ScoreSdeConfig::from_scheduler_config(&SchedulerConfig::default()).unwrap(),
        None
    );
    for config in [
        config,
        ScoreSdeConfig::vp_like(Sde::vp(0.2, 15.0).unwrap()).unwrap(),
        ScoreSdeConfig::vp_like(Sde::sub_vp(0.1, 20.0).unwrap()).unwrap(),
    ] {
        let again = ScoreSdeConfig::from_json_str(&config.to_json_string()).unwrap();
        assert_eq!(again, config);
    }
    let err =
        ScoreSdeConfig::from_json_str(r#"{"_class_name": "ScoreSdeVpScheduler", "sigma_max": 3}"#)
            .unwrap_err()
            .to_string();
    assert!(err.contains("no key 'sigma_max'"), "{err}");
}

#[test]
fn bad_input_is_refused_with_the_fix() {
    let message = |r: Result<Sde>| r.unwrap_err().to_string();
    let err = message(Sde::ve(50.0, 0.01));
    assert!(
        err.contains("must be below σ_max") && err.contains("swap"),
        "{err}"
    );
    assert!(message(Sde::ve(1.0, 1.0)).contains("below σ_max"));
    assert!(message(Sde::ve(0.0, 1.0)).contains("positive"));
    assert!(message(Sde::vp(-0.1, 20.0)).contains("β_min"));
    assert!(message(Sde::sub_vp(30.0, 20.0)).contains("β_min ≤ β_max"));
    let zero_snr = NoiseSchedule::new(BetaSchedule::Linear, 100, 1e-4, 0.02, true).unwrap();
    assert!(message(Sde::vp_discrete(&zero_snr)).contains("zero-terminal-SNR"));

    let sde = Sde::vp(0.1, 20.0).unwrap();
    let model = ConstantScore(sde.clone());
    let run = |options: PcOptions| {
        predictor_corrector(
            &model,
            &options,
            &[1, 2],
            Device::Cpu,
            &mut PhiloxNoise::new(0),
            Condition::NONE,
        )
        .unwrap_err()
        .to_string()
    };
    let good = PcOptions {
        steps: 100,
        predictor: Predictor::ReverseDiffusion,
        corrector: Corrector::Langevin {
            snr: 0.16,
            steps: 1,
        },
        eps: 1e-3,
        denoise: true,
    };
    assert!(run(PcOptions { steps: 0, ..good }).contains("at least 1"));
    assert!(run(PcOptions { eps: 0.0, ..good }).contains("(0, 1)"));
    assert!(run(PcOptions {
        corrector: Corrector::Langevin { snr: 0.0, steps: 1 },
        ..good
    })
    .contains("snr"));
    let err = run(PcOptions { steps: 10, ..good });
    assert!(
        err.contains("more steps") && err.contains("Euler–Maruyama"),
        "{err}"
    );
    assert!(LangevinOptions {
        levels: 10,
        steps_per_level: 10,
        step_size: -1.0,
        t_min: 1e-5,
        denoise: true
    }
    .validate()
    .unwrap_err()
    .to_string()
    .contains("step_size"));
    let err = ScoreMatching {
        sde: Sde::vp_discrete(
            &NoiseSchedule::new(BetaSchedule::Linear, 10, 1e-4, 0.02, false).unwrap(),
        )
        .unwrap(),
        parameterization: ScoreParameterization {
            network: ScoreNetwork::Epsilon,
            num_train_timesteps: 10,
        },
        weighting: ScoreWeighting::Variance,
        eps: 1e-5,
        noise_levels: None,
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("DDPM objective"), "{err}");
}

/// A model whose score is NaN: the samplers must say they diverged instead of returning NaN samples.
struct NanScore(Sde);

impl ScoreModel for NanScore {
    fn score(&self, x: &Tensor, _t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        Ok(x.mul_scalar(f32::NAN)?)
    }
    fn sde(&self) -> &Sde {
        &self.0
    }
}

#[test]
fn a_sampler_whose_samples_are_not_finite_says_it_diverged() {
    let model = NanScore(Sde::vp(0.1, 20.0).unwrap());
    let pc = PcOptions {
        steps: 50,
        predictor: Predictor::EulerMaruyama,
        corrector: Corrector::None,
        eps: 1e-3,
        denoise: true,
    };
    let err = predictor_corrector(
        &model,
        &pc,
        &[2, 3],
        Device::Cpu,
        &mut PhiloxNoise::new(0),
        Condition::NONE,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("diverged"), "{err}");
    let langevin = LangevinOptions {
        levels: 3,
        steps_per_level: 2,
        step_size: 1e-3,
        t_min: 1e-3,
        denoise: false,
    };
    let err = diffuse_diffusion::sde::annealed_langevin(
        &model,
        &langevin,
        &[2, 3],
        Device::Cpu,
        &mut PhiloxNoise::new(0),
        Condition::NONE,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("diverged"), "{err}");
}

/// A score of −x at every time.
struct ConstantScore(Sde);

impl ScoreModel for ConstantScore {
    fn score(&self, x: &Tensor, _t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        Ok(x.neg()?)
    }
    fn sde(&self) -> &Sde {
        &self.0
    }
}

/// The Philox source hands out consecutive, non-overlapping pieces of one stream.
#[test]
fn philox_noise_continues_one_stream() {
    let mut noise = PhiloxNoise::new(7);
    let a = noise.next(&[3], Device::Cpu).unwrap().to_vec().unwrap();
    let b = noise.next(&[2, 2], Device::Cpu).unwrap().to_vec().unwrap();
    let whole = Tensor::randn(&[7], 7, 0, Device::Cpu)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!([a, b].concat(), whole);
    assert_eq!(noise.position(), 7);
}
