//! Training: targets and conversions, loss weights, timestep sampling, the step function against a recomputation
//! from its documented random streams, non-finite handling, and exact resumption from a checkpoint.

use diffuse_autograd::Var;
use diffuse_diffusion::data::{random_translate, Dataset};
use diffuse_diffusion::rng::SplitMix64;
use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::schedule::{PredictionType, SchedulerConfig};
use diffuse_diffusion::sde::{
    ScoreMatching, ScoreNetwork, ScoreParameterization, ScoreSdeConfig, ScoreWeighting, Sde,
};
use diffuse_diffusion::train::random::{noise_stream, step_rng};
use diffuse_diffusion::train::target::{convert, target_coefficients};
use diffuse_diffusion::train::timesteps::{HISTORY, UNIFORM_FLOOR};
use diffuse_diffusion::train::{
    LossHistory, LossWeighting, Prediction, TimestepSampler, TrainConfig, TrainableModel, Trainer,
};
use diffuse_diffusion::Result;
use diffuse_nn::{
    Conv2d, EmaWarmup, Embedding, Linear, LossScaler, LrSchedule, Module, ParamStore,
};
use diffuse_tensor::{Conv2dParams, Device, Tensor};
use std::cell::RefCell;
use std::path::PathBuf;

const ALL: [Prediction; 3] = [
    Prediction::Epsilon,
    Prediction::Sample,
    Prediction::VPrediction,
];

// ---- targets and weights ----------------------------------------------------------------------------------------

#[test]
fn every_conversion_between_epsilon_x0_and_v_recovers_the_true_quantity() {
    for &alpha_bar in &[0.999, 0.7, 0.3, 0.01] {
        let (a, s) = (f64::sqrt(alpha_bar), f64::sqrt(1.0 - alpha_bar));
        let (x0, eps) = (0.8, -1.3);
        let x_t = a * x0 + s * eps;
        let truth = |p: Prediction| match p {
            Prediction::Epsilon => eps,
            Prediction::Sample => x0,
            Prediction::VPrediction => a * eps - s * x0,
        };
        for from in ALL {
            let (cx, ce) = target_coefficients(from, alpha_bar);
            assert!((cx * x0 + ce * eps - truth(from)).abs() < 1e-12);
            for to in ALL {
                let (c_xt, c_out) = convert(from, to, alpha_bar);
                let got = c_xt * x_t + c_out * truth(from);
                assert!(
                    (got - truth(to)).abs() < 1e-12,
                    "{from:?} → {to:?} at ᾱ {alpha_bar}: {got} vs {}",
                    truth(to)
                );
            }
        }
    }
}

#[test]
fn min_snr_weights_match_the_paper_for_each_target() {
    let w = LossWeighting::MinSnr { gamma: 5.0 };
    // SNR 10 is clamped to 5.
    assert_eq!(w.weight(10.0, Prediction::Epsilon), 0.5);
    assert_eq!(w.weight(10.0, Prediction::Sample), 5.0);
    assert_eq!(w.weight(10.0, Prediction::VPrediction), 5.0 / 11.0);
    // SNR 2 is below γ.
    assert_eq!(w.weight(2.0, Prediction::Epsilon), 1.0);
    assert_eq!(w.weight(2.0, Prediction::Sample), 2.0);
    assert_eq!(w.weight(2.0, Prediction::VPrediction), 2.0 / 3.0);
    assert_eq!(w.weight(0.0, Prediction::Epsilon), 1.0);
    for p in ALL {
        assert_eq!(LossWeighting::Uniform.weight(123.0, p), 1.0);
    }
}

// ---- timestep sampling ----------------------------------------------------------------------------------------

#[test]
fn importance_sampling_is_uniform_until_every_history_is_full() {
    let mut sampler = TimestepSampler::Importance(LossHistory::new(3));
    for _ in 0..HISTORY {
        sampler.record(&[0, 1], &[1.0, 2.0]);
    }
    let TimestepSampler::Importance(h) = &sampler else {
        unreachable!()
    };
    assert!(!h.is_warm());
    assert_eq!(h.probabilities(), vec![1.0 / 3.0; 3]);
    let (_, weights) = sampler.sample(&mut SplitMix64::new(1), 8);
    assert!(weights.iter().all(|&w| w == 1.0));
}

