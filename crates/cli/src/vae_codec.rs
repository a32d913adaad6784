//! `diffuse vae encode` and `diffuse vae decode`: images to latents and back, so that a user can look at latents and
//! reconstructions and compare them with diffusers' (`AutoencoderKL.encode(x).latent_dist`, `.decode(z).sample`).
//!
//! ```text
//! encode: images (PNG file, PNG folder, or a safetensors tensor (N, C, H, W) in [−1, 1])
//!         → OUT.safetensors: mean, logvar (diffusers' posterior, unscaled),
//!                            latents = (z − shift_factor)·scaling_factor, z = mean (or a posterior sample)
//! decode: a safetensors tensor of latents (scaled, as `encode` writes and a latent diffusion model samples them;
//!         --unscaled for the autoencoder's own space) → a PNG grid (clamped to [−1, 1]), optionally the images as
//!         a tensor (unclamped, as diffusers' decode returns them)
//! ```

use crate::device::DeviceArgs;
use crate::grid::Grid;
use crate::tensor_file::{read_tensor, write_tensors};
use crate::vae::load_vae;
use clap::Args;
use diffuse_diffusion::data::image_folder::IMAGE_EXTENSIONS;
use diffuse_diffusion::data::{read_image, read_image_folder, FolderOptions};
use diffuse_models::vae::AutoencoderKL;
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

/// Images or latents per model batch.
const BATCH: usize = 64;

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The autoencoder: a `diffuse vae train` run or checkpoint, a pipeline folder with vae/, or a vae/ folder.
    #[arg(long)]
    vae: PathBuf,
    /// Use the EMA weights of a training run or checkpoint (false: the live weights).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ema: bool,
    /// A PNG or JPEG image, a folder of them, or a safetensors file of images (N, C, H, W) in [−1, 1].
    #[arg(long)]
    input: PathBuf,
    /// The tensor to read from a safetensors --input.  [default: its only tensor]
    #[arg(long)]
    tensor: Option<String>,
    /// The safetensors file written: mean, logvar and the scaled latents.
    #[arg(long, default_value = "latents.safetensors")]
    out: PathBuf,
    /// Latents from a posterior sample (seeded by --seed) instead of the posterior mean.  [default: the mean]
    #[arg(long, default_value_t = false)]
    sample: bool,
    /// Seed of the posterior sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct DecodeArgs {
    /// The autoencoder: a `diffuse vae train` run or checkpoint, a pipeline folder with vae/, or a vae/ folder.
    #[arg(long)]
    vae: PathBuf,
    /// Use the EMA weights of a training run or checkpoint (false: the live weights).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ema: bool,
    /// A safetensors file of latents (N, latent_channels, h, w).
    #[arg(long)]
    input: PathBuf,
    /// The tensor to read.  [default: "latents" if present, else the file's only tensor]
    #[arg(long)]
    tensor: Option<String>,
    /// The latents are in the autoencoder's own space, not scaled by scaling_factor (and shifted).  [default: scaled]
    #[arg(long, default_value_t = false)]
    unscaled: bool,
    /// The PNG grid of the decoded images.
    #[arg(long, default_value = "decoded.png")]
    out: PathBuf,
    /// Also write the decoded images (N, C, H, W) as the tensor "images" of a safetensors file.  [default: none]
    #[arg(long)]
    out_tensor: Option<PathBuf>,
    /// Images per row of the grid.
    #[arg(long, default_value_t = 8)]
    columns: usize,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The images a PNG or JPEG file, a folder of them or a safetensors file (its tensor `tensor`, or its only one)
/// holds, as (N, C, H, W) in [−1, 1].
pub fn read_images(input: &Path, tensor: Option<&str>) -> Result<Tensor, String> {
    let from_values = |values: Vec<f32>, shape: &[usize]| {
        Tensor::from_vec(values, shape, Device::Cpu).map_err(|e| e.to_string())
    };
    if input.is_dir() {
        let folder =
            read_image_folder(input, &FolderOptions::default()).map_err(|e| e.to_string())?;
        let n = folder.files.len();
        return from_values(
            folder.values,
            &[n, folder.channels, folder.height, folder.width],
        );
    }
    let is_image = input.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    });
    if is_image {
        let image = read_image(input).map_err(|e| e.to_string())?;
        let channels = if image.has_color() { 3 } else { 1 };
        let shape = [1, channels, image.height(), image.width()];
        return from_values(image.planar(channels, None), &shape);
    }
    let images = read_tensor(input, tensor)?;
    if images.rank() != 4 {
        return Err(format!(
            "{}: the images must be a tensor (N, C, H, W), got shape {:?}",
            input.display(),
            images.shape()
        ));
    }
    Ok(images)
}

