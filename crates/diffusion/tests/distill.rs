//! Progressive distillation and consistency models against exact answers: the distillation target on the exact
//! Gaussian-mixture denoiser, the consistency parameterisation's boundary condition, and the closed-form consistency
//! function of Gaussian data.

use diffuse_autograd::Var;
use diffuse_diffusion::distill::consistency::{
    check_sampling_sigmas, denoised, NetworkDenoiser, SigmaDenoise,
};
use diffuse_diffusion::distill::progressive::{
    ddim_step, distillation_target, output_target, student_grid, student_loss, teacher_two_steps,
    truncated_snr_weight, x0_target, DistillStep, EPSILON_WEIGHT_LIMIT,
};
use diffuse_diffusion::distill::{
    check_halvings, consistency_sample, consistency_sample_from, default_sampling_sigmas,
    ConsistencyFunction, ConsistencyParam, Curriculum, Distance, DistillConfig, LevelWeighting,
    Method, NetworkConsistency, OdeSolver,
};
use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::sampler::sigmas::{timestep_to_sigma, training_sigmas};
use diffuse_diffusion::sampler::{
    Condition, Ddim, Denoiser, Prediction, Sampler, SamplerOptions, X0Limit,
};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule, SchedulerConfig, TimestepSpacing};
use diffuse_diffusion::train::target::convert;
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};

const DIM: usize = 2;

fn linear_schedule() -> NoiseSchedule {
    NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap()
}

fn f64s(x: &Tensor) -> Vec<f64> {
    x.to_vec().unwrap().into_iter().map(f64::from).collect()
}

/// The exact denoiser of a two-component Gaussian mixture in 2-D under the VP process (as in `samplers.rs`): the
/// marginal at ᾱ is Σ π_k N(√ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I), and the optimal ε is √(1−ᾱ) Σ w_k (x − √ᾱ μ_k)/v_k.
struct Mixture {
    sigmas: Vec<f64>,
    target: Prediction,
}

impl Mixture {
    const WEIGHTS: [f64; 2] = [0.3, 0.7];
    const MEANS: [[f64; DIM]; 2] = [[-1.0, 0.5], [0.8, -0.4]];
    const STDS: [f64; 2] = [0.3, 0.5];

    fn new(schedule: &NoiseSchedule, target: Prediction) -> Self {
        Self {
            sigmas: training_sigmas(schedule).unwrap(),
            target,
        }
    }

    fn optimal(&self, x: &[f64], ab: f64) -> [f64; DIM] {
        let v: Vec<f64> = Self::STDS.iter().map(|s| ab * s * s + 1.0 - ab).collect();
        let log_w: Vec<f64> = (0..2)
            .map(|k| {
                let r2: f64 = (0..DIM)
                    .map(|d| (x[d] - ab.sqrt() * Self::MEANS[k][d]).powi(2))
                    .sum();
                Self::WEIGHTS[k].ln() - 0.5 * DIM as f64 * v[k].ln() - 0.5 * r2 / v[k]
            })
            .collect();
        let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = log_w.iter().map(|l| (l - top).exp()).sum();
        let mut eps = [0.0; DIM];
        for k in 0..2 {
            let w = (log_w[k] - top).exp() / total;
            for d in 0..DIM {
                eps[d] += (1.0 - ab).sqrt() * w * (x[d] - ab.sqrt() * Self::MEANS[k][d]) / v[k];
            }
        }
        let x0: [f64; DIM] =
            std::array::from_fn(|d| (x[d] - (1.0 - ab).sqrt() * eps[d]) / ab.sqrt());
        match self.target {
            Prediction::Epsilon => eps,
            Prediction::Sample => x0,
            Prediction::VPrediction => {
                std::array::from_fn(|d| ab.sqrt() * eps[d] - (1.0 - ab).sqrt() * x0[d])
            }
        }
    }
}

impl Denoiser for Mixture {
    fn predict(&self, x_t: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let x = f64s(x_t);
        let out: Vec<f32> = x
            .chunks(DIM)
            .zip(t)
            .flat_map(|(x, &t)| {
                let sigma = timestep_to_sigma(&self.sigmas, t);
                self.optimal(x, 1.0 / (1.0 + sigma * sigma))
            })
            .map(|v| v as f32)
            .collect();
        Ok(Tensor::from_vec(out, x_t.shape(), x_t.device())?)
    }
    fn prediction(&self) -> Prediction {
        self.target
    }
}

/// A student that outputs, at each of its grid's timesteps, the distillation target computed from the teacher: a
/// student that has learned its target exactly.
struct ExactStudent<'a> {
    teacher: &'a Mixture,
    schedule: &'a NoiseSchedule,
    grid: Vec<DistillStep>,
    /// How the teacher's steps (and the student's sampler) keep x̂0 in range.
    limit: X0Limit,
}

impl Denoiser for ExactStudent<'_> {
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        let steps: Vec<DistillStep> = t
            .iter()
            .map(|&t| {
                *self
                    .grid
                    .iter()
                    .find(|s| s.t as f64 == t)
                    .expect("a grid timestep")
            })
            .collect();
        let x_next =
            teacher_two_steps(self.teacher, self.schedule, self.limit, x_t, &steps, cond)?.landing;
        let x0 = x0_target(self.schedule, x_t, &x_next, &steps)?;
        output_target(self.schedule, self.teacher.target, x_t, &x0, &steps)
    }
    fn prediction(&self) -> Prediction {
        self.teacher.target
    }
}

