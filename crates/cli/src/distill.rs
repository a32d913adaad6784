//! `diffuse distill progressive|consistency`: few-step students of a trained run ([`diffuse_diffusion::distill`]),
//! and the loop `diffuse train --objective consistency` shares with them.
//!
//! Every run writes `OUT/step-G/` resumable checkpoints (`OUT/latest`), `OUT/round-K/` students (sampleable with
//! `diffuse sample --checkpoint OUT/round-K`), sample grids of the EMA student (`OUT/samples/round-K.png` at the end
//! of each round, `OUT/samples/round-K-step-N.png` with `--sample-every N`; [`crate::training_grids`]),
//! `OUT/metrics.jsonl` (one line per logged step, with the wall time) and shows one progress bar per round. Ctrl-C writes a checkpoint and stops; `--resume OUT` continues exactly.

use crate::consistency::ConsistencySampler;
use crate::datasets::SHIPPED_DATA;
use crate::device::DeviceArgs;
use crate::files::open_metrics;
use crate::sampling::run_sampler;
use crate::score::AnySampler;
use crate::scoring::{load_classifier_on, DEFAULT_CLASSIFIER};
use crate::train::{build, load_data, model_config};
use crate::training_grids::{GridModel, Grids};
use clap::{Args, Subcommand};
use diffuse_diffusion::data::{Dataset, FolderOptions};
use diffuse_diffusion::distill::checkpoint::{ddim_student_config, read_state, SamplingInfo};
use diffuse_diffusion::distill::{
    check_halvings, fingerprint, round_name, Distance, DistillConfig, DistillState, Distiller,
    LevelWeighting, Method, OdeSolver, RoundStart, TeacherId,
};
use diffuse_diffusion::eval::ImageClassifier;
use diffuse_diffusion::pipeline::{Pipeline, Weights};
use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler};
use diffuse_diffusion::schedule::SchedulerConfig;
use diffuse_diffusion::train::checkpoint::{latest_checkpoint, WEIGHTS_FILE};
use diffuse_diffusion::train::StepReport;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why distillation (and consistency training, which shares its loop) runs in one process only.
pub const NOT_DATA_PARALLEL: &str = "the distillation loop (the teacher's targets, the student's rounds and its EMA \
     target network) has no batch sharding or gradient all-reduce; only `diffuse train`, `diffuse vae train` and \
     `diffuse clip train` are data parallel";

#[derive(Subcommand, Debug)]
pub enum DistillCommand {
    /// Progressive distillation (Salimans & Ho 2022): rounds that halve the DDIM step count, each student learning
    /// two teacher steps in one.
    Progressive(ProgressiveArgs),
    /// Consistency distillation (Song et al. 2023): a student that maps any point of the teacher's ODE trajectories to
    /// their origin, sampled with `diffuse sample --sampler consistency`.
    Consistency(ConsistencyArgs),
}