/// Checks that `vae` was made for images of this channel count and size, naming both sides.
fn check_images(vae: &AutoencoderKL, shape: &[usize], source: &Path) -> Result<(), String> {
    let c = vae.config();
    let (h, w) = c.sample_size.height_width();
    if shape[1..] != [c.in_channels, h, w] {
        return Err(format!(
            "{} holds {}×{}×{} images but the autoencoder was made for {}×{h}×{w} (its in_channels and sample_size)",
            source.display(),
            shape[1],
            shape[2],
            shape[3],
            c.in_channels
        ));
    }
    Ok(())
}

/// `f` over `x` in batches of [`BATCH`] along the first axis (each moved to `device`), the results concatenated on
/// the CPU.
fn batched(
    x: &Tensor,
    device: Device,
    f: impl Fn(&Tensor) -> diffuse_models::Result<Tensor>,
) -> Result<Tensor, String> {
    let n = x.shape()[0];
    let mut parts = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - start);
        let part = x
            .narrow(0, start, count)
            .and_then(|p| p.contiguous())
            .and_then(|p| p.to_device(device))
            .map_err(|e| e.to_string())?;
        let out = f(&part).map_err(|e| e.to_string())?;
        parts.push(out.to_device(Device::Cpu).map_err(|e| e.to_string())?);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::concat(&refs, 0).map_err(|e| e.to_string())
}

pub fn encode(args: &EncodeArgs) -> Result<(), String> {
    let device = args.device.resolve()?;
    let (vae, _store, vae_dir) = load_vae(&args.vae, args.ema, device)?;
    let images = read_images(&args.input, args.tensor.as_deref())?;
    check_images(&vae, images.shape(), &args.input)?;
    let moments = batched(&images, device, |x| {
        let (mean, logvar) = vae.encode_tensor(x)?;
        Ok(Tensor::concat(&[&mean, &logvar], 1)?)
    })?;
    let l = vae.config().latent_channels;
    let err = |e: diffuse_tensor::Error| e.to_string();
    let mean = moments
        .narrow(1, 0, l)
        .and_then(|t| t.contiguous())
        .map_err(err)?;
    let logvar = moments
        .narrow(1, l, l)
        .and_then(|t| t.contiguous())
        .map_err(err)?;
    let z = if args.sample {
        let eps = Tensor::randn(mean.shape(), args.seed, 0, Device::Cpu).map_err(err)?;
        let std = logvar.mul_scalar(0.5).and_then(|t| t.exp()).map_err(err)?;
        mean.add(&std.mul(&eps).map_err(err)?).map_err(err)?
    } else {
        mean.clone()
    };
    let latents = vae.scale_latents(&z).map_err(|e| e.to_string())?;
    write_tensors(
        &args.out,
        &[("mean", &mean), ("logvar", &logvar), ("latents", &latents)],
    )?;
    eprintln!(
        "{} images → latents {:?} (scaling_factor {}, {} of the posterior) from {} in {}",
        images.shape()[0],
        latents.shape(),
        vae.config().scaling_factor,
        if args.sample { "a sample" } else { "the mean" },
        vae_dir.display(),
        args.out.display()
    );
    Ok(())
}

/// Decodes latents (N, L, h, w) in the diffusion model's scaled space (unscaled first) or, with `unscaled`, in the
/// autoencoder's own: the images (N, C, H, W) as the decoder gives them (not clamped, as diffusers' `decode`).
pub fn decode_latents(
    vae: &AutoencoderKL,
    latents: &Tensor,
    unscaled: bool,
) -> Result<Tensor, String> {
    let l = vae.config().latent_channels;
    if latents.rank() != 4 || latents.shape()[1] != l {
        return Err(format!(
            "the latents are {:?} but the autoencoder decodes (N, {l}, h, w) (its latent_channels)",
            latents.shape()
        ));
    }
    let z = if unscaled {
        latents.clone()
    } else {
        vae.unscale_latents(latents).map_err(|e| e.to_string())?
    };
    batched(&z, vae.device(), |z| vae.decode_tensor(z))
}

pub fn decode(args: &DecodeArgs) -> Result<(), String> {
    let device = args.device.resolve()?;
    let (vae, _store, vae_dir) = load_vae(&args.vae, args.ema, device)?;
    let name = match &args.tensor {
        Some(name) => Some(name.as_str()),
        None => {
            // "latents" when `encode` wrote the file, else the only tensor.
            let has_latents = read_tensor(&args.input, Some("latents")).is_ok();
            has_latents.then_some("latents")
        }
    };
    let latents = read_tensor(&args.input, name)?;
    let images = decode_latents(&vae, &latents, args.unscaled)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let shape = images.shape().to_vec();
    Grid {
        pixels: &images.to_vec().map_err(|e| e.to_string())?,
        count: shape[0],
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        columns: args.columns,
    }
    .save(&args.out)?;
    if let Some(path) = &args.out_tensor {
        write_tensors(path, &[("images", &images)])?;
    }
    eprintln!(
        "{} latents {:?} → images {:?} with {} in {}",
        shape[0],
        latents.shape(),
        shape,
        vae_dir.display(),
        args.out.display()
    );
    Ok(())
}