#[test]
fn importance_probabilities_follow_the_root_mean_square_loss_and_reweight_by_one_over_t_p() {
    let mut history = LossHistory::new(3);
    // Timestep 0 alternates 1 and 3 (E[L²] = 5), timestep 1 is always 2 (E[L²] = 4), timestep 2 always 4 (16).
    for i in 0..HISTORY + 4 {
        history.record(0, if i % 2 == 0 { 1.0 } else { 3.0 });
        history.record(1, 2.0);
        history.record(2, 4.0);
    }
    assert!(history.losses.iter().all(|h| h.len() == HISTORY));
    let raw = [5f64.sqrt(), 2.0, 4.0];
    let total: f64 = raw.iter().sum();
    let want: Vec<f64> = raw
        .iter()
        .map(|w| (1.0 - UNIFORM_FLOOR) * w / total + UNIFORM_FLOOR / 3.0)
        .collect();
    let p = history.probabilities();
    for (g, w) in p.iter().zip(&want) {
        assert!((g - w).abs() < 1e-15);
    }
    let sampler = TimestepSampler::Importance(history);
    let mut rng = SplitMix64::new(5);
    let n = 30_000;
    let (ts, weights) = sampler.sample(&mut rng, n);
    let mut counts = [0usize; 3];
    for (&t, &w) in ts.iter().zip(&weights) {
        counts[t] += 1;
        assert!((w - 1.0 / (3.0 * p[t])).abs() < 1e-12);
    }
    for t in 0..3 {
        let freq = counts[t] as f64 / n as f64;
        // Binomial standard deviation √(p(1−p)/n) ≤ 0.003; allow five of them.
        assert!((freq - p[t]).abs() < 0.015, "t {t}: {freq} vs {}", p[t]);
    }
}

// ---- a tiny model -------------------------------------------------------------------------------------------------

/// conv 3×3 (1 → 8) + a linear embedding of t/1000 + an optional class embedding, SiLU, conv 3×3 (8 → 1).
struct TinyNet {
    conv_in: Conv2d,
    time: Linear,
    class: Option<Embedding>,
    conv_out: Conv2d,
    labels_seen: RefCell<Vec<Vec<u32>>>,
}

const PAD1: Conv2dParams = Conv2dParams {
    stride: (1, 1),
    padding: (1, 1),
    dilation: (1, 1),
    groups: 1,
};

impl TinyNet {
    fn new(store: &ParamStore, classes: Option<usize>) -> Result<Self> {
        let root = store.root();
        Ok(Self {
            conv_in: Conv2d::new(&root.sub("conv_in"), 1, 8, (3, 3), PAD1, true)?,
            time: Linear::new(&root.sub("time"), 1, 8, true)?,
            class: classes
                .map(|n| Embedding::new(&root.sub("class"), n, 8))
                .transpose()?,
            conv_out: Conv2d::new(&root.sub("conv_out"), 8, 1, (3, 3), PAD1, true)?,
            labels_seen: RefCell::new(Vec::new()),
        })
    }
}

impl TrainableModel for TinyNet {
    fn forward(&self, x: &Var, t: &[f64], given: Condition<'_>) -> Result<Var> {
        let b = t.len();
        let tt: Vec<f32> = t.iter().map(|&t| (t / 1000.0) as f32).collect();
        let t_in = Var::constant(Tensor::from_vec(tt, &[b, 1], Device::Cpu)?);
        let mut cond = self.time.forward(&t_in)?;
        if let (Some(emb), Some(labels)) = (&self.class, given.class) {
            self.labels_seen.borrow_mut().push(labels.to_vec());
            let ids: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
            cond = cond.add(&emb.forward(&ids)?)?;
        }
        let h = self
            .conv_in
            .forward(x)?
            .add(&cond.reshape(&[b, 8, 1, 1])?)?
            .silu()?;
        Ok(self.conv_out.forward(&h)?)
    }

    fn config_json(&self) -> String {
        r#"{"_class_name": "TinyNet", "channels": 8}"#.to_string()
    }
}

/// 24 images of 6×6 with labels 0..3: a bright square whose position depends on the class.
fn tiny_dataset() -> Dataset {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..24u32 {
        let class = i % 3;
        for y in 0..6 {
            for x in 0..6 {
                let inside = x / 2 == class && (2..4).contains(&y);
                pixels.push(if inside {
                    250
                } else {
                    (i * 7 + x * 3 + y) as u8 % 40
                });
            }
        }
        labels.push(class);
    }
    Dataset::from_u8(&pixels, Some(labels), 1, 6, 6).unwrap()
}

