//! `diffuse eval-edit` on an image-conditioned run (docs/editing.md §5):
//!
//! - a super-resolution stage: every guide box-averaged to the stage's low side, then upsampled back by bilinear and
//!   bicubic interpolation (clamped to [−1, 1]) and by the stage at each `--sr-levels` level; per row the mean PSNR
//!   and SSIM against the guides, and FD and accuracy of the upsampled images;
//! - a trained inpainting network, with `--mask`: every guide filled where the mask is white (known pixels put
//!   back), scored as RePaint's row is, so that the two tables compare.

use crate::cascade::{
    inpainting_input, low_resolution_input, sample_conditioned, upscale_condition,
    ConditionedRequest,
};
use crate::edit::read_mask;
use crate::scoring::Scorer;
use diffuse_diffusion::eval::reconstruction::{psnr, ssim};
use diffuse_diffusion::eval::{evaluate_samples, EvalReport};
use diffuse_diffusion::image_condition::{upsample, ImageCondition, Interpolation};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// What to measure.
pub struct ConditionedEval<'a> {
    pub model: &'a Backbone,
    pub checkpoint: &'a Path,
    pub scheduler: &'a Scheduler,
    pub condition: ImageCondition,
    pub guides: &'a Tensor,
    pub labels: &'a [u32],
    pub scorer: &'a Scorer,
    pub mask: Option<&'a Path>,
    pub sr_levels: &'a [u32],
    /// Give each fill its guide's label (else the null class).
    pub conditional: bool,
    pub guidance: f64,
    pub batch: usize,
    pub seed: u64,
}

/// One row of the table.
pub struct ConditionedRow {
    pub name: String,
    /// Mean PSNR (dB) and SSIM of the images against their guides.
    pub psnr: f64,
    pub ssim: f64,
    pub report: EvalReport,
}

impl ConditionedEval<'_> {
    pub fn run(&self) -> Result<Vec<ConditionedRow>, String> {
        let mut rows = Vec::new();
        match self.condition {
            ImageCondition::SuperResolution(sr) => {
                if self.mask.is_some() {
                    return Err("--mask: a super-resolution stage fills no masks".into());
                }
                let s = self.guides.shape().to_vec();
                let low = low_resolution_input(self.guides, &sr, s[1], self.checkpoint)?;
                let low_values = low.to_vec().map_err(|e| e.to_string())?;
                for (name, mode) in [
                    ("bilinear", Interpolation::Bilinear),
                    ("bicubic", Interpolation::Bicubic),
                ] {
                    let up: Vec<f32> = upsample(
                        &low_values,
                        s[0] * s[1],
                        (sr.low, sr.low),
                        (sr.high, sr.high),
                        mode,
                    )
                    .map_err(|e| e.to_string())?
                    .iter()
                    .map(|v| v.clamp(-1.0, 1.0))
                    .collect();
                    let up = Tensor::from_vec(up, &s, Device::Cpu).map_err(|e| e.to_string())?;
                    rows.push(
                        self.score(format!("{name} {0}×{0} → {1}×{1}", sr.low, sr.high), &up)?,
                    );
                }
                for &level in self.sr_levels {
                    let up = self.in_batches(|start, count| {
                        let part = low.narrow(0, start, count).and_then(|t| t.contiguous());
                        let part = part.map_err(|e| e.to_string())?;
                        let seed = self.seed.wrapping_add(start as u64);
                        let extra = upscale_condition(&sr, self.scheduler, &part, level, seed)?;
                        let mut scheduler = self.scheduler.clone();
                        scheduler.options.seed = seed;
                        sample_conditioned(
                            self.model,
                            &ConditionedRequest {
                                scheduler: &scheduler,
                                extra: &extra,
                                own_labels: Some(vec![level; count]),
                                classes: None,
                                guidance: 1.0,
                                null_class: None,
                            },
                        )
                    })?;
                    rows.push(self.score(format!("super-resolution stage, level {level}"), &up)?);
                }
            }
            ImageCondition::Inpainting(_) => {
                let Some(path) = self.mask else {
                    return Err(
                        "an inpainting network is measured on masked guides: give --mask".into(),
                    );
                };
                let known = read_mask(path, self.guides.shape())?;
                let null_class = self.model.config().num_class_embeds().map(|n| n as u32 - 1);
                let filled = self.in_batches(|start, count| {
                    let images = self
                        .guides
                        .narrow(0, start, count)
                        .and_then(|t| t.contiguous())
                        .map_err(|e| e.to_string())?;
                    let extra = inpainting_input(&images, &known)?;
                    let classes: Option<Vec<u32>> = null_class.map(|null| match self.conditional {
                        true => self.labels[start..start + count].to_vec(),
                        false => vec![null; count],
                    });
                    let mut scheduler = self.scheduler.clone();
                    scheduler.options.seed = self.seed.wrapping_add(start as u64);
                    let sampled = sample_conditioned(
                        self.model,
                        &ConditionedRequest {
                            scheduler: &scheduler,
                            extra: &extra,
                            own_labels: None,
                            classes: classes.as_deref(),
                            guidance: self.guidance,
                            null_class,
                        },
                    )?
                    .to_device(Device::Cpu)
                    .map_err(|e| e.to_string())?;
                    // The known pixels put back.
                    let unknown = known.affine(-1.0, 1.0).map_err(|e| e.to_string())?;
                    images
                        .mul(&known)
                        .and_then(|kept| kept.add(&sampled.mul(&unknown)?))
                        .map_err(|e| e.to_string())
                })?;
                rows.push(self.score("trained inpainting U-Net".into(), &filled)?);
            }
        }
        Ok(rows)
    }

    /// `produce(start, count)` over the guides in batches of `self.batch`, concatenated.
    fn in_batches(
        &self,
        produce: impl Fn(usize, usize) -> Result<Tensor, String>,
    ) -> Result<Tensor, String> {
        let num = self.guides.shape()[0];
        let mut parts = Vec::new();
        for start in (0..num).step_by(self.batch.max(1)) {
            let count = self.batch.min(num - start);
            parts.push(
                produce(start, count)?
                    .to_device(Device::Cpu)
                    .map_err(|e| e.to_string())?,
            );
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::concat(&refs, 0).map_err(|e| e.to_string())
    }

    /// Mean PSNR and SSIM of `images` against the guides, and the sample metrics.
    fn score(&self, name: String, images: &Tensor) -> Result<ConditionedRow, String> {
        let s = images.shape().to_vec();
        let per_image = s[1] * s[2] * s[3];
        let got = images.to_vec().map_err(|e| e.to_string())?;
        let want = self.guides.to_vec().map_err(|e| e.to_string())?;
        let (mut psnr_sum, mut ssim_sum) = (0.0, 0.0);
        for (x, y) in want.chunks(per_image).zip(got.chunks(per_image)) {
            psnr_sum += psnr(x, y);
            ssim_sum += ssim(x, y, s[1], s[2], s[3]).map_err(|e| e.to_string())?;
        }
        let report = evaluate_samples(
            &self.scorer.classifier,
            images,
            Some(self.labels),
            &self.scorer.reference,
        )
        .map_err(|e| e.to_string())?;
        let n = s[0] as f64;
        let row = ConditionedRow {
            name,
            psnr: psnr_sum / n,
            ssim: ssim_sum / n,
            report,
        };
        eprintln!(
            "{}: PSNR {:.2} dB, SSIM {:.4}, FD {:.3}, accuracy {:.3}",
            row.name,
            row.psnr,
            row.ssim,
            row.report.fd_fashion_classifier,
            row.report.accuracy.unwrap_or(f64::NAN)
        );
        Ok(row)
    }
}
