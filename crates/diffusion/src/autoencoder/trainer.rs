//! [`AutoencoderTrainer`]: one optimisation step of an `AutoencoderKL` with LDM's objective ([`super::loss`]), and
//! the state that carries from step to step.
//!
//! Step `s`:
//! 1. take batch `s` of the shuffled data (epoch `⌊s/K⌋`, as the diffusion trainer orders it), flipped when asked
//!    with the flip seed of [`crate::train::random::step_rng`];
//! 2. encode, draw `z = μ + σ·ε` (ε from Philox `seed ⊕ LATENT_KEY` at offset `s·B·L·h·w`), decode to x̂, keeping the
//!    activations the decoder's last convolution reads;
//! 3. the gradient of the reconstruction (and perceptual) loss with respect to x̂ alone, by a backward pass through
//!    the loss only; likewise the generator loss's, through the (frozen) discriminator, once it is switched on; their
//!    gradients at the last layer's weight, `conv2d_backward_weight(features, ∂L/∂x̂)`, give the adaptive weight λ;
//! 4. one backward pass through the autoencoder of `Σ x̂·(∂L_rec/∂x̂ + λ·∂L_G/∂x̂) + β·mean KL`, whose parameter
//!    gradients are exactly those of `L` (the first term's gradient at x̂ is the bracket, a constant); clip, AdamW at
//!    the scheduled learning rate, EMA;
//! 5. with the discriminator on: its hinge loss on x and the (detached) x̂, backward, its own AdamW step.
//!
//! A non-finite loss or gradient norm skips the autoencoder's update (and the discriminator's), counted; the run
//! fails after `max_nonfinite` in a row. The step counter advances on skipped steps too.
//!
//! Data parallel ([`crate::train::collective`]): each of `N` ranks takes its [`Shard`] of the global batch of `B`
//! images (the whole batch is loaded, so the flip coins fall as in one process, then sliced) and draws its posterior
//! noise at the shard's place in the step's Philox stream (offset `s·B·L·h·w + start·L·h·w`), so the ranks together
//! see exactly the images and noise of one process. Every batch mean becomes the shard's mean times `|shard|/B`
//! (the shard's sum over `B`), so the ranks' losses and gradients add up to the whole batch's: the loss terms
//! are summed over the ranks before the non-finite check; the two gradients at the decoder's last weight that give
//! λ are summed before their norms are taken; the autoencoder's parameter gradients are summed (in buckets,
//! optionally during backward) before clipping and AdamW, and the discriminator's before its AdamW. Every rank thus
//! takes the same decisions and the same updates.

use super::config::AutoencoderTrainConfig;
use super::latents::latent_stream;
use super::loss::{
    adaptive_weight, discriminator_loss, generator_loss, perceptual_distance, reconstruction_error,
};
use crate::data::{Dataset, EpochBatches};
use crate::error::{Error, Result};
use crate::eval::ImageClassifier;
use crate::train::collective::BUCKET_ELEMENTS;
use crate::train::collective::{all_reduce_gradients, Collective, Shard, SingleProcess};
use crate::train::overlap::{backward_summed, OverlappedBackward};
use crate::train::random::step_rng;
use crate::train::trainer::LOSS_SMOOTHING;
use diffuse_autograd::{Gradients, Var};
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig, PatchDiscriminator};
use diffuse_nn::{clip_grad_norm, grad_norm, AdamW, Ema, Module, ParamStore};
use diffuse_tensor::{AdamWConfig, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use std::time::Instant;

/// The terms of one step's loss, each a batch mean (see [`super::loss`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossParts {
    /// The whole objective L.
    pub total: f64,
    /// The reconstruction error per pixel, `Σ_pixels ℓ / D`.
    pub reconstruction: f64,
    /// The perceptual distance P (0 when not used).
    pub perceptual: f64,
    /// KL(q ‖ N(0, I)) per image, before β.
    pub kl: f64,
    /// The generator loss L_G (0 before the discriminator starts).
    pub generator: f64,
    /// The discriminator's hinge loss (0 before it starts).
    pub discriminator: f64,
    /// λ, the generator loss's weight (0 before the discriminator starts).
    pub adaptive_weight: f64,
}

impl LossParts {
    fn finite(&self) -> bool {
        [
            self.total,
            self.reconstruction,
            self.perceptual,
            self.kl,
            self.generator,
            self.adaptive_weight,
        ]
        .iter()
        .all(|v| v.is_finite())
    }