/// The library's deterministic DDIM sampler on the trailing grid; with a clip range, x̂0 is clipped and the noise
/// taken from the clipped x̂0 (diffusers' `use_clipped_model_output`), as a progressive student is sampled.
fn ddim_run(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    steps: usize,
    noise: &Tensor,
    clip: Option<f64>,
) -> Vec<f64> {
    let options = SamplerOptions {
        steps,
        spacing: TimestepSpacing::Trailing,
        clip_sample_range: clip,
        ..SamplerOptions::default()
    };
    let ddim = Ddim {
        use_clipped_model_output: clip.is_some(),
        ..Ddim::default()
    };
    f64s(
        &Sampler::Ddim(ddim)
            .sample_from(model, schedule, &options, noise, Condition::NONE)
            .unwrap(),
    )
}

#[test]
fn the_distillation_target_takes_two_ddim_teacher_steps_in_one() {
    let schedule = linear_schedule();
    let noise = Tensor::randn(&[64, DIM], 5, 0, Device::Cpu).unwrap();
    for target in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let teacher = Mixture::new(&schedule, target);
        for student_steps in [1, 2, 4] {
            let student = ExactStudent {
                teacher: &teacher,
                schedule: &schedule,
                grid: student_grid(1000, student_steps).unwrap(),
                limit: X0Limit::default(),
            };
            // The library's own DDIM sampler runs both: the teacher with 2N steps, the student with N.
            let want = ddim_run(&teacher, &schedule, 2 * student_steps, &noise, None);
            let got = ddim_run(&student, &schedule, student_steps, &noise, None);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // f32 throughout; solving for x̃ divides by a″ − (s″/s)·a, which is ≥ √ᾱ_249 ≈ 0.68 on this grid
                // except on the first step, where a = √ᾱ_999 = 0.006 makes it ≈ a″; O(1) values: 1e-4 absolute is
                // a few hundred f32 roundings.
                assert!(
                    (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{target:?}, {student_steps} student steps, element {i}: student {g}, teacher {w}"
                );
            }
        }
    }
}

/// The range x̂0 is clipped to in the clipped tests: the mixture's means reach ±1, so the exact x̂0 leaves [−0.25, 0.25]
/// at most points and the clip binds at every level.
const CLIP: f64 = 0.25;

#[test]
fn with_clipping_the_target_is_in_range_and_takes_two_clipped_teacher_steps_in_one() {
    // With x̂0 clipped and the noise taken from the clipped x̂0, each DDIM step is affine in the clipped x̂0, and two
    // of them compose into one whose x̂0 is a positive combination (weights summing to 1) of the two clipped x̂0: the
    // target x̃ lies in the clip range, where the student's own clip leaves it alone, and the student lands exactly
    // on the teacher. (With the network's own noise, the teacher's two clipped steps put x̃ outside the range, and the
    // student's clip then moves it: a student that learns that target lands elsewhere.)
    let schedule = linear_schedule();
    let noise = Tensor::randn(&[64, DIM], 5, 0, Device::Cpu).unwrap();
    let limit = X0Limit {
        clip: Some(CLIP),
        threshold: None,
    };
    for target in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let teacher = Mixture::new(&schedule, target);
        for student_steps in [1, 2, 4] {
            let grid = student_grid(1000, student_steps).unwrap();
            // At every step of the grid, from points noised from data beyond the clip range: the target is in range.
            for step in &grid {
                let picks = vec![*step; 64];
                let x0 = noise.affine(1.5, 0.0).unwrap();
                let (x_t, _) = q_sample(&schedule, &x0, &vec![step.t; 64], 11, 0).unwrap();
                let x_next =
                    teacher_two_steps(&teacher, &schedule, limit, &x_t, &picks, Condition::NONE)
                        .unwrap()
                        .landing;
                let x_tilde = f64s(&x0_target(&schedule, &x_t, &x_next, &picks).unwrap());
                // f32 rounding of O(1) values divided by a″ − (s″/s)·a ≥ 0.03 on these grids.
                let worst = x_tilde.iter().fold(0f64, |m, v| m.max(v.abs()));
                assert!(
                    worst <= CLIP + 1e-4,
                    "{target:?}, step {step:?}: |x̃| reaches {worst}"
                );
            }
            let student = ExactStudent {
                teacher: &teacher,
                schedule: &schedule,
                grid,
                limit,
            };
            let want = ddim_run(&teacher, &schedule, 2 * student_steps, &noise, Some(CLIP));
            let unclipped = ddim_run(&teacher, &schedule, 2 * student_steps, &noise, None);
            let moved = want
                .iter()
                .zip(&unclipped)
                .filter(|(c, u)| (*c - *u).abs() > 1e-3)
                .count();
            assert!(
                moved > 16,
                "{target:?}: the clip moved only {moved} of 128 values"
            );
            let got = ddim_run(&student, &schedule, student_steps, &noise, Some(CLIP));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // As above: f32 throughout, O(1) values.
                assert!(
                    (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                    "{target:?}, {student_steps} student steps, element {i}: student {g}, teacher {w}"
                );
            }
        }
    }
}

#[test]
fn the_student_grid_nests_in_the_teachers() {
    // T = 1000: the 4-step student's steps 999→749→499→249→end, each through the 8-step teacher's midpoint.
    let grid = student_grid(1000, 4).unwrap();
    let t: Vec<(usize, usize, Option<usize>)> = grid.iter().map(|s| (s.t, s.mid, s.next)).collect();
    assert_eq!(
        t,
        vec![
            (999, 874, Some(749)),
            (749, 624, Some(499)),
            (499, 374, Some(249)),
            (249, 124, None)
        ]
    );
    let err = student_grid(1000, 600).unwrap_err().to_string();
    assert!(err.contains("1200 steps"), "{err}");
}

