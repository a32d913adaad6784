//! Image-to-image (SDEdit) and inpainting (RePaint) against an exact denoiser for Gaussian-mixture data.

use diffuse_diffusion::edit::{jump_schedule, EditStart, Move, RePaint, RePaintRun, Sdedit};
use diffuse_diffusion::rng::SplitMix64;
use diffuse_diffusion::sampler::{
    Condition, Ddim, Denoiser, DpmAlgorithm, DpmSolver, Euler, Pndm, Prediction, Sampler,
    SamplerOptions, SigmaRange, SigmaSchedule, SigmaSpacing, Start, UniPc,
};
use diffuse_diffusion::schedule::{TimestepSpacing, VarianceType};
use diffuse_diffusion::Result;
use diffuse_tensor::{DType, Device, Tensor};
use std::cell::RefCell;

#[path = "common/vp_mixture.rs"]
#[allow(dead_code)]
mod vp_mixture;
use vp_mixture::{f64s, linear_schedule, Mixture, DIM};

/// One of each family: VP single-step (DDPM, DDIM), VP multistep (PNDM, DPM-Solver, UniPC), σ-space (Euler, Euler
/// ancestral, Heun, LMS); PNDM with and without its Runge–Kutta warm-up.
fn samplers() -> Vec<Sampler> {
    vec![
        Sampler::Ddpm {
            variance: VarianceType::FixedSmall,
        },
        Sampler::Ddim(Ddim::default()),
        Sampler::Pndm(Pndm::default()),
        Sampler::Pndm(Pndm {
            skip_prk_steps: true,
            ..Pndm::default()
        }),
        Sampler::Euler(Euler::default()),
        Sampler::EulerAncestral,
        Sampler::Heun,
        Sampler::Lms { order: 4 },
        Sampler::DpmSolver(DpmSolver::default()),
        Sampler::DpmSolver(DpmSolver {
            algorithm: DpmAlgorithm::SdeDpmSolverPp,
            ..DpmSolver::default()
        }),
        Sampler::UniPc(UniPc::default()),
    ]
}

fn options(steps: usize, seed: u64) -> SamplerOptions {
    SamplerOptions {
        steps,
        seed,
        spacing: TimestepSpacing::Trailing,
        sigmas: SigmaSchedule {
            spacing: SigmaSpacing::Karras,
            range: SigmaRange::Training,
            ..SigmaSchedule::default()
        },
        ..SamplerOptions::default()
    }
}

/// `n` exact draws from the mixture, as an (n, DIM) tensor.
fn data(model: &Mixture, n: usize, seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let z = f64s(&Tensor::randn(&[n, DIM], seed, 0, Device::Cpu).unwrap());
    let mut out = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let u = rng.next_f64();
        let k = if u < model.weights[0] { 0 } else { 1 };
        for d in 0..DIM {
            out.push((model.means[k][d] + model.stds[k] * z[i * DIM + d]) as f32);
        }
    }
    Tensor::from_vec(out, &[n, DIM], Device::Cpu).unwrap()
}

/// Per coordinate: (mean, variance, standard error of the mean, standard error of the variance).
fn moments(samples: &[f64], dim: usize) -> Vec<(f64, f64, f64, f64)> {
    let n = (samples.len() / dim) as f64;
    (0..dim)
        .map(|d| {
            let xs: Vec<f64> = samples.iter().skip(d).step_by(dim).copied().collect();
            let mean = xs.iter().sum::<f64>() / n;
            let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            let m4 = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
            (mean, m2, (m2 / n).sqrt(), ((m4 - m2 * m2) / n).sqrt())
        })
        .collect()
}

/// Records the timesteps of every call.
struct Calls<'a> {
    inner: &'a dyn Denoiser,
    timesteps: RefCell<Vec<f64>>,
}

impl Denoiser for Calls<'_> {
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        self.timesteps.borrow_mut().push(t[0]);
        self.inner.predict(x_t, t, cond)
    }
    fn prediction(&self) -> Prediction {
        self.inner.prediction()
    }
}

#[test]
fn sdedit_at_strength_one_is_sampling_from_noise() {
    let model = Mixture::new(Prediction::Epsilon);
    let schedule = linear_schedule();
    let opts = options(12, 3);
    let guide = data(&model, 64, 1);
    let noise = Tensor::randn(&[64, DIM], 3, 0, Device::Cpu).unwrap();
    for sampler in samplers() {
        let want = sampler
            .sample_from(&model, &schedule, &opts, &noise, Condition::NONE)
            .unwrap();
        let edit = Sdedit {
            sampler: &sampler,
            schedule: &schedule,
            options: &opts,
            strength: 1.0,
        };
        assert_eq!(edit.start().unwrap(), EditStart::Noise);
        let got = edit.run(&model, &guide, &noise, Condition::NONE).unwrap();
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap(), "{sampler:?}");
    }
}