    /// `self + rate·(new − self)` term by term.
    fn smooth_toward(&self, new: &LossParts, rate: f64) -> LossParts {
        let mix = |a: f64, b: f64| a + rate * (b - a);
        LossParts {
            total: mix(self.total, new.total),
            reconstruction: mix(self.reconstruction, new.reconstruction),
            perceptual: mix(self.perceptual, new.perceptual),
            kl: mix(self.kl, new.kl),
            generator: mix(self.generator, new.generator),
            discriminator: mix(self.discriminator, new.discriminator),
            adaptive_weight: mix(self.adaptive_weight, new.adaptive_weight),
        }
    }
}

/// What carries from one step to the next besides the weights and the optimisers: saved as `trainer_state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderTrainerState {
    /// Steps taken (skipped ones included): the index of the next step.
    pub step: u64,
    pub epoch: u64,
    pub batch_in_epoch: u64,
    /// Exponential moving averages of the loss terms, `None` before the first finite step.
    pub smoothed: Option<LossParts>,
    pub skipped_steps: u64,
    pub consecutive_nonfinite: u32,
    pub config: AutoencoderTrainConfig,
}

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoencoderStepReport {
    pub step: u64,
    pub loss: LossParts,
    pub smoothed: Option<LossParts>,
    /// The autoencoder's global gradient norm before clipping (`None` when the loss was non-finite).
    pub grad_norm: Option<f32>,
    pub lr: f32,
    /// The step took no update.
    pub skipped: bool,
    /// Seconds spent on the sums over the ranks (0 in one process): the all-reduce of the loss terms, λ's two
    /// gradients at the last weight (computing and summing them), the gradient all-reduce not hidden behind
    /// backward, and the discriminator's loss and gradient all-reduces.
    pub communication_s: f64,
}

/// The discriminator, its weights and its optimiser.
pub(super) struct Critic {
    pub model: PatchDiscriminator,
    pub store: ParamStore,
    pub optimizer: AdamW,
}

/// An autoencoder, its EMA, its optimiser, the optional discriminator and perceptual network, and the run's state.
pub struct AutoencoderTrainer {
    pub model: AutoencoderKL,
    pub store: ParamStore,
    /// The same architecture over the EMA weights.
    pub ema_model: AutoencoderKL,
    pub(super) ema: Ema,
    pub(super) optimizer: AdamW,
    pub(super) critic: Option<Critic>,
    perceptual: Option<ImageClassifier>,
    pub(super) state: AutoencoderTrainerState,
    epoch_order: Option<(u64, Vec<usize>)>,
    collective: Rc<dyn Collective>,
    overlap: Option<OverlappedBackward>,
}

impl AutoencoderTrainer {
    /// A fresh run on `device` of the autoencoder `model_config`, initialised from `config.seed`. `perceptual` is
    /// the classifier whose activations the perceptual term compares; required exactly when its weight is positive.
    pub fn new_on(
        config: AutoencoderTrainConfig,
        model_config: AutoencoderKLConfig,
        device: Device,
        perceptual: Option<ImageClassifier>,
    ) -> Result<Self> {
        config.validate()?;
        if (config.perceptual_weight > 0.0) != perceptual.is_some() {
            return Err(Error::train(
                "perceptual_weight",
                format!(
                    "is {} but {} classifier was given; the perceptual term needs one exactly when its weight is positive",
                    config.perceptual_weight,
                    if perceptual.is_some() { "a" } else { "no" }
                ),
            ));
        }
        if let Some(classifier) = &perceptual {
            classifier.store.freeze("")?;
        }
        let store = ParamStore::new(config.seed, device);
        let model = AutoencoderKL::new(model_config.clone(), &store)?;
        let shadow = ParamStore::new(config.seed, device);
        let ema_model = AutoencoderKL::new(model_config, &shadow)?;
        let ema = Ema::with_shadow(&store, shadow, config.ema_decay, config.ema_warmup)?;
        let adam = |lr: f32| AdamWConfig {
            lr,
            beta1: config.adam_beta1,
            beta2: config.adam_beta2,
            eps: config.adam_eps,
            weight_decay: config.weight_decay,
        };
        let optimizer = AdamW::for_store(&store, adam(config.lr.lr_at(0)))?;
        let critic = config
            .adversarial
            .map(|adv| -> Result<Critic> {
                // Its own stream, so that switching the discriminator on does not change the autoencoder's weights.
                let store = ParamStore::new(config.seed ^ DISCRIMINATOR_SEED, device);
                let model = PatchDiscriminator::new(adv.discriminator, &store)?;
                let optimizer = AdamW::for_store(&store, adam(adv.lr))?;
                Ok(Critic {
                    model,
                    store,
                    optimizer,
                })
            })
            .transpose()?;
        Ok(AutoencoderTrainer {
            model,
            store,
            ema_model,
            ema,
            optimizer,
            critic,
            perceptual,
            state: AutoencoderTrainerState {
                step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                smoothed: None,
                skipped_steps: 0,
                consecutive_nonfinite: 0,
                config,
            },
            epoch_order: None,
            collective: Rc::new(SingleProcess),
            overlap: None,
        })
    }

