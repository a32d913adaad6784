//! The samplers by the names the command line uses. A name stands for a diffusers scheduler class and the few
//! settings that make it that sampler (DPM-Solver's algorithm and order, UniPC's variant, PNDM's PRK steps); every
//! other setting comes from the scheduler config it is applied to.
//!
//! | name | class | settings the name fixes |
//! |---|---|---|
//! | `ddpm` | `DDPMScheduler` | |
//! | `ddim` | `DDIMScheduler` | |
//! | `pndm` | `PNDMScheduler` | `skip_prk_steps = false` (three PRK steps, then PLMS) |
//! | `plms` | `PNDMScheduler` | `skip_prk_steps = true` |
//! | `euler` | `EulerDiscreteScheduler` | |
//! | `euler-a` | `EulerAncestralDiscreteScheduler` | |
//! | `heun` | `HeunDiscreteScheduler` | |
//! | `lms` | `LMSDiscreteScheduler` | |
//! | `dpmKm` (K = 1, 2, 3) | `DPMSolverMultistepScheduler` | `algorithm_type = dpmsolver`, `solver_order = K`, `final_sigmas_type = sigma_min` |
//! | `dpm++Km` | `DPMSolverMultistepScheduler` | `algorithm_type = dpmsolver++`, `solver_order = K` |
//! | `dpm++Km-sde`, `dpmKm-sde` | `DPMSolverMultistepScheduler` | `algorithm_type = sde-dpmsolver++` / `sde-dpmsolver`, `solver_order = K` |
//! | `unipc`, `unipc-bh1` | `UniPCMultistepScheduler` | `solver_type = bh2` / `bh1` |

use super::scheduler::SchedulerClass;
use super::{DpmAlgorithm, Sampler, UniPcVariant};
use crate::error::{Error, Result};
use serde_json::{json, Value};

/// The twelve samplers a sweep over "all" runs.
pub const ALL: [&str; 12] = [
    "ddpm",
    "ddim",
    "pndm",
    "euler",
    "euler-a",
    "heun",
    "lms",
    "dpm2m",
    "dpm++2m",
    "dpm++3m",
    "dpm++2m-sde",
    "unipc",
];

/// The names accepted besides the DPM-Solver pattern, for error messages.
const SIMPLE: [&str; 10] = [
    "ddpm",
    "ddim",
    "pndm",
    "plms",
    "euler",
    "euler-a",
    "heun",
    "lms",
    "unipc",
    "unipc-bh1",
];

/// A DPM-Solver name: `dpm`, `dpm++`, then the order and `m`, optionally `-sde`.
fn dpm_settings(name: &str) -> Option<(DpmAlgorithm, usize)> {
    let (sde, rest) = match name.strip_suffix("-sde") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let rest = rest.strip_prefix("dpm")?;
    let (data, rest) = match rest.strip_prefix("++") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let order: usize = rest.strip_suffix('m')?.parse().ok()?;
    if !(1..=3).contains(&order) {
        return None;
    }
    let algorithm = match (data, sde) {
        (false, false) => DpmAlgorithm::DpmSolver,
        (true, false) => DpmAlgorithm::DpmSolverPp,
        (false, true) => DpmAlgorithm::SdeDpmSolver,
        (true, true) => DpmAlgorithm::SdeDpmSolverPp,
    };
    Some((algorithm, order))
}

/// The class a name stands for and the settings it fixes.
pub fn lookup(name: &str) -> Result<(SchedulerClass, Vec<(&'static str, Value)>)> {
    Ok(match name {
        "ddpm" => (SchedulerClass::Ddpm, vec![]),
        "ddim" => (SchedulerClass::Ddim, vec![]),
        "pndm" => (SchedulerClass::Pndm, vec![("skip_prk_steps", json!(false))]),
        "plms" => (SchedulerClass::Pndm, vec![("skip_prk_steps", json!(true))]),
        "euler" => (SchedulerClass::Euler, vec![]),
        "euler-a" => (SchedulerClass::EulerAncestral, vec![]),
        "heun" => (SchedulerClass::Heun, vec![]),
        "lms" => (SchedulerClass::Lms, vec![]),
        "unipc" => (
            SchedulerClass::UniPcMultistep,
            vec![("solver_type", json!("bh2"))],
        ),
        "unipc-bh1" => (
            SchedulerClass::UniPcMultistep,
            vec![("solver_type", json!("bh1"))],
        ),
        other => {
            let (algorithm, order) = dpm_settings(other).ok_or_else(|| {
                Error::sampler(
                    "sampler",
                    format!(
                        "unknown sampler '{other}' (expected {}, or dpm2m, dpm++2m, dpm++3m, dpm++2m-sde and the \
                         like: dpm or dpm++, order 1–3, m, optionally -sde)",
                        SIMPLE.join(", ")
                    ),
                )
            })?;
            let mut fixed = vec![
                ("algorithm_type", json!(algorithm.name())),
                ("solver_order", json!(order)),
            ];
            if !algorithm.predicts_data() {
                // DPM-Solver on ε̂ cannot take a last step to σ = 0 (diffusers refuses it).
                fixed.push(("final_sigmas_type", json!("sigma_min")));
            }
            (SchedulerClass::DpmSolverMultistep, fixed)
        }
    })
}

/// The command-line name of a sampler with its settings (a DPM-Solver of any algorithm and order has one; PNDM,
/// UniPC, DDIM with η and the like are named by their kind).
pub fn label(sampler: &Sampler) -> String {
    match sampler {
        Sampler::Ddpm { .. } => "ddpm".into(),
        Sampler::Ddim(_) => "ddim".into(),
        Sampler::Pndm(p) if p.skip_prk_steps => "plms".into(),
        Sampler::Pndm(_) => "pndm".into(),
        Sampler::Euler(_) => "euler".into(),
        Sampler::EulerAncestral => "euler-a".into(),
        Sampler::Heun => "heun".into(),
        Sampler::Lms { .. } => "lms".into(),
        Sampler::DpmSolver(d) => {
            let (prefix, sde) = match d.algorithm {
                DpmAlgorithm::DpmSolver => ("dpm", ""),
                DpmAlgorithm::DpmSolverPp => ("dpm++", ""),
                DpmAlgorithm::SdeDpmSolver => ("dpm", "-sde"),
                DpmAlgorithm::SdeDpmSolverPp => ("dpm++", "-sde"),
            };
            format!("{prefix}{}m{sde}", d.order)
        }
        Sampler::UniPc(u) => match u.variant {
            UniPcVariant::Bh1 => "unipc-bh1".into(),
            UniPcVariant::Bh2 => "unipc".into(),
        },
    }
}
