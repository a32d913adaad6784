//! Evaluation during training (`diffuse train --eval-every N`): after every N-th step and after the last, draw
//! `--eval-num` samples from the EMA weights and score them against the test split of `--data` with
//! [`crate::scoring`], the code `diffuse eval` runs; at equal settings the numbers are those of
//! `diffuse eval --checkpoint OUT --sampler SAMPLER --steps S --num N --seed SEED` on that step's checkpoint.
//!
//! - Every evaluation starts from the same noise (batch seeds from the run's seed), so the curve shows the model
//!   changing, not the noise.
//! - The samplers draw from their own Philox streams and read the EMA weights only, while the trainer's draws come
//!   from (seed, step): a run with evaluation ends with the same weights, bit for bit, as one without.
//! - Everything that can be wrong (no test split, images the classifier does not read, no classifier weights) fails
//!   before the first step, and the test set's features are computed once per run.

use crate::datasets::DataSource;
use crate::latent::LatentDecoder;
use crate::numbers::finite_f64;
use crate::sampling::run_sampler;
use crate::score::{any_sampler, ScoreArgs, ScoreView};
use crate::scoring::{
    check_image_shape, load_classifier, load_split, SampleModel, Sampling, Scorer,
    DEFAULT_CLASSIFIER, SAMPLE_BATCH,
};
use clap::Args;
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::EvalReport;
use diffuse_diffusion::train::{TrainConfig, Trainer};
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::backend::host_cache;
use indicatif::ProgressBar;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct TrainEvalArgs {
    /// Score samples of the EMA weights every N steps and at the end (FD, accuracy, IS-style score, precision and
    /// recall against the test split of --data, as `diffuse eval` does), in metrics.jsonl, the progress line and
    /// OUT/eval.png (0: never).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// Samples per evaluation (compare FDs at equal numbers only: FD is biased upwards by few samples).
    #[arg(long, default_value_t = 1000)]
    pub eval_num: usize,
    /// Sampler of the evaluations (any `diffuse sample --sampler` name), built from the run's scheduler config; at
    /// equal settings the numbers are those of `diffuse eval --sampler NAME` on the checkpoint.  [default: dpm++2m;
    /// pc with --sde]
    #[arg(long)]
    pub eval_sampler: Option<String>,
    /// Denoising steps of the evaluations.
    #[arg(long, default_value_t = 20)]
    pub eval_steps: usize,
    /// Classifier-free guidance scale of the evaluations (1: the model itself, at half the cost of guidance).
    #[arg(long, value_parser = finite_f64, default_value_t = 1.0)]
    pub eval_guidance: f64,
    /// The evaluations' feature extractor: a classifier folder written by `diffuse classifier train` (for images other than
    /// Fashion-MNIST's), or a Fashion-MNIST weights file (the default path is the shipped classifier, compiled in).
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    pub classifier: PathBuf,
}

/// What an evaluation during training needs: the classifier with the test set's features, and the sampling.
pub struct Evaluator {
    scorer: Scorer,
    sampling: Sampling,
    sampler_name: String,
    every: u64,
    /// The trained model as a score model (for a score sampler).
    score: Result<ScoreView, String>,
}

