//! RePaint (Lugmayr et al. 2022): inpainting with any unconditional or class-conditional denoiser, untrained for it.
//!
//! The known pixels (mask 1) of the image `x0` are put back at every step: after the reverse step from level `i` to
//! `i + 1`, the known region of the new state is replaced by the forward-noised original at the new level,
//!
//! `x_{i+1} = m ⊙ (√ᾱ_{i+1}·x0 + √(1−ᾱ_{i+1})·z') + (1 − m) ⊙ reverse_step(x_i)`,
//!
//! so the model only ever sees states that agree with the known pixels in distribution. The reverse step is DDIM's
//! with stochasticity η (η = 1 is DDPM's posterior, RePaint's choice; diffusers' `RePaintScheduler` defaults to
//! η = 0). The last level is ᾱ = 1, so the known pixels come out exactly as given.
//!
//! Replacing is not conditioning: the unknown half of `x_{i+1}` was drawn without seeing the fresh noise of the
//! known half, so the two disagree slightly at every level, and the seams show. RePaint's **resampling** harmonises
//! them: after a reverse step, jump back up `jump_length` levels with the forward process
//! (`x_{i−1} = √(ᾱ_{i−1}/ᾱ_i)·x_i + √(1 − ᾱ_{i−1}/ᾱ_i)·z`) and denoise down again, `jump_n_sample` times in all at
//! every `jump_length`-th level; each pass lets the model see the merged state and pull the unknown region towards
//! agreement with the known one. `jump_n_sample = 1` is plain replacement. The schedule of levels is RePaint's
//! `get_schedule_jump` ([`jump_schedule`]), on the sampler's visited timesteps; a jump up spans the same levels as
//! the steps down it undoes (diffusers re-noises with the β of the training timesteps from the lower level up, one
//! step above where it should; here the jump uses `ᾱ_{i−1}/ᾱ_i` exactly).
//!
//! Noise: the starting noise is stream `(seed, 0)` elements `0 .. n`; move `k` of the schedule draws elements
//! `(2k+1)·n .. (2k+3)·n` (the reverse step's noise, then the known region's).

use crate::error::{Error, Result};
use crate::sampler::prediction::{eps_from, lin, predict, x0_from};
use crate::sampler::{Condition, Denoiser, SamplerOptions};
use crate::schedule::{timesteps, NoiseSchedule};
use diffuse_tensor::Tensor;

/// RePaint's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RePaint {
    /// Levels per jump back up (RePaint: 10 of 250 steps).
    pub jump_length: usize,
    /// Passes through each jumped stretch (1: no resampling; RePaint: 10).
    pub jump_n_sample: usize,
    /// Stochasticity of the reverse step (1: DDPM's posterior).
    pub eta: f64,
}

impl Default for RePaint {
    fn default() -> Self {
        Self {
            jump_length: 10,
            jump_n_sample: 1,
            eta: 1.0,
        }
    }
}

/// One move of a RePaint run over levels `0 ..= N` (0 = the first visited timestep, N = clean data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// Call the model at level `i` and step to `i + 1`, putting the known pixels back.
    Down(usize),
    /// Re-noise from level `i` to `i − 1`.
    Up(usize),
}

/// RePaint's `get_schedule_jump` for `n` steps, as moves: every `jump_length` steps, counted from the clean end,
/// except within the last `jump_length` steps from noise, the stretch just denoised is re-noised and denoised again,
/// `jump_n_sample − 1` extra times.
pub fn jump_schedule(n: usize, jump_length: usize, jump_n_sample: usize) -> Result<Vec<Move>> {
    if jump_length == 0 || jump_n_sample == 0 {
        return Err(Error::sampler(
            "jump",
            format!(
                "jump length {jump_length} and jump samples {jump_n_sample} must both be at least 1 (1 sample: \
                 no resampling)"
            ),
        ));
    }
    if n == 0 {
        return Err(Error::sampler(
            "steps",
            "a RePaint run needs at least one step",
        ));
    }
    // In RePaint's units u = n − 1 − level: the model is called at u and steps to u − 1.
    let mut jumps_left: Vec<usize> = vec![0; n];
    for u in (0..n.saturating_sub(jump_length)).step_by(jump_length) {
        jumps_left[u] = jump_n_sample - 1;
    }
    let mut moves = Vec::new();
    let mut level = 0;
    let mut u = n;
    while u >= 1 {
        u -= 1;
        moves.push(Move::Down(level));
        level += 1;
        if jumps_left[u] > 0 {
            jumps_left[u] -= 1;
            for _ in 0..jump_length {
                u += 1;
                moves.push(Move::Up(level));
                level -= 1;
            }
        }
    }
    Ok(moves)
}

