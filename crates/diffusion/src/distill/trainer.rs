//! [`Distiller`]: one optimisation step of progressive distillation, consistency distillation or consistency training,
//! and the state that carries from step to step and round to round.
//!
//! A round begins with the student a copy of its teacher (a fresh network for consistency training), a fresh AdamW
//! and an EMA of the student's weights, which is what is sampled and what teaches the next round. Every random draw
//! of step `g` (counted over the whole run) derives from `(seed, g)` as in [`crate::train::random`], so a resumed run
//! takes the same steps as an uninterrupted one.

use super::consistency::ConsistencyFunction;
use super::consistency::{
    consistency_forward, ConsistencyParam, NetworkConsistency, NetworkDenoiser,
};
use super::curriculum::{gap_weight, Curriculum};
use super::method::{DistillConfig, Method};
use super::progressive::{distillation_target, student_grid, student_loss, teacher_two_steps};
use crate::data::{Dataset, EpochBatches};
use crate::error::{Error, Result};
use crate::eval::ImageClassifier;
use crate::forward::q_sample;
use crate::sampler::scheduler::Scheduler;
use crate::sampler::sigmas::training_sigmas;
use crate::sampler::{ClassifierFreeGuidance, Condition, Denoiser, X0Limit};
use crate::schedule::NoiseSchedule;
use crate::train::random::{noise_stream, step_rng};
use crate::train::target::{scale_samples, Prediction};
use crate::train::trainer::LOSS_SMOOTHING;
use crate::train::{ModelDenoiser, StepReport, TrainableModel};
use diffuse_autograd::Var;
use diffuse_nn::{clip_grad_norm, grad_norm, AdamW, Ema, EmaWarmup, ParamStore};
use diffuse_tensor::{AdamWConfig, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What carries from one step to the next: saved as `distill_state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillState {
    pub config: DistillConfig,
    /// The round under way (1-based).
    pub round: u32,
    /// Steps taken in this round.
    pub step_in_round: u64,
    /// Steps taken in all rounds: the index of the next step's random draws.
    pub step: u64,
    pub smoothed_loss: Option<f64>,
    pub skipped_steps: u64,
}

impl DistillState {
    pub fn new(config: DistillConfig) -> Self {
        Self {
            config,
            round: 1,
            step_in_round: 0,
            step: 0,
            smoothed_loss: None,
            skipped_steps: 0,
        }
    }

    /// Whether the round under way has taken all its steps.
    pub fn round_done(&self) -> bool {
        self.step_in_round >= self.config.steps_per_round
    }

    /// Whether the whole run is done.
    pub fn done(&self) -> bool {
        self.round > self.config.method.rounds()
            || (self.round == self.config.method.rounds() && self.round_done())
    }
}

/// A student, its EMA, its optimiser, its teacher and, for consistency distillation, its target network.
pub struct Distiller<M: TrainableModel> {
    pub student: M,
    pub store: ParamStore,
    /// The same architecture over the EMA weights (what is sampled).
    pub ema_model: M,
    ema: Ema,
    /// Consistency distillation's target network θ⁻, the EMA of the student with the target decay.
    target: Option<(M, Ema)>,
    teacher: Option<M>,
    optimizer: AdamW,
    state: DistillState,
    schedule: NoiseSchedule,
    prediction: Prediction,
    limit: X0Limit,
    training_sigmas: Vec<f64>,
    param: ConsistencyParam,
    classifier: Option<ImageClassifier>,
    epoch_order: Option<(u64, Vec<usize>)>,
}

/// Where a round's weights come from.
pub struct RoundStart<'a> {
    /// The teacher's weights file (none for consistency training).
    pub teacher: Option<&'a Path>,
    /// The classifier of a perceptual distance.
    pub classifier: Option<ImageClassifier>,
    pub device: Device,
}

impl<M: TrainableModel> Distiller<M> {
    /// Begins the round `state.round` at its first step: the student is the teacher's copy (or fresh, from the seed,
    /// without a teacher). `build` makes the network over a parameter store.
    pub fn start_round<E: Into<Error>>(
        state: DistillState,
        start: RoundStart<'_>,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        let config = &state.config;
        config.validate()?;
        let device = start.device;
        let make = |store: &ParamStore| build(store).map_err(Into::into);
        let store = ParamStore::new(config.seed, device);
        let student = make(&store)?;
        let teacher = match start.teacher {
            Some(weights) => {
                store.load(weights)?;
                let teacher_store = ParamStore::new(config.seed, device);
                let teacher = make(&teacher_store)?;
                teacher_store.load(weights)?;
                Some(teacher)
            }
            None if config.method.has_teacher() => {
                return Err(Error::train(
                    "teacher",
                    format!("{} needs a teacher", config.method.name()),
                ))
            }
            None => None,
        };
        let shadow = ParamStore::new(config.seed, device);
        let ema_model = make(&shadow)?;
        let ema = Ema::with_shadow(&store, shadow, config.ema_decay, EmaWarmup::Fraction)?;
        let target = match config.method {
            Method::ConsistencyDistillation { target_decay, .. } => {
                let target_store = ParamStore::new(config.seed, device);
                let target_model = make(&target_store)?;
                // The decay warms up to μ as the sampling EMA's does ((1 + k)/(10 + k), μ = 0.95 from step 172),
                // where Song et al. hold μ from the first step: in the sanity test's 200-step distillation the
                // warm-up's one-step student came much closer to the teacher (docs/distillation.md).
                let target_ema =
                    Ema::with_shadow(&store, target_store, target_decay, EmaWarmup::Fraction)?;
                Some((target_model, target_ema))
            }
            _ => None,
        };
        // Adam's β = (0.9, 0.999), no weight decay: the student stays near its teacher's weights.
        let optimizer = AdamW::for_store(
            &store,
            AdamWConfig {
                lr: config.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        )?;
        let schedule = config.noise_schedule()?;
        let scheduler = Scheduler::from_config(&config.scheduler)?;
        Ok(Self {
            student,
            store,
            ema_model,
            ema,
            target,
            teacher,
            optimizer,
            prediction: scheduler.prediction(),
            limit: scheduler.options.x0_limit(),
            training_sigmas: training_sigmas(&schedule)?,
            param: ConsistencyParam::for_schedule(&schedule)?,
            schedule,
            state,
            classifier: start.classifier,
            epoch_order: None,
        })
    }

    /// Continues a round from a checkpoint folder (`model/`, `ema/`, `target/`, `optimizer.safetensors`) whose state
    /// is `state`.
    pub fn resume<E: Into<Error>>(
        checkpoint: &Path,
        state: DistillState,
        start: RoundStart<'_>,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        let weights = |dir: &str| {
            checkpoint
                .join(dir)
                .join(crate::train::checkpoint::WEIGHTS_FILE)
        };
        let mut distiller = Self::start_round(state, start, build)?;
        distiller.store.load(weights("model"))?;
        distiller.ema.store().load(weights("ema"))?;
        if let Some((_, target)) = &mut distiller.target {
            target.store().load(weights("target"))?;
        }
        distiller
            .optimizer
            .load_state(checkpoint.join("optimizer.safetensors"))?;
        let updates = distiller.optimizer.steps();
        distiller.ema.set_updates(updates);
        if let Some((_, target)) = &mut distiller.target {
            target.set_updates(updates);
        }
        Ok(distiller)
    }

    pub fn state(&self) -> &DistillState {
        &self.state
    }

    pub fn config(&self) -> &DistillConfig {
        &self.state.config
    }

    pub fn device(&self) -> Device {
        self.store.device()
    }

    pub fn ema_store(&self) -> &ParamStore {
        self.ema.store()
    }

    /// The consistency-distillation target network's weights.
    pub fn target_store(&self) -> Option<&ParamStore> {
        self.target.as_ref().map(|(_, ema)| ema.store())
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// The batch of global step `step`: images and (for a class-conditional model) labels.
    fn batch(&mut self, data: &Dataset, step: u64) -> Result<(Tensor, Option<Vec<u32>>)> {
        let config = &self.state.config;
        let b = config.batch_size;
        let per_epoch = (data.len() / b) as u64;
        if per_epoch == 0 {
            return Err(Error::train(
                "batch_size",
                format!("{b} is larger than the dataset ({} images)", data.len()),
            ));
        }
        let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
        if self.epoch_order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let order = EpochBatches::new(data.len(), b, config.seed, epoch, true)?;
            self.epoch_order = Some((epoch, order.order().to_vec()));
        }
        let indices = self.epoch_order.as_ref().expect("just set").1[k * b..(k + 1) * b].to_vec();
        let (pixels, labels) = data.batch(&indices, None)?;
        let labels = match config.null_class {
            Some(_) if labels.len() == b => Some(labels),
            Some(_) => {
                return Err(Error::train(
                    "data",
                    "a class-conditional model needs a labelled dataset",
                ))
            }
            None => None,
        };
        let x0 = Tensor::from_vec(
            pixels,
            &[b, data.channels, data.height, data.width],
            self.device(),
        )?;
        Ok((x0, labels))
    }

    /// The weighted loss of step `step` on the batch `x0`.
    fn loss(&self, x0: &Tensor, labels: Option<&[u32]>, step: u64) -> Result<Var> {
        let config = &self.state.config;
        let b = config.batch_size;
        let cond = Condition::class_opt(labels);
        let mut rng = step_rng(config.seed, step);
        let (key, offset) = noise_stream(config.seed, step, x0.numel())?;
        let teacher_plain = self.teacher.as_ref().map(|model| ModelDenoiser {
            model,
            prediction: self.prediction,
        });
        let guided;
        let guidance = config.teacher_guidance(self.state.round);
        let teacher: Option<&dyn Denoiser> = match &teacher_plain {
            Some(plain) if guidance != 1.0 => {
                guided = ClassifierFreeGuidance {
                    model: plain,
                    scale: guidance,
                    null_class: config.null_class,
                    null_context: None,
                };
                Some(&guided)
            }
            Some(plain) => Some(plain),
            None => None,
        };
        match &config.method {
            Method::Progressive { .. } => {
                let teacher = teacher.expect("validated: progressive distillation has a teacher");
                let steps = config
                    .method
                    .student_steps(self.state.round)
                    .expect("progressive");
                let grid = student_grid(self.schedule.len(), steps)?;
                let picks: Vec<_> = (0..b)
                    .map(|_| grid[rng.below(grid.len() as u64) as usize])
                    .collect();
                let t: Vec<usize> = picks.iter().map(|s| s.t).collect();
                let (x_t, _) = q_sample(&self.schedule, x0, &t, key, offset)?;
                let teacher_steps =
                    teacher_two_steps(teacher, &self.schedule, self.limit, &x_t, &picks, cond)?;
                let target =
                    distillation_target(&self.schedule, self.limit, &x_t, &teacher_steps, &picks)?;
                let t_f: Vec<f64> = t.iter().map(|&t| t as f64).collect();
                let input = Var::constant(x_t.clone());
                let out = prediction_half(self.student.forward(&input, &t_f, cond)?, x0)?;
                let per_sample =
                    student_loss(&self.schedule, self.prediction, &x_t, &out, &target, &picks)?;
                Ok(per_sample.mean_all()?)
            }
            Method::ConsistencyDistillation {
                levels,
                solver,
                distance,
                level_weighting,
                ..
            } => {
                let teacher = teacher.expect("validated: consistency distillation has a teacher");
                let grid = self.param.levels(*levels)?;
                let n: Vec<usize> = (0..b)
                    .map(|_| rng.below(*levels as u64 - 1) as usize)
                    .collect();
                let (sigma, sigma_next) = pairs(&grid, &n);
                let z = Tensor::randn(x0.shape(), key, offset, self.device())?;
                let x_next = x0.add(&scale_samples(&z, &as_f32(&sigma_next))?)?;
                let teacher_d = NetworkDenoiser {
                    model: teacher,
                    training_sigmas: self.training_sigmas.clone(),
                };
                let x_hat =
                    solver.step(&teacher_d, self.limit, &x_next, &sigma_next, &sigma, cond)?;
                let (target_model, _) = self
                    .target
                    .as_ref()
                    .expect("consistency distillation keeps a target");
                let target_denoiser = ModelDenoiser {
                    model: target_model,
                    prediction: self.prediction,
                };
                let target = NetworkConsistency {
                    model: &target_denoiser,
                    param: self.param,
                    training_sigmas: self.training_sigmas.clone(),
                }
                .apply(&x_hat, &sigma, cond)?;
                let pred = self.consistency(&x_next, &sigma_next, cond)?;
                let per_sample = distance.per_sample(&pred, &target, self.classifier.as_ref())?;
                level_weighting.weighted_mean(&self.param, &per_sample, &sigma_next)
            }
            Method::ConsistencyTraining { curriculum } => {
                let total = config.steps_per_round;
                let n_levels = curriculum.levels(self.state.step_in_round, total);
                let grid = self.param.levels(n_levels)?;
                let probabilities = curriculum.pair_probabilities(&grid);
                let n: Vec<usize> = (0..b)
                    .map(|_| Curriculum::draw(&probabilities, &mut rng))
                    .collect();
                let (sigma, sigma_next) = pairs(&grid, &n);
                let z = Tensor::randn(x0.shape(), key, offset, self.device())?;
                let x_next = x0.add(&scale_samples(&z, &as_f32(&sigma_next))?)?;
                let x_n = x0.add(&scale_samples(&z, &as_f32(&sigma))?)?;
                // The target network is the student itself, without gradient.
                let student = ModelDenoiser {
                    model: &self.student,
                    prediction: self.prediction,
                };
                let target = NetworkConsistency {
                    model: &student,
                    param: self.param,
                    training_sigmas: self.training_sigmas.clone(),
                }
                .apply(&x_n, &sigma, cond)?;
                let pred = self.consistency(&x_next, &sigma_next, cond)?;
                let per_sample =
                    super::consistency::Distance::PseudoHuber.per_sample(&pred, &target, None)?;
                let weights = sigma
                    .iter()
                    .zip(&sigma_next)
                    .map(|(&s, &s_next)| gap_weight(s, s_next) as f32)
                    .collect();
                weighted_mean(&per_sample, weights, self.device())
            }
        }
    }

    /// The student's consistency function `f_θ(x, σ)`, recorded.
    fn consistency(&self, x: &Tensor, sigmas: &[f64], cond: Condition<'_>) -> Result<Var> {
        consistency_forward(
            &self.student,
            self.prediction,
            &self.param,
            &self.training_sigmas,
            x,
            sigmas,
            cond,
        )
    }

    /// Runs the next step of the round on `data`.
    pub fn step(&mut self, data: &Dataset) -> Result<StepReport> {
        if self.state.round_done() {
            return Err(Error::train(
                "step",
                format!(
                    "round {} has taken its {} steps",
                    self.state.round, self.state.config.steps_per_round
                ),
            ));
        }
        let step = self.state.step;
        let (x0, labels) = self.batch(data, step)?;
        let loss = self.loss(&x0, labels.as_deref(), step)?;
        let loss_value = f64::from(loss.tensor().to_scalar()?);
        let lr = self.state.config.lr;
        self.state.step += 1;
        self.state.step_in_round += 1;
        let skipped = |state: &mut DistillState, grad_norm| {
            state.skipped_steps += 1;
            StepReport {
                step,
                loss: loss_value,
                smoothed_loss: state.smoothed_loss,
                grad_norm,
                lr,
                skipped: true,
                communication_s: 0.0,
            }
        };
        if !loss_value.is_finite() {
            return Ok(skipped(&mut self.state, None));
        }
        let mut grads = loss.backward()?;
        let norm = match self.state.config.grad_clip {
            Some(max) => clip_grad_norm(&mut grads, max)?,
            None => grad_norm(&grads)? as f32,
        };
        if !norm.is_finite() {
            return Ok(skipped(&mut self.state, Some(norm)));
        }
        self.optimizer.step(&grads)?;
        self.ema.update()?;
        if let Some((_, target)) = &mut self.target {
            target.update()?;
        }
        let rate = LOSS_SMOOTHING.max(1.0 / self.optimizer.steps() as f64);
        let previous = self.state.smoothed_loss.unwrap_or(loss_value);
        let smoothed = previous + rate * (loss_value - previous);
        self.state.smoothed_loss = Some(smoothed);
        Ok(StepReport {
            step,
            loss: loss_value,
            smoothed_loss: Some(smoothed),
            grad_norm: Some(norm),
            lr,
            skipped: false,
            communication_s: 0.0,
        })
    }

    /// The state after the round under way: the next round at its first step.
    pub fn next_round_state(&self) -> DistillState {
        let mut state = self.state.clone();
        state.round += 1;
        state.step_in_round = 0;
        state.smoothed_loss = None;
        state
    }
}

/// The prediction half of a learned-variance output.
fn prediction_half(out: Var, sample: &Tensor) -> Result<Var> {
    let channels = sample.shape()[1];
    if out.shape()[1] == 2 * channels {
        Ok(out.narrow(1, 0, channels)?)
    } else {
        Ok(out)
    }
}

/// `mean_b(w_b·loss_b)`.
fn weighted_mean(per_sample: &Var, weights: Vec<f32>, device: Device) -> Result<Var> {
    let n = weights.len();
    let w = Var::constant(Tensor::from_vec(weights, &[n], device)?);
    Ok(per_sample.mul(&w)?.mean_all()?)
}

/// `(σ_n, σ_{n+1})` for each drawn `n`.
fn pairs(levels: &[f64], n: &[usize]) -> (Vec<f64>, Vec<f64>) {
    n.iter().map(|&n| (levels[n], levels[n + 1])).unzip()
}

fn as_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
