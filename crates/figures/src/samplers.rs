//! Two pictures of the samplers, with the exact denoiser of a 2-D Gaussian mixture ([`crate::mixture`]) and the
//! linear schedule (T = 1000), the setting of the sampler tests:
//!
//! - `sampler-paths.png`: from the same eight starting noises, the points where each sampler evaluates the network
//!   (variance-preserving x_t), joined in order, ending at its sample; the data's own draws in grey underneath;
//! - `sampler-convergence.png`: the RMS distance, over 256 starting noises, between each deterministic sampler with N
//!   steps and Heun with 1000 steps, against N on log-log axes, with slopes 1/N and 1/N² for comparison. This is the
//!   quantity `ode_samplers_converge_at_their_order` asserts on (its ratios between 32 and 64 steps).

use crate::mixture::Mixture;
use diffuse_diffusion::sampler::{
    Condition, Ddim, DpmSolver, Euler, Sampler, SamplerOptions, SigmaRange, SigmaSchedule,
    SigmaSpacing,
};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing, VarianceType};
use diffuse_plot::{Axis, Chart, Figure, Legend, Panel, Series};
use diffuse_tensor::Device;
use std::path::Path;

fn linear_schedule() -> Result<NoiseSchedule, String> {
    NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).map_err(|e| e.to_string())
}

/// Runs `sampler` on `batch` 2-D points from seed `seed`; returns the samples.
fn run(
    sampler: &Sampler,
    model: &Mixture,
    schedule: &NoiseSchedule,
    steps: usize,
    batch: usize,
    seed: u64,
) -> Result<Vec<f32>, String> {
    // The sampler tests' setting: trailing timesteps (the first is T − 1), the σ-samplers on the Karras ramp over
    // the whole training range.
    let options = SamplerOptions {
        steps,
        seed,
        spacing: TimestepSpacing::Trailing,
        sigmas: SigmaSchedule {
            spacing: SigmaSpacing::Karras,
            range: SigmaRange::Training,
            ..SigmaSchedule::default()
        },
        ..SamplerOptions::default()
    };
    sampler
        .sample(
            model,
            schedule,
            &options,
            &[batch, 2],
            Device::Cpu,
            Condition::NONE,
        )
        .and_then(|x| Ok(x.to_vec()?))
        .map_err(|e| e.to_string())
}

pub fn draw(out: &Path) -> Result<(), String> {
    paths(out)?;
    convergence(out)
}

fn paths(out: &Path) -> Result<(), String> {
    let schedule = linear_schedule()?;
    let panels = [
        (
            Sampler::Ddpm {
                variance: VarianceType::FixedSmall,
            },
            50,
            "DDPM (ancestral), 50 steps",
        ),
        (Sampler::Ddim(Ddim::default()), 10, "DDIM (η = 0), 10 steps"),
        (
            Sampler::Euler(Euler::default()),
            10,
            "Euler on the Karras σ ramp, 10 steps",
        ),
        (
            Sampler::DpmSolver(DpmSolver::default()),
            10,
            "DPM-Solver++(2M), 10 steps",
        ),
    ];
    let mut charts = Vec::new();
    for (sampler, steps, title) in panels {
        // The random walks of the ancestral sampler are read best a few at a time.
        let starts = if steps == 50 { 3 } else { 6 };
        let model = Mixture::three_blobs(&schedule).map_err(|e| e.to_string())?;
        let samples = run(&sampler, &model, &schedule, steps, starts, 3)?;
        let calls = model.calls.borrow();
        let mut chart = Chart::new(
            title,
            Axis::linear("x₁").range(-3.0, 3.0),
            Axis::linear("x₂").range(-3.0, 3.0),
        )
        .with(Series::dots("data", model.data(400)))
        .legend(Legend::LowerLeft);
        for k in 0..starts {
            let mut path: Vec<(f64, f64)> = calls
                .iter()
                .map(|x| (f64::from(x[2 * k]), f64::from(x[2 * k + 1])))
                .collect();
            path.push((f64::from(samples[2 * k]), f64::from(samples[2 * k + 1])));
            chart = chart.with(Series::line_markers("", path).color(k));
        }
        charts.push(chart);
    }
    let bottom = charts.split_off(2);
    let figure = Figure {
        width: 1200,
        height: 1200,
        panels: vec![(Panel::Row(charts), 1.0), (Panel::Row(bottom), 1.0)],
    };
    crate::save(&figure, out, "sampler-paths.png")
}

fn convergence(out: &Path) -> Result<(), String> {
    let schedule = linear_schedule()?;
    let model = Mixture::of_the_tests(&schedule).map_err(|e| e.to_string())?;
    let (batch, seed) = (256, 9);
    let reference = run(&Sampler::Heun, &model, &schedule, 1000, batch, seed)?;
    let steps = [4usize, 8, 16, 32, 64, 128];
    let mut chart = Chart::new(
        "Error against steps on a Gaussian mixture (exact denoiser)",
        Axis::log("steps N"),
        Axis::log("RMS distance to Heun with 1000 steps"),
    )
    .legend(Legend::LowerLeft);
    let mut at_32 = Vec::new();
    for (sampler, name) in [
        (Sampler::Euler(Euler::default()), "Euler"),
        (Sampler::Ddim(Ddim::default()), "DDIM (η = 0)"),
        (Sampler::Heun, "Heun"),
        (Sampler::DpmSolver(DpmSolver::default()), "DPM-Solver++(2M)"),
    ] {
        let mut points = Vec::new();
        for &n in &steps {
            let x = run(&sampler, &model, &schedule, n, batch, seed)?;
            let sq: f64 = x
                .iter()
                .zip(&reference)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum();
            points.push((n as f64, (sq / x.len() as f64).sqrt()));
        }
        at_32.push(points[3].1);
        chart = chart.with(Series::line_markers(name, points));
    }
    // Reference slopes through the first-order and second-order errors at 32 steps, dashed, in the two colours no
    // sampler uses (grey for 1/N, orange for 1/N²).
    let first = at_32[0];
    let second = at_32[2];
    chart = chart
        .with(
            Series::dashed(
                "∝ 1/N",
                steps
                    .iter()
                    .map(|&n| (n as f64, first * 32.0 / n as f64))
                    .collect(),
            )
            .color(6),
        )
        .with(
            Series::dashed(
                "∝ 1/N²",
                steps
                    .iter()
                    .map(|&n| (n as f64, second * (32.0 / n as f64).powi(2)))
                    .collect(),
            )
            .color(4),
        );
    crate::save(&Figure::single(chart), out, "sampler-convergence.png")
}