#[test]
fn sdedit_at_strength_zero_returns_the_image_without_a_model_call() {
    let model = Mixture::new(Prediction::Epsilon);
    let calls = Calls {
        inner: &model,
        timesteps: RefCell::new(Vec::new()),
    };
    let schedule = linear_schedule();
    let opts = options(12, 3);
    let guide = data(&model, 16, 1);
    let noise = Tensor::randn(&[16, DIM], 3, 0, Device::Cpu).unwrap();
    for sampler in samplers() {
        // ⌊12·0.08⌋ = 0 steps: also the guide.
        for strength in [0.0, 0.08] {
            let edit = Sdedit {
                sampler: &sampler,
                schedule: &schedule,
                options: &opts,
                strength,
            };
            let got = edit.run(&calls, &guide, &noise, Condition::NONE).unwrap();
            assert_eq!(
                got.to_vec().unwrap(),
                guide.to_vec().unwrap(),
                "{sampler:?}"
            );
        }
    }
    assert!(calls.timesteps.borrow().is_empty());
}

/// At strength S a run of N steps takes the last ⌊N·S⌋ (diffusers' `get_timesteps`), its first call at the level
/// where plain sampling takes that step.
#[test]
fn sdedit_starts_at_the_step_the_strength_selects() {
    let model = Mixture::new(Prediction::Epsilon);
    let schedule = linear_schedule();
    let opts = options(10, 0);
    let guide = data(&model, 4, 1);
    let noise = Tensor::randn(&[4, DIM], 0, 0, Device::Cpu).unwrap();
    for sampler in samplers() {
        let full = Calls {
            inner: &model,
            timesteps: RefCell::new(Vec::new()),
        };
        sampler
            .sample_from(&full, &schedule, &opts, &noise, Condition::NONE)
            .unwrap();
        let levels = sampler.step_levels(&schedule, &opts).unwrap();
        assert_eq!(levels.len(), 10, "{sampler:?}");
        let edited = Calls {
            inner: &model,
            timesteps: RefCell::new(Vec::new()),
        };
        let edit = Sdedit {
            sampler: &sampler,
            schedule: &schedule,
            options: &opts,
            strength: 0.45,
        };
        // ⌊10·0.45⌋ = 4 steps kept (PNDM's Runge–Kutta warm-up needs 4): the run begins at step 6.
        let EditStart::Step { step, level } = edit.start().unwrap() else {
            panic!("{sampler:?}: strength 0.35 should start part-way");
        };
        assert_eq!((step, level), (6, levels[6]), "{sampler:?}");
        edit.run(&edited, &guide, &noise, Condition::NONE).unwrap();
        let edited = edited.timesteps.into_inner();
        assert_eq!(edited[0], level.timestep, "{sampler:?}");
        // The others make the same calls as the last four steps of the full run (PNDM warms up again).
        if !matches!(sampler, Sampler::Pndm(_)) {
            let full = full.timesteps.into_inner();
            assert!(
                full.ends_with(&edited),
                "{sampler:?}: {full:?} vs {edited:?}"
            );
        }
    }
}

/// Data noised to any level and denoised exactly is data again: SDEdit from true samples of the mixture keeps the
/// mixture's moments (4000 points, within 4 standard errors), which fails if the guide is noised in the wrong
/// space for the sampler (VP vs σ) or to another level than the one the run starts at.
#[test]
fn sdedit_from_data_keeps_the_data_distribution() {
    let model = Mixture::new(Prediction::Epsilon);
    let (want_mean, want_var) = (model.mean(), model.variance());
    let schedule = linear_schedule();
    let guide = data(&model, 4000, 9);
    let noise = Tensor::randn(&[4000, DIM], 11, 0, Device::Cpu).unwrap();
    let runs = [
        (Sampler::DpmSolver(DpmSolver::default()), 40),
        (Sampler::Heun, 40),
        (Sampler::Ddim(Ddim::default()), 100),
        (Sampler::EulerAncestral, 250),
    ];
    for (sampler, steps) in runs {
        let opts = options(steps, 11);
        let edit = Sdedit {
            sampler: &sampler,
            schedule: &schedule,
            options: &opts,
            strength: 0.6,
        };
        let x = f64s(&edit.run(&model, &guide, &noise, Condition::NONE).unwrap());
        for (d, (mean, var, se_mean, se_var)) in moments(&x, DIM).into_iter().enumerate() {
            let report = format!(
                "{sampler:?}, coordinate {d}: mean {mean:.4} (data {:.4}, se {se_mean:.4}), variance {var:.4} \
                 (data {:.4}, se {se_var:.4})",
                want_mean[d], want_var[d]
            );
            assert!((mean - want_mean[d]).abs() < 4.0 * se_mean, "{report}");
            assert!((var - want_var[d]).abs() < 4.0 * se_var, "{report}");
        }
    }
}

