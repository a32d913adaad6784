//! `diffuse`: the command-line front end of the diffuse workspace.

mod device;
mod devices;
mod eval;
mod eval_table;
mod files;
mod forward;
mod grid;
mod info;
mod interrupt;
mod plots;
mod precision;
mod sample;
mod sampling;
mod scoring;
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
    /// Describe a training run, checkpoint or diffusers model folder; with --devices, the devices this machine has.
    Info {
        /// The folder.
        #[arg(required_unless_present = "devices")]
        dir: Option<std::path::PathBuf>,
        /// List the CPU and every CUDA device the driver sees, whether each opens, and what --device auto picks.
        #[arg(long)]
        devices: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Train(args) => train::run(args),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Info { dir, devices } => {
            let listed = if *devices { devices::run() } else { Ok(()) };
            listed.and(dir.as_deref().map_or(Ok(()), info::run))
        }
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
