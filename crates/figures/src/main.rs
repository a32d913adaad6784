//! `diffuse-figures`: the figures of `docs/`, drawn from the project's own code so that they stay true.
//!
//! ```text
//! cargo run --release -p diffuse-figures -- all                      # every figure that needs no trained model
//! cargo run --release -p diffuse-figures -- guidance --checkpoint runs/fashion-small
//! cargo run --release -p diffuse-figures -- roofline --criterion target/criterion
//! cargo run --release -p diffuse-figures -- distill --results runs/distill-table/results --out runs/distill-table
//! cargo run --release -p diffuse-figures -- dit-scaling --runs runs/dit-scaling --out runs/dit-scaling
//! ```
//!
//! Each subcommand writes PNGs into `--out` (default `docs/images`) and prints what it wrote.

mod distill_table;
mod dit_scaling;
mod forward_grid;
mod guidance;
mod mixture;
mod roofline;
mod samplers;
mod schedules;
mod sweep;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "diffuse-figures",
    about = "Draws the figures of docs/ from the project's own code"
)]
struct Cli {
    /// The folder the PNGs go to.
    #[arg(long, global = true, default_value = "docs/images")]
    out: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// ᾱ_t and log-SNR of every beta schedule (schedules-alpha-bar.png, schedules-log-snr.png).
    Schedules,
    /// Real images through the forward process under two schedules (forward-process.png).
    Forward(forward_grid::ForwardArgs),
    /// Sampler paths and the error-against-steps plot on an exactly known 2-D Gaussian mixture
    /// (sampler-paths.png, sampler-convergence.png).
    Samplers,
    /// Every figure above.
    All(forward_grid::ForwardArgs),
    /// Samples and scores of a trained class-conditional model against the guidance scale (guidance-grid.png,
    /// guidance-metrics.png).
    Guidance(guidance::GuidanceArgs),
    /// Roofline of the CPU kernels from criterion's results (roofline-cpu.png).
    Roofline(roofline::RooflineArgs),
    /// The few-step table and plot of scripts/distill-table.sh's evaluations (distill-table.md, distill-fd.png).
    Distill(distill_table::DistillArgs),
    /// FD against GFLOPs of the DiT sizes that scripts/dit-scaling.sh trains (dit-scaling.md, dit-scaling.png).
    DitScaling(dit_scaling::DitScalingArgs),
    /// FD against steps, one line per sampler, from `diffuse eval --sweep-steps … --json FILE` (sampler-sweep.png).
    Sweep(sweep::SweepArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(&cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    std::fs::create_dir_all(&cli.out)
        .map_err(|e| format!("cannot create {}: {e}", cli.out.display()))?;
    match &cli.command {
        Command::Schedules => schedules::draw(&cli.out),
        Command::Forward(args) => forward_grid::draw(args, &cli.out),
        Command::Samplers => samplers::draw(&cli.out),
        Command::All(args) => {
            schedules::draw(&cli.out)?;
            forward_grid::draw(args, &cli.out)?;
            samplers::draw(&cli.out)
        }
        Command::Guidance(args) => guidance::draw(args, &cli.out),
        Command::Roofline(args) => roofline::draw(args, &cli.out),
        Command::Distill(args) => distill_table::draw(args, &cli.out),
        Command::Sweep(args) => sweep::draw(args, &cli.out),
        Command::DitScaling(args) => dit_scaling::draw(args, &cli.out),
    }
}

/// Saves `figure` as `out/name` and says so.
fn save(figure: &diffuse_plot::Figure, out: &Path, name: &str) -> Result<(), String> {
    let path = out.join(name);
    figure.save(&path)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
