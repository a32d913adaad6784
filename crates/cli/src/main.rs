//! `diffuse`: the command-line front end of the diffuse workspace.

mod device;
mod eval;
mod eval_table;
mod files;
mod forward;
mod grid;
mod info;
mod interrupt;
mod nll;
mod plots;
mod sample;
mod sampling;
mod score;
mod scoring;
mod sde_train;
mod train;
mod train_eval;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "diffuse", version, about = "Diffusion models from the metal up", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the forward (noising) process on dataset images as a grid: rows are images, columns timesteps.
    Forward(forward::ForwardArgs),
    /// Train a U-Net on an image dataset, with EMA, atomic checkpoints, sample grids and metrics.
    Train(Box<train::TrainArgs>),
    /// Draw samples from a trained U-Net (a run folder, a checkpoint, or a diffusers model folder).
    Sample(Box<sample::SampleArgs>),
    /// Score a trained U-Net: FD, accuracy, IS-style score, precision/recall in the Fashion-MNIST classifier's
    /// feature space, and optionally bits/dim, the floor, and a sweep over sampling steps.
    Eval(Box<eval::EvalArgs>),
    /// Describe a training run, checkpoint or diffusers model folder.
    Info {
        /// The folder.
        dir: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Info { dir } => info::run(dir),
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