/// The known region as a mask of ones (known) and zeros (to fill), checked against the image's shape: (1 or N,
/// 1 or C, H, W).
fn check_mask(known: &Tensor, image: &Tensor) -> Result<()> {
    let (m, x) = (known.shape(), image.shape());
    let fits = m.len() == 4
        && x.len() == 4
        && (m[0] == 1 || m[0] == x[0])
        && (m[1] == 1 || m[1] == x[1])
        && m[2..] == x[2..];
    if !fits {
        return Err(Error::sampler(
            "mask",
            format!(
                "shape {m:?} does not fit images of shape {x:?}: the mask must be H × W = {:?} (one channel, or \
                 one per image channel)",
                &x[x.len().saturating_sub(2)..]
            ),
        ));
    }
    if known.to_vec()?.iter().any(|&v| v != 0.0 && v != 1.0) {
        return Err(Error::sampler(
            "mask",
            "must hold only 0 (fill) and 1 (keep)",
        ));
    }
    Ok(())
}

/// One RePaint run.
pub struct RePaintRun<'a> {
    pub schedule: &'a NoiseSchedule,
    /// Steps, spacing, offset, clipping of x̂0 and the seed.
    pub options: &'a SamplerOptions,
    pub settings: RePaint,
}

impl RePaintRun<'_> {
    /// The model calls the run makes.
    pub fn model_calls(&self) -> Result<usize> {
        Ok(self
            .moves()?
            .iter()
            .filter(|m| matches!(m, Move::Down(_)))
            .count())
    }

    fn moves(&self) -> Result<Vec<Move>> {
        jump_schedule(
            self.options.steps,
            self.settings.jump_length,
            self.settings.jump_n_sample,
        )
    }

    /// Fills the region of `image` (N, C, H, W) where `known` is 0 with `model`, starting from the unit normal
    /// `noise` (the image's shape).
    pub fn run(
        &self,
        model: &dyn Denoiser,
        image: &Tensor,
        known: &Tensor,
        noise: &Tensor,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        check_mask(known, image)?;
        if noise.shape() != image.shape() {
            return Err(Error::sampler(
                "noise",
                format!(
                    "shape {:?} differs from the image's {:?}",
                    noise.shape(),
                    image.shape()
                ),
            ));
        }
        cond.check_batch(image.shape()[0])?;
        let eta = self.settings.eta;
        if !(eta >= 0.0 && eta.is_finite()) {
            return Err(Error::sampler(
                "eta",
                format!("{eta} must be finite and ≥ 0"),
            ));
        }
        let options = self.options;
        let limit = options.x0_limit();
        limit.validate()?;
        let visited = timesteps(
            options.spacing,
            self.schedule.len(),
            options.steps,
            options.steps_offset,
        )?;
        // ᾱ of level i: the visited timesteps, then 1 (clean data).
        let alpha_bar = |i: usize| -> Result<f32> {
            Ok(match visited.get(i) {
                Some(&t) => self.schedule.alpha_bar(t)? as f32,
                None => 1.0,
            })
        };
        let device = image.device();
        let known = known.to_device(device)?;
        let unknown = known.affine(-1.0, 1.0)?;
        let draw = |k: usize, which: u64| -> Result<Tensor> {
            let n = image.numel() as u64;
            let offset = (2 * k as u64 + 1 + which).checked_mul(n).ok_or_else(|| {
                Error::sampler("steps", format!("move {k} noise offset overflows u64"))
            })?;
            Ok(Tensor::randn(image.shape(), options.seed, offset, device)?)
        };
        let mut x = noise.to_device(device)?;
        for (k, step) in self.moves()?.into_iter().enumerate() {
            match step {
                Move::Down(i) => {
                    let (ab, ab_next) = (alpha_bar(i)?, alpha_bar(i + 1)?);
                    let (a, s) = (ab.sqrt(), (1.0 - ab).sqrt());
                    let out = predict(model, &x, visited[i] as f64, cond)?;
                    let x0 =
                        limit.apply(x0_from(model.prediction(), &out.prediction, &x, a, s)?)?;
                    let eps = eps_from(model.prediction(), &out.prediction, &x, a, s)?;
                    let variance = (1.0 - ab_next) / (1.0 - ab) * (1.0 - ab / ab_next);
                    let sigma = eta as f32 * variance.max(0.0).sqrt();
                    let direction = (1.0 - ab_next - sigma * sigma).max(0.0).sqrt();
                    let mut fill = lin(ab_next.sqrt(), &x0, direction, &eps)?;
                    if sigma > 0.0 {
                        fill = fill.add(&draw(k, 0)?.mul_scalar(sigma)?)?;
                    }
                    let kept = lin(ab_next.sqrt(), image, (1.0 - ab_next).sqrt(), &draw(k, 1)?)?;
                    x = kept.mul(&known)?.add(&fill.mul(&unknown)?)?;
                }
                Move::Up(i) => {
                    let ratio = alpha_bar(i - 1)? / alpha_bar(i)?;
                    x = lin(
                        ratio.sqrt(),
                        &x,
                        (1.0 - ratio).max(0.0).sqrt(),
                        &draw(k, 0)?,
                    )?;
                }
            }
        }
        Ok(x)
    }
}