#[test]
fn the_truncated_snr_weight_is_max_snr_1_and_leaves_out_eps_beyond_its_limit() {
    for ab in [0.001, 0.0101, 0.3, 0.5, 0.9, 0.999] {
        let snr: f64 = ab / (1.0 - ab);
        // The weight of the squared x̂0 error, whatever the student predicts.
        for prediction in [Prediction::Sample, Prediction::VPrediction] {
            let got = truncated_snr_weight(prediction, ab);
            assert!(
                (got - snr.max(1.0)).abs() <= 1e-12 * snr.max(1.0),
                "{prediction:?} ᾱ {ab}: {got}"
            );
        }
        // ε: x̂0 = (x − s·ε)/a puts max(SNR, 1)/SNR = max(1, 1/SNR) on the output error; the sample is left out
        // beyond the limit (ᾱ = 0.001 has 1/SNR = 999: weight 0; ᾱ = 0.0101 has 1/SNR ≈ 98: kept).
        let on_output = (1.0 / snr).max(1.0);
        let want = if on_output > EPSILON_WEIGHT_LIMIT {
            0.0
        } else {
            snr.max(1.0)
        };
        let got = truncated_snr_weight(Prediction::Epsilon, ab);
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "ᾱ {ab}: {got} vs {want}"
        );
    }
}

/// The per-sample loss of a student whose output is `out`, and its gradient with respect to `out`.
fn loss_and_gradient(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x_t: &Tensor,
    out: &Tensor,
    target: &diffuse_diffusion::distill::progressive::Target,
    steps: &[DistillStep],
) -> (Vec<f64>, Vec<f64>) {
    let out = Var::leaf(out.clone());
    let loss = student_loss(schedule, prediction, x_t, &out, target, steps).unwrap();
    let per_sample = f64s(loss.tensor());
    let grads = loss.sum_all().unwrap().backward().unwrap();
    (per_sample, f64s(grads.get(&out).unwrap()))
}

#[test]
fn the_loss_counts_only_what_the_clipped_student_step_does_not_land() {
    // The exact mixture denoiser teaches with x̂0 clipped to ±0.25, so at many elements both of the teacher's clipped
    // estimates sit on a bound and x̃ is that bound. A student whose x̂0 goes beyond the bound there, and equals x̃
    // elsewhere, lands exactly on the teacher's two steps once its sampler clips: the loss must be zero. The earlier
    // loss on the output (ε, x0 or v) counted the part beyond the bound, which the sampler never sees; it is
    // computed here beside the new one and must be clearly positive. A student that stops short of the bound lands
    // elsewhere, and the loss counts exactly that shortfall.
    let schedule = linear_schedule();
    let limit = X0Limit {
        clip: Some(CLIP),
        threshold: None,
    };
    let n = 64;
    let noise = Tensor::randn(&[n, DIM], 5, 0, Device::Cpu).unwrap();
    let x0 = noise.affine(1.5, 0.0).unwrap();
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let teacher = Mixture::new(&schedule, prediction);
        let grid = student_grid(1000, 4).unwrap();
        for step in &grid {
            let picks = vec![*step; n];
            let t = vec![step.t; n];
            let ab = schedule.alpha_bar(step.t).unwrap();
            let weight = truncated_snr_weight(prediction, ab);
            if weight == 0.0 {
                // An ε student's high-noise steps (1/SNR > 100 at t = 999 and 749 of the linear schedule): left out.
                assert!(
                    prediction == Prediction::Epsilon && step.t >= 749,
                    "{prediction:?} t = {}",
                    step.t
                );
                continue;
            }
            let (x_t, _) = q_sample(&schedule, &x0, &t, 11, 0).unwrap();
            let teacher_steps =
                teacher_two_steps(&teacher, &schedule, limit, &x_t, &picks, Condition::NONE)
                    .unwrap();
            let target =
                distillation_target(&schedule, limit, &x_t, &teacher_steps, &picks).unwrap();
            let bound = f64s(target.bound.as_ref().expect("an elementwise clip"));
            let x_tilde = f64s(&target.x0);
            let pinned = bound.iter().filter(|b| **b != 0.0).count();
            assert!(
                pinned >= 16,
                "{prediction:?} t = {}: only {pinned} of 128 elements pinned",
                step.t
            );
            for (b, x) in bound.iter().zip(&x_tilde) {
                assert!(
                    *b == 0.0 || *x == b * CLIP,
                    "a pinned element's target is the bound itself"
                );
            }
            // Beyond the bound where pinned (0.5 further out), on x̃ elsewhere.
            let beyond: Vec<f32> = bound
                .iter()
                .zip(&x_tilde)
                .map(|(&b, &x)| (x + b * 0.5) as f32)
                .collect();
            let beyond = Tensor::from_vec(beyond, &[n, DIM], Device::Cpu).unwrap();
            let out = output_target(&schedule, prediction, &x_t, &beyond, &picks).unwrap();
            let landing = f64s(
                &ddim_step(
                    &schedule,
                    prediction,
                    limit,
                    &x_t,
                    &out,
                    &t,
                    &vec![step.next; n],
                )
                .unwrap(),
            );
            for (g, w) in landing.iter().zip(&f64s(&teacher_steps.landing)) {
                // f32, O(1) values through x̂0 → output → x̂0 (÷ a ≥ √ᾱ_749 ≈ 0.27 here): a few hundred roundings.
                assert!(
                    (g - w).abs() < 1e-4,
                    "{prediction:?} t = {}: lands at {g}, teacher at {w}",
                    step.t
                );
            }
            let (loss, gradient) =
                loss_and_gradient(&schedule, prediction, &x_t, &out, &target, &picks);
            // The old loss: the truncated-SNR weight written on the output error, max(SNR, 1)·(∂x̂0/∂out)².
            let slope = convert(prediction, Prediction::Sample, ab).1;
            let on_target =
                f64s(&output_target(&schedule, prediction, &x_t, &target.x0, &picks).unwrap());
            let old: f64 = f64s(&out)
                .iter()
                .zip(&on_target)
                .map(|(o, t)| weight * slope * slope * (o - t).powi(2))
                .sum::<f64>()
                / (n * DIM) as f64;
            // It counts 0.5² at each pinned element.
            let beyond_bound = weight * 0.25 * pinned as f64 / (n * DIM) as f64;
            assert!(
                (old - beyond_bound).abs() < 1e-3 * beyond_bound,
                "{prediction:?}: old loss {old}"
            );
            let new = loss.iter().sum::<f64>() / n as f64;
            // The free elements' x̂0 is x̃ up to the round trip's f32 rounding (relative 1e-6 of O(1) values, squared).
            assert!(
                new < 1e-8 * weight,
                "{prediction:?} t = {}: loss {new}, old loss {old}",
                step.t
            );
            // Pinned elements beyond their bound get no gradient at all.
            for (g, b) in gradient.iter().zip(&bound) {
                if *b != 0.0 {
                    assert_eq!(*g, 0.0);
                }
            }
            // Short of the bound by 0.1 where pinned: the loss is that shortfall, with the gradient of its square.
            let short: Vec<f32> = bound
                .iter()
                .zip(&x_tilde)
                .map(|(&b, &x)| (x - b * 0.1) as f32)
                .collect();
            let short = Tensor::from_vec(short, &[n, DIM], Device::Cpu).unwrap();
            let out = output_target(&schedule, prediction, &x_t, &short, &picks).unwrap();
            let (loss, gradient) =
                loss_and_gradient(&schedule, prediction, &x_t, &out, &target, &picks);
            let new = loss.iter().sum::<f64>() / n as f64;
            let want = weight * 0.01 * pinned as f64 / (n * DIM) as f64;
            // f32 rounding of 0.1 differences: relative 1e-4.
            assert!(
                (new - want).abs() < 1e-4 * want,
                "{prediction:?}: {new} vs {want}"
            );
            for (g, b) in gradient.iter().zip(&bound) {
                // d/d out of weight·(x̂0 − x̃)²/D per sample: 2·weight·slope·(x̂0 − x̃)/D, with x̂0 − x̃ = −0.1·b.
                let want = 2.0 * weight * slope * (-0.1 * b) / DIM as f64;
                // f32: relative 1e-3, and the free elements' round-trip error (1e-6 of O(1) values).
                let tolerance = 1e-3 * want.abs() + 1e-4 * weight * slope.abs();
                assert!(
                    (g - want).abs() < tolerance,
                    "{prediction:?}: gradient {g} vs {want}"
                );
            }
        }
    }
}

