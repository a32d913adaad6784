//! Latent diffusion on the command line: what `train --vae`, `sample`, `eval` and `info` add for a denoiser that
//! works on an autoencoder's latents instead of pixels.
//!
//! - training: the autoencoder `--vae DIR` names is checked against the data and the denoiser (image size and
//!   channels; latent channels and size), every training image's posterior is encoded once
//!   ([`diffuse_diffusion::autoencoder::encode_posteriors`]), and every checkpoint is written as a diffusers pipeline
//!   folder: `model_index.json`, `unet/` (the EMA weights), `vae/`, `scheduler/`, beside the training state;
//! - sampling: a denoiser folder inside a pipeline folder with a `vae/` samples latents, which [`LatentDecoder`]
//!   unscales and decodes into images.
//!
//! diffusers has no pipeline class for a class-conditional `UNet2DModel` over an `AutoencoderKL`, so
//! `model_index.json` names the class `LatentDiffusionPipeline`; each component loads in diffusers with its own class
//! (`UNet2DModel.from_pretrained(DIR, subfolder="unet")`, `AutoencoderKL…(subfolder="vae")`, the scheduler's).

use crate::vae::{load_vae, MODEL_INDEX_FILE, PIPELINE_VAE_DIR};
use diffuse_diffusion::autoencoder::{encode_posteriors, LatentSpace};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::train::checkpoint::PIPELINE_UNET_DIR;
use diffuse_models::folder::{save_folder, DIFFUSERS_WEIGHTS_FILE};
use diffuse_models::unet::config::DIFFUSERS_VERSION;
use diffuse_models::vae::AutoencoderKL;
use diffuse_models::BackboneConfig;
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// The `_class_name` of a latent run's `model_index.json`.
pub const PIPELINE_CLASS: &str = "LatentDiffusionPipeline";
/// Latents per decoder batch.
const DECODE_BATCH: usize = 250;

/// An autoencoder that turns sampled latents into images.
pub struct LatentDecoder {
    pub vae: AutoencoderKL,
    store: ParamStore,
    /// The folder it was loaded from.
    pub dir: PathBuf,
}

impl LatentDecoder {
    /// The autoencoder `dir` names (a `vae train` run or checkpoint, a pipeline folder, an `AutoencoderKL` folder;
    /// the EMA weights of a run) on `device`.
    pub fn load(dir: &Path, device: Device) -> Result<LatentDecoder, String> {
        let (vae, store, dir) = load_vae(dir, true, device)?;
        Ok(LatentDecoder { vae, store, dir })
    }

    /// How the denoiser's data relate to the autoencoder's latents.
    pub fn space(&self) -> LatentSpace {
        LatentSpace::of(&self.vae)
    }

    /// (channels, height, width) of the images decoded from latents of `height × width`.
    pub fn image_shape(&self, (height, width): (usize, usize)) -> (usize, usize, usize) {
        let c = self.vae.config();
        let (h, w) = c.image_size(height, width);
        (c.out_channels, h, w)
    }

    /// Images (N, C, H, W) in [−1, 1] from scaled latents (N, L, h, w) as a sampler returns them: unscaled, decoded
    /// in batches, clamped.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, String> {
        let n = latents.shape()[0];
        let mut parts = Vec::new();
        for start in (0..n).step_by(DECODE_BATCH) {
            let count = DECODE_BATCH.min(n - start);
            let part = latents
                .narrow(0, start, count)
                .and_then(|p| p.contiguous())
                .and_then(|p| p.to_device(self.vae.device()))
                .map_err(|e| e.to_string())?;
            let z = self.vae.unscale_latents(&part).map_err(|e| e.to_string())?;
            let images = self.vae.decode_tensor(&z).map_err(|e| e.to_string())?;
            parts.push(images.clamp(-1.0, 1.0).map_err(|e| e.to_string())?);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::concat(&refs, 0).map_err(|e| e.to_string())
    }

    /// Writes this autoencoder, as loaded, into the pipeline folder `dir` as its `vae/`.
    pub fn write_vae(&self, dir: &Path) -> diffuse_models::Result<()> {
        save_folder(
            &dir.join(PIPELINE_VAE_DIR),
            &self.vae.config().to_json_string(),
            &self.store,
            DIFFUSERS_WEIGHTS_FILE,
        )
    }

