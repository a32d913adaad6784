//! Distillation end to end on a tiny network, in seconds: a v-prediction teacher trained for a few hundred steps on
//! two-valued pixels, then distilled for a few hundred steps by progressive distillation (8 → 4 → 2 steps) and by
//! consistency distillation. The students' few-step samples must be closer to the teacher's many-step samples than
//! the same few steps of the untrained students (the teacher's own weights) are.

use diffuse_autograd::Var;
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::distill::{
    consistency_sample_from, fingerprint, Distance, DistillConfig, DistillState, Distiller,
    LevelWeighting, Method, NetworkConsistency, OdeSolver, RoundStart, TeacherId,
};
use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::rng::SplitMix64;
use diffuse_diffusion::sampler::{
    Condition, Ddim, Denoiser, Prediction, Sampler, SamplerOptions, X0Limit,
};
use diffuse_diffusion::schedule::{
    NoiseSchedule, PredictionType, SchedulerConfig, TimestepSpacing,
};
use diffuse_diffusion::train::target::scale_samples;
use diffuse_diffusion::train::{ModelDenoiser, TrainableModel};
use diffuse_diffusion::Result;
use diffuse_nn::{AdamW, Conv2d, Linear, Module, ParamStore};
use diffuse_tensor::{AdamWConfig, Conv2dParams, Device, Tensor};
use std::path::{Path, PathBuf};

const HIDDEN: usize = 32;
const SIDE: usize = 4;

const POINTWISE: Conv2dParams = Conv2dParams {
    stride: (1, 1),
    padding: (0, 0),
    dilation: (1, 1),
    groups: 1,
};

/// A per-pixel MLP (1×1 convolutions) with a sinusoidal embedding of the timestep: the data's pixels are independent,
/// so the exact denoiser is a function of one pixel and t.
struct PixelNet {
    input: Conv2d,
    time: Linear,
    hidden: Conv2d,
    output: Conv2d,
}

impl PixelNet {
    fn new(store: &ParamStore) -> Result<Self> {
        let root = store.root();
        Ok(Self {
            input: Conv2d::new(&root.sub("input"), 1, HIDDEN, (1, 1), POINTWISE, true)?,
            time: Linear::new(&root.sub("time"), 4, HIDDEN, true)?,
            hidden: Conv2d::new(&root.sub("hidden"), HIDDEN, HIDDEN, (1, 1), POINTWISE, true)?,
            output: Conv2d::new(&root.sub("output"), HIDDEN, 1, (1, 1), POINTWISE, true)?,
        })
    }
}

impl TrainableModel for PixelNet {
    fn forward(&self, x: &Var, t: &[f64], _cond: Condition<'_>) -> Result<Var> {
        let b = t.len();
        let features: Vec<f32> = t
            .iter()
            .flat_map(|&t| {
                let u = t / 1000.0;
                let pi = std::f64::consts::PI;
                [u, (pi * u).sin(), (pi * u).cos(), (2.0 * pi * u).sin()].map(|v| v as f32)
            })
            .collect();
        let time = self.time.forward(&Var::constant(Tensor::from_vec(
            features,
            &[b, 4],
            Device::Cpu,
        )?))?;
        let h = self
            .input
            .forward(x)?
            .add(&time.reshape(&[b, HIDDEN, 1, 1])?)?
            .silu()?;
        let h = self.hidden.forward(&h)?.silu()?;
        Ok(self.output.forward(&h)?)
    }

    fn config_json(&self) -> String {
        r#"{"_class_name": "PixelNet"}"#.to_string()
    }
}

fn build(store: &ParamStore) -> Result<PixelNet> {
    PixelNet::new(store)
}

fn scheduler() -> SchedulerConfig {
    SchedulerConfig {
        prediction_type: PredictionType::VPrediction,
        ..SchedulerConfig::default()
    }
}

