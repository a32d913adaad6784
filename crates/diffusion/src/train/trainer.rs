//! [`Trainer`]: one optimisation step of a denoising diffusion model, and the state that carries from step to step.
//!
//! Step `s`:
//! 1. take batch `s` of the shuffled data, draw timesteps, label-dropout coins and flips (see [`super::random`]);
//! 2. noise the batch in one fused pass, `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε` ([`crate::forward::q_sample`]), and form the
//!    target (ε, x0 or v, [`super::target`]); under score matching, draw continuous times instead and take the
//!    loss of [`crate::sde::ScoreMatching`] (same noise stream);
//!    with an image condition ([`crate::image_condition`]: a super-resolution stage's low-resolution input, an
//!    inpainting network's mask and masked image) the network's input is `[x_t, extra channels]`, the extra channels
//!    built from the clean batch and the step's draws;
//! 3. per-sample loss `L_b = mean over pixels of (f(x_t, t, y) − target)²`, weighted by the timestep weighting
//!    ([`super::weighting`]); for a network that also predicts its variance (twice the image's channels out) plus
//!    `λ·T·L_vlb` ([`super::hybrid`]); under importance sampling all of it weighted by `1/(T·p_t)`; the batch loss is
//!    their mean;
//! 4. a non-finite loss or gradient norm skips the step (no update, counted; the run fails after `max_nonfinite` in a
//!    row); otherwise back-propagate, clip the global gradient norm, take an AdamW step at the scheduled learning rate,
//!    update the EMA, and tell the timestep sampler the losses. With a loss scaler ([`Trainer::set_loss_scaler`],
//!    for half-precision products whose small gradients would underflow), the scaled loss `S·loss` is
//!    back-propagated and the gradients divided by `S` before clipping; gradients that overflowed skip the step and
//!    halve `S` (the scaler's normal working, so not counted towards `max_nonfinite`), and `growth_interval` good
//!    steps in a row double it, as PyTorch's `GradScaler` does ([`diffuse_nn::LossScaler`]).
//!
//! The step counter advances on skipped steps too, so the data order and random draws of later steps do not depend on
//! whether an earlier one was skipped.
//!
//! Data parallel ([`super::collective`]): each of `N` ranks takes its [`Shard`] of the global batch with the random
//! draws the single process makes for those samples (the step's scalar draws are made for the whole batch and
//! sliced; the Gaussian noise is read from the same Philox stream at the shard's offset), back-propagates its part
//! `Σ_{b∈shard} L_b / B` of the batch loss, and the gradients are summed over the ranks before anything reads them,
//! so the loss scaler, clipping, the optimiser and the EMA see the gradient of the whole batch's loss and every rank takes the same step.

use super::captions::CaptionContexts;
use super::collective::{Collective, Shard, SingleProcess};
use super::config::TrainConfig;
use super::hybrid::{hybrid_terms, Batch as HybridBatch};
use super::model::TrainableModel;
use super::overlap::{backward_summed, OverlappedBackward, DEFAULT_BUCKET_ELEMENTS};
use super::random::{augment_stream, noise_stream, step_rng};
use super::target::training_target;
use super::timesteps::{LossHistory, TimestepSampler};
use crate::autoencoder::latents::{latent_stream, LatentSpace};
use crate::data::{random_translate, Dataset, EpochBatches};
use crate::error::{Error, Result};
use crate::forward::q_sample;
use crate::sampler::Condition;
use crate::schedule::NoiseSchedule;
use diffuse_autograd::Var;
use diffuse_nn::{clip_grad_norm, grad_norm, AdamW, Ema, LossScaler, ParamStore};
use diffuse_tensor::{AdamWConfig, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// How much of the newest loss enters the smoothed loss: `ℓ̄ ← ℓ̄ + max(α, 1/n)·(ℓ − ℓ̄)` after the `n`-th update (a
/// plain running mean until `n = 1/α`, so the start does not linger).
pub const LOSS_SMOOTHING: f64 = 0.02;

/// What carries from one step to the next besides the weights and the optimiser: saved as `trainer_state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps taken (skipped ones included): the index of the next step.
    pub step: u64,
    /// The epoch and the batch within it of the next step (derived from `step`; written for the reader).
    pub epoch: u64,
    pub batch_in_epoch: u64,
    pub sampler: TimestepSampler,
    /// Exponential moving average of the batch loss, `None` before the first finite one.
    pub smoothed_loss: Option<f64>,
    /// Steps skipped for a non-finite loss or gradient norm (or, under loss scaling, overflowed gradients), in all,
    /// and those for a non-finite loss or gradient norm in a row.
    pub skipped_steps: u64,
    pub consecutive_nonfinite: u32,
    pub config: TrainConfig,
    /// Dynamic loss scaling and its state (scale, good steps); absent from the file of a run without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<LossScaler>,
}