#[test]
fn without_an_elementwise_clip_the_loss_is_the_truncated_snr_x0_loss() {
    // No clip (and dynamic thresholding, whose range is per sample) pins nothing: the loss is max(SNR, 1) times the
    // mean squared x̂0 error, which is the old output-space loss.
    let schedule = linear_schedule();
    let n = 8;
    let x_t = Tensor::randn(&[n, DIM], 1, 0, Device::Cpu).unwrap();
    let x_tilde = Tensor::randn(&[n, DIM], 2, 0, Device::Cpu).unwrap();
    let out = Tensor::randn(&[n, DIM], 3, 0, Device::Cpu).unwrap();
    let step = student_grid(1000, 4).unwrap()[1];
    let picks = vec![step; n];
    let target = diffuse_diffusion::distill::progressive::Target {
        x0: x_tilde.clone(),
        bound: None,
    };
    let ab = schedule.alpha_bar(step.t).unwrap();
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let (loss, _) = loss_and_gradient(&schedule, prediction, &x_t, &out, &target, &picks);
        let (cx, co) = convert(prediction, Prediction::Sample, ab);
        let (x, o, y) = (f64s(&x_t), f64s(&out), f64s(&x_tilde));
        for b in 0..n {
            let want: f64 = (0..DIM)
                .map(|d| (cx * x[b * DIM + d] + co * o[b * DIM + d] - y[b * DIM + d]).powi(2))
                .sum::<f64>()
                / DIM as f64
                * truncated_snr_weight(prediction, ab);
            // f32 evaluation of O(1) terms.
            assert!(
                (loss[b] - want).abs() < 1e-5 * want.max(1.0),
                "{prediction:?} sample {b}: {} vs {want}",
                loss[b]
            );
        }
    }
}

#[test]
fn progressive_step_counts_must_halve_to_a_power_of_two() {
    let err = check_halvings(64, 3, 1000).unwrap_err().to_string();
    assert!(
        err.contains("--to-steps") && err.contains("power of two"),
        "{err}"
    );
    let err = check_halvings(64, 64, 1000).unwrap_err().to_string();
    assert!(err.contains("below the teacher's 64"), "{err}");
    let err = check_halvings(48, 4, 1000).unwrap_err().to_string();
    assert!(
        err.contains("--teacher-steps") && err.contains("48"),
        "{err}"
    );
    let err = check_halvings(2048, 4, 1000).unwrap_err().to_string();
    assert!(err.contains("1000 timesteps"), "{err}");
    check_halvings(64, 1, 1000).unwrap();
}