#[test]
fn sdedit_refuses_a_strength_outside_zero_to_one() {
    let schedule = linear_schedule();
    let opts = options(10, 0);
    let sampler = Sampler::Ddim(Ddim::default());
    for strength in [-0.1, 1.5, f64::NAN] {
        let edit = Sdedit {
            sampler: &sampler,
            schedule: &schedule,
            options: &opts,
            strength,
        };
        let err = edit.start().unwrap_err().to_string();
        assert!(err.contains("strength") && err.contains("[0, 1]"), "{err}");
    }
}

#[test]
fn a_start_past_the_last_step_is_refused() {
    let model = Mixture::new(Prediction::Epsilon);
    let x = Tensor::zeros(&[2, DIM], DType::F32, Device::Cpu).unwrap();
    for sampler in samplers() {
        let err = sampler
            .run(
                &model,
                &linear_schedule(),
                &options(5, 0),
                Start::State { step: 5, x: &x },
                Condition::NONE,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("past the run's last step"),
            "{sampler:?}: {err}"
        );
    }
}

// ---- RePaint -----------------------------------------------------------------------------------------------------

/// diffusers' `get_schedule_jump(t_T = 10, jump_length = 3, jump_n_sample = 2)` gives (diffusers 0.42.1)
/// 9 8 7 6 7 8 9 8 7 6 5 4 3 4 5 6 5 4 3 2 1 0 1 2 3 2 1 0: the model at 9, 8, 7, 6, three levels back up (a
/// value above the last is a re-noising that ends one below it), the model at 8 down to 3, and so on. Here a step
/// down is named by the unit the model is called at, a step up by the unit it arrives at.
#[test]
fn the_jump_schedule_is_repaints() {
    let moves = jump_schedule(10, 3, 2).unwrap();
    let units: Vec<String> = moves
        .iter()
        .map(|m| match m {
            Move::Down(level) => format!("d{}", 9 - level),
            Move::Up(level) => format!("u{}", 10 - level),
        })
        .collect();
    assert_eq!(
        units.join(" "),
        "d9 d8 d7 d6 u6 u7 u8 d8 d7 d6 d5 d4 d3 u3 u4 u5 d5 d4 d3 d2 d1 d0 u0 u1 u2 d2 d1 d0"
    );
    assert_eq!(jump_schedule(4, 10, 5).unwrap().len(), 4);
    assert!(jump_schedule(10, 0, 2).is_err());
    assert!(jump_schedule(10, 3, 0).is_err());
}

fn repaint_options(steps: usize, seed: u64) -> SamplerOptions {
    SamplerOptions {
        steps,
        seed,
        spacing: TimestepSpacing::Trailing,
        ..SamplerOptions::default()
    }
}

/// Images of one row, two pixels: (n, 1, 1, DIM), the first pixel known.
fn half_known(n: usize, known_value: f32) -> (Tensor, Tensor) {
    let image: Vec<f32> = (0..n).flat_map(|_| [known_value, 0.0]).collect();
    (
        Tensor::from_vec(image, &[n, 1, 1, DIM], Device::Cpu).unwrap(),
        Tensor::from_vec(vec![1.0, 0.0], &[1, 1, 1, DIM], Device::Cpu).unwrap(),
    )
}

#[test]
fn repaint_keeps_the_known_pixels_exactly() {
    let model = Mixture::new(Prediction::Epsilon);
    let schedule = linear_schedule();
    let opts = repaint_options(20, 4);
    let (image, known) = half_known(32, 0.731);
    let noise = Tensor::randn(&[32, 1, 1, DIM], 4, 0, Device::Cpu).unwrap();
    for settings in [
        RePaint::default(),
        RePaint {
            jump_length: 3,
            jump_n_sample: 3,
            eta: 0.0,
        },
    ] {
        let run = RePaintRun {
            schedule: &schedule,
            options: &opts,
            settings,
        };
        let x = run
            .run(&model, &image, &known, &noise, Condition::NONE)
            .unwrap()
            .to_vec()
            .unwrap();
        for pair in x.chunks(DIM) {
            assert_eq!(pair[0], 0.731);
            assert!(pair[1].is_finite() && pair[1] != 0.0);
        }
    }
}

