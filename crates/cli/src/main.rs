//! `diffuse`: the command-line front end of the diffuse workspace.

mod cascade;
mod classifier;
mod clip;
mod consistency;
mod datasets;
mod device;
mod devices;
mod distill;
mod edit;
mod edit_eval;
mod edit_eval_conditioned;
mod eval;
mod eval_table;
mod files;
mod fit_config;
mod forward;
mod grid;
mod info;
mod interrupt;
mod latent;
mod launch;
mod memory_check;
mod nll;
mod numbers;
mod plots;
mod precision;
mod prompt;
mod prompt_eval;
mod sample;
mod sampling;
mod score;
mod scoring;
mod sde_train;
mod tensor_file;
mod text_train;
mod train;
mod train_eval;
mod training_grids;
mod vae;
mod vae_codec;
mod vae_eval;
mod vae_train;

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
    /// Distil a trained run into a few-step student: progressive distillation or consistency distillation.
    #[command(subcommand)]
    Distill(distill::DistillCommand),
    /// Draw samples from a denoising network (a diffusers pipeline or model folder, a run folder, or a checkpoint)
    /// with the sampler its scheduler config names or another.
    Sample(Box<sample::SampleArgs>),
    /// Score a trained U-Net: FD, accuracy, IS-style score, precision/recall in a classifier's feature space (the
    /// shipped Fashion-MNIST one, or --classifier), and optionally bits/dim, the floor, and a sweep over sampling
    /// steps.
    Eval(Box<eval::EvalArgs>),
    /// Measure editing on the shipped data: SDEdit's distance to the guide against FD over strengths, or RePaint's
    /// FD and class accuracy on masked training images.
    EvalEdit(Box<edit_eval::EvalEditArgs>),
    /// The feature extractor of the metrics for another dataset: train a classifier on its labelled images, or
    /// measure one's accuracy.
    #[command(subcommand)]
    Classifier(classifier::ClassifierCommand),
    /// The autoencoder of latent diffusion: train it, encode images to latents, decode latents, score it.
    #[command(subcommand)]
    Vae(vae::VaeCommand),
    /// CLIP: contrastive pre-training of a text encoder and an image encoder on captioned images, and its
    /// zero-shot and retrieval evaluation.
    #[command(subcommand)]
    Clip(clip::ClipCommand),
    /// Describe a diffusers pipeline, model folder (a denoiser's or an autoencoder's), training run or checkpoint,
    /// and the sampler `sample` would use; with --devices, the devices this machine has.
    Info(Box<info::InfoArgs>),
}

fn main() {
    // The CPU kernels' parallel loops start on this thread instead of waking the pool and sleeping until it is done
    // (thousands of hand-offs per training step). Nothing has used the pool yet, so this cannot fail; if it did, the
    // default pool computes the same results.
    if let Err(e) = diffuse_tensor::pool_with_calling_thread() {
        eprintln!("warning: the main thread is not in the CPU thread pool ({e})");
    }
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Train(args) => train::run(args),
        Command::Distill(command) => distill::run(command),
        Command::Sample(args) => sample::run(args),
        Command::Eval(args) => eval::run(args),
        Command::EvalEdit(args) => edit_eval::run(args),
        Command::Info(args) => info::run(args),
        Command::Vae(command) => vae::run(command),
        Command::Classifier(command) => classifier::run(command),
        Command::Clip(command) => clip::run(command),
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
