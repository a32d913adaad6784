//! `diffuse sample`: draws images from a trained U-Net (a training run folder, one of its `step-N` checkpoints, or a
//! diffusers model folder) with any of the library's samplers, optionally with classifier-free guidance, and writes
//! a grid, and on request each image, the raw tensor, and the trajectory of the first sample.

use crate::device::DeviceArgs;
use crate::grid::Grid;
use crate::latent::{check_decodes, decoder_for, pipeline_denoiser_dir};
use crate::sampling::{draw_with, GridRequest, ThresholdArgs};
use crate::score::{
    any_sampler, refuse_discrete, refuse_threshold, AnySampler, ScoreArgs, ScoreRequest, ScoreView,
};
use clap::Args;
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use diffuse_diffusion::train::checkpoint::latest_checkpoint;
use diffuse_diffusion::train::target::prediction_of;
use diffuse_models::folder::CONFIG_FILE;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A training run folder (its latest checkpoint), a step-N checkpoint, or a diffusers model folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Use the EMA weights of a checkpoint (false: the raw weights).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ema: bool,
    /// ddpm, ddim, euler, euler-a, heun or dpm++2m, or a score sampler: langevin (annealed Langevin dynamics), pc
    /// (predictor–corrector) or ode-rk45 (the probability-flow ODE, adaptive).
    #[arg(long, default_value = "dpm++2m")]
    sampler: String,
    /// Denoising steps (langevin: noise levels; ode-rk45 chooses its own).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[command(flatten)]
    score: ScoreArgs,
    /// Classifier-free guidance scale (1: plain conditional; needs a class-conditional model otherwise).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    #[command(flatten)]
    threshold: ThresholdArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// Draw only this class.  [default: one row per class of a class-conditional model]
    #[arg(long)]
    class: Option<u32>,
    /// Seed of the starting noise and of the stochastic samplers' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per class (or in all, for an unconditional model or with --class).
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// The grid PNG.
    #[arg(long, default_value = "grid.png")]
    out: PathBuf,
    /// Also write every sample as DIR/sample-NNNN.png.  [default: none]
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also write the samples (N, C, H, W, in [−1, 1]) as the tensor "samples" of a safetensors file.  [default: none]
    #[arg(long)]
    out_tensor: Option<PathBuf>,
    /// Start from this noise (a safetensors file with one f32 tensor of the samples' shape).  [default: the seed's]
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Also write the first sample's x_t at every model call, left to right, ending with the result.  [default: none]
    #[arg(long)]
    trajectory: Option<PathBuf>,
}

/// The model folder and scheduler config that `dir` names: a training run (its latest checkpoint), a `step-N`
/// checkpoint (its EMA weights when `ema`, else its raw weights), or a diffusers model folder.
pub(crate) fn resolve(dir: &Path, ema: bool) -> Result<(PathBuf, SchedulerConfig), String> {
    let step_dir = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    let model_dir = if step_dir.join(CONFIG_FILE).is_file() {
        step_dir.clone()
    } else if let Some(denoiser) = pipeline_denoiser_dir(&step_dir, ema) {
        denoiser
    } else {
        step_dir.join(if ema { "ema" } else { "model" })
    };
    if !model_dir.join(CONFIG_FILE).is_file() {
        return Err(format!(
            "{} is neither a training run, a checkpoint, nor a diffusers model folder (no {CONFIG_FILE})",
            dir.display()
        ));
    }
    let scheduler_path = [
        step_dir.join("scheduler/scheduler_config.json"),
        model_dir.join("../scheduler/scheduler_config.json"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let scheduler = match scheduler_path {
        Some(path) => SchedulerConfig::from_file(&path).map_err(|e| e.to_string())?,
        None => SchedulerConfig::default(),
    };
    Ok((model_dir, scheduler))
}

fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| err(&e))?;
    let names = file.names();
    let [name] = names.as_slice() else {
        return Err(err(&format!(
            "holds {} tensors; expected exactly one",
            names.len()
        )));
    };
    let view = file.tensor(name).map_err(|e| err(&e))?;
    if view.dtype() != Dtype::F32 {
        return Err(err(&format!(
            "'{name}' is {:?}; expected F32",
            view.dtype()
        )));
    }
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(data, view.shape(), Device::Cpu).map_err(|e| e.to_string())
}

fn write_tensor(path: &Path, name: &str, t: &Tensor) -> Result<(), String> {
    let bytes: Vec<u8> = t
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let view =
        TensorView::new(Dtype::F32, t.shape().to_vec(), &bytes).map_err(|e| e.to_string())?;
    let encoded = safetensors::serialize([(name, view)], &None).map_err(|e| e.to_string())?;
    crate::files::write_atomically(path, &encoded).map_err(|e| format!("{}: {e}", path.display()))
}

/// Records the first sample of every `x_t` the sampler passes to the model.
struct Recorder<'a> {
    inner: &'a dyn Denoiser,
    frames: RefCell<Vec<Tensor>>,
}

impl Denoiser for Recorder<'_> {
    fn predict(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: Condition<'_>,
    ) -> diffuse_diffusion::Result<Tensor> {
        self.frames
            .borrow_mut()
            .push(x_t.narrow(0, 0, 1)?.contiguous()?);
        self.inner.predict(x_t, t, cond)
    }

    fn prediction(&self) -> Prediction {
        self.inner.prediction()
    }
}

