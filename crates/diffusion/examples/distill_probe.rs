//! How well progressive students take their teacher's two DDIM steps in one, step by step of the student's grid:
//! on 64 fixed test images of the shipped Fashion-MNIST subset, noised once with a fixed seed at each grid timestep
//! `t`, it prints the distillation target's largest |x̃| and, for the teacher itself (as the untrained student, `m0`)
//! and for each student folder given (`m1`, …), the mean squared error of the network output against the target
//! written as an output (`out`), the training loss at that step (`loss`: the truncated-SNR-weighted distance of x̂0
//! from what the clip sends to x̃, 0 where an ε student's step is left out) and the mean squared error of the landing
//! point of one clipped DDIM step against the teacher's two (`land`, what sampling sees). A round that works lowers `land`; docs/distillation.md reads the figures.
//!
//! Run: `cargo run --release -p diffuse-diffusion --example distill_probe -- TEACHER_RUN STEPS STUDENT_MODEL...`
//! with `TEACHER_RUN` a training checkpoint folder (`model/` or `ema/` and `scheduler/`, e.g.
//! `runs/fashion-small/step-400`), `STEPS` the students' step count and each `STUDENT_MODEL` a model folder (e.g.
//! `runs/distill-progressive/round-1/ema`). The teacher's EMA weights are used; the run's scheduler says the
//! schedule, the prediction and the clipping.

use diffuse_autograd::Var;
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::distill::progressive::{
    ddim_step, distillation_target, output_target, student_grid, student_loss, teacher_two_steps,
};
use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{Condition, Denoiser};
use diffuse_diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

type Error = Box<dyn std::error::Error>;

/// The network of a diffusers model folder.
fn load(dir: &Path) -> Result<Backbone, Error> {
    let config = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
    let store = ParamStore::new(0, Device::Cpu);
    let model = Backbone::new(BackboneConfig::from_json_str(&config)?, &store)?;
    store.load(dir.join("diffusion_pytorch_model.safetensors"))?;
    Ok(model)
}

fn mse(a: &Tensor, b: &Tensor) -> Result<f64, Error> {
    let (a, b) = (a.to_vec()?, b.to_vec()?);
    let sum: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum();
    Ok(sum / a.len() as f64)
}

fn main() -> Result<(), Error> {
    diffuse_tensor::pool_with_calling_thread()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [run, steps, students @ ..] = args.as_slice() else {
        return Err("usage: distill_probe TEACHER_RUN STEPS STUDENT_MODEL...".into());
    };
    let run = Path::new(run);
    let steps: usize = steps.parse().map_err(|e| format!("STEPS {steps}: {e}"))?;
    let teacher = load(&run.join("ema"))?;
    let students = students
        .iter()
        .map(|dir| load(Path::new(dir)))
        .collect::<Result<Vec<_>, _>>()?;
    let config = SchedulerConfig::from_file(&run.join("scheduler/scheduler_config.json"))?;
    let schedule = NoiseSchedule::from_config(&config)?;
    let scheduler = Scheduler::from_config(&config)?;
    let (prediction, limit) = (scheduler.prediction(), scheduler.options.x0_limit());
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist"),
        Split::Test,
    )?;
    let n = 64;
    let indices: Vec<usize> = (0..n).map(|i| i * 37 % data.len()).collect();
    let (pixels, labels) = data.batch(&indices, None)?;
    let x0 = Tensor::from_vec(
        pixels,
        &[n, data.channels, data.height, data.width],
        Device::Cpu,
    )?;
    let cond = Condition::class_opt(Some(&labels));
    let teacher_denoiser = ModelDenoiser {
        model: &teacher,
        prediction,
    };
    for step in student_grid(schedule.len(), steps)? {
        let picks = vec![step; n];
        let t = vec![step.t; n];
        let (x_t, _) = q_sample(&schedule, &x0, &t, 7, 0)?;
        let teacher_steps =
            teacher_two_steps(&teacher_denoiser, &schedule, limit, &x_t, &picks, cond)?;
        let x_next = &teacher_steps.landing;
        let distill_target = distillation_target(&schedule, limit, &x_t, &teacher_steps, &picks)?;
        let target = output_target(&schedule, prediction, &x_t, &distill_target.x0, &picks)?;
        let largest = distill_target
            .x0
            .to_vec()?
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let mut line = format!("t={:4} |x~|max={largest:.2}", step.t);
        for (k, model) in std::iter::once(&teacher).chain(&students).enumerate() {
            let out =
                ModelDenoiser { model, prediction }.predict(&x_t, &vec![step.t as f64; n], cond)?;
            let land = ddim_step(
                &schedule,
                prediction,
                limit,
                &x_t,
                &out,
                &t,
                &vec![step.next; n],
            )?;
            let loss = student_loss(
                &schedule,
                prediction,
                &x_t,
                &Var::constant(out.clone()),
                &distill_target,
                &picks,
            )?
            .mean_all()?
            .tensor()
            .to_scalar()?;
            line += &format!(
                " | m{k}: out {:.3e} loss {loss:.3e} land {:.3e}",
                mse(&out, &target)?,
                mse(&land, x_next)?
            );
        }
        println!("{line}");
    }
    Ok(())
}