    /// Trains as one rank of a data-parallel run: each step takes this rank's [`Shard`] of the global batch and sums
    /// losses and gradients over `collective`'s ranks (see the module docs).
    pub fn set_collective(&mut self, collective: Rc<dyn Collective>) {
        self.collective = collective;
    }

    /// Sums the autoencoder's gradients over the ranks in buckets of up to `bucket_elements` values started during
    /// the backward pass, or with `None` (the default) after it ([`crate::train::overlap`]).
    pub fn set_overlap(&mut self, bucket_elements: Option<usize>) {
        self.overlap = bucket_elements.map(OverlappedBackward::new);
    }

    /// This rank's part of every global batch.
    pub fn shard(&self) -> Result<Shard> {
        Shard::of(
            self.state.config.batch_size,
            self.collective.rank(),
            self.collective.size(),
        )
    }

    pub fn config(&self) -> &AutoencoderTrainConfig {
        &self.state.config
    }

    pub fn state(&self) -> &AutoencoderTrainerState {
        &self.state
    }

    /// The index of the next step.
    pub fn step_index(&self) -> u64 {
        self.state.step
    }

    /// Sets the total number of steps (to extend a resumed run); the learning-rate schedule is kept.
    pub fn set_total_steps(&mut self, steps: u64) {
        self.state.config.steps = steps;
    }

    /// Where the weights, the optimiser state and the batches live.
    pub fn device(&self) -> Device {
        self.store.device()
    }

    /// The EMA weights.
    pub fn ema_store(&self) -> &ParamStore {
        self.ema.store()
    }

    /// The discriminator's weights, when the run has one.
    pub fn discriminator_store(&self) -> Option<&ParamStore> {
        self.critic.as_ref().map(|c| &c.store)
    }

    /// Parameters of the discriminator (0 without one).
    pub fn discriminator_numel(&self) -> usize {
        self.critic.as_ref().map_or(0, |c| c.store.numel())
    }

    /// The EMA autoencoder's reconstructions (decoded posterior means) of `images` (N, C, H, W).
    pub fn reconstruct(&self, images: &Tensor) -> Result<Tensor> {
        diffuse_autograd::no_grad(|| {
            let (_, decoded) = self
                .ema_model
                .forward(&Var::constant(images.to_device(self.device())?), None)?;
            Ok(decoded.tensor().clone())
        })
    }

    /// `shard`'s images of step `step`: batch `s mod K` of epoch `⌊s/K⌋`, `K = ⌊len/B⌋`, flipped when asked (the
    /// whole batch is read, so that the flip coins fall as in one process, then sliced).
    fn batch(&mut self, data: &Dataset, step: u64, shard: Shard) -> Result<Tensor> {
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
        let indices = &self.epoch_order.as_ref().expect("just set").1[k * b..(k + 1) * b];
        let flip_seed = config.hflip.then(|| step_rng(config.seed, step).next_u64());
        let (pixels, _) = data.batch(indices, flip_seed)?;
        let n = data.image_len();
        let pixels = pixels[shard.start * n..shard.end * n].to_vec();
        let shape = [shard.len(), data.channels, data.height, data.width];
        Ok(Tensor::from_vec(pixels, &shape, self.device())?)
    }

