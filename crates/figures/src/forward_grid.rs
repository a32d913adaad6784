//! Real images through the forward process: one Fashion-MNIST image per row, noised to x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε
//! by `diffusion::forward::q_sample` (the training step's own kernel) at the same timesteps and the same ε under the
//! linear and the cosine schedule, so the rows differ only in ᾱ_t.

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_plot::{Figure, ImageGrid, Panel, RgbImage};
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// The data folder (its training split).
    #[arg(long, default_value = "data/fashion-mnist")]
    data: PathBuf,
}

const TIMESTEPS: [usize; 7] = [0, 50, 100, 250, 500, 750, 999];

pub fn draw(args: &ForwardArgs, out: &Path) -> Result<(), String> {
    let data = Dataset::load(&args.data, Split::Train)
        .map_err(|e| format!("{}: {e}", args.data.display()))?;
    // Two garments with different shapes: the first T-shirt (class 0) and the first sneaker (class 7).
    let labels = data.labels.as_ref().ok_or("the data has no labels")?;
    let pick = |class: u32| {
        labels
            .iter()
            .position(|&l| l == class)
            .ok_or_else(|| format!("no image of class {class}"))
    };
    let len = data.image_len();
    let (c, h, w) = (data.channels, data.height, data.width);
    let mut images = Vec::new();
    let mut rows = Vec::new();
    for (index, garment) in [(pick(0)?, "T-shirt"), (pick(7)?, "sneaker")] {
        let x0 = &data.images[index * len..(index + 1) * len];
        for schedule in [BetaSchedule::Linear, BetaSchedule::SquaredcosCapV2] {
            let s =
                NoiseSchedule::new(schedule, 1000, 1e-4, 0.02, false).map_err(|e| e.to_string())?;
            let batch: Vec<f32> = x0.repeat(TIMESTEPS.len());
            let x0 = Tensor::from_vec(batch, &[TIMESTEPS.len(), c, h, w], Device::Cpu)
                .map_err(|e| e.to_string())?;
            // The same ε for every row: seed 7, offset 0.
            let (x_t, _) = q_sample(&s, &x0, &TIMESTEPS, 7, 0).map_err(|e| e.to_string())?;
            let values = x_t.to_vec().map_err(|e| e.to_string())?;
            for image in values.chunks_exact(len) {
                images.push(RgbImage::from_signed_unit(c, h, w, image)?);
            }
            let name = match schedule {
                BetaSchedule::Linear => "linear",
                _ => "cosine",
            };
            rows.push(format!("{garment}, {name}"));
        }
    }
    let columns = TIMESTEPS.iter().map(|&t| format!("index {t}")).collect();
    let grid = ImageGrid {
        title: "The forward process on Fashion-MNIST: linear and cosine schedules, the same ε"
            .into(),
        images,
        columns: TIMESTEPS.len(),
        row_labels: rows,
        column_labels: columns,
    };
    let figure = Figure {
        width: 1200,
        height: 660,
        panels: vec![(Panel::Images(grid), 1.0)],
    };
    crate::save(&figure, out, "forward-process.png")
}
