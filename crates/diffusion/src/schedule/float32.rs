//! The schedule tables as diffusers computes them: in float32.
//!
//! diffusers builds `betas` as a float32 tensor (`torch.linspace(…, dtype=torch.float32)`, or the float64 betas of
//! `betas_for_alpha_bar` rounded to float32), rescales them to zero terminal SNR with float32 tensor arithmetic, and
//! takes `alphas_cumprod` with `torch.cumprod` (float32 factors, a float64 running product, float32 results). Over a thousand steps that rounding moves `ᾱ_t`
//! by about 1e-6 relative, which is nothing for a sample; but where `ᾱ_t` is tiny — the last steps of
//! `squaredcos_cap_v2`, whose betas are capped at 0.999, or a rescaled schedule — the noise level
//! `σ_t = √((1−ᾱ_t)/ᾱ_t)` moves by 1e-5 relative, and a σ-sampler that starts at `σ_max ≈ 2·10⁴` carries that into
//! its first steps. Sampling a diffusers model therefore uses these tables ([`NoiseSchedule::from_config_float32`]),
//! each value kept exactly in an `f64`; training and the exact-in-f64 comparisons use [`NoiseSchedule::from_config`].

use super::betas::{
    betas_for_alpha_bar, cosine_alpha_bar, laplace_alpha_bar, BetaSchedule, MAX_BETA,
};
use super::config::SchedulerConfig;
use super::error::{Result, ScheduleError};
use super::noise::NoiseSchedule;

/// `torch.linspace(start, end, steps, dtype=torch.float32)` by its scalar kernel: step `(end − start)/(steps − 1)`,
/// the first half `start + step·i`, the second `end − step·(steps − 1 − i)`, every operation in float32.
pub fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (steps - 1 - i) as f32
            }
        })
        .collect()
}

/// The betas of `config` in float32, as diffusers' scheduler constructors make them.
fn betas_f32(config: &SchedulerConfig) -> Result<Vec<f32>> {
    let n = config.num_train_timesteps;
    if let Some(betas) = &config.trained_betas {
        if betas.len() != n {
            return Err(ScheduleError::new(
                "trained_betas",
                format!("has {} values but num_train_timesteps is {n}", betas.len()),
            ));
        }
        return Ok(betas.iter().map(|&b| b as f32).collect());
    }
    let (start, end) = (config.beta_start, config.beta_end);
    Ok(match config.beta_schedule {
        BetaSchedule::Linear => torch_linspace_f32(start as f32, end as f32, n),
        BetaSchedule::ScaledLinear => {
            torch_linspace_f32(start.powf(0.5) as f32, end.powf(0.5) as f32, n)
                .into_iter()
                .map(|root| root * root)
                .collect()
        }
        BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(n, MAX_BETA, cosine_alpha_bar)
            .into_iter()
            .map(|b| b as f32)
            .collect(),
        BetaSchedule::Laplace => betas_for_alpha_bar(n, MAX_BETA, laplace_alpha_bar)
            .into_iter()
            .map(|b| b as f32)
            .collect(),
        BetaSchedule::Sigmoid => torch_linspace_f32(-6.0, 6.0, n)
            .into_iter()
            .map(|x| 1.0 / (1.0 + (-x).exp()) * (end - start) as f32 + start as f32)
            .collect(),
    })
}

/// `torch.cumprod(1 − betas)` on float32: the factors `1 − β` in float32, the running product accumulated in float64
/// (torch's CPU kernel does) and each output rounded to float32.
fn cumprod_f32(betas: &[f32]) -> Vec<f32> {
    betas
        .iter()
        .scan(1.0f64, |product, &beta| {
            *product *= f64::from(1.0 - beta);
            Some(*product as f32)
        })
        .collect()
}

/// diffusers' `rescale_zero_terminal_snr` on float32 tensors (see [`super::betas::rescale_zero_terminal_snr`]).
fn rescale_f32(betas: &[f32]) -> Result<Vec<f32>> {
    if betas.len() < 2 {
        return Err(ScheduleError::new(
            "rescale_betas_zero_snr",
            format!("needs at least 2 steps, got {}", betas.len()),
        ));
    }
    let roots: Vec<f32> = cumprod_f32(betas).iter().map(|ab| ab.sqrt()).collect();
    let (first, last) = (roots[0], roots[roots.len() - 1]);
    if first == last {
        return Err(ScheduleError::new(
            "rescale_betas_zero_snr",
            "the schedule adds no noise (ᾱ_0 = ᾱ_{T-1}), so there is nothing to rescale",
        ));
    }
    let scale = first / (first - last);
    let alpha_bar: Vec<f32> = roots
        .iter()
        .map(|&r| {
            let shifted = (r - last) * scale;
            shifted * shifted
        })
        .collect();
    let mut rescaled = Vec::with_capacity(betas.len());
    rescaled.push(1.0 - alpha_bar[0]);
    rescaled.extend(alpha_bar.windows(2).map(|pair| 1.0 - pair[1] / pair[0]));
    Ok(rescaled)
}

impl NoiseSchedule {
    /// The schedule of `config` with diffusers' float32 tables (see the module documentation).
    pub fn from_config_float32(config: &SchedulerConfig) -> Result<Self> {
        let betas = betas_f32(config)?;
        let betas = if config.rescale_betas_zero_snr {
            rescale_f32(&betas)?
        } else {
            betas
        };
        if let Some((t, beta)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(0.0..=1.0).contains(*b))
        {
            return Err(ScheduleError::new(
                "betas",
                format!("β_{t} = {beta} is not in [0, 1]"),
            ));
        }
        let alphas_cumprod = cumprod_f32(&betas);
        Ok(Self {
            alphas: betas.iter().map(|&b| f64::from(1.0 - b)).collect(),
            betas: betas.iter().map(|&b| f64::from(b)).collect(),
            alphas_cumprod: alphas_cumprod.into_iter().map(f64::from).collect(),
        })
    }
}