    /// Writes the pipeline's `vae/` ([`Self::write_vae`]) and `model_index.json` naming the denoiser of `model` into
    /// `dir`.
    pub fn write_pipeline_components(
        &self,
        dir: &Path,
        model: &BackboneConfig,
    ) -> diffuse_models::Result<()> {
        self.write_vae(dir)?;
        let index = serde_json::json!({
            "_class_name": PIPELINE_CLASS,
            "_diffusers_version": DIFFUSERS_VERSION,
            "scheduler": ["diffusers", "DDPMScheduler"],
            PIPELINE_UNET_DIR: ["diffusers", model.class_name()],
            PIPELINE_VAE_DIR: ["diffusers", "AutoencoderKL"],
        });
        let text = serde_json::to_string_pretty(&index).expect("a JSON value always serialises");
        diffuse_models::folder::write_atomically(&dir.join(MODEL_INDEX_FILE), text.as_bytes())
    }
}

/// Checks that the autoencoder reads the images of `data` and writes the latents `model` denoises, naming both
/// sides of any mismatch; `text` says whether the run is text-conditioned, which picks the named configs the error
/// suggests.
pub fn check_latent_setup(
    decoder: &LatentDecoder,
    data: &Dataset,
    model: &BackboneConfig,
    text: bool,
) -> Result<(), String> {
    let vae = decoder.vae.config();
    let where_ = decoder.dir.display();
    diffuse_diffusion::autoencoder::latents::check_images(&decoder.vae, data)
        .map_err(|e| format!("--vae {where_}: {e}"))?;
    let latent = vae.latent_channels;
    // A network that learns its variance gives twice its input's channels.
    let out = if model.learns_variance() {
        2 * latent
    } else {
        latent
    };
    if model.in_channels() != latent || model.out_channels() != out {
        return Err(format!(
            "the autoencoder {where_} has latent_channels = {latent} but the {} takes in_channels = {} and gives \
             out_channels = {}; a latent denoiser takes latent_channels and gives as many ({out} with a learned \
             variance), e.g. --config {}",
            model.class_name(),
            model.in_channels(),
            model.out_channels(),
            if text {
                "fashion-text-latent"
            } else {
                "fashion-latent or dit-latent-s"
            }
        ));
    }
    let (h, w) = vae.latent_size(data.height, data.width);
    if let Some(size) = model.sample_size().filter(|&s| s != (h, w)) {
        return Err(format!(
            "the autoencoder {where_} makes {h}×{w} latents of {}×{} images but the {} has sample_size {}×{}",
            data.height,
            data.width,
            model.class_name(),
            size.0,
            size.1
        ));
    }
    Ok(())
}

/// Encodes every training image's posterior once, behind a progress bar: the dataset the denoiser trains on.
pub fn encode_training_set(decoder: &LatentDecoder, data: &Dataset) -> Result<Dataset, String> {
    let bar = ProgressBar::new(data.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("encoding the training set {bar:30} {pos}/{len} ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let moments = encode_posteriors(&decoder.vae, data, |done| bar.set_position(done as u64))
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok(moments)
}

/// The decoder of the pipeline a denoiser folder `model_dir` belongs to: its sibling `vae/` when the parent folder
/// is a pipeline folder that names a `vae`; `None` for a pixel-space model.
pub fn decoder_for(model_dir: &Path, device: Device) -> Result<Option<LatentDecoder>, String> {
    let Some(pipeline) = model_dir.parent() else {
        return Ok(None);
    };
    let index_path = pipeline.join(MODEL_INDEX_FILE);
    let Ok(text) = std::fs::read_to_string(&index_path) else {
        return Ok(None);
    };
    let index: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", index_path.display()))?;
    // A pixel-space text-to-image pipeline saves its absent vae as `[null, null]`.
    let names_vae = index
        .get(PIPELINE_VAE_DIR)
        .and_then(serde_json::Value::as_array)
        .is_some_and(|parts| parts.iter().any(|part| !part.is_null()));
    if !names_vae {
        return Ok(None);
    }
    let vae_dir = pipeline.join(PIPELINE_VAE_DIR);
    let (vae, store) = AutoencoderKL::load_diffusers(&vae_dir, device).map_err(|e| {
        format!(
            "{} names a vae, but {} does not load: {e}",
            index_path.display(),
            vae_dir.display()
        )
    })?;
    Ok(Some(LatentDecoder {
        vae,
        store,
        dir: vae_dir,
    }))
}

/// Checks that a latent denoiser's samples decode: its channels are the autoencoder's latent channels.
pub fn check_decodes(decoder: &LatentDecoder, model: &BackboneConfig) -> Result<(), String> {
    let latent = decoder.vae.config().latent_channels;
    if model.in_channels() != latent {
        return Err(format!(
            "the {} samples {} channels but the autoencoder {} decodes latents of {latent} (its latent_channels)",
            model.class_name(),
            model.in_channels(),
            decoder.dir.display()
        ));
    }
    Ok(())
}