impl Evaluator {
    /// `None` when `--eval-every` is 0. Checks the settings, the dataset `source` (its training images
    /// `train`, and its test split) and the model (through `decoder` for a latent model) before anything runs, then
    /// computes the test set's features. The run's `config` gives the scheduler config the sampler is built from
    /// (or the SDE of a score model), the null class and the seed.
    pub fn new(
        args: &TrainEvalArgs,
        source: &DataSource,
        train: &Dataset,
        model: &BackboneConfig,
        decoder: Option<&LatentDecoder>,
        config: &TrainConfig,
    ) -> Result<Option<Evaluator>, String> {
        let (null_class, seed) = (config.null_class, config.seed);
        if args.eval_every == 0 {
            return Ok(None);
        }
        let score = ScoreView::of_training(model, config);
        if args.eval_num < 2 || args.eval_steps == 0 {
            return Err(format!(
                "--eval-num must be at least 2 (got {}) and --eval-steps at least 1 (got {})",
                args.eval_num, args.eval_steps
            ));
        }
        let score_sde = config.score_matching.is_some();
        let sampler_name = args
            .eval_sampler
            .clone()
            .unwrap_or_else(|| if score_sde { "pc" } else { "dpm++2m" }.into());
        let sampler = any_sampler(
            Some(&sampler_name),
            args.eval_steps,
            &ScoreArgs::default(),
            score_sde,
            |_| run_sampler(&config.scheduler, &sampler_name, args.eval_steps),
        )
        .map_err(|e| format!("--eval-sampler: {e}"))?;
        if args.eval_guidance != 1.0 && null_class.is_none() {
            return Err("--eval-guidance other than 1 needs a class-conditional model".into());
        }
        let context = |e: String| format!("--eval-every: {e}");
        let classifier = load_classifier(&args.classifier).map_err(context)?;
        check_image_shape(
            &classifier,
            &format!("the training set of {source}"),
            (train.channels, train.height, train.width),
        )
        .map_err(context)?;
        let (h, w) = model.sample_size().unwrap_or((28, 28));
        let samples = match decoder {
            Some(decoder) => decoder.image_shape((h, w)),
            None => (model.in_channels(), h, w),
        };
        check_image_shape(&classifier, "the model's samples", samples).map_err(context)?;
        let test = load_split(source, Split::Test, &classifier).map_err(|e| {
            format!("--eval-every scores samples against the test split of --data, and {e}")
        })?;
        eprintln!(
            "evaluation every {} steps: {} samples ({}, {} steps, guidance {}) against the {} test images of {}",
            args.eval_every,
            args.eval_num,
            sampler_name,
            args.eval_steps,
            args.eval_guidance,
            test.len(),
            source
        );
        Ok(Some(Evaluator {
            scorer: Scorer::new(classifier, &test)?,
            sampling: Sampling {
                sampler,
                guidance: args.eval_guidance,
                num: args.eval_num,
                batch: SAMPLE_BATCH,
                seed,
            },
            sampler_name,
            every: args.eval_every,
            score,
        }))
    }

    /// Whether the evaluation is due after `done` steps (the one after the last step is the caller's).
    pub fn due(&self, done: u64) -> bool {
        done.is_multiple_of(self.every)
    }

    /// Scores samples of the trainer's EMA weights (decoded by `decoder` in a latent run), with the host buffer cache
    /// emptied around it (the evaluation's batch is not the training step's: [`host_cache::emptied_around`]).
    pub fn run(
        &self,
        trainer: &Trainer<Backbone>,
        decoder: Option<&LatentDecoder>,
    ) -> Result<EvalReport, String> {
        host_cache::emptied_around(|| self.score_ema(trainer, decoder))
    }

    fn score_ema(
        &self,
        trainer: &Trainer<Backbone>,
        decoder: Option<&LatentDecoder>,
    ) -> Result<EvalReport, String> {
        let config = trainer.config();
        let model = SampleModel {
            unet: &trainer.ema_model,
            null_class: config.null_class,
            score: &self.score,
            decoder,
            upscale: None,
        };
        let (report, _) = self
            .scorer
            .evaluate(&model, &self.sampling, &ProgressBar::hidden())?;
        Ok(report)
    }

    /// The metrics line of the evaluation after `step` steps, which took `seconds`.
    pub fn metrics_line(&self, step: u64, report: &EvalReport, seconds: f64) -> String {
        json!({
            "step": step,
            "eval": report,
            "eval_settings": {
                "sampler": self.sampler_name,
                "steps": self.sampling.sampler.steps(),
                "guidance": self.sampling.guidance,
                "num": self.sampling.num,
                "seed": self.sampling.seed,
            },
            "eval_s": seconds,
        })
        .to_string()
    }
}

/// The progress line's summary of a report.
pub fn summary(report: &EvalReport) -> String {
    let accuracy = report
        .accuracy
        .map_or(String::new(), |a| format!(" acc {:.1} %", 100.0 * a));
    format!("FD {:.2}{accuracy}", report.fd_fashion_classifier)
}

/// `(step, FD)` of the evaluation lines of a metrics file, in file order.
pub fn read_evaluations(path: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((
                v["step"].as_u64()?,
                v["eval"]["fd_fashion_classifier"].as_f64()?,
            ))
        })
        .collect()
}