/// The options every distillation shares.
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// The teacher: a training run, a step-N checkpoint, a distilled round-K folder or a diffusers pipeline.
    /// [required for a new run; with --resume it must be the run's teacher]
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// The student's architecture (a named config or a config.json); it starts from the teacher's weights, so it
    /// must be the teacher's.  [default: the teacher's]
    #[arg(long)]
    config: Option<String>,
    /// Dataset the noisy inputs are made from: a folder of IDX files or images, fashion-mnist (the shipped subset,
    /// compiled into the binary) or fashion-mnist-full.
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Output folder: checkpoints, round students, metrics.  [default: runs/distill-progressive or
    /// runs/distill-consistency]
    #[arg(long)]
    out: Option<PathBuf>,
    /// Optimiser steps per round.
    #[arg(long, default_value_t = 400)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam's learning rate (constant).
    #[arg(long, default_value_t = 1e-4)]
    lr: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f32,
    /// Maximum decay of the EMA of the student's weights (what is sampled and teaches the next round).
    #[arg(long, default_value_t = 0.999)]
    ema_decay: f64,
    /// The teacher's classifier-free guidance scale, distilled into the student (sample the student with
    /// --guidance 1).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Seeds the data order, the timesteps or noise levels and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a resumable checkpoint every N steps (0: only at the end of each round).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Resumable checkpoints to keep (round students are all kept).
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Write a metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Draw a sample grid of the EMA student every N steps of a round (0: only at the end of each round).
    #[arg(long, default_value_t = 0)]
    sample_every: u64,
    /// Samples per row of the grids (one row per class for a class-conditional model).
    #[arg(long, default_value_t = 8)]
    grid_columns: usize,
    /// Continue the run in this folder from its latest checkpoint (its stored settings apply; outputs go there).
    /// [default: none: a new run]
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ProgressiveArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The student's final DDIM steps: a power of two below --teacher-steps.  [required for a new run]
    #[arg(long)]
    to_steps: Option<usize>,
    /// The teacher's DDIM steps in the first round (a power of two).  [default: a distilled teacher's own count,
    /// else 64]
    #[arg(long)]
    teacher_steps: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The teacher's ODE solver between adjacent noise levels: heun (two teacher calls) or ddim (one).
    #[arg(long, default_value = "heun", value_parser = ["heun", "ddim"])]
    solver: String,
    /// The distance between the student's and the target network's outputs.
    #[arg(long, default_value = "pseudo-huber", value_parser = ["pseudo-huber", "l2", "perceptual"])]
    distance: String,
    /// Karras noise levels N of the discretisation (Song et al.: 18 for CIFAR-10).
    #[arg(long, default_value_t = 18)]
    levels: usize,
    /// EMA decay μ of the target network θ⁻.
    #[arg(long, default_value_t = 0.95)]
    target_decay: f64,
    /// Weight of each sample's distance by its noise level σ: uniform (Song et al.'s λ = 1) or edm-output
    /// (λ = σ_d/√(σ² + σ_d²), which gives an ε teacher's levels the gradient scale of EDM's c_out; see
    /// docs/distillation.md).  [default: uniform; with --resume, the run's]
    #[arg(long, value_parser = ["uniform", "edm-output"])]
    level_weighting: Option<String>,
}

/// The teacher as a run sees it.
struct Teacher {
    id: TeacherId,
    weights: PathBuf,
    model: BackboneConfig,
    scheduler: SchedulerConfig,
    /// A distilled teacher's sampling info (its step count).
    info: Option<SamplingInfo>,
}

impl Teacher {
    fn open(dir: &Path) -> Result<Teacher, String> {
        let folder = Pipeline::open(dir, Weights::Ema).map_err(|e| e.to_string())?;
        if folder.vae.is_some() {
            return Err(format!(
                "{}: a latent diffusion teacher is not supported yet (its students would need the autoencoder)",
                dir.display()
            ));
        }
        if folder.is_score_sde().map_err(|e| e.to_string())? {
            return Err(format!(
                "{}: a score-SDE model has no discrete schedule to distil on; distil a DDPM-style run",
                dir.display()
            ));
        }
        let model = read_model_config(&folder.denoiser)?;
        let scheduler = match &folder.scheduler_config {
            Some(path) => SchedulerConfig::from_file(path).map_err(|e| e.to_string())?,
            None => SchedulerConfig::default(),
        };
        let weights = folder.denoiser.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).map_err(|e| format!("{}: {e}", weights.display()))?;
        let info = match &folder.checkpoint {
            Some(step_dir) => SamplingInfo::read(step_dir).map_err(|e| e.to_string())?,
            None => None,
        };
        Ok(Teacher {
            id: TeacherId {
                path: dir.display().to_string(),
                fingerprint: fingerprint(&bytes),
            },
            weights,
            model,
            scheduler,
            info,
        })
    }
}

