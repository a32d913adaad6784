//! The sample grids a run writes while it trains (`OUT/samples/NAME.png`): `diffuse train`'s from its EMA model with
//! the grid sampler, and distillation or consistency-training runs' from the EMA student with the sampler the
//! student is meant for (DDIM at a progressive round's step count, one-step consistency sampling). One row per class
//! for a class-conditional model (`columns` samples each), one per grid prompt for a text-to-image run (labelled with
//! its prompt), else four rows; the noise comes from the run's seed, so
//! every grid of a run starts from the same noise and grids show training progress alone.

use crate::cascade::conditioned_grid;
use crate::consistency::ConsistencyRequest;
use crate::grid::Grid;
use crate::latent::LatentDecoder;
use crate::prompt::{save_prompt_grid, PromptContexts};
use crate::sampling::{draw, GridRequest};
use crate::score::{AnySampler, ScoreRequest, ScoreView};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::image_condition::ImageCondition;
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_models::Backbone;
use diffuse_tensor::backend::host_cache;
use std::path::{Path, PathBuf};

pub struct Grids<'a> {
    pub out: &'a Path,
    pub sampler: AnySampler,
    /// The model seen as a score model, for a score sampler.
    pub score: Option<ScoreView>,
    /// Decodes the sampled latents of a latent run.
    pub decoder: Option<&'a LatentDecoder>,
    /// Samples per row.
    pub columns: usize,
    /// Classifier-free guidance scale (1: plain conditional).
    pub guidance: f64,
    /// A text-to-image run's grid prompts (one row each), encoded.
    pub prompts: Option<&'a PromptContexts>,
}

/// The network a grid is drawn from, with what its sampling needs.
pub struct GridModel<'a> {
    pub model: &'a Backbone,
    /// The null class of a class-conditional model, which is also its number of real classes.
    pub null_class: Option<u32>,
    pub seed: u64,
    /// An image-conditioned run's condition and training schedule: its grids show the inputs, the samples and the
    /// originals ([`conditioned_grid`]).
    pub image_condition: Option<(ImageCondition, &'a NoiseSchedule)>,
}

impl Grids<'_> {
    /// Samples a grid from `model` and writes it to `OUT/samples/NAME.png` (images shaped as `data`'s), with the
    /// host buffer cache emptied around it (the grid's batch is not the training step's: [`host_cache::emptied_around`]).
    pub fn write(&self, from: &GridModel, name: &str, data: &Dataset) -> Result<PathBuf, String> {
        host_cache::emptied_around(|| self.draw_and_save(from, name, data))
    }

    fn draw_and_save(
        &self,
        from: &GridModel,
        name: &str,
        data: &Dataset,
    ) -> Result<PathBuf, String> {
        let columns = self.columns.max(1);
        let path = self.out.join("samples").join(format!("{name}.png"));
        if let Some((condition, schedule)) = from.image_condition {
            let AnySampler::Discrete(scheduler) = &self.sampler else {
                return Err(
                    "the grids of an image-conditioned run are drawn by a discrete-time sampler"
                        .into(),
                );
            };
            let mut scheduler = scheduler.as_ref().clone();
            scheduler.options.seed = from.seed;
            conditioned_grid(
                from.model, condition, &scheduler, data, schedule, columns, &path,
            )?;
            return Ok(path);
        }
        let classes: Option<Vec<u32>> = from.null_class.map(|null| {
            (0..null)
                .flat_map(|c| std::iter::repeat_n(c, columns))
                .collect()
        });
        let count = match (&classes, self.prompts) {
            (Some(classes), _) => classes.len(),
            (None, Some(prompts)) => prompts.context.shape()[0],
            (None, None) => columns * 4,
        };
        let images = match &self.sampler {
            AnySampler::Discrete(scheduler) => {
                let mut scheduler = scheduler.as_ref().clone();
                scheduler.options.seed = from.seed;
                let request = GridRequest {
                    scheduler: &scheduler,
                    classes: classes.as_deref(),
                    count,
                    guidance: self.guidance,
                    null_class: from.null_class,
                    prompts: self.prompts,
                };
                draw(from.model, &request, None)?
            }
            AnySampler::Consistency(sampler) => {
                let request = ConsistencyRequest {
                    sampler,
                    seed: from.seed,
                    classes: classes.as_deref(),
                    count,
                    guidance: self.guidance,
                    null_class: from.null_class,
                };
                crate::consistency::draw_with(from.model, &request, None, |d, sample| sample(d))?
            }
            AnySampler::Score(sampler) => {
                let request = ScoreRequest {
                    sampler: *sampler,
                    seed: from.seed,
                    classes: classes.as_deref(),
                    count,
                    guidance: self.guidance,
                    null_class: from.null_class,
                    pixels: self.decoder.is_none(),
                };
                let view = self
                    .score
                    .as_ref()
                    .ok_or("a score sampler needs the model as a score model")?;
                crate::score::draw(from.model, view, &request)?.0
            }
        };
        let images = match self.decoder {
            Some(decoder) => decoder.decode(&images)?,
            None => images,
        };
        if let Some(prompts) = self.prompts {
            std::fs::create_dir_all(self.out.join("samples"))
                .map_err(|e| format!("{}: {e}", self.out.display()))?;
            save_prompt_grid(&images, &prompts.prompts, columns, &path)?;
            return Ok(path);
        }
        Grid {
            pixels: &images.to_vec().map_err(|e| e.to_string())?,
            count,
            channels: data.channels,
            height: data.height,
            width: data.width,
            columns,
        }
        .save(&path)?;
        Ok(path)
    }
}
