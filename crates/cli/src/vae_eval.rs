//! `diffuse vae eval`: how well an autoencoder reconstructs the test images. Each image is encoded to its posterior
//! mean and decoded (diffusers' `AutoencoderKL.forward`), the result clamped to [−1, 1] as a saved image would be,
//! and scored against the original:
//!
//! - PSNR and SSIM, averaged over images ([`diffuse_diffusion::eval::reconstruction`]);
//! - for 28×28 grey images, the reconstructions scored as samples by `diffuse eval`'s metrics against the test set
//!   itself in the Fashion-MNIST classifier's features: the reconstruction Fréchet distance (rFD, what the
//!   autoencoder alone costs a latent model's FD) and the classifier's accuracy on the reconstructions.

use crate::datasets::{DataSource, SHIPPED_DATA};
use crate::device::DeviceArgs;
use crate::scoring::{check_image_shape, first_images, load_classifier, DEFAULT_CLASSIFIER};
use crate::vae::load_vae;
use crate::vae_codec::decode_latents;
use clap::Args;
use diffuse_diffusion::data::{FolderOptions, Split};
use diffuse_diffusion::eval::reconstruction::reconstruction_quality;
use diffuse_diffusion::eval::{evaluate_samples, EvalReport, ReferenceFeatures};
use diffuse_tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;

/// Images per encoder/decoder batch.
const BATCH: usize = 250;

#[derive(Args, Debug)]
pub struct VaeEvalArgs {
    /// The autoencoder: a `diffuse vae train` run or checkpoint, a pipeline folder with vae/, or a vae/ folder.
    #[arg(long)]
    vae: PathBuf,
    /// Use the EMA weights of a training run or checkpoint (false: the live weights).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ema: bool,
    /// The dataset whose test split is reconstructed: a folder, or `fashion-mnist`, the shipped subset.
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Test images to reconstruct (the first N; all 10,000 of Fashion-MNIST by default).
    #[arg(long, default_value_t = 10_000)]
    num: usize,
    /// The feature extractor of the Fréchet distance.
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    classifier: PathBuf,
    /// Write the settings and the figures as JSON to this file.  [default: none]
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

pub fn run(args: &VaeEvalArgs) -> Result<(), String> {
    if args.num < 2 {
        return Err(format!("--num must be at least 2, got {}", args.num));
    }
    let device = args.device.resolve()?;
    let (vae, _store, vae_dir) = load_vae(&args.vae, args.ema, device)?;
    let source = DataSource::named(&args.data)?;
    let test = source.load(Split::Test, &FolderOptions::default())?;
    diffuse_diffusion::autoencoder::latents::check_images(&vae, &test)
        .map_err(|e| format!("the test split of {source}: {e}"))?;
    let classifier = load_classifier(&args.classifier)?;
    let scored =
        check_image_shape(&classifier, "", (test.channels, test.height, test.width)).is_ok();
    let classifier = scored.then_some(classifier);
    let (originals, labels) = first_images(&test, args.num)?;
    let n = originals.shape()[0];
    eprintln!(
        "reconstructing {n} test images of {source} with {}",
        vae_dir.display()
    );
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let mut pixels = Vec::with_capacity(originals.numel());
    for start in (0..n).step_by(BATCH) {
        let count = BATCH.min(n - start);
        let batch = originals
            .narrow(0, start, count)
            .and_then(|t| t.contiguous())
            .and_then(|t| t.to_device(device))
            .map_err(|e| e.to_string())?;
        let (mean, _) = vae.encode_tensor(&batch).map_err(|e| e.to_string())?;
        let decoded = decode_latents(&vae, &mean, true)?;
        let clamped = decoded.clamp(-1.0, 1.0).map_err(|e| e.to_string())?;
        pixels.extend(clamped.to_vec().map_err(|e| e.to_string())?);
        bar.inc(count as u64);
    }
    bar.finish_and_clear();
    let original_pixels = originals.to_vec().map_err(|e| e.to_string())?;
    let (psnr, ssim) = reconstruction_quality(
        &original_pixels,
        &pixels,
        (test.channels, test.height, test.width),
    )
    .map_err(|e| e.to_string())?;
    println!("images       {n}");
    println!("PSNR         {psnr:.2} dB");
    println!("SSIM         {ssim:.4}");
    let report: Option<EvalReport> = match &classifier {
        Some(classifier) => {
            let reconstructions = Tensor::from_vec(pixels, originals.shape(), Device::Cpu)
                .map_err(|e| e.to_string())?;
            let reference = ReferenceFeatures::from_images(classifier, &originals)
                .map_err(|e| e.to_string())?;
            let report =
                evaluate_samples(classifier, &reconstructions, labels.as_deref(), &reference)
                    .map_err(|e| e.to_string())?;
            println!("rFD          {:.3}", report.fd_fashion_classifier);
            if let Some(a) = report.accuracy {
                println!(
                    "accuracy     {:.2} % (the classifier on the reconstructions)",
                    100.0 * a
                );
            }
            Some(report)
        }
        None => {
            eprintln!(
                "the images are not 1×28×28: the Fréchet distance in the Fashion-MNIST classifier's features is not \
                 scored"
            );
            None
        }
    };
    if let Some(path) = &args.json {
        let value = json!({
            "settings": {
                "vae": vae_dir,
                "data": args.data,
                "num": n,
                "classifier": args.classifier,
            },
            "psnr_db": psnr,
            "ssim": ssim,
            "reconstruction": report,
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        crate::files::write_atomically(path, text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