    /// Runs step `self.step_index()` on `data` and advances to the next.
    pub fn step(&mut self, data: &Dataset) -> Result<AutoencoderStepReport> {
        let step = self.state.step;
        let config = self.state.config.clone();
        let shard = self.shard()?;
        // A batch mean over the shard times this is the shard's part of the mean over the global batch.
        let share = shard.len() as f64 / config.batch_size as f64;
        let images = self.batch(data, step, shard)?;
        let lr = config.lr.lr_at(step);
        self.state.step += 1;
        let per_epoch = (data.len() / config.batch_size) as u64;
        self.state.epoch = self.state.step / per_epoch;
        self.state.batch_in_epoch = self.state.step % per_epoch;

        let x = Var::constant(images);
        let posterior = self.model.encode(&x)?;
        let numel = posterior.mean.tensor().numel();
        let (key, offset) = shard_noise_stream(config.seed, step, config.batch_size, shard, numel)?;
        let z = posterior.sample(key, offset)?;
        let features = self.model.decoder_features(&z)?;
        let x_hat = self.model.decoder.conv_out.forward(&features)?;

        let (mut parts, grad_rec) = self.reconstruction_gradient(&x, x_hat.tensor(), share)?;
        let kl = posterior.kl()?.mean_all()?.mul_scalar(share as f32)?;
        parts.kl = f64::from(kl.tensor().to_scalar()?);
        let adversarial = config
            .adversarial
            .filter(|adv| step >= adv.start_step && self.critic.is_some());
        let generated = match adversarial {
            Some(_) => Some(self.generator_gradient(x_hat.tensor(), share)?),
            None => None,
        };
        if let Some((generator, _)) = generated {
            parts.generator = generator;
        }
        let begun = Instant::now();
        let mut terms = [
            parts.total,
            parts.reconstruction,
            parts.perceptual,
            parts.kl,
            parts.generator,
        ];
        self.collective.all_reduce_sum_f64(&mut terms)?;
        [
            parts.total,
            parts.reconstruction,
            parts.perceptual,
            parts.kl,
            parts.generator,
        ] = terms;
        let grad_out = match (adversarial, generated) {
            (Some(adv), Some((_, grad_adv))) => {
                let (rec_norm, adv_norm) =
                    self.last_weight_grad_norms(features.tensor(), &grad_rec, &grad_adv)?;
                let lambda = adv.weight * adaptive_weight(rec_norm, adv_norm);
                parts.adaptive_weight = lambda;
                grad_rec.add(&grad_adv.mul_scalar(lambda as f32)?)?
            }
            _ => grad_rec,
        };
        let mut communication_s = self.communicated(begun);
        parts.total += config.kl_weight * parts.kl + parts.adaptive_weight * parts.generator;
        if !parts.finite() {
            return self.skip(step, parts, None, lr, communication_s);
        }
        let surrogate = x_hat
            .mul(&Var::constant(grad_out))?
            .sum_all()?
            .add(&kl.mul_scalar(config.kl_weight as f32)?)?;
        let params = self.store.trainable();
        let (mut grads, seconds) = backward_summed(
            self.overlap.as_mut(),
            self.collective.as_ref(),
            &params,
            &surrogate,
        )?;
        communication_s += seconds;
        let norm = match config.grad_clip {
            Some(max) => clip_grad_norm(&mut grads, max)?,
            None => grad_norm(&grads)? as f32,
        };
        if !norm.is_finite() {
            return self.skip(step, parts, Some(norm), lr, communication_s);
        }
        self.optimizer.config.lr = lr;
        self.optimizer.step(&grads)?;
        self.ema.update()?;
        if adversarial.is_some() {
            let (loss, seconds) = self.discriminator_step(x.tensor(), x_hat.tensor(), share)?;
            parts.discriminator = loss;
            communication_s += seconds;
        }
        self.state.consecutive_nonfinite = 0;
        let rate = LOSS_SMOOTHING.max(1.0 / self.optimizer.steps() as f64);
        let smoothed = match &self.state.smoothed {
            Some(previous) => previous.smooth_toward(&parts, rate),
            None => parts,
        };
        self.state.smoothed = Some(smoothed);
        Ok(AutoencoderStepReport {
            step,
            loss: parts,
            smoothed: Some(smoothed),
            grad_norm: Some(norm),
            lr,
            skipped: false,
            communication_s,
        })
    }

    /// Seconds since `begun` when there are other ranks to wait for, else 0.
    fn communicated(&self, begun: Instant) -> f64 {
        match self.collective.size() {
            1 => 0.0,
            _ => begun.elapsed().as_secs_f64(),
        }
    }

