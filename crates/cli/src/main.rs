//! `diffuse`: the command-line front end of the diffuse workspace.

mod files;
mod forward;
mod grid;
mod interrupt;
mod plot;
mod sampling;
mod train;

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
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Train(args) => train::run(args),
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