fn save_grid(images: &Tensor, columns: usize, path: &Path) -> Result<(), String> {
    let shape = images.shape();
    Grid {
        pixels: &images.to_vec().map_err(|e| e.to_string())?,
        count: shape[0],
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        columns,
    }
    .save(path)
}

pub fn run(args: &SampleArgs) -> Result<(), String> {
    let device = args.device.resolve()?;
    let (model_dir, scheduler) = resolve(&args.checkpoint, args.ema)?;
    let (model, _store) =
        Backbone::load_diffusers(&model_dir, device).map_err(|e| e.to_string())?;
    let decoder = decoder_for(&model_dir, device)?;
    if let Some(decoder) = &decoder {
        check_decodes(decoder, &model.config())?;
    }
    let schedule = NoiseSchedule::from_config(&scheduler).map_err(|e| e.to_string())?;
    let prediction = prediction_of(scheduler.prediction_type);
    // Training uses the last class embedding as the null class (num_classes + 1 embeddings).
    let null_class = model.config().num_class_embeds().map(|n| n as u32 - 1);
    let count = args.count.max(1);
    let classes: Option<Vec<u32>> = match (null_class, args.class) {
        (Some(null), Some(c)) if c <= null => Some(vec![c; count]),
        (Some(null), Some(c)) => return Err(format!("--class {c} is out of range: the model knows classes 0..{null} (and {null} = unconditional)")),
        (Some(null), None) => Some((0..null).flat_map(|c| std::iter::repeat_n(c, count)).collect()),
        (None, Some(_)) => return Err("--class needs a class-conditional model".into()),
        (None, None) => None,
    };
    if args.guidance != 1.0 && classes.is_none() {
        return Err("--guidance other than 1 needs a class-conditional model".into());
    }
    let total = classes.as_ref().map_or(count, Vec::len);
    let init = match args.init_noise.as_deref() {
        Some(path) => Some(
            read_tensor(path)?
                .to_device(model.device())
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut frames = Vec::new();
    let record = |denoiser: &dyn Denoiser,
                  sample: &dyn Fn(&dyn Denoiser) -> Result<Tensor, String>| {
        if args.trajectory.is_none() {
            return sample(denoiser);
        }
        let recorder = Recorder {
            inner: denoiser,
            frames: RefCell::new(Vec::new()),
        };
        let out = sample(&recorder);
        frames = recorder.frames.into_inner();
        out
    };
    let view = ScoreView::of_checkpoint(&model.config(), &scheduler);
    let images = match any_sampler(&args.sampler, args.steps, &args.score)? {
        AnySampler::Discrete(_) if view.as_ref().is_ok_and(|v| v.score_sde) => {
            return Err(refuse_discrete(&args.sampler))
        }
        AnySampler::Discrete(sampler) => {
            let request = GridRequest {
                sampler,
                steps: args.steps,
                seed: args.seed,
                classes: classes.as_deref(),
                count: total,
                guidance: args.guidance,
                null_class,
                threshold: args.threshold.threshold()?,
            };
            draw_with(
                &model,
                prediction,
                &schedule,
                &request,
                init.as_ref(),
                record,
            )?
        }
        AnySampler::Score(sampler) => {
            refuse_threshold(&args.threshold)?;
            let request = ScoreRequest {
                sampler,
                seed: args.seed,
                classes: classes.as_deref(),
                count: total,
                guidance: args.guidance,
                null_class,
                pixels: decoder.is_none(),
            };
            let (images, nfe) =
                crate::score::draw_with(&model, &view?, &request, init.as_ref(), record)?;
            eprintln!("{}: {nfe} model evaluations", args.sampler);
            images
        }
    };
    // A latent model's samples (and trajectory) become images through its autoencoder.
    let decode = |t: Tensor| match &decoder {
        Some(decoder) => decoder.decode(&t),
        None => Ok(t),
    };
    let images = decode(images)?;
    save_grid(&images, count, &args.out)?;
    eprintln!("{total} samples in {}", args.out.display());
    if let Some(dir) = &args.out_dir {
        for i in 0..total {
            let one = images.narrow(0, i, 1).map_err(|e| e.to_string())?;
            save_grid(&one, 1, &dir.join(format!("sample-{i:04}.png")))?;
        }
    }
    if let Some(path) = &args.out_tensor {
        write_tensor(path, "samples", &images)?;
    }
    if let Some(path) = &args.trajectory {
        let mut parts = Vec::new();
        if !frames.is_empty() {
            let refs: Vec<&Tensor> = frames.iter().collect();
            parts.push(decode(
                Tensor::concat(&refs, 0).map_err(|e| e.to_string())?,
            )?);
        }
        parts.push(
            images
                .narrow(0, 0, 1)
                .map_err(|e| e.to_string())?
                .contiguous()
                .map_err(|e| e.to_string())?,
        );
        let refs: Vec<&Tensor> = parts.iter().collect();
        let strip = Tensor::concat(&refs, 0).map_err(|e| e.to_string())?;
        save_grid(&strip, frames.len() + 1, path)?;
    }
    Ok(())
}