    /// The norms of the gradients at the decoder's last weight of the reconstruction loss and of the generator loss,
    /// given their gradients `grad_rec`, `grad_adv` at this shard's reconstructions and the `features` that layer
    /// reads: each shard's part `conv2d_backward_weight(features, g)`, summed over the ranks (one all-reduce of both)
    /// before the norm is taken, so that λ is the whole batch's.
    fn last_weight_grad_norms(
        &self,
        features: &Tensor,
        grad_rec: &Tensor,
        grad_adv: &Tensor,
    ) -> Result<(f64, f64)> {
        let last = &self.model.decoder.conv_out;
        let weight_grad = |g: &Tensor| -> Result<Tensor> {
            let (gw, _) =
                features.conv2d_backward_weight(g, last.weight.shape(), &last.params, false)?;
            Ok(gw.reshape(&[gw.numel()])?)
        };
        let (rec, adv) = (weight_grad(grad_rec)?, weight_grad(grad_adv)?);
        let n = rec.numel();
        let (rec, adv) = match self.collective.size() {
            1 => (rec, adv),
            _ => {
                let summed = self
                    .collective
                    .all_reduce_sum(&Tensor::concat(&[&rec, &adv], 0)?)?;
                (summed.narrow(0, 0, n)?, summed.narrow(0, n, n)?)
            }
        };
        let norm = |g: &Tensor| -> Result<f64> {
            Ok(f64::from(g.square()?.sum_all()?.to_scalar()?).sqrt())
        };
        Ok((norm(&rec)?, norm(&adv)?))
    }

    /// The reconstruction (and perceptual) loss of `x_hat` against `x`, batch means times `share`, and its gradient
    /// with respect to `x_hat` alone; the returned parts hold `total` = that loss, its per-pixel reconstruction error
    /// and P.
    fn reconstruction_gradient(
        &self,
        x: &Var,
        x_hat: &Tensor,
        share: f64,
    ) -> Result<(LossParts, Tensor)> {
        let config = &self.state.config;
        let leaf = Var::leaf(x_hat.clone());
        let per_image = reconstruction_error(config.reconstruction, x, &leaf)?;
        let pixels = x_hat.numel() / x_hat.shape()[0];
        let reconstruction = f64::from(per_image.mean_all()?.tensor().to_scalar()?) * share;
        let mut parts = LossParts {
            reconstruction: reconstruction / pixels as f64,
            ..LossParts::default()
        };
        let loss = match &self.perceptual {
            Some(classifier) => {
                let distance = perceptual_distance(classifier, x, &leaf)?;
                parts.perceptual = f64::from(distance.mean_all()?.tensor().to_scalar()?) * share;
                let weight = (config.perceptual_weight * pixels as f64) as f32;
                per_image.add(&distance.mul_scalar(weight)?)?.mean_all()?
            }
            None => per_image.mean_all()?,
        }
        .mul_scalar(share as f32)?;
        parts.total = f64::from(loss.tensor().to_scalar()?);
        let grad = gradient_at(loss.backward()?, &leaf)?;
        Ok((parts, grad))
    }

    /// The generator loss of `x_hat` (its batch mean times `share`) and its gradient with respect to `x_hat`, the
    /// discriminator frozen.
    fn generator_gradient(&self, x_hat: &Tensor, share: f64) -> Result<(f64, Tensor)> {
        let critic = self.critic.as_ref().expect("called with a discriminator");
        critic.store.freeze("")?;
        let leaf = Var::leaf(x_hat.clone());
        let generated = || -> Result<Var> {
            let fake = critic.model.forward(&leaf)?;
            Ok(generator_loss(&fake)?.mul_scalar(share as f32)?)
        };
        let result = generated().and_then(|loss| {
            let value = f64::from(loss.tensor().to_scalar()?);
            Ok((value, gradient_at(loss.backward()?, &leaf)?))
        });
        critic.store.unfreeze("")?;
        result
    }