/// One step's batch and random draws: this rank's shard of them.
struct Draw {
    /// Which samples of the global batch these are.
    shard: Shard,
    x0: Tensor,
    labels: Option<Vec<u32>>,
    /// The captions' states of a text-conditioned run (dropped ones the empty prompt's).
    context: Option<Tensor>,
    timesteps: Vec<usize>,
    /// The timesteps of the whole global batch (what the timestep sampler records).
    batch_timesteps: Vec<usize>,
    importance: Vec<f64>,
    /// The continuous times of score matching (empty for the discrete objective, whose `timesteps` are empty
    /// under score matching).
    times: Vec<f64>,
    /// The extra input channels of an image-conditioned run ([`crate::image_condition`]), concatenated after `x_t`.
    extra: Option<Tensor>,
}

impl Draw {
    /// What the network is conditioned on: the labels and the captions' states, where the run has them.
    fn condition(&self) -> Condition<'_> {
        Condition {
            class: self.labels.as_deref(),
            context: self.context.as_ref(),
        }
    }
}

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The step's index.
    pub step: u64,
    /// The weighted batch loss (non-finite when that is why the step was skipped).
    pub loss: f64,
    pub smoothed_loss: Option<f64>,
    /// The global gradient norm before clipping (`None` when the loss was non-finite).
    pub grad_norm: Option<f32>,
    pub lr: f32,
    /// The step took no update.
    pub skipped: bool,
    /// Seconds spent summing gradients and losses over the processes of a data-parallel run (0 for one process).
    pub communication_s: f64,
}

/// A model, its EMA, its optimiser and the run's state.
pub struct Trainer<M: TrainableModel> {
    pub model: M,
    pub store: ParamStore,
    /// The same architecture over the EMA weights.
    pub ema_model: M,
    pub(super) ema: Ema,
    pub(super) optimizer: AdamW,
    pub(super) state: TrainerState,
    schedule: NoiseSchedule,
    /// The shuffled order of the epoch last used.
    epoch_order: Option<(u64, Vec<usize>)>,
    /// Latent diffusion: the dataset holds posterior moments, and x0 is a scaled latent drawn from them.
    latents: Option<LatentSpace>,
    /// Text conditioning: every training image's caption, encoded.
    captions: Option<CaptionContexts>,
    /// The processes of a data-parallel run ([`SingleProcess`] by default).
    collective: Rc<dyn Collective>,
    /// The gradient all-reduce started during backward, bucket by bucket; `None`: after it, all at once.
    overlap: Option<OverlappedBackward>,
}

impl<M: TrainableModel> Trainer<M> {
    /// A fresh run on the CPU: `build` makes the model over a parameter store (called twice: the live weights,
    /// initialised from `config.seed`, and the EMA weights, which start as a copy).
    pub fn new<E: Into<Error>>(
        config: TrainConfig,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        Self::new_on(config, Device::Cpu, build)
    }