#[test]
fn only_the_first_rounds_teacher_is_guided() {
    // Later teachers are earlier students, which already give the guided output: guiding them again would compound
    // the scale (about w² after two rounds).
    let config = DistillConfig {
        method: Method::Progressive {
            from_steps: 16,
            to_steps: 2,
        },
        teacher: None,
        scheduler: SchedulerConfig::default(),
        seed: 0,
        batch_size: 1,
        steps_per_round: 1,
        lr: 1e-4,
        grad_clip: None,
        ema_decay: 0.999,
        guidance: 3.0,
        null_class: Some(10),
    };
    assert_eq!(config.method.rounds(), 3);
    assert_eq!(config.teacher_guidance(1), 3.0);
    assert_eq!(config.teacher_guidance(2), 1.0);
    assert_eq!(config.teacher_guidance(3), 1.0);
}

// ---- consistency models ----------------------------------------------------------------------------------------

/// A network that outputs huge values whatever it is asked: the boundary condition must not let them through.
struct Wild(Prediction);

impl Denoiser for Wild {
    fn predict(&self, x_t: &Tensor, _t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        Ok(x_t.affine(-3e3, 7e2)?)
    }
    fn prediction(&self) -> Prediction {
        self.0
    }
}

#[test]
fn the_consistency_function_is_the_identity_at_sigma_min_exactly() {
    let schedule =
        NoiseSchedule::new(BetaSchedule::SquaredcosCapV2, 1000, 1e-4, 0.02, false).unwrap();
    let x = Tensor::randn(&[5, 1, 3, 4], 9, 0, Device::Cpu).unwrap();
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let model = Wild(prediction);
        let f = NetworkConsistency::new(&model, &schedule).unwrap();
        let sigma_min = f.param().sigma_min;
        let out = f.apply(&x, &[sigma_min; 5], Condition::NONE).unwrap();
        assert_eq!(out.to_vec().unwrap(), x.to_vec().unwrap(), "{prediction:?}");
        // Just above σ_min the network already counts.
        let out = f.apply(&x, &[sigma_min * 1.5; 5], Condition::NONE).unwrap();
        assert_ne!(out.to_vec().unwrap(), x.to_vec().unwrap());
        // Below σ_min is refused.
        let err = f
            .apply(&x, &[sigma_min * 0.5; 5], Condition::NONE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("outside"), "{err}");
    }
}

#[test]
fn the_parameterisation_has_the_papers_coefficients() {
    let param = ConsistencyParam {
        sigma_min: 0.002,
        sigma_max: 80.0,
        sigma_data: 0.5,
    };
    for sigma in [0.002, 0.01, 0.5, 3.0, 80.0] {
        // For an x0 network f = A·x + B·D; with D = c_skip^D x + c_out^D F that is c_skip x + c_out F.
        let (a, b) = param.coefficients(Prediction::Sample, sigma).unwrap();
        let d2: f64 = 0.25;
        let (skip_d, out_d) = (
            d2 / (sigma * sigma + d2),
            sigma * 0.5 / (sigma * sigma + d2).sqrt(),
        );
        let c_skip = d2 / ((sigma - 0.002_f64).powi(2) + d2);
        let c_out = (sigma - 0.002) * 0.5 / (sigma * sigma + d2).sqrt();
        assert!((a + b * skip_d - c_skip).abs() < 1e-12, "σ = {sigma}");
        assert!((b * out_d - c_out).abs() < 1e-12, "σ = {sigma}");
    }
}

/// Gaussian data N(μ, s²) per coordinate: in the σ-view the marginal is N(μ, s² + σ²), the denoiser
/// `D(x, σ) = μ + s²/(s² + σ²)·(x − μ)`, and the probability-flow ODE `dx/dσ = (x − D)/σ = σ(x − μ)/(s² + σ²)` keeps
/// `(x − μ)/√(s² + σ²)` constant, so the consistency function is `f(x, σ) = μ + (x − μ)·√(s² + σ_min²)/√(s² + σ²)`.
struct Gaussian {
    mean: f64,
    std: f64,
    param: ConsistencyParam,
}

impl Gaussian {
    fn new() -> Self {
        Self {
            mean: 0.3,
            std: 0.5,
            param: ConsistencyParam {
                sigma_min: 0.002,
                sigma_max: 80.0,
                sigma_data: 0.5,
            },
        }
    }