    /// One discriminator step on this shard's real `x` and reconstructed `x_hat` (its loss a batch mean times
    /// `share`, its gradients summed over the ranks); returns the whole batch's loss and the seconds spent
    /// communicating.
    fn discriminator_step(&mut self, x: &Tensor, x_hat: &Tensor, share: f64) -> Result<(f64, f64)> {
        let collective = Rc::clone(&self.collective);
        let critic = self.critic.as_mut().expect("called with a discriminator");
        let real = critic.model.forward(&Var::constant(x.clone()))?;
        let fake = critic.model.forward(&Var::constant(x_hat.clone()))?;
        let loss = discriminator_loss(&real, &fake)?.mul_scalar(share as f32)?;
        let begun = Instant::now();
        let mut value = [f64::from(loss.tensor().to_scalar()?)];
        collective.all_reduce_sum_f64(&mut value)?;
        let mut seconds = match collective.size() {
            1 => 0.0,
            _ => begun.elapsed().as_secs_f64(),
        };
        if value[0].is_finite() {
            let mut grads = loss.backward()?;
            seconds += all_reduce_gradients(
                collective.as_ref(),
                &critic.store.trainable(),
                &mut grads,
                BUCKET_ELEMENTS,
            )?;
            critic.optimizer.step(&grads)?;
        }
        Ok((value[0], seconds))
    }

    /// Records a skipped step; an error once `max_nonfinite` have been skipped in a row.
    fn skip(
        &mut self,
        step: u64,
        loss: LossParts,
        grad_norm: Option<f32>,
        lr: f32,
        communication_s: f64,
    ) -> Result<AutoencoderStepReport> {
        self.state.skipped_steps += 1;
        self.state.consecutive_nonfinite += 1;
        let max = self.state.config.max_nonfinite;
        if self.state.consecutive_nonfinite >= max {
            return Err(Error::train(
                "loss",
                format!(
                    "{max} consecutive steps (the last is step {step}) had a non-finite loss or gradient norm \
                     (loss {loss:?}, gradient norm {grad_norm:?}); lower the learning rate or enable --grad-clip"
                ),
            ));
        }
        Ok(AutoencoderStepReport {
            step,
            loss,
            smoothed: self.state.smoothed,
            grad_norm,
            lr,
            skipped: true,
            communication_s,
        })
    }
}

/// Seeds the discriminator's initial weights: the run's seed xor "disc" in ASCII.
const DISCRIMINATOR_SEED: u64 = 0x6469_7363;

/// `(key, offset)` of `shard`'s posterior noise at step `step` of a run with global batch `batch`, the shard's
/// latents holding `numel` values: one process reads `B·L·h·w` values per step from [`latent_stream`], and the
/// shard's start `start·L·h·w` into the step's.
fn shard_noise_stream(
    seed: u64,
    step: u64,
    batch: usize,
    shard: Shard,
    numel: usize,
) -> Result<(u64, u64)> {
    let per_image = numel / shard.len();
    let (key, offset) = latent_stream(seed, step, per_image * batch)?;
    let offset = offset
        .checked_add((shard.start * per_image) as u64)
        .ok_or_else(|| {
            Error::train(
                "step",
                format!("latent noise offset of step {step} overflows u64"),
            )
        })?;
    Ok((key, offset))
}

/// The gradient a backward pass left at `leaf`.
fn gradient_at(mut grads: Gradients, leaf: &Var) -> Result<Tensor> {
    grads
        .remove(leaf)
        .ok_or_else(|| Error::train("loss", "the loss does not depend on the reconstruction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shards' posterior noise, read at their offsets, is the one process's noise cut at the shards' starts, bit
    /// for bit, for shards of unequal size too.
    #[test]
    fn the_shards_noise_is_the_single_processs_noise_sliced() {
        let (seed, step, batch) = (3, 7, 5);
        let latent = [2, 3, 3];
        let noise = |shard: Shard| -> Vec<u32> {
            let shape = [shard.len(), latent[0], latent[1], latent[2]];
            let numel = shape.iter().product();
            let (key, offset) = shard_noise_stream(seed, step, batch, shard, numel).unwrap();
            let values = Tensor::randn(&shape, key, offset, Device::Cpu).unwrap();
            values
                .to_vec()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        let whole = noise(Shard::of(batch, 0, 1).unwrap());
        assert_eq!(whole.len(), batch * 18);
        for size in 2..=batch {
            let sharded: Vec<u32> = (0..size)
                .flat_map(|rank| noise(Shard::of(batch, rank, size).unwrap()))
                .collect();
            assert_eq!(sharded, whole, "{size} shards");
        }
    }
}