    /// A fresh run whose weights, optimiser state and batches live on `device`. The initial weights are the same
    /// on every device (the Philox stream is), so a run differs between devices only by the kernels' rounding.
    pub fn new_on<E: Into<Error>>(
        config: TrainConfig,
        device: Device,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        config.validate()?;
        let schedule = config.noise_schedule()?;
        let store = ParamStore::new(config.seed, device);
        let model = build(&store).map_err(Into::into)?;
        let shadow = ParamStore::new(config.seed, device);
        let ema_model = build(&shadow).map_err(Into::into)?;
        let ema = Ema::with_shadow(&store, shadow, config.ema_decay, config.ema_warmup)?;
        let optimizer = AdamW::for_store(
            &store,
            AdamWConfig {
                lr: config.lr.lr_at(0),
                beta1: config.adam_beta1,
                beta2: config.adam_beta2,
                eps: config.adam_eps,
                weight_decay: config.weight_decay,
            },
        )?;
        let t = schedule.len();
        let sampler = if config.importance_sampling {
            TimestepSampler::Importance(LossHistory::new(t))
        } else {
            TimestepSampler::Uniform { num_timesteps: t }
        };
        Ok(Self {
            model,
            store,
            ema_model,
            ema,
            optimizer,
            state: TrainerState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                sampler,
                smoothed_loss: None,
                skipped_steps: 0,
                consecutive_nonfinite: 0,
                config,
                loss_scaler: None,
            },
            schedule,
            epoch_order: None,
            latents: None,
            captions: None,
            collective: Rc::new(SingleProcess),
            overlap: Some(OverlappedBackward::new(DEFAULT_BUCKET_ELEMENTS)),
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.state.config
    }

    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The index of the next step.
    pub fn step_index(&self) -> u64 {
        self.state.step
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// The EMA weights.
    pub fn ema_store(&self) -> &ParamStore {
        self.ema.store()
    }

    /// The optimiser (its state is part of a checkpoint).
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Trains in the latent space `space` of an autoencoder: the dataset given to [`Trainer::step`] then holds each
    /// image's posterior moments (μ, log σ²) as [`crate::autoencoder::encode_posteriors`] makes them, and every
    /// step draws its x0 from them afresh (see [`crate::autoencoder::latents`]).
    pub fn set_latent_space(&mut self, space: LatentSpace) {
        self.latents = Some(space);
    }

    /// Conditions every step on the training images' captions (`captions`, indexed like the dataset given to
    /// [`Trainer::step`]), each dropped to the empty prompt with probability `caption_dropout`.
    pub fn set_captions(&mut self, captions: CaptionContexts) {
        self.captions = Some(captions);
    }

    /// The encoded captions of a text-conditioned run.
    pub fn captions(&self) -> Option<&CaptionContexts> {
        self.captions.as_ref()
    }

    /// The latent space of a latent diffusion run.
    pub fn latent_space(&self) -> Option<&LatentSpace> {
        self.latents.as_ref()
    }

    /// Scales the loss with `scaler` from the next step on (or stops scaling): see the module docs. The scaler's
    /// state is saved with each checkpoint and restored on resume.
    pub fn set_loss_scaler(&mut self, scaler: Option<LossScaler>) {
        self.state.loss_scaler = scaler;
    }

    /// Trains as one rank of a data-parallel run: each step takes this rank's [`Shard`] of the global batch and sums
    /// the gradients over `collective`'s ranks.
    pub fn set_collective(&mut self, collective: Rc<dyn Collective>) {
        self.collective = collective;
    }

    /// Overlaps the gradient all-reduce with the backward pass in buckets of up to `bucket_elements` values (the
    /// default: [`DEFAULT_BUCKET_ELEMENTS`], PyTorch's 25 MiB), or with `None` sums the gradients after backward in
    /// the parameters' order. With two processes both give the same bits (docs/distributed.md).
    pub fn set_overlap(&mut self, bucket_elements: Option<usize>) {
        self.overlap = bucket_elements.map(OverlappedBackward::new);
    }

    /// The processes this trainer steps with.
    pub fn collective(&self) -> &dyn Collective {
        self.collective.as_ref()
    }

    /// This rank's part of every global batch.
    pub fn shard(&self) -> Result<Shard> {
        Shard::of(
            self.state.config.batch_size,
            self.collective.rank(),
            self.collective.size(),
        )
    }

    /// Sets the total number of steps (to extend a resumed run); the learning-rate schedule is kept.
    pub fn set_total_steps(&mut self, steps: u64) {
        self.state.config.steps = steps;
    }

    /// The dataset indices of batch `s`: batch `s mod K` of epoch `⌊s/K⌋`, `K = ⌊len/B⌋`.
    fn batch_indices(&mut self, data: &Dataset, step: u64) -> Result<Vec<usize>> {
        let b = self.state.config.batch_size;
        let per_epoch = (data.len() / b) as u64;
        if per_epoch == 0 {
            return Err(Error::train(
                "batch_size",
                format!("{b} is larger than the dataset ({} images)", data.len()),
            ));
        }
        let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
        if self.epoch_order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let order = EpochBatches::new(data.len(), b, self.state.config.seed, epoch, true)?;
            self.epoch_order = Some((epoch, order.order().to_vec()));
        }
        let order = &self.epoch_order.as_ref().expect("just set").1;
        Ok(order[k * b..(k + 1) * b].to_vec())
    }

    /// This rank's shard of the batch of step `step` with its random draws: images, (dropped-out) labels,
    /// timesteps, importance weights. The draws are made for the whole global batch (a few numbers per sample, and the
    /// images are copied for the whole batch so that the flip coins fall as in one process) and then sliced.
    fn draw(&mut self, data: &Dataset, step: u64) -> Result<Draw> {
        let shard = self.shard()?;
        let config = &self.state.config;
        let (b, seed, dropout, caption_dropout, hflip, crop_pad, null_class) = (
            config.batch_size,
            config.seed,
            config.label_dropout,
            config.caption_dropout,
            config.hflip,
            config.crop_pad,
            config.null_class,
        );
        let objective = config.score_matching.clone();
        let indices = self.batch_indices(data, step)?;
        let mut rng = step_rng(seed, step);
        let (timesteps, importance, times) = match objective {
            Some(objective) => (Vec::new(), vec![1.0; b], objective.draw_times(&mut rng, b)),
            None => {
                let (timesteps, importance) = self.state.sampler.sample(&mut rng, b);
                (timesteps, importance, Vec::new())
            }
        };
        let draws: Vec<f64> = (0..b).map(|_| rng.next_f64()).collect();
        let dropped: Vec<bool> = draws.iter().map(|&u| u < dropout).collect();
        let flip_seed = rng.next_u64();
        // Drawn after the flip seed and only when on, so runs without it keep every other draw.
        let crop_seed = (crop_pad > 0).then(|| rng.next_u64());
        // After every other draw, so that runs without an image condition draw as before it existed.
        let image_condition = self.state.config.image_condition;
        let condition_draws = image_condition.map(|c| c.draw(&mut rng, b));
        let (mut pixels, labels) = data.batch(&indices, hflip.then_some(flip_seed))?;
        if let Some(seed) = crop_seed {
            let shape = (data.channels, data.height, data.width);
            random_translate(&mut pixels, shape, crop_pad, seed)?;
        }
        let (start, end) = (shard.start, shard.end);
        let image_len = data.channels * data.height * data.width;
        // The shard's samples' captions (the empty prompt's where dropped).
        let context = match &self.captions {
            Some(captions) if captions.len() == data.len() => {
                let dropped: Vec<bool> = draws.iter().map(|&u| u < caption_dropout).collect();
                Some(
                    captions
                        .batch(&indices[start..end], &dropped[start..end])?
                        .to_device(self.device())?,
                )
            }
            Some(captions) => {
                return Err(Error::train(
                    "captions",
                    format!(
                        "{} captions for a dataset of {} images",
                        captions.len(),
                        data.len()
                    ),
                ))
            }
            None => None,
        };
        let pixels = pixels[start * image_len..end * image_len].to_vec();
        let extra = match (image_condition, condition_draws) {
            (Some(condition), Some(draws)) => {
                if self.latents.is_some() {
                    return Err(Error::train(
                        "image_condition",
                        "an image-conditioned run trains on pixels, not latents",
                    ));
                }
                let input = condition.training_input(
                    &self.schedule,
                    &pixels,
                    data.channels,
                    (data.height, data.width),
                    &draws[start..end],
                    |len| {
                        let per_sample = len / shard.len();
                        let (key, offset) = augment_stream(seed, step, b * per_sample)?;
                        let offset = offset + (start * per_sample) as u64;
                        Ok(Tensor::randn(&[len], key, offset, Device::Cpu)?.to_vec()?)
                    },
                )?;
                let channels = condition.extra_channels(data.channels);
                let tensor = Tensor::from_vec(
                    input.channels,
                    &[shard.len(), channels, data.height, data.width],
                    self.device(),
                )?;
                Some((tensor, input.labels))
            }
            _ => None,
        };
        let labels = match null_class {
            Some(null) if labels.len() == b => Some(
                labels[start..end]
                    .iter()
                    .zip(&dropped[start..end])
                    .map(|(&y, &drop)| if drop { null } else { y })
                    .collect(),
            ),
            Some(_) => {
                return Err(Error::train(
                    "data",
                    "class-conditional training needs a labelled dataset",
                ))
            }
            None => None,
        };
        // A super-resolution stage's class labels are its augmentation levels.
        let (extra, labels) = match extra {
            Some((extra, Some(levels))) => (Some(extra), Some(levels)),
            Some((extra, None)) => (Some(extra), labels),
            None => (None, labels),
        };
        let x0 = Tensor::from_vec(
            pixels,
            &[shard.len(), data.channels, data.height, data.width],
            self.device(),
        )?;
        let x0 = match &self.latents {
            Some(space) => {
                let latent_len = image_len / 2;
                let (key, offset) = latent_stream(seed, step, b * latent_len)?;
                space.sample(&x0, key, offset + (start * latent_len) as u64)?
            }
            None => x0,
        };
        /// The shard's part of per-sample draws (none under the other objective).
        fn part<T: Clone>(values: &[T], start: usize, end: usize) -> Vec<T> {
            values.get(start..end).unwrap_or_default().to_vec()
        }
        Ok(Draw {
            shard,
            x0,
            labels,
            context,
            timesteps: part(&timesteps, start, end),
            batch_timesteps: timesteps,
            importance: importance[start..end].to_vec(),
            times: part(&times, start, end),
            extra,
        })
    }

    /// The weighted loss of a drawn batch: `mean_b (w_b·i_b·mean(f(x_t) − target)² + i_b·λ·T·L_vlb,b)` with `w_b`
    /// the timestep weight, `i_b` the importance weight, and the variational term only for a network that also
    /// predicts its variance ([`super::hybrid`]); of a shard, its share `Σ_{b∈shard} (…) / B` of the global batch's
    /// loss. Returns the loss, the per-sample MSEs and the timestep weights.
    fn weighted_loss(&self, batch: &Draw, step: u64) -> Result<(Var, Var, Vec<f64>)> {
        let config = &self.state.config;
        let (loss, per_sample, weights) = self.shard_mean_loss(batch, step)?;
        let share = batch.shard.len() as f64 / config.batch_size as f64;
        let loss = if share == 1.0 {
            loss
        } else {
            loss.mul_scalar(share as f32)?
        };
        Ok((loss, per_sample, weights))
    }

    /// As [`Trainer::weighted_loss`], the mean over the shard's samples.
    fn shard_mean_loss(&self, batch: &Draw, step: u64) -> Result<(Var, Var, Vec<f64>)> {
        let config = &self.state.config;
        let sample_len = batch.x0.numel() / batch.shard.len();
        let (key, offset) = noise_stream(config.seed, step, config.batch_size * sample_len)?;
        let offset = offset + (batch.shard.start * sample_len) as u64;
        if let Some(objective) = &config.score_matching {
            let z = Tensor::randn(batch.x0.shape(), key, offset, self.device())?;
            let cond = batch.condition();
            let loss = objective.loss(&self.model, &batch.x0, &z, &batch.times, cond)?;
            return Ok((loss.loss, loss.per_sample, loss.weights));
        }
        let (x_t, eps) = q_sample(&self.schedule, &batch.x0, &batch.timesteps, key, offset)?;
        let alpha_bars = batch
            .timesteps
            .iter()
            .map(|&t| self.schedule.alpha_bar(t))
            .collect::<std::result::Result<Vec<f64>, _>>()?;
        let prediction = config.prediction();
        let target = training_target(prediction, &batch.x0, &eps, &alpha_bars)?;
        let t: Vec<f64> = batch.timesteps.iter().map(|&t| t as f64).collect();
        let input = match &batch.extra {
            Some(extra) => Tensor::concat(&[&x_t, extra], 1)?,
            None => x_t.clone(),
        };
        let out = self
            .model
            .forward(&Var::constant(input), &t, batch.condition())?;
        let (per_sample, vlb) =
            if out.shape().get(1) == batch.x0.shape().get(1).map(|c| 2 * c).as_ref() {
                let terms = hybrid_terms(
                    &self.schedule,
                    prediction,
                    &out,
                    &HybridBatch {
                        x0: &batch.x0,
                        x_t: &x_t,
                        target: &target,
                        timesteps: &batch.timesteps,
                    },
                )?;
                (terms.mse, Some(terms.vlb))
            } else {
                // One kernel each way; the weights below reach its backward pass as the gradient of `mse`.
                (out.sample_mse(&Var::constant(target))?, None)
            };
        let timestep_weights: Vec<f64> = alpha_bars
            .iter()
            .map(|&ab| config.loss_weighting.weight(ab / (1.0 - ab), prediction))
            .collect();
        let n = timestep_weights.len();
        let constant = |values: Vec<f32>| -> Result<Var> {
            Ok(Var::constant(Tensor::from_vec(
                values,
                &[n],
                self.device(),
            )?))
        };
        let weights = timestep_weights
            .iter()
            .zip(&batch.importance)
            .map(|(w, i)| (w * i) as f32)
            .collect();
        let mut per_sample_loss = per_sample.mul(&constant(weights)?)?;
        if let Some(vlb) = vlb {
            let scale = config.vlb_weight * self.schedule.len() as f64;
            let weights = batch
                .importance
                .iter()
                .map(|i| (i * scale) as f32)
                .collect();
            per_sample_loss = per_sample_loss.add(&vlb.mul(&constant(weights)?)?)?;
        }
        let loss = per_sample_loss.mean_all()?;
        Ok((loss, per_sample, timestep_weights))
    }

    /// Where the weights, the optimiser state and the batches live: the parameter store's device.
    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// Runs step `self.step_index()` on `data` and advances to the next.
    pub fn step(&mut self, data: &Dataset) -> Result<StepReport> {
        let step = self.state.step;
        let config = self.state.config.clone();
        let b = config.batch_size;
        let batch = self.draw(data, step)?;
        let (loss, per_sample, timestep_weights) = self.weighted_loss(&batch, step)?;
        let weighted_losses = |per_sample: &Var| -> Result<Vec<f64>> {
            Ok(per_sample
                .tensor()
                .to_vec()?
                .iter()
                .zip(&timestep_weights)
                .map(|(&l, w)| f64::from(l) * w)
                .collect())
        };
        let mut loss_value = f64::from(loss.tensor().to_scalar()?);
        // Data parallel: the batch loss and every sample's loss, summed over the ranks (each fills its shard's
        // slots), so that every rank skips the same steps and records the same losses.
        let mut batch_losses = None;
        let mut communication_s = 0.0;
        if self.collective.size() > 1 {
            let begun = std::time::Instant::now();
            let mut shared = vec![0.0; 1 + b];
            shared[0] = loss_value;
            let shard = batch.shard;
            shared[1 + shard.start..1 + shard.end].copy_from_slice(&weighted_losses(&per_sample)?);
            self.collective.all_reduce_sum_f64(&mut shared)?;
            loss_value = shared[0];
            batch_losses = Some(shared[1..].to_vec());
            communication_s += begun.elapsed().as_secs_f64();
        }
        let lr = config.lr.lr_at(step);
        self.state.step += 1;
        self.state.epoch = self.state.step / (data.len() / b) as u64;
        self.state.batch_in_epoch = self.state.step % (data.len() / b) as u64;

        if !loss_value.is_finite() {
            return self.skip(step, loss_value, None, lr, communication_s);
        }
        let loss = match &self.state.loss_scaler {
            Some(scaler) => scaler.scale_loss(&loss)?,
            None => loss,
        };
        // Summed over the ranks before anything reads them: the scaler's overflow check, clipping, AdamW and the
        // EMA all see the whole batch's gradient, identical on every rank, so every rank takes the same decisions.
        let params = self.store.trainable();
        let (mut grads, seconds) = backward_summed(
            self.overlap.as_mut(),
            self.collective.as_ref(),
            &params,
            &loss,
        )?;
        communication_s += seconds;
        if let Some(scaler) = self.state.loss_scaler.as_mut() {
            let finite = scaler.unscale(&mut grads)?;
            scaler.update(finite);
            if !finite {
                return Ok(self.overflow(step, loss_value, lr, communication_s));
            }
        }
        let grad_norm = match config.grad_clip {
            Some(max) => clip_grad_norm(&mut grads, max)?,
            None => grad_norm(&grads)? as f32,
        };
        if !grad_norm.is_finite() {
            return self.skip(step, loss_value, Some(grad_norm), lr, communication_s);
        }
        self.optimizer.config.lr = lr;
        self.optimizer.step(&grads)?;
        self.ema.update()?;
        let sample_losses = match batch_losses {
            Some(losses) => losses,
            None => weighted_losses(&per_sample)?,
        };
        self.state
            .sampler
            .record(&batch.batch_timesteps, &sample_losses);
        self.state.consecutive_nonfinite = 0;
        // A running mean for the first 1/α updates, then an exponential average.
        let rate = LOSS_SMOOTHING.max(1.0 / self.optimizer.steps() as f64);
        let previous = self.state.smoothed_loss.unwrap_or(loss_value);
        let smoothed = previous + rate * (loss_value - previous);
        self.state.smoothed_loss = Some(smoothed);
        Ok(StepReport {
            step,
            loss: loss_value,
            smoothed_loss: Some(smoothed),
            grad_norm: Some(grad_norm),
            lr,
            skipped: false,
            communication_s,
        })
    }

    /// Records a step skipped because the scaled gradients overflowed (the scaler has halved its scale): counted with
    /// the skipped steps, but not towards `max_nonfinite`, since the loss itself was finite.
    fn overflow(&mut self, step: u64, loss: f64, lr: f32, communication_s: f64) -> StepReport {
        self.state.skipped_steps += 1;
        StepReport {
            step,
            loss,
            smoothed_loss: self.state.smoothed_loss,
            grad_norm: None,
            lr,
            skipped: true,
            communication_s,
        }
    }

    /// Records a skipped step; an error once `max_nonfinite` have been skipped in a row.
    fn skip(
        &mut self,
        step: u64,
        loss: f64,
        grad_norm: Option<f32>,
        lr: f32,
        communication_s: f64,
    ) -> Result<StepReport> {
        self.state.skipped_steps += 1;
        self.state.consecutive_nonfinite += 1;
        let max = self.state.config.max_nonfinite;
        if self.state.consecutive_nonfinite >= max {
            return Err(Error::train(
                "loss",
                format!(
                    "{max} consecutive steps (the last is step {step}) had a non-finite loss or gradient norm \
                     (loss {loss}, gradient norm {grad_norm:?}); lower the learning rate or enable --grad-clip"
                ),
            ));
        }
        Ok(StepReport {
            step,
            loss,
            smoothed_loss: self.state.smoothed_loss,
            grad_norm,
            lr,
            skipped: true,
            communication_s,
        })
    }
}