fn tiny_config() -> TrainConfig {
    TrainConfig {
        seed: 42,
        steps: 6,
        batch_size: 4,
        lr: LrSchedule::Cosine {
            lr: 1e-2,
            warmup: 2,
            total: 6,
            floor: 1e-3,
        },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: Some(1.0),
        ema_decay: 0.999,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig {
            num_train_timesteps: 20,
            prediction_type: PredictionType::VPrediction,
            ..SchedulerConfig::default()
        },
        loss_weighting: LossWeighting::MinSnr { gamma: 5.0 },
        importance_sampling: true,
        null_class: Some(3),
        label_dropout: 0.3,
        caption_dropout: 0.0,
        hflip: true,
        crop_pad: 0,
        max_nonfinite: 3,
        score_matching: None,
        vlb_weight: 0.001,
        image_condition: None,
    }
}

fn build(store: &ParamStore) -> Result<TinyNet> {
    TinyNet::new(store, Some(4))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn values(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    store
        .params()
        .into_iter()
        .map(|(n, v)| (n, v.tensor().to_vec().unwrap()))
        .collect()
}

// ---- the step ----------------------------------------------------------------------------------------------------

#[test]
fn the_step_loss_equals_the_weighted_mse_recomputed_from_the_documented_streams() {
    assert_step_loss_from_documented_streams(0);
}

#[test]
fn a_random_crop_draws_its_offsets_after_the_flip_seed_and_resumes_exactly() {
    assert_step_loss_from_documented_streams(2);
    let config = TrainConfig {
        crop_pad: 2,
        ..tiny_config()
    };
    assert_resume_is_exact(config, 3, "resume-crop");
}

/// Recomputes step 0's loss from the streams random.rs documents, with images moved by a random crop of `crop_pad`.
fn assert_step_loss_from_documented_streams(crop_pad: usize) {
    let data = tiny_dataset();
    let mut config = tiny_config();
    config.crop_pad = crop_pad;
    config.importance_sampling = false;
    config.hflip = false;
    config.label_dropout = 0.0;
    config.scheduler.prediction_type = PredictionType::Epsilon;
    let mut trainer = Trainer::new(config.clone(), build).unwrap();
    let schedule = trainer.schedule().clone();
    // Step 0: batch 0 of epoch 0, timesteps from step_rng(seed, 0), noise from noise_stream(seed, 0, numel).
    let order = data.epoch(4, config.seed, 0, true).unwrap().order()[..4].to_vec();
    let mut rng = step_rng(config.seed, 0);
    let ts: Vec<usize> = (0..4).map(|_| rng.below(20) as usize).collect();
    let (mut pixels, labels) = data.batch(&order, None).unwrap();
    if crop_pad > 0 {
        // After the timesteps: one dropout coin per sample, the flip seed, then the crop's seed.
        for _ in 0..4 {
            rng.next_f64();
        }
        rng.next_u64();
        let before = pixels.clone();
        random_translate(&mut pixels, (1, 6, 6), crop_pad, rng.next_u64()).unwrap();
        assert_ne!(pixels, before, "the crop moved some image");
    }
    let x0 = Tensor::from_vec(pixels, &[4, 1, 6, 6], Device::Cpu).unwrap();
    let (key, offset) = noise_stream(config.seed, 0, x0.numel()).unwrap();
    let (x_t, eps) =
        diffuse_diffusion::forward::q_sample(&schedule, &x0, &ts, key, offset).unwrap();
    let t_f64: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
    let out = trainer
        .model
        .forward(&Var::constant(x_t), &t_f64, Condition::class(&labels))
        .unwrap()
        .tensor()
        .to_vec()
        .unwrap();
    let eps = eps.to_vec().unwrap();
    let mut want = 0.0f64;
    for b in 0..4 {
        let ab = schedule.alpha_bar(ts[b]).unwrap();
        let snr = ab / (1.0 - ab);
        let w = snr.min(5.0) / snr;
        let mse: f64 = (0..36)
            .map(|i| (f64::from(out[b * 36 + i]) - f64::from(eps[b * 36 + i])).powi(2))
            .sum::<f64>()
            / 36.0;
        want += w * mse / 4.0;
    }
    let report = trainer.step(&data).unwrap();
    assert!(!report.skipped);
    // f32 sums of 36 squares and a mean of 4: rel error ~ 40·2⁻²⁴.
    assert!(
        (report.loss - want).abs() < 1e-5 * want,
        "{} vs {want}",
        report.loss
    );
    assert_eq!(report.lr, 5e-3);
    assert_eq!(trainer.step_index(), 1);
    assert_eq!(trainer.optimizer().steps(), 1);
}

#[test]
fn label_dropout_replaces_labels_by_the_null_class_at_the_configured_rate() {
    let data = tiny_dataset();
    let mut config = tiny_config();
    config.label_dropout = 1.0;
    let mut trainer = Trainer::new(config.clone(), build).unwrap();
    trainer.step(&data).unwrap();
    assert_eq!(trainer.model.labels_seen.borrow()[0], vec![3; 4]);
    config.label_dropout = 0.0;
    let mut trainer = Trainer::new(config, build).unwrap();
    trainer.step(&data).unwrap();
    assert!(trainer.model.labels_seen.borrow()[0].iter().all(|&l| l < 3));
}

/// A [`TinyNet`] whose output is always NaN.
struct NanNet(TinyNet);

impl TrainableModel for NanNet {
    fn forward(&self, x: &Var, t: &[f64], cond: Condition<'_>) -> Result<Var> {
        Ok(self.0.forward(x, t, cond)?.mul_scalar(f32::NAN)?)
    }
    fn config_json(&self) -> String {
        self.0.config_json()
    }
}

#[test]
fn non_finite_losses_skip_the_step_and_fail_after_the_configured_run_of_them() {
    let data = tiny_dataset();
    let config = tiny_config();
    let mut trainer = Trainer::new(config, |s: &ParamStore| build(s).map(NanNet)).unwrap();
    let before = values(&trainer.store);
    for step in 0..2 {
        let report = trainer.step(&data).unwrap();
        assert!(report.skipped && report.loss.is_nan(), "step {step}");
    }
    let err = trainer.step(&data).unwrap_err().to_string();
    assert!(err.contains("3 consecutive steps"), "{err}");
    assert_eq!(values(&trainer.store), before);
    assert_eq!(trainer.state().skipped_steps, 3);
    assert_eq!(trainer.optimizer().steps(), 0);
}

// ---- loss scaling ---------------------------------------------------------------------------------------------------

#[test]
fn loss_scaling_by_a_power_of_two_trains_bit_for_bit_like_none_and_doubles_after_its_interval() {
    // Multiplying the loss by 2¹⁰ multiplies every gradient by exactly 2¹⁰ (no overflow or subnormal here), and the
    // unscale multiplies by exactly 2⁻¹⁰: the optimiser sees the same gradients, so the weights agree bit for bit.
    let data = tiny_dataset();
    let mut plain = Trainer::new(tiny_config(), build).unwrap();
    let mut scaled = Trainer::new(tiny_config(), build).unwrap();
    scaled.set_loss_scaler(Some(LossScaler::new(1024.0, 2).unwrap()));
    for step in 0..3 {
        let (a, b) = (plain.step(&data).unwrap(), scaled.step(&data).unwrap());
        assert!(!b.skipped, "step {step}");
        assert_eq!(a, b, "step {step}");
    }
    assert_eq!(values(&scaled.store), values(&plain.store));
    assert_eq!(values(scaled.ema_store()), values(plain.ema_store()));
    // two good steps doubled the scale; the third is the first of the next interval
    let scaler = scaled.state().loss_scaler.clone().unwrap();
    assert_eq!((scaler.scale(), scaler.good_steps()), (2048.0, 1));
}

/// A [`TinyNet`] whose output is 2²⁰ times larger: gradients far above 1, which overflow at a large loss scale.
struct LoudNet(TinyNet);

impl TrainableModel for LoudNet {
    fn forward(&self, x: &Var, t: &[f64], cond: Condition<'_>) -> Result<Var> {
        Ok(self.0.forward(x, t, cond)?.mul_scalar(1048576.0)?)
    }
    fn config_json(&self) -> String {
        self.0.config_json()
    }
}

#[test]
fn overflowing_scaled_gradients_skip_the_step_and_halve_the_scale_without_failing_the_run() {
    // At the largest f32 scale the scaled gradients of LoudNet overflow; each skipped step halves the scale, leaves
    // the weights and the optimiser alone and does not count towards max_nonfinite (3 here), until a scale small
    // enough trains.
    let data = tiny_dataset();
    let mut trainer = Trainer::new(tiny_config(), |s: &ParamStore| build(s).map(LoudNet)).unwrap();
    trainer.set_loss_scaler(Some(LossScaler::new(f32::MAX, 2000).unwrap()));
    let before = values(&trainer.store);
    let mut skips = 0;
    let report = loop {
        let report = trainer.step(&data).unwrap();
        if !report.skipped {
            break report;
        }
        skips += 1;
        assert!(
            report.loss.is_finite(),
            "the loss itself is finite: {report:?}"
        );
        assert_eq!(values(&trainer.store), before);
        assert_eq!(trainer.optimizer().steps(), 0);
        assert_eq!(trainer.state().consecutive_nonfinite, 0);
        let scale = trainer.state().loss_scaler.as_ref().unwrap().scale();
        assert_eq!(
            scale,
            f32::MAX / 2f32.powi(skips),
            "after {skips} overflows"
        );
        assert!(
            skips < 128,
            "the scale never came down to a finite gradient"
        );
    };
    assert!(
        skips > 3,
        "only {skips} overflows: the test no longer passes max_nonfinite"
    );
    assert!(report.grad_norm.unwrap().is_finite());
    assert_ne!(values(&trainer.store), before);
    assert_eq!(trainer.optimizer().steps(), 1);
    assert_eq!(trainer.state().skipped_steps, skips as u64);
}

#[test]
fn the_loss_scaler_state_is_saved_with_a_checkpoint_and_restored_on_resume() {
    let data = tiny_dataset();
    let dir = temp_dir("loss-scale");
    let mut trainer = Trainer::new(tiny_config(), build).unwrap();
    trainer.set_loss_scaler(Some(LossScaler::new(1024.0, 2).unwrap()));
    for _ in 0..3 {
        trainer.step(&data).unwrap();
    }
    trainer.save_checkpoint(&dir, 1).unwrap();
    let resumed = Trainer::resume(&dir, build).unwrap();
    assert_eq!(resumed.state().loss_scaler, trainer.state().loss_scaler);
    assert_eq!(resumed.state(), trainer.state());
    // a run without a scaler writes no scaler field, so its state file is as before
    let plain = Trainer::new(tiny_config(), build).unwrap();
    plain.save_checkpoint(&dir.join("plain"), 1).unwrap();
    let text = std::fs::read_to_string(dir.join("plain/step-0/trainer_state.json")).unwrap();
    assert!(!text.contains("loss_scaler"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- checkpoints ----------------------------------------------------------------------------------------------------

/// Trains `2n` steps straight and `n` + checkpoint + a fresh trainer from the checkpoint + `n`; everything must agree
/// bit for bit: weights, EMA weights, optimiser moments, trainer state (sampler history, smoothed loss, position).
fn assert_resume_is_exact(config: TrainConfig, n: usize, name: &str) {
    let data = tiny_dataset();
    let dir = temp_dir(name);
    let mut straight = Trainer::new(config.clone(), build).unwrap();
    for _ in 0..2 * n {
        straight.step(&data).unwrap();
    }

    let mut first = Trainer::new(config, build).unwrap();
    for _ in 0..n {
        first.step(&data).unwrap();
    }
    let saved = first.save_checkpoint(&dir, 2).unwrap();
    assert_eq!(saved, dir.join(format!("step-{n}")));
    drop(first);
    let mut resumed = Trainer::resume(&dir, build).unwrap();
    assert_eq!(resumed.step_index(), n as u64);
    for _ in 0..n {
        resumed.step(&data).unwrap();
    }

    assert_eq!(values(&resumed.store), values(&straight.store));
    assert_eq!(values(resumed.ema_store()), values(straight.ema_store()));
    assert_eq!(resumed.state(), straight.state());
    assert_eq!(resumed.optimizer().steps(), 2 * n as u64);
    // The optimiser moments: save both and compare the files byte for byte.
    resumed.save_checkpoint(&dir.join("a"), 1).unwrap();
    straight.save_checkpoint(&dir.join("b"), 1).unwrap();
    for file in [
        "optimizer.safetensors",
        "trainer_state.json",
        "model/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
    ] {
        let step = format!("step-{}", 2 * n);
        let a = std::fs::read(dir.join("a").join(&step).join(file)).unwrap();
        let b = std::fs::read(dir.join("b").join(&step).join(file)).unwrap();
        assert!(a == b, "{file} differs");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn six_steps_equal_three_steps_checkpoint_resume_three_steps_bit_for_bit() {
    assert_resume_is_exact(tiny_config(), 3, "resume");
}

/// Score matching of the VE SDE: the objective with its own λ(t), continuous times, no importance sampling.
fn score_matching_config() -> TrainConfig {
    TrainConfig {
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        score_matching: Some(ScoreMatching {
            sde: Sde::ve(0.05, 10.0).unwrap(),
            parameterization: ScoreParameterization {
                network: ScoreNetwork::Epsilon,
                num_train_timesteps: 20,
            },
            weighting: ScoreWeighting::Likelihood,
            eps: 1e-5,
            noise_levels: None,
        }),
        ..tiny_config()
    }
}

/// Under score matching the step draws its times from `step_rng` (after nothing else) and its noise from the same
/// stream as the discrete objective, and its loss is the objective's on them.
#[test]
fn the_score_matching_step_loss_is_the_objective_on_the_documented_streams() {
    let data = tiny_dataset();
    let mut config = score_matching_config();
    config.hflip = false;
    config.label_dropout = 0.0;
    let objective = config.score_matching.clone().unwrap();
    let mut trainer = Trainer::new(config.clone(), build).unwrap();
    let order = data.epoch(4, config.seed, 0, true).unwrap().order()[..4].to_vec();
    let times = objective.draw_times(&mut step_rng(config.seed, 0), 4);
    let (pixels, labels) = data.batch(&order, None).unwrap();
    let x0 = Tensor::from_vec(pixels, &[4, 1, 6, 6], Device::Cpu).unwrap();
    let (key, offset) = noise_stream(config.seed, 0, x0.numel()).unwrap();
    let z = Tensor::randn(x0.shape(), key, offset, Device::Cpu).unwrap();
    let want = objective
        .loss(&trainer.model, &x0, &z, &times, Condition::class(&labels))
        .unwrap();
    let want = f64::from(want.loss.tensor().to_scalar().unwrap());
    let report = trainer.step(&data).unwrap();
    assert_eq!(report.loss, want);
}

#[test]
fn score_matching_resumes_exactly_and_saves_its_sde_scheduler_config() {
    assert_resume_is_exact(score_matching_config(), 3, "resume-sde");
    let dir = temp_dir("sde-scheduler");
    let trainer = Trainer::new(score_matching_config(), build).unwrap();
    let saved = trainer.save_checkpoint(&dir, 1).unwrap();
    let text = std::fs::read_to_string(saved.join("scheduler/scheduler_config.json")).unwrap();
    let config = ScoreSdeConfig::from_json_str(&text).unwrap();
    assert_eq!(config.sde, Sde::ve(0.05, 10.0).unwrap());
    assert_eq!(config.num_train_timesteps, 20);
    std::fs::remove_dir_all(&dir).unwrap();
    let mut bad = score_matching_config();
    bad.loss_weighting = LossWeighting::MinSnr { gamma: 5.0 };
    let err = Trainer::new(bad, build).err().unwrap().to_string();
    assert!(err.contains("min-SNR"), "{err}");
}

#[test]
fn resume_is_exact_with_a_warm_importance_sampler_and_an_epoch_boundary() {
    // T = 3: every timestep's history of 10 is full after the first 12 steps of 4 samples, so the second half samples
    // by importance; 24 images in batches of 4 make an epoch of 6 steps, crossed in both halves.
    let mut config = tiny_config();
    config.scheduler.num_train_timesteps = 3;
    config.lr = LrSchedule::LinearWarmup {
        lr: 1e-2,
        warmup: 3,
    };
    let n = 12;
    let data = tiny_dataset();
    let mut probe = Trainer::new(config.clone(), build).unwrap();
    for _ in 0..n {
        probe.step(&data).unwrap();
    }
    let TimestepSampler::Importance(history) = &probe.state().sampler else {
        panic!("importance sampling is configured")
    };
    assert!(history.is_warm(), "{history:?}");
    assert_resume_is_exact(config, n, "resume-importance");
}

#[test]
fn checkpoints_keep_the_newest_k_and_point_latest_at_the_last() {
    let data = tiny_dataset();
    let dir = temp_dir("keep");
    let mut trainer = Trainer::new(tiny_config(), build).unwrap();
    for _ in 0..4 {
        trainer.step(&data).unwrap();
        trainer.save_checkpoint(&dir, 2).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["latest", "step-3", "step-4"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("latest")).unwrap(),
        "step-4\n"
    );
    for file in [
        "model/config.json",
        "model/diffusion_pytorch_model.safetensors",
        "ema/config.json",
        "ema/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(dir.join("step-4").join(file).is_file(), "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_a_folder_without_checkpoints_names_the_missing_pointer() {
    let dir = temp_dir("empty");
    let err = Trainer::resume(&dir, build).err().unwrap().to_string();
    assert!(err.contains("latest"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
