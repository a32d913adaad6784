//! `diffuse train --sde ve|vp|subvp`: denoising score matching of a continuous SDE
//! ([`diffuse_diffusion::sde::ScoreMatching`]) instead of the discrete objective, and the network it trains.

use crate::numbers::finite_f64;
use clap::Args;
use diffuse_diffusion::sde::{
    ScoreMatching, ScoreNetwork, ScoreParameterization, ScoreWeighting, Sde,
};
use diffuse_models::BackboneConfig;

/// `diffuse train --sde`: score matching of a continuous SDE instead of the discrete objective.
#[derive(Args, Clone, Debug)]
pub struct SdeTrainArgs {
    /// Train a score model of this SDE by denoising score matching: ve (NCSN / SMLD: a named U-Net config then
    /// takes the noise level σ through a Fourier embedding and returns the score), vp or subvp (ε-prediction at the
    /// fractional timestep (T − 1)·t).  [default: none: the discrete objective of --schedule]
    #[arg(long, value_parser = ["ve", "vp", "subvp"])]
    pub sde: Option<String>,
    /// VE: the smallest noise level σ_min.
    #[arg(long, value_parser = finite_f64, default_value_t = 0.01)]
    pub sigma_min: f64,
    /// VE: the largest noise level σ_max (about the largest distance between training images).
    #[arg(long, value_parser = finite_f64, default_value_t = 50.0)]
    pub sigma_max: f64,
    /// VP and sub-VP: β(0).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.1)]
    pub beta_min: f64,
    /// VP and sub-VP: β(1).
    #[arg(long, value_parser = finite_f64, default_value_t = 20.0)]
    pub beta_max: f64,
    /// The loss weighting λ(t): variance (s(t)², NCSN's σ²) or likelihood (g(t)²).
    #[arg(long, default_value = "variance", value_parser = ["variance", "likelihood"])]
    pub sde_weighting: String,
    /// The smallest training time ε (t ~ U(ε, 1)).
    #[arg(long, value_parser = finite_f64, default_value_t = 1e-5)]
    pub sde_eps: f64,
    /// Train at this many discrete noise levels (NCSN) instead of continuous times.  [default: continuous]
    #[arg(long)]
    pub noise_levels: Option<usize>,
}

impl SdeTrainArgs {
    /// Whether `--sde` was given.
    pub fn is_set(&self) -> bool {
        self.sde.is_some()
    }

    /// The network to train (for VE, a named U-Net gets a Fourier embedding; an architecture without one predicts ε)
    /// and the objective, when `--sde` is set.
    pub fn objective(
        &self,
        model: &BackboneConfig,
        named: bool,
        num_train_timesteps: usize,
    ) -> Result<(BackboneConfig, Option<ScoreMatching>), String> {
        let Some(kind) = self.sde.as_deref() else {
            return Ok((model.clone(), None));
        };
        let sde = match kind {
            "ve" => Sde::ve(self.sigma_min, self.sigma_max),
            "vp" => Sde::vp(self.beta_min, self.beta_max),
            _ => Sde::sub_vp(self.beta_min, self.beta_max),
        }
        .map_err(|e| format!("--sde {kind}: {e}"))?;
        if model.out_channels() != model.in_channels() {
            return Err(format!(
                "--sde {kind}: score matching needs a network whose output has the image's {} channels; this one \
                 has {} (a learned variance), which only the discrete objective trains",
                model.in_channels(),
                model.out_channels()
            ));
        }
        let model = match model.with_noise_level_embedding() {
            Some(fourier) if kind == "ve" && named => fourier,
            _ => model.clone(),
        };
        let network = if model.takes_noise_level() {
            ScoreNetwork::NoiseConditional
        } else {
            ScoreNetwork::Epsilon
        };
        let objective = ScoreMatching {
            sde,
            parameterization: ScoreParameterization {
                network,
                num_train_timesteps,
            },
            weighting: match self.sde_weighting.as_str() {
                "likelihood" => ScoreWeighting::Likelihood,
                _ => ScoreWeighting::Variance,
            },
            eps: self.sde_eps,
            noise_levels: self.noise_levels,
        };
        objective
            .validate()
            .map_err(|e| format!("--sde {kind}: {e}"))?;
        Ok((model, Some(objective)))
    }
}