    fn map(&self, x: &Tensor, sigmas: &[f64], scale: impl Fn(f64) -> f64) -> Tensor {
        let per = x.numel() / sigmas.len();
        let out: Vec<f32> = f64s(x)
            .chunks(per)
            .zip(sigmas)
            .flat_map(|(xs, &s)| {
                let k = scale(s);
                xs.iter()
                    .map(move |&x| (self.mean + (x - self.mean) * k) as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_vec(out, x.shape(), x.device()).unwrap()
    }

    /// The exact flow from σ to σ′.
    fn flow(&self, x: &Tensor, from: &[f64], to: &[f64]) -> Tensor {
        let s2 = self.std * self.std;
        let ratios: Vec<f64> = from
            .iter()
            .zip(to)
            .map(|(f, t)| ((s2 + t * t) / (s2 + f * f)).sqrt())
            .collect();
        let per = x.numel() / from.len();
        let out: Vec<f32> = f64s(x)
            .chunks(per)
            .zip(&ratios)
            .flat_map(|(xs, &k)| {
                xs.iter()
                    .map(move |&x| (self.mean + (x - self.mean) * k) as f32)
                    .collect::<Vec<_>>()
            })
            .collect();
        Tensor::from_vec(out, x.shape(), x.device()).unwrap()
    }
}

impl ConsistencyFunction for Gaussian {
    fn apply(&self, x: &Tensor, sigmas: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let s2 = self.std * self.std;
        let m = self.param.sigma_min;
        Ok(self.map(x, sigmas, |s| ((s2 + m * m) / (s2 + s * s)).sqrt()))
    }
    fn param(&self) -> ConsistencyParam {
        self.param
    }
}

impl SigmaDenoise for Gaussian {
    fn denoise(&self, x: &Tensor, sigmas: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let s2 = self.std * self.std;
        Ok(self.map(x, sigmas, |s| s2 / (s2 + s * s)))
    }
}

/// The largest |f(x_{n+1}, σ_{n+1}) − f(x̂_n, σ_n)| over a batch on a pair of adjacent levels, with `x̂_n` from `step`.
fn consistency_gap(
    g: &Gaussian,
    sigma: f64,
    sigma_next: f64,
    step: impl Fn(&Tensor, &[f64], &[f64]) -> Tensor,
) -> f64 {
    let b = 256;
    let x0 = Tensor::randn(&[b, 1], 1, 0, Device::Cpu)
        .unwrap()
        .affine(g.std as f32, g.mean as f32)
        .unwrap();
    let z = Tensor::randn(&[b, 1], 2, 0, Device::Cpu).unwrap();
    let x_next = x0.add(&z.mul_scalar(sigma_next as f32).unwrap()).unwrap();
    let (from, to) = (vec![sigma_next; b], vec![sigma; b]);
    let x_hat = step(&x_next, &from, &to);
    let a = f64s(&g.apply(&x_next, &from, Condition::NONE).unwrap());
    let c = f64s(&g.apply(&x_hat, &to, Condition::NONE).unwrap());
    a.iter()
        .zip(&c)
        .map(|(a, c)| (a - c).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_exact_consistency_function_has_zero_consistency_loss() {
    let g = Gaussian::new();
    let levels = g.param.levels(18).unwrap();
    for pair in levels.windows(2) {
        let gap = consistency_gap(&g, pair[0], pair[1], |x, f, t| g.flow(x, f, t));
        // Only f32 rounding of O(σ_max) values: 80 · 2⁻²³ ≈ 1e-5.
        assert!(gap < 2e-5, "levels {pair:?}: {gap}");
    }
}

#[test]
fn the_edm_output_weighting_is_c_out_over_an_eps_networks_coefficient() {
    let param = Gaussian::new().param;
    // σ_d/√(σ² + σ_d²) with σ_d = 0.5, written out.
    for (sigma, want) in [
        (0.002, 0.5 / (0.002f64 * 0.002 + 0.25).sqrt()),
        (0.5, 0.5f64.sqrt()),
        (1.5, 0.5 / 2.5f64.sqrt()),
        (80.0, 0.5 / 6400.25f64.sqrt()),
    ] {
        assert_eq!(LevelWeighting::Uniform.weight(&param, sigma), 1.0);
        let w = LevelWeighting::EdmOutput.weight(&param, sigma);
        assert!((w - want).abs() < 1e-15, "σ = {sigma}: {w} vs {want}");
    }
    // Above σ_min, λ·|B_ε| is EDM's c_out: an ε network's levels get the gradient scale an EDM network's would.
    for sigma in [0.01, 0.5, 3.0, 21.0, 80.0] {
        let (_, b) = param.coefficients(Prediction::Epsilon, sigma).unwrap();
        let w = LevelWeighting::EdmOutput.weight(&param, sigma);
        assert!(
            (w * b.abs() - param.c_out(sigma)).abs() < 1e-12,
            "σ = {sigma}"
        );
    }
}

#[test]
fn the_weighted_consistency_loss_is_the_per_sample_weighted_mean() {
    // The consistency distance between the exact f at σ_{n+1} and after a DDIM step to σ_n, on levels from every part
    // of the ramp: the weighted loss and its gradient against the per-sample sums written out.
    let g = Gaussian::new();
    let levels = g.param.levels(18).unwrap();
    let picks = [0usize, 3, 8, 12, 16, 16];
    let (sigma, sigma_next): (Vec<f64>, Vec<f64>) =
        picks.iter().map(|&n| (levels[n], levels[n + 1])).unzip();
    let b = picks.len();
    let x0 = Tensor::randn(&[b, 1, 2, 2], 3, 0, Device::Cpu)
        .unwrap()
        .affine(g.std as f32, g.mean as f32)
        .unwrap();
    let z = Tensor::randn(&[b, 1, 2, 2], 4, 0, Device::Cpu).unwrap();
    let noise = Tensor::from_vec(
        f64s(&z)
            .chunks(4)
            .zip(&sigma_next)
            .flat_map(|(zs, &s)| zs.iter().map(move |&z| (z * s) as f32).collect::<Vec<_>>())
            .collect(),
        &[b, 1, 2, 2],
        Device::Cpu,
    )
    .unwrap();
    let x_next = x0.add(&noise).unwrap();
    let x_hat = OdeSolver::Ddim
        .step(
            &g,
            X0Limit::default(),
            &x_next,
            &sigma_next,
            &sigma,
            Condition::NONE,
        )
        .unwrap();
    let target = g.apply(&x_hat, &sigma, Condition::NONE).unwrap();
    let pred = g.apply(&x_next, &sigma_next, Condition::NONE).unwrap();
    // A fresh graph each time (back-propagation frees it): the student's output and its per-sample distances.
    let forward = |distance: Distance| {
        let pred = Var::leaf(pred.clone());
        let per_sample = distance.per_sample(&pred, &target, None).unwrap();
        (pred, per_sample)
    };
    for distance in [Distance::L2, Distance::PseudoHuber] {
        let (pred, per_sample) = forward(distance);
        let d = f64s(per_sample.tensor());
        assert!(
            d.iter().any(|&d| d > 0.0),
            "{distance:?}: the DDIM step's error"
        );
        let grads_d = per_sample.sum_all().unwrap().backward().unwrap();
        let grad_d = f64s(grads_d.get(&pred).unwrap());
        for weighting in [LevelWeighting::Uniform, LevelWeighting::EdmOutput] {
            let (pred, per_sample) = forward(distance);
            let loss = weighting
                .weighted_mean(&g.param, &per_sample, &sigma_next)
                .unwrap();
            let lambda: Vec<f64> = sigma_next
                .iter()
                .map(|&s| match weighting {
                    LevelWeighting::Uniform => 1.0,
                    LevelWeighting::EdmOutput => 0.5 / (s * s + 0.25).sqrt(),
                })
                .collect();
            let want = d.iter().zip(&lambda).map(|(d, l)| d * l).sum::<f64>() / b as f64;
            let got = f64s(loss.tensor())[0];
            // f32 products and a sum of 6 terms: a few ulps of the largest.
            assert!(
                (got - want).abs() < 1e-6 * want.abs().max(1e-6),
                "{distance:?} {weighting:?}: {got} vs {want}"
            );
            // ∂loss/∂pred = λ_i/N · ∂d_i/∂pred, per sample.
            let grad = f64s(loss.backward().unwrap().get(&pred).unwrap());
            for (i, (g_got, g_d)) in grad.iter().zip(&grad_d).enumerate() {
                let want = lambda[i / 4] / b as f64 * g_d;
                assert!(
                    (g_got - want).abs() <= 1e-6 * want.abs() + 1e-12,
                    "{distance:?} {weighting:?} value {i}: {g_got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn the_teachers_ode_step_converges_at_its_order() {
    // On the exact denoiser, the consistency loss against the exact f is the ODE step's local error: O(h²) for the
    // Euler/DDIM step, O(h³) for Heun. Halving the gap must divide it by about 4 and 8.
    let g = Gaussian::new();
    let gap = |solver: OdeSolver, h: f64| {
        consistency_gap(&g, 1.0, 1.0 + h, |x, f, t| {
            solver
                .step(&g, X0Limit::default(), x, f, t, Condition::NONE)
                .unwrap()
        })
    };
    for (solver, order) in [(OdeSolver::Ddim, 2.0), (OdeSolver::Heun, 3.0)] {
        let (coarse, fine) = (gap(solver, 0.2), gap(solver, 0.1));
        let ratio = (coarse / fine).log2();
        eprintln!("{solver:?}: gaps {coarse} → {fine}, order {ratio}");
        assert!(
            (ratio - order).abs() < 0.3,
            "{solver:?}: gaps {coarse} → {fine}, order {ratio}"
        );
    }
}

fn sample_moments(x: &[f64]) -> (f64, f64, f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let m2 = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let m4 = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
    (mean, m2, (m2 / n).sqrt(), ((m4 - m2 * m2) / n).sqrt())
}

#[test]
fn consistency_samples_of_the_exact_function_have_the_datas_moments() {
    let g = Gaussian::new();
    let (s2, m2) = (g.std * g.std, g.param.sigma_min.powi(2));
    let n = 20_000;
    // One step: x = σ_max z mapped by f: variance σ_max²·(s² + σ_min²)/(s² + σ_max²).
    let one = consistency_sample(
        &g,
        &[80.0],
        X0Limit::default(),
        &[n, 1],
        3,
        Device::Cpu,
        Condition::NONE,
    )
    .unwrap();
    let var_one = 6400.0 * (s2 + m2) / (s2 + 6400.0);
    // Two steps through τ = 0.8: the first result plus √(τ² − σ_min²) z, mapped from τ.
    let two = consistency_sample(
        &g,
        &[80.0, 0.8],
        X0Limit::default(),
        &[n, 1],
        3,
        Device::Cpu,
        Condition::NONE,
    )
    .unwrap();
    let var_two = (var_one + 0.64 - m2) * (s2 + m2) / (s2 + 0.64);
    for (label, x, var) in [("1 step", one, var_one), ("2 steps", two, var_two)] {
        let (mean, v, se_mean, se_var) = sample_moments(&f64s(&x));
        assert!(
            (mean - g.mean).abs() < 4.0 * se_mean,
            "{label}: mean {mean}"
        );
        assert!(
            (v - var).abs() < 4.0 * se_var,
            "{label}: variance {v}, want {var}"
        );
        assert!(
            (var - s2).abs() < 1e-4,
            "{label}: the exact variance {var} is the data's"
        );
    }
}

#[test]
fn sampling_levels_are_checked_and_default_to_the_karras_ramp() {
    let g = Gaussian::new();
    let noise = Tensor::randn(&[2, 1], 0, 0, Device::Cpu).unwrap();
    for (sigmas, want) in [
        (vec![], "at least one"),
        (vec![80.0, 90.0], "outside"),
        (vec![80.0, 0.001], "outside"),
        (vec![2.0, 3.0], "must decrease"),
    ] {
        let err =
            consistency_sample_from(&g, &sigmas, X0Limit::default(), &noise, 0, Condition::NONE)
                .unwrap_err()
                .to_string();
        assert!(err.contains(want), "{sigmas:?}: {err}");
    }
    let sigmas = default_sampling_sigmas(&g.param, 4).unwrap();
    assert_eq!(sigmas.len(), 4);
    assert_eq!(sigmas[0], 80.0);
    check_sampling_sigmas(&sigmas, &g.param).unwrap();
}

#[test]
fn the_network_view_denoises_exactly_for_every_prediction() {
    // The σ-view denoiser of the VP mixture network is D(x, σ) = E[x0 | x0 + σε = x], whatever the network predicts.
    let schedule = linear_schedule();
    let x = Tensor::randn(&[6, DIM], 4, 0, Device::Cpu)
        .unwrap()
        .mul_scalar(2.0)
        .unwrap();
    let sigmas = [0.05, 0.3, 1.0, 2.5, 7.0, 40.0];
    let reference = {
        let m = Mixture::new(&schedule, Prediction::Sample);
        f64s(&denoised(&m, &m.sigmas, &x, &sigmas, Condition::NONE).unwrap())
    };
    for prediction in [Prediction::Epsilon, Prediction::VPrediction] {
        let m = Mixture::new(&schedule, prediction);
        let d = NetworkDenoiser {
            model: &m,
            training_sigmas: m.sigmas.clone(),
        };
        let got = f64s(&d.denoise(&x, &sigmas, Condition::NONE).unwrap());
        for (i, (g, w)) in got.iter().zip(&reference).enumerate() {
            // ε at σ = 40 multiplies the network's f32 output by 40: 1e-4 relative to σ·|x|.
            assert!(
                (g - w).abs() < 1e-5 * (1.0 + 40.0 * w.abs()),
                "{prediction:?} element {i}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn the_curriculum_doubles_the_levels_in_equal_stages() {
    let c = Curriculum::default();
    // log2(1280/10) + 1 = 8 stages of K/8 steps: 11, 21, 41, … 1281.
    let total = 800;
    let levels: Vec<usize> = (0..8).map(|stage| c.levels(stage * 100, total)).collect();
    assert_eq!(levels, vec![11, 21, 41, 81, 161, 321, 641, 1281]);
    assert_eq!(c.levels(799, total), 1281);
    let param = ConsistencyParam {
        sigma_min: 0.002,
        sigma_max: 80.0,
        sigma_data: 0.5,
    };
    let grid = param.levels(11).unwrap();
    let p = c.pair_probabilities(&grid);
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // The log-normal's mode e^{-1.1} ≈ 0.33 lies in the most likely pair.
    let best = p
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert!(
        grid[best] < 0.6 && grid[best + 1] > 0.2,
        "pair {best}: {} – {}",
        grid[best],
        grid[best + 1]
    );
}

#[test]
fn every_consistency_step_is_clipped_the_first_included() {
    // A function whose one-step output is its input: σ_max·z, values up to hundreds. With the run's clipping every
    // clean-sample estimate is kept in [−1, 1], the single step's as much as the later ones'.
    struct Identity(ConsistencyParam);
    impl ConsistencyFunction for Identity {
        fn apply(&self, x: &Tensor, _sigmas: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
            Ok(x.clone())
        }
        fn param(&self) -> ConsistencyParam {
            self.0
        }
    }
    let f = Identity(Gaussian::new().param);
    let noise = Tensor::randn(&[64, 4], 7, 0, Device::Cpu).unwrap();
    let clip = X0Limit {
        clip: Some(1.0),
        threshold: None,
    };
    for sigmas in [vec![80.0], vec![80.0, 0.8]] {
        let x = consistency_sample_from(&f, &sigmas, clip, &noise, 0, Condition::NONE).unwrap();
        let largest = f64s(&x).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(largest <= 1.0, "{sigmas:?}: |x| up to {largest}");
        assert!(largest == 1.0, "{sigmas:?}: the test needs values to clip");
    }
}

#[test]
fn the_clipped_ddim_teacher_step_is_the_teachers_ddim_sampler_step() {
    // Consistency distillation's DDIM teacher step with the run's clipping, chained over the trailing 2-step grid
    // (σ_999 → σ_499 → 0) in the σ-view, against the library's DDIM sampler with the same clip and the noise from the
    // clipped x̂0, on the exact mixture denoiser (ε). The exact x̂0 stays within the mixture's means, so the clip is
    // set to 0.5 to be active.
    let schedule = linear_schedule();
    let teacher = Mixture::new(&schedule, Prediction::Epsilon);
    let sigmas = training_sigmas(&schedule).unwrap();
    let b = 64;
    let noise = Tensor::randn(&[b, DIM], 11, 0, Device::Cpu).unwrap();
    let clip = X0Limit {
        clip: Some(0.5),
        threshold: None,
    };
    let options = SamplerOptions {
        steps: 2,
        spacing: TimestepSpacing::Trailing,
        clip_sample_range: Some(0.5),
        ..SamplerOptions::default()
    };
    let ddim = Ddim {
        use_clipped_model_output: true,
        ..Ddim::default()
    };
    let sampled = f64s(
        &Sampler::Ddim(ddim)
            .sample_from(&teacher, &schedule, &options, &noise, Condition::NONE)
            .unwrap(),
    );
    let d = NetworkDenoiser {
        model: &teacher,
        training_sigmas: sigmas.clone(),
    };
    let (s999, s499) = (sigmas[999], sigmas[499]);
    let mut x = noise.mul_scalar((1.0 + s999 * s999).sqrt() as f32).unwrap();
    let mut clipped_somewhere = false;
    for (from, to) in [(s999, s499), (s499, 0.0)] {
        let raw = denoised(&teacher, &sigmas, &x, &vec![from; b], Condition::NONE).unwrap();
        clipped_somewhere |= f64s(&raw).iter().any(|v| v.abs() > 0.5);
        x = OdeSolver::Ddim
            .step(&d, clip, &x, &vec![from; b], &vec![to; b], Condition::NONE)
            .unwrap();
    }
    assert!(clipped_somewhere, "the test needs x̂0 outside [−0.5, 0.5]");
    for (a, b) in f64s(&x).iter().zip(&sampled) {
        // f32 rounding of σ-view values up to ~σ_999·|x_T| ≈ 500, scaled back by √ᾱ_999: ~1e-5 absolute.
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}
