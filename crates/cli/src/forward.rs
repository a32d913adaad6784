//! `diffuse forward`: shows the forward process on real images. Each row is one training image; each column noises it
//! to a later timestep, from x_0 on the left to x_{T−1} (almost pure noise) on the right, so a reader sees how the
//! chosen schedule destroys information.

use crate::datasets::{DataSource, SHIPPED_DATA};
use crate::grid::Grid;
use clap::Args;
use diffuse_diffusion::data::{FolderOptions, Split};
use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Dataset: a folder of images or IDX files, or `fashion-mnist`, the shipped subset compiled into the binary.
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Beta schedule: linear, scaled_linear, squaredcos_cap_v2, sigmoid or laplace.
    #[arg(long, default_value = "linear")]
    schedule: String,
    /// Number of training timesteps T.
    #[arg(long, default_value_t = 1000)]
    timesteps: usize,
    /// Images (rows of the grid).
    #[arg(long, default_value_t = 8)]
    images: usize,
    /// Timesteps shown (columns of the grid), evenly spaced from 0 to T−1.
    #[arg(long, default_value_t = 11)]
    steps: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output PNG.
    #[arg(long, default_value = "forward.png")]
    out: PathBuf,
}

pub fn run(args: &ForwardArgs) -> Result<(), String> {
    if args.images == 0 || args.steps < 2 {
        return Err("--images must be at least 1 and --steps at least 2".into());
    }
    let kind = BetaSchedule::from_name(&args.schedule).ok_or_else(|| {
        format!("unknown --schedule '{}' (expected linear, scaled_linear, squaredcos_cap_v2, sigmoid or laplace)", args.schedule)
    })?;
    let (beta_start, beta_end) = match kind {
        BetaSchedule::ScaledLinear => (0.00085, 0.012),
        _ => (1e-4, 0.02),
    };
    let schedule = NoiseSchedule::new(kind, args.timesteps, beta_start, beta_end, false)
        .map_err(|e| e.to_string())?;
    let data = DataSource::named(&args.data)?.load(Split::Train, &FolderOptions::default())?;
    let count = args.images.min(data.len());
    let indices: Vec<usize> = (0..count).collect();
    let (pixels, _) = data.batch(&indices, None).map_err(|e| e.to_string())?;
    let shape = [count, data.channels, data.height, data.width];
    let x0 = Tensor::from_vec(pixels, &shape, Device::Cpu).map_err(|e| e.to_string())?;

    let columns: Vec<usize> = (0..args.steps)
        .map(|j| j * (args.timesteps - 1) / (args.steps - 1))
        .collect();
    let bar = ProgressBar::new(columns.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} timesteps  {msg}")
            .map_err(|e| e.to_string())?,
    );
    let mut noised = Vec::with_capacity(columns.len());
    println!("{:>6} {:>12} {:>12}", "t", "alpha_bar", "SNR");
    for &t in &columns {
        let (x_t, _) =
            q_sample(&schedule, &x0, &vec![t; count], args.seed, 0).map_err(|e| e.to_string())?;
        noised.push(x_t.to_vec().map_err(|e| e.to_string())?);
        let ab = schedule.alpha_bar(t).map_err(|e| e.to_string())?;
        bar.suspend(|| println!("{t:>6} {ab:>12.6} {:>12.4e}", ab / (1.0 - ab)));
        bar.inc(1);
    }
    bar.finish_and_clear();

    // Reorder to rows = images, columns = timesteps.
    let image_len = data.image_len();
    let mut grid = Vec::with_capacity(count * columns.len() * image_len);
    for n in 0..count {
        for column in &noised {
            grid.extend_from_slice(&column[n * image_len..(n + 1) * image_len]);
        }
    }
    Grid {
        pixels: &grid,
        count: count * columns.len(),
        channels: data.channels,
        height: data.height,
        width: data.width,
        columns: columns.len(),
    }
    .save(&args.out)?;
    println!(
        "wrote {} ({count} images × {} timesteps, {} schedule)",
        args.out.display(),
        columns.len(),
        kind.name()
    );
    Ok(())
}