fn read_model_config(dir: &Path) -> Result<BackboneConfig, String> {
    let path = dir.join(diffuse_models::folder::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    BackboneConfig::from_json_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Refuses a teacher that is not a diffusion model the subcommand can distil: a consistency model (its network is a
/// consistency function, not a denoiser), and for consistency distillation a progressive student (trained only at its
/// own few timesteps, where consistency distillation asks the teacher at every noise level).
fn check_teacher_kind(command: &DistillCommand, teacher: &Teacher) -> Result<(), String> {
    let Some(info) = &teacher.info else {
        return Ok(());
    };
    let path = &teacher.id.path;
    if info.sampler == "consistency" {
        return Err(format!(
            "--teacher {path} is a consistency model (its {} says {}): it maps noise to samples in one call and is              no denoiser to distil; give the diffusion run it came from as --teacher",
            diffuse_diffusion::distill::SAMPLING_INFO_FILE,
            info.method
        ));
    }
    if matches!(command, DistillCommand::Consistency(_)) {
        return Err(format!(
            "--teacher {path} is a progressive student, trained only at its {} timesteps, but consistency              distillation asks the teacher at every noise level; give the diffusion run it was distilled from as              --teacher",
            info.steps.map_or("few".to_string(), |n| n.to_string())
        ));
    }
    Ok(())
}

/// Refuses `--guidance` for a teacher that is a student distilled from a guided teacher: it already gives the guided
/// output, and guiding it again would compound the scale.
fn check_teacher_guidance(guidance: f64, teacher: &Teacher) -> Result<(), String> {
    match &teacher.info {
        Some(info) if info.guidance != 1.0 && guidance != 1.0 => Err(format!(
            "--teacher {} was distilled with guidance {} and already gives the guided output; --guidance {guidance} \
             would guide it again (about {} in all): leave --guidance out",
            teacher.id.path,
            info.guidance,
            info.guidance * guidance
        )),
        _ => Ok(()),
    }
}

/// Refuses, when resuming `dir`, a `--config`, `--to-steps` or `--teacher-steps` other than the run's own (a resumed
/// run keeps its stored settings, so a different value would be silently ignored).
fn check_resume_settings(
    command: &DistillCommand,
    dir: &Path,
    state: &DistillState,
    teacher: &Teacher,
) -> Result<(), String> {
    let common = command.common();
    if let Some(name) = &common.config {
        if model_config(name)? != teacher.model {
            return Err(format!(
                "--config {name} is another architecture than the run {} distils ({} with {} output channels); a                  resumed run keeps its student's architecture: leave --config out",
                dir.display(),
                teacher.model.class_name(),
                teacher.model.out_channels(),
            ));
        }
    }
    if let (
        DistillCommand::Progressive(args),
        Method::Progressive {
            from_steps,
            to_steps,
        },
    ) = (command, &state.config.method)
    {
        for (flag, given, stored) in [
            ("--to-steps", args.to_steps, *to_steps),
            ("--teacher-steps", args.teacher_steps, *from_steps),
        ] {
            if let Some(given) = given.filter(|&n| n != stored) {
                return Err(format!(
                    "{flag} {given} differs from the run {}'s {stored} ({from_steps} → {to_steps} steps); a resumed                      run keeps its settings: leave {flag} out, or start a new run in another --out",
                    dir.display()
                ));
            }
        }
    }
    if let (
        DistillCommand::Consistency(args),
        Method::ConsistencyDistillation {
            level_weighting, ..
        },
    ) = (command, &state.config.method)
    {
        if let Some(given) = args
            .level_weighting
            .as_deref()
            .filter(|&name| name != level_weighting.name())
        {
            return Err(format!(
                "--level-weighting {given} differs from the run {}'s {}; a resumed run keeps its settings: leave \
                 --level-weighting out, or start a new run in another --out",
                dir.display(),
                level_weighting.name()
            ));
        }
    }
    Ok(())
}

/// Refuses a `--config` other than the teacher's architecture.
fn check_student_config(config: Option<&str>, teacher: &Teacher) -> Result<(), String> {
    let Some(name) = config else { return Ok(()) };
    let student = model_config(name)?;
    if student != teacher.model {
        return Err(format!(
            "--config {name} is another architecture than the teacher {} ({} with {} output channels); the \
             student starts from the teacher's weights, so it must be the teacher's architecture: leave --config out",
            teacher.id.path,
            teacher.model.class_name(),
            teacher.model.out_channels(),
        ));
    }
    Ok(())
}

/// The null class of a class-conditional model (the last class embedding).
fn null_class(model: &BackboneConfig) -> Option<u32> {
    model.num_class_embeds().map(|n| n as u32 - 1)
}

impl DistillCommand {
    fn common(&self) -> &CommonArgs {
        match self {
            DistillCommand::Progressive(args) => &args.common,
            DistillCommand::Consistency(args) => &args.common,
        }
    }
}

pub fn run(command: &DistillCommand) -> Result<(), String> {
    let common = command.common();
    let (default_out, name) = match command {
        DistillCommand::Progressive(_) => ("runs/distill-progressive", "distill progressive"),
        DistillCommand::Consistency(_) => ("runs/distill-consistency", "distill consistency"),
    };
    crate::launch::refuse_several_ranks(name, NOT_DATA_PARALLEL)?;
    let device = common.device.resolve()?;
    // The teacher's images, as they are: a distillation run trains on what the teacher was trained on.
    let (_, data) = load_data(&common.data, &FolderOptions::default())?;
    if let Some(dir) = &common.resume {
        let step_dir = latest_checkpoint(dir).map_err(|e| e.to_string())?;
        let state = read_state(&step_dir).map_err(|e| e.to_string())?;
        let stored = state.config.teacher.clone().ok_or_else(|| {
            format!(
                "{} is a {} run, which has no teacher: resume it with diffuse train --objective consistency \
                 --resume {}",
                dir.display(),
                state.config.method.name(),
                dir.display()
            )
        })?;
        let teacher_dir = common
            .teacher
            .clone()
            .unwrap_or_else(|| PathBuf::from(&stored.path));
        let teacher = Teacher::open(&teacher_dir)?;
        if teacher.id.fingerprint != stored.fingerprint {
            return Err(format!(
                "{} was distilled from the teacher {} (weights fingerprint {}), but --teacher {} has fingerprint {}; \
                 resume with the run's own teacher, or start a new run in another --out",
                dir.display(),
                stored.path,
                stored.fingerprint,
                teacher_dir.display(),
                teacher.id.fingerprint
            ));
        }
        let kind_matches = matches!(
            (command, &state.config.method),
            (DistillCommand::Progressive(_), Method::Progressive { .. })
                | (
                    DistillCommand::Consistency(_),
                    Method::ConsistencyDistillation { .. }
                )
        );
        if !kind_matches {
            return Err(format!(
                "{} is a {} run; resume it with its own subcommand",
                dir.display(),
                state.config.method.name()
            ));
        }
        check_resume_settings(command, dir, &state, &teacher)?;
        return run_rounds(Run {
            state,
            resume_from: Some(step_dir),
            teacher_weights: Some(teacher.weights),
            model: teacher.model,
            out: dir.clone(),
            data: &data,
            device,
            cadence: common.into(),
        });
    }
    let teacher_dir = common
        .teacher
        .as_ref()
        .ok_or("--teacher RUN is required (the trained run to distil)")?;
    let teacher = Teacher::open(teacher_dir)?;
    check_teacher_kind(command, &teacher)?;
    check_teacher_guidance(common.guidance, &teacher)?;
    check_student_config(common.config.as_deref(), &teacher)?;
    let method = match command {
        DistillCommand::Progressive(args) => {
            let from = match (args.teacher_steps, &teacher.info) {
                (Some(n), _) => n,
                (None, Some(info)) if info.steps.is_some() => info.steps.unwrap_or(64),
                _ => 64,
            };
            let to = args
                .to_steps
                .ok_or("--to-steps N is required (the student's final DDIM steps: 1, 2, 4, …)")?;
            check_halvings(from, to, teacher.scheduler.num_train_timesteps)
                .map_err(|e| e.to_string())?;
            Method::Progressive {
                from_steps: from,
                to_steps: to,
            }
        }
        DistillCommand::Consistency(args) => Method::ConsistencyDistillation {
            levels: args.levels,
            solver: if args.solver == "ddim" {
                OdeSolver::Ddim
            } else {
                OdeSolver::Heun
            },
            distance: Distance::from_name(&args.distance).ok_or("bad --distance")?,
            target_decay: args.target_decay,
            level_weighting: match &args.level_weighting {
                Some(name) => LevelWeighting::from_name(name).ok_or("bad --level-weighting")?,
                None => LevelWeighting::default(),
            },
        },
    };
    let config = DistillConfig {
        method,
        teacher: Some(teacher.id.clone()),
        scheduler: teacher.scheduler.clone(),
        seed: common.seed,
        batch_size: common.batch_size,
        steps_per_round: common.steps,
        lr: common.lr,
        grad_clip: (common.grad_clip > 0.0).then_some(common.grad_clip),
        ema_decay: common.ema_decay,
        guidance: common.guidance,
        null_class: null_class(&teacher.model),
    };
    config.validate().map_err(|e| format!("{e}"))?;
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(default_out));
    run_rounds(Run {
        state: DistillState::new(config),
        resume_from: None,
        teacher_weights: Some(teacher.weights),
        model: teacher.model,
        out,
        data: &data,
        device,
        cadence: common.into(),
    })
}

/// The outputs and cadence shared by distillation and consistency training.
pub struct Cadence {
    pub checkpoint_every: u64,
    pub keep: usize,
    pub log_every: u64,
    /// Grid every N steps of a round (0: only at each round's end).
    pub sample_every: u64,
    pub grid_columns: usize,
}

impl From<&CommonArgs> for Cadence {
    fn from(c: &CommonArgs) -> Self {
        Cadence {
            checkpoint_every: c.checkpoint_every,
            keep: c.keep,
            log_every: c.log_every,
            sample_every: c.sample_every,
            grid_columns: c.grid_columns,
        }
    }
}

/// A run about to start or continue.
pub struct Run<'a> {
    pub state: DistillState,
    /// The checkpoint a resumed run continues from.
    pub resume_from: Option<PathBuf>,
    /// The first round's teacher weights.
    pub teacher_weights: Option<PathBuf>,
    pub model: BackboneConfig,
    pub out: PathBuf,
    pub data: &'a Dataset,
    pub device: Device,
    pub cadence: Cadence,
}

fn metrics_line(round: u32, report: &StepReport, elapsed: f64) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({
        "round": round,
        "step": report.step,
        "loss": num(report.loss),
        "smoothed_loss": report.smoothed_loss.map(num),
        "grad_norm": report.grad_norm.map(|g| num(f64::from(g))),
        "skipped": report.skipped,
        "elapsed_s": elapsed,
    })
    .to_string()
}