/// 512 images of 4×4 whose pixels are independently 40 or 215 (about ±0.69 in [−1, 1]).
fn two_valued_pixels() -> Dataset {
    let mut rng = SplitMix64::new(3);
    let pixels: Vec<u8> = (0..512 * SIDE * SIDE)
        .map(|_| if rng.next_bool() { 215 } else { 40 })
        .collect();
    Dataset::from_u8(&pixels, None, 1, SIDE, SIDE).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "diffuse-distill-sanity-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Trains the teacher with the v loss for `steps` steps and saves its weights to `path`.
fn train_teacher(data: &Dataset, steps: u64, path: &Path) {
    let store = ParamStore::new(1, Device::Cpu);
    let net = build(&store).unwrap();
    let schedule = NoiseSchedule::from_config(&scheduler()).unwrap();
    let config = AdamWConfig {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut adam = AdamW::for_store(&store, config).unwrap();
    let mut rng = SplitMix64::new(9);
    let b = 64;
    for step in 0..steps {
        let indices: Vec<usize> = (0..b)
            .map(|_| rng.below(data.len() as u64) as usize)
            .collect();
        let t: Vec<usize> = (0..b).map(|_| rng.below(1000) as usize).collect();
        let (pixels, _) = data.batch(&indices, None).unwrap();
        let x0 = Tensor::from_vec(pixels, &[b, 1, SIDE, SIDE], Device::Cpu).unwrap();
        let (x_t, eps) = q_sample(&schedule, &x0, &t, 17, step * x0.numel() as u64).unwrap();
        let (a, s): (Vec<f32>, Vec<f32>) = t
            .iter()
            .map(|&t| {
                let ab = schedule.alpha_bar(t).unwrap();
                (ab.sqrt() as f32, -(1.0 - ab).sqrt() as f32)
            })
            .unzip();
        // v = √ᾱ·ε − √(1−ᾱ)·x0.
        let v = scale_samples(&eps, &a)
            .unwrap()
            .add(&scale_samples(&x0, &s).unwrap())
            .unwrap();
        let t_f: Vec<f64> = t.iter().map(|&t| t as f64).collect();
        let out = net
            .forward(&Var::constant(x_t), &t_f, Condition::NONE)
            .unwrap();
        let loss = out
            .sub(&Var::constant(v))
            .unwrap()
            .square()
            .unwrap()
            .mean_all()
            .unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
    }
    store.save(path).unwrap();
}

fn plain(model: &PixelNet) -> ModelDenoiser<'_, PixelNet> {
    ModelDenoiser {
        model,
        prediction: Prediction::VPrediction,
    }
}

fn load(path: &Path) -> PixelNet {
    let store = ParamStore::new(1, Device::Cpu);
    let net = build(&store).unwrap();
    store.load(path).unwrap();
    net
}

fn ddim(model: &dyn Denoiser, steps: usize, noise: &Tensor) -> Vec<f64> {
    let schedule = NoiseSchedule::from_config(&scheduler()).unwrap();
    let options = SamplerOptions {
        steps,
        spacing: TimestepSpacing::Trailing,
        clip_sample_range: Some(1.0),
        ..SamplerOptions::default()
    };
    let x = Sampler::Ddim(Ddim::default())
        .sample_from(model, &schedule, &options, noise, Condition::NONE)
        .unwrap();
    x.to_vec().unwrap().into_iter().map(f64::from).collect()
}

/// The Wasserstein-1 distance between the pixel values of two equally many samples: the mean gap of the sorted values.
fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let sorted = |x: &[f64]| {
        let mut x = x.to_vec();
        x.sort_by(f64::total_cmp);
        x
    };
    let (a, b) = (sorted(a), sorted(b));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

fn config(method: Method, teacher: &Path, steps: u64) -> DistillConfig {
    DistillConfig {
        method,
        teacher: Some(TeacherId {
            path: teacher.display().to_string(),
            fingerprint: fingerprint(&std::fs::read(teacher).unwrap()),
        }),
        scheduler: scheduler(),
        seed: 5,
        batch_size: 32,
        steps_per_round: steps,
        lr: 1e-3,
        grad_clip: Some(1.0),
        ema_decay: 0.99,
        guidance: 1.0,
        null_class: None,
    }
}

/// Runs every round of `config` from the teacher at `teacher`; returns the last round's EMA student.
fn distil(config: DistillConfig, teacher: &Path, dir: &Path, data: &Dataset) -> PixelNet {
    let rounds = config.method.rounds();
    let mut state = DistillState::new(config);
    let mut teacher = teacher.to_path_buf();
    for round in 1..=rounds {
        let start = RoundStart {
            teacher: Some(teacher.as_path()),
            classifier: None,
            device: Device::Cpu,
        };
        let mut distiller = Distiller::start_round(state.clone(), start, build).unwrap();
        while !distiller.state().round_done() {
            let report = distiller.step(data).unwrap();
            assert!(!report.skipped, "step {} was skipped", report.step);
        }
        teacher = dir.join(format!("round-{round}.safetensors"));
        distiller.ema_store().save(&teacher).unwrap();
        state = distiller.next_round_state();
    }
    load(&teacher)
}

#[test]
fn distilled_students_come_closer_to_the_teachers_many_step_samples() {
    let dir = temp_dir("students");
    let data = two_valued_pixels();
    let teacher_path = dir.join("teacher.safetensors");
    train_teacher(&data, 300, &teacher_path);
    let teacher = load(&teacher_path);
    let noise = Tensor::randn(&[128, 1, SIDE, SIDE], 21, 0, Device::Cpu).unwrap();
    let reference = ddim(&plain(&teacher), 64, &noise);

    // Progressive: 8 → 4 → 2, sampled with 2 DDIM steps, against the teacher's own 2 steps.
    let method = Method::Progressive {
        from_steps: 8,
        to_steps: 2,
    };
    let student = distil(
        config(method, &teacher_path, 100),
        &teacher_path,
        &dir,
        &data,
    );
    let before = wasserstein(&ddim(&plain(&teacher), 2, &noise), &reference);
    let after = wasserstein(&ddim(&plain(&student), 2, &noise), &reference);
    eprintln!("progressive, 2 steps: W1 to the teacher's 64 steps {before:.4} untrained, {after:.4} distilled");
    assert!(after < 0.5 * before, "progressive: {after} vs {before}");

    // Consistency distillation, sampled in one step, against the teacher's weights read as a consistency function.
    let method = Method::ConsistencyDistillation {
        levels: 18,
        solver: OdeSolver::Heun,
        distance: Distance::PseudoHuber,
        target_decay: 0.95,
        level_weighting: LevelWeighting::Uniform,
    };
    let student = distil(
        config(method, &teacher_path, 200),
        &teacher_path,
        &dir,
        &data,
    );
    let schedule = NoiseSchedule::from_config(&scheduler()).unwrap();
    let one_step = |model: &PixelNet| -> Vec<f64> {
        let denoiser = plain(model);
        let f = NetworkConsistency::new(&denoiser, &schedule).unwrap();
        let sigma_max = f.param.sigma_max;
        let clip = X0Limit {
            clip: Some(1.0),
            threshold: None,
        };
        consistency_sample_from(&f, &[sigma_max], clip, &noise, 0, Condition::NONE)
            .unwrap()
            .to_vec()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    let before = wasserstein(&one_step(&teacher), &reference);
    let after = wasserstein(&one_step(&student), &reference);
    eprintln!("consistency, 1 step: W1 to the teacher's 64 steps {before:.4} untrained, {after:.4} distilled");
    assert!(after < 0.5 * before, "consistency: {after} vs {before}");
    let _ = std::fs::remove_dir_all(&dir);
}
