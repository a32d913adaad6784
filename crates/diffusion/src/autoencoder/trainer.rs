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

use super::config::AutoencoderTrainConfig;
use super::latents::latent_stream;
use super::loss::{
    adaptive_weight, discriminator_loss, generator_loss, perceptual_distance, reconstruction_error,
};
use crate::data::{Dataset, EpochBatches};
use crate::error::{Error, Result};
use crate::eval::ImageClassifier;
use crate::train::random::step_rng;
use crate::train::trainer::LOSS_SMOOTHING;
use diffuse_autograd::{Gradients, Var};
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig, PatchDiscriminator};
use diffuse_nn::{clip_grad_norm, grad_norm, AdamW, Ema, Module, ParamStore};
use diffuse_tensor::{AdamWConfig, Device, Tensor};
use serde::{Deserialize, Serialize};

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
        })
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

    /// The images of step `step`: batch `s mod K` of epoch `⌊s/K⌋`, `K = ⌊len/B⌋`, flipped when asked.
    fn batch(&mut self, data: &Dataset, step: u64) -> Result<Tensor> {
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
        let shape = [b, data.channels, data.height, data.width];
        Ok(Tensor::from_vec(pixels, &shape, self.device())?)
    }

    /// Runs step `self.step_index()` on `data` and advances to the next.
    pub fn step(&mut self, data: &Dataset) -> Result<AutoencoderStepReport> {
        let step = self.state.step;
        let config = self.state.config.clone();
        let images = self.batch(data, step)?;
        let lr = config.lr.lr_at(step);
        self.state.step += 1;
        let per_epoch = (data.len() / config.batch_size) as u64;
        self.state.epoch = self.state.step / per_epoch;
        self.state.batch_in_epoch = self.state.step % per_epoch;

        let x = Var::constant(images);
        let posterior = self.model.encode(&x)?;
        let (key, offset) = latent_stream(config.seed, step, posterior.mean.tensor().numel())?;
        let z = posterior.sample(key, offset)?;
        let features = self.model.decoder_features(&z)?;
        let x_hat = self.model.decoder.conv_out.forward(&features)?;

        let (mut parts, grad_rec) = self.reconstruction_gradient(&x, x_hat.tensor())?;
        let kl = posterior.kl()?.mean_all()?;
        parts.kl = f64::from(kl.tensor().to_scalar()?);
        let adversarial = config
            .adversarial
            .filter(|adv| step >= adv.start_step && self.critic.is_some());
        let grad_out = match adversarial {
            Some(adv) => {
                let (generator, grad_adv) = self.generator_gradient(x_hat.tensor())?;
                let last = &self.model.decoder.conv_out;
                let weight_grad_norm = |g: &Tensor| -> Result<f64> {
                    let (gw, _) = features.tensor().conv2d_backward_weight(
                        g,
                        last.weight.shape(),
                        &last.params,
                        false,
                    )?;
                    Ok(f64::from(gw.square()?.sum_all()?.to_scalar()?).sqrt())
                };
                let lambda = adv.weight
                    * adaptive_weight(weight_grad_norm(&grad_rec)?, weight_grad_norm(&grad_adv)?);
                parts.generator = generator;
                parts.adaptive_weight = lambda;
                grad_rec.add(&grad_adv.mul_scalar(lambda as f32)?)?
            }
            None => grad_rec,
        };
        parts.total += config.kl_weight * parts.kl + parts.adaptive_weight * parts.generator;
        if !parts.finite() {
            return self.skip(step, parts, None, lr);
        }
        let surrogate = x_hat
            .mul(&Var::constant(grad_out))?
            .sum_all()?
            .add(&kl.mul_scalar(config.kl_weight as f32)?)?;
        let mut grads = surrogate.backward()?;
        let norm = match config.grad_clip {
            Some(max) => clip_grad_norm(&mut grads, max)?,
            None => grad_norm(&grads)? as f32,
        };
        if !norm.is_finite() {
            return self.skip(step, parts, Some(norm), lr);
        }
        self.optimizer.config.lr = lr;
        self.optimizer.step(&grads)?;
        self.ema.update()?;
        if adversarial.is_some() {
            parts.discriminator = self.discriminator_step(x.tensor(), x_hat.tensor())?;
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
        })
    }

    /// The reconstruction (and perceptual) loss of `x_hat` against `x` and its gradient with respect to `x_hat`
    /// alone; the returned parts hold `total` = that loss, its per-pixel reconstruction error and P.
    fn reconstruction_gradient(&self, x: &Var, x_hat: &Tensor) -> Result<(LossParts, Tensor)> {
        let config = &self.state.config;
        let leaf = Var::leaf(x_hat.clone());
        let per_image = reconstruction_error(config.reconstruction, x, &leaf)?;
        let pixels = x_hat.numel() / x_hat.shape()[0];
        let reconstruction = f64::from(per_image.mean_all()?.tensor().to_scalar()?);
        let mut parts = LossParts {
            reconstruction: reconstruction / pixels as f64,
            ..LossParts::default()
        };
        let loss = match &self.perceptual {
            Some(classifier) => {
                let distance = perceptual_distance(classifier, x, &leaf)?;
                parts.perceptual = f64::from(distance.mean_all()?.tensor().to_scalar()?);
                let weight = (config.perceptual_weight * pixels as f64) as f32;
                per_image.add(&distance.mul_scalar(weight)?)?.mean_all()?
            }
            None => per_image.mean_all()?,
        };
        parts.total = f64::from(loss.tensor().to_scalar()?);
        let grad = gradient_at(loss.backward()?, &leaf)?;
        Ok((parts, grad))
    }

    /// The generator loss of `x_hat` and its gradient with respect to `x_hat`, the discriminator frozen.
    fn generator_gradient(&self, x_hat: &Tensor) -> Result<(f64, Tensor)> {
        let critic = self.critic.as_ref().expect("called with a discriminator");
        critic.store.freeze("")?;
        let leaf = Var::leaf(x_hat.clone());
        let result = generator_loss(&critic.model.forward(&leaf)?).and_then(|loss| {
            let value = f64::from(loss.tensor().to_scalar()?);
            Ok((value, gradient_at(loss.backward()?, &leaf)?))
        });
        critic.store.unfreeze("")?;
        result
    }

    /// One discriminator step on real `x` and reconstructed `x_hat`; returns its loss.
    fn discriminator_step(&mut self, x: &Tensor, x_hat: &Tensor) -> Result<f64> {
        let critic = self.critic.as_mut().expect("called with a discriminator");
        let real = critic.model.forward(&Var::constant(x.clone()))?;
        let fake = critic.model.forward(&Var::constant(x_hat.clone()))?;
        let loss = discriminator_loss(&real, &fake)?;
        let value = f64::from(loss.tensor().to_scalar()?);
        if value.is_finite() {
            critic.optimizer.step(&loss.backward()?)?;
        }
        Ok(value)
    }

    /// Records a skipped step; an error once `max_nonfinite` have been skipped in a row.
    fn skip(
        &mut self,
        step: u64,
        loss: LossParts,
        grad_norm: Option<f32>,
        lr: f32,
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
        })
    }
}

/// Seeds the discriminator's initial weights: the run's seed xor "disc" in ASCII.
const DISCRIMINATOR_SEED: u64 = 0x6469_7363;

/// The gradient a backward pass left at `leaf`.
fn gradient_at(mut grads: Gradients, leaf: &Var) -> Result<Tensor> {
    grads
        .remove(leaf)
        .ok_or_else(|| Error::train("loss", "the loss does not depend on the reconstruction"))
}