/// The sampler a round's student is meant for: DDIM at a progressive round's step count (on the student's trailing
/// DDIM scheduler, its noise from the clipped x̂0 as the student learned), or one-step consistency sampling.
fn student_sampler(config: &DistillConfig, round: u32) -> Result<AnySampler, String> {
    match config.method.student_steps(round) {
        Some(steps) => {
            let ddim = run_sampler(&ddim_student_config(&config.scheduler), "ddim", steps)?
                .apply(&SamplerOverrides {
                    use_clipped_model_output: Some(true),
                    ..SamplerOverrides::default()
                })
                .map_err(|e| e.to_string())?;
            Ok(AnySampler::Discrete(Box::new(ddim)))
        }
        None => {
            let scheduler = Scheduler::from_config(&config.scheduler).map_err(|e| e.to_string())?;
            Ok(AnySampler::Consistency(Box::new(ConsistencySampler::new(
                &scheduler,
                Some(1),
                None,
            )?)))
        }
    }
}

/// The EMA student of `distiller`, as the grids draw it.
fn student_grid_model(distiller: &Distiller<Backbone>) -> GridModel<'_> {
    GridModel {
        model: &distiller.ema_model,
        null_class: distiller.config().null_class,
        seed: distiller.config().seed,
        image_condition: None,
    }
}