/// The exact conditional of coordinate 1 given coordinate 0 = `a`: the components reweighted by the likelihood of
/// `a` (each component is isotropic, so its coordinates are independent).
fn conditional(model: &Mixture, a: f64) -> (f64, f64) {
    let w: Vec<f64> = model
        .weights
        .iter()
        .zip(&model.means)
        .zip(&model.stds)
        .map(|((pi, mu), s)| pi / s * (-0.5 * ((a - mu[0]) / s).powi(2)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mean: f64 = w
        .iter()
        .zip(&model.means)
        .map(|(w, mu)| w * mu[1])
        .sum::<f64>()
        / total;
    let second: f64 = w
        .iter()
        .zip(&model.means)
        .zip(&model.stds)
        .map(|((w, mu), s)| w * (s * s + mu[1] * mu[1]))
        .sum::<f64>()
        / total;
    (mean, second - mean * mean)
}

/// With coordinate 0 known, RePaint fills coordinate 1 from the exact conditional: with resampling (10 passes over
/// every stretch of 10 levels, 500 steps, as RePaint's setting scaled up to where DDPM's own discretisation error is
/// small), 2000 samples have its mean and variance within 4 standard errors. The known value −0.45 lies between
/// the components (conditional weights 0.75 and 0.25 against the prior's 0.3 and 0.7): the conditional mean is 0.277
/// against the marginal's −0.13. Plain replacement (no resampling) falls far short of conditioning, which is why
/// RePaint resamples: observed mean 0.12 (4000 samples, 500 steps), here asserted more than 8 standard errors off.
#[test]
fn repaint_fills_from_the_conditional_distribution() {
    let model = Mixture::new(Prediction::Epsilon);
    let (want_mean, want_var) = conditional(&model, -0.45);
    let schedule = linear_schedule();
    let n = 2000;
    let (image, known) = half_known(n, -0.45);
    let noise = Tensor::randn(&[n, 1, 1, DIM], 21, 0, Device::Cpu).unwrap();
    let opts = repaint_options(500, 21);
    let fill = |jump_n_sample: usize| {
        let run = RePaintRun {
            schedule: &schedule,
            options: &opts,
            settings: RePaint {
                jump_length: 10,
                jump_n_sample,
                eta: 1.0,
            },
        };
        let x = f64s(
            &run.run(&model, &image, &known, &noise, Condition::NONE)
                .unwrap(),
        );
        moments(&x, DIM)[1]
    };
    let (mean, var, se_mean, se_var) = fill(10);
    let report = format!(
        "mean {mean:.4} (exact {want_mean:.4}, se {se_mean:.4}), variance {var:.4} (exact {want_var:.4}, se \
         {se_var:.4})"
    );
    assert!((mean - want_mean).abs() < 4.0 * se_mean, "{report}");
    assert!((var - want_var).abs() < 4.0 * se_var, "{report}");
    let (plain, _, se_plain, _) = fill(1);
    assert!(
        want_mean - plain > 8.0 * se_plain,
        "replacement alone: mean {plain:.4} (exact {want_mean:.4})"
    );
}

#[test]
fn repaint_refuses_a_mask_of_another_size() {
    let model = Mixture::new(Prediction::Epsilon);
    let schedule = linear_schedule();
    let opts = repaint_options(5, 0);
    let run = RePaintRun {
        schedule: &schedule,
        options: &opts,
        settings: RePaint::default(),
    };
    let (image, _) = half_known(2, 0.0);
    let noise = Tensor::zeros(&[2, 1, 1, DIM], DType::F32, Device::Cpu).unwrap();
    let wrong = Tensor::ones(&[1, 1, 1, 3], DType::F32, Device::Cpu).unwrap();
    let err = run
        .run(&model, &image, &wrong, &noise, Condition::NONE)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mask") && err.contains("[1, 1, 1, 3]"),
        "{err}"
    );
    let soft = Tensor::from_vec(vec![0.5, 1.0], &[1, 1, 1, 2], Device::Cpu).unwrap();
    let err = run
        .run(&model, &image, &soft, &noise, Condition::NONE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("only 0"), "{err}");
}
