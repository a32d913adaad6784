//! `diffuse eval --nll ode|both`: bits/dim by the probability-flow ODE ([`diffuse_diffusion::sde::likelihood`]),
//! beside or instead of the variational bound.

use crate::score::{ScoreArgs, ScoreView};
use clap::{Args, ValueEnum};
use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::sde::{
    ode_likelihood, LikelihoodOptions, NetworkScore, OdeLikelihood, Probe,
};
use diffuse_models::Backbone;
use diffuse_tensor::Tensor;

/// How `diffuse eval --bpd N` measures bits/dim.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NllMethod {
    // (No doc comments on the variants: clap would switch the whole help to its multi-line layout.)
    Vlb,
    Ode,
    Both,
}

/// The distribution of the Hutchinson probes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeArg {
    Rademacher,
    Gaussian,
}

/// `diffuse eval --nll`.
#[derive(Args, Clone, Copy, Debug)]
pub struct NllArgs {
    /// How --bpd measures bits/dim: vlb (the variational bound), ode (the probability-flow ODE's likelihood of
    /// dequantised images, with --rtol/--atol), or both on the same images.
    #[arg(long, value_enum, default_value = "vlb")]
    pub nll: NllMethod,
    /// --nll ode: Hutchinson probes per image (each a copy of the image in the solve's batch).
    #[arg(long, default_value_t = 1)]
    pub probes: usize,
    /// --nll ode: the probes' distribution.
    #[arg(long, value_enum, default_value = "rademacher")]
    pub probe: ProbeArg,
    /// --nll ode: images per ODE solve.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub nll_batch: usize,
}

/// The probability-flow likelihood of `images` (in [−1, 1], 8-bit levels) under `model`, in bits/dim of the
/// dequantised data. The model's parameters should be frozen (each evaluation back-propagates to the input only).
pub fn ode_bits_per_dim(
    model: &Backbone,
    view: &ScoreView,
    images: &Tensor,
    labels: Option<&[u32]>,
    nll: &NllArgs,
    score: &ScoreArgs,
    seed: u64,
) -> Result<OdeLikelihood, String> {
    let network = NetworkScore {
        model,
        sde: view.sde.clone(),
        parameterization: view.parameterization,
    };
    let options = LikelihoodOptions {
        probe: match nll.probe {
            ProbeArg::Rademacher => Probe::Rademacher,
            ProbeArg::Gaussian => Probe::Gaussian,
        },
        probes: nll.probes,
        tolerances: score.tolerances()?,
        eps: score.sde_eps().unwrap_or(1e-5),
        dequantize: true,
        seed,
        batch: nll.nll_batch,
    };
    let images = images
        .to_device(model.device())
        .map_err(|e| e.to_string())?;
    ode_likelihood(&network, &images, Condition::class_opt(labels), &options)
        .map_err(|e| format!("--nll ode: {e}"))
}