/// The classifier of a perceptual distance (loaded for each round: the student owns it).
fn perceptual_classifier(
    method: &Method,
    device: Device,
) -> Result<Option<ImageClassifier>, String> {
    match method {
        Method::ConsistencyDistillation {
            distance: Distance::Perceptual,
            ..
        } => load_classifier_on(Path::new(DEFAULT_CLASSIFIER), device)
            .map(Some)
            .map_err(|e| format!("the perceptual distance needs the shipped classifier: {e}")),
        _ => Ok(None),
    }
}

/// Runs the remaining rounds of `run`.
pub fn run_rounds(run: Run<'_>) -> Result<(), String> {
    let Run {
        mut state,
        mut resume_from,
        teacher_weights,
        model,
        out,
        data,
        device,
        cadence,
    } = run;
    if model.in_channels() != data.channels {
        return Err(format!(
            "the model takes {} channels but the dataset's images have {}",
            model.in_channels(),
            data.channels
        ));
    }
    if state.done() {
        eprintln!(
            "{} is done ({} rounds); nothing to do",
            out.display(),
            state.config.method.rounds()
        );
        return Ok(());
    }
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, state.step)?;
    crate::interrupt::install()?;
    let rounds = state.config.method.rounds();
    let start = Instant::now();
    loop {
        let round = state.round;
        let previous_round = out
            .join(round_name(round.saturating_sub(1)))
            .join("ema")
            .join(WEIGHTS_FILE);
        let teacher = if !state.config.method.has_teacher() {
            None
        } else if round == 1 {
            teacher_weights.clone()
        } else {
            Some(previous_round)
        };
        let round_start = RoundStart {
            teacher: teacher.as_deref(),
            classifier: perceptual_classifier(&state.config.method, device)?,
            device,
        };
        let mut distiller = match resume_from.take() {
            Some(dir) if state.step_in_round > 0 => {
                Distiller::resume(&dir, state.clone(), round_start, build(&model))
            }
            _ => Distiller::start_round(state.clone(), round_start, build(&model)),
        }
        .map_err(|e| e.to_string())?;
        let what = match state.config.method.student_steps(round) {
            Some(steps) => format!("round {round}/{rounds}: {} → {steps} steps", 2 * steps),
            None => state.config.method.name().to_string(),
        };
        eprintln!(
            "{what}: {} parameters on {}, batch {}, {} steps; outputs in {}",
            distiller.store.numel(),
            distiller.device(),
            state.config.batch_size,
            state.config.steps_per_round,
            out.display()
        );
        let bar = ProgressBar::new(state.config.steps_per_round).with_position(state.step_in_round);
        bar.set_style(
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} ETA {eta}")
                .map_err(|e| e.to_string())?,
        );
        bar.set_prefix(format!("round {round}/{rounds}"));
        let grids = Grids {
            out: &out,
            sampler: student_sampler(distiller.config(), round)?,
            score: None,
            decoder: None,
            columns: cadence.grid_columns,
            // A distilled student carries its teacher's guidance.
            guidance: 1.0,
            prompts: None,
        };
        while !distiller.state().round_done() {
            if crate::interrupt::requested() {
                let state = distiller.state().clone();
                distiller
                    .save_checkpoint(&out, &state, cadence.keep)
                    .map_err(|e| e.to_string())?;
                bar.abandon();
                eprintln!(
                    "stopped in round {round} at step {}; continue with --resume {}",
                    state.step_in_round,
                    out.display()
                );
                return Ok(());
            }
            let report = distiller.step(data).map_err(|e| e.to_string())?;
            let done = distiller.state().step_in_round;
            bar.set_position(done);
            bar.set_message(format!(
                "loss {:.4}",
                report.smoothed_loss.unwrap_or(f64::NAN)
            ));
            if report.skipped {
                bar.suspend(|| eprintln!("step {}: non-finite loss, skipped", report.step));
            }
            if cadence.log_every > 0
                && (done % cadence.log_every == 0 || distiller.state().round_done())
            {
                writeln!(
                    metrics,
                    "{}",
                    metrics_line(round, &report, start.elapsed().as_secs_f64())
                )
                .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
            }
            if cadence.sample_every > 0
                && done % cadence.sample_every == 0
                && !distiller.state().round_done()
            {
                let name = format!("{}-step-{done}", round_name(round));
                let path = grids.write(&student_grid_model(&distiller), &name, data)?;
                bar.suspend(|| eprintln!("step {done}: samples in {}", path.display()));
            }
            if cadence.checkpoint_every > 0
                && done % cadence.checkpoint_every == 0
                && !distiller.state().round_done()
            {
                let state = distiller.state().clone();
                distiller
                    .save_checkpoint(&out, &state, cadence.keep)
                    .map_err(|e| e.to_string())?;
            }
        }
        bar.finish();
        let student = distiller.write_round(&out).map_err(|e| e.to_string())?;
        let grid = grids.write(&student_grid_model(&distiller), &round_name(round), data)?;
        let next = if round < rounds {
            distiller.next_round_state()
        } else {
            distiller.state().clone()
        };
        distiller
            .save_checkpoint(&out, &next, cadence.keep)
            .map_err(|e| e.to_string())?;
        let how = match distiller.config().method.student_steps(round) {
            Some(steps) => format!(
                "diffuse sample --checkpoint {} (DDIM, {steps} step{})",
                student.display(),
                if steps == 1 { "" } else { "s" }
            ),
            None => format!(
                "diffuse sample --checkpoint {} --sampler consistency --steps 1",
                student.display()
            ),
        };
        eprintln!(
            "round {round} done: smoothed loss {:.4}, {:.1} s in all; samples in {}; sample it with {how}",
            distiller.state().smoothed_loss.unwrap_or(f64::NAN),
            start.elapsed().as_secs_f64(),
            grid.display()
        );
        if round >= rounds {
            break;
        }
        state = next;
    }
    metrics.flush().map_err(|e| e.to_string())?;
    Ok(())
}
