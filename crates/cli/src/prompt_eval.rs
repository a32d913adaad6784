//! `diffuse eval --prompts FILE|default` on a text-to-image model: how well its samples follow their prompts.
//!
//! Every prompt is sampled `--per-prompt` times from the same starting noise (the same seed for each prompt), so two
//! prompts' j-th samples differ only by what the prompts say. Then:
//!
//! - **prompt adherence**: the shipped classifier's accuracy on the samples of prompts that name a Fashion-MNIST
//!   class (the longest class name found in the prompt), with the per-class accuracies;
//! - **attribute adherence**: for each pair of prompts identical but for one attribute word (dark / light, slim /
//!   wide, plain / patterned), the fraction of sample pairs j whose measured tone, ink coverage or texture
//!   ([`diffuse_diffusion::data::captions::measure`]) lies in the order the words say (dark darker than light, ...);
//! - **CLIP score** with a `diffuse clip train` CLIP (`--clip-model`, the run's own): 100 · max(cos(image, prompt), 0),
//!   averaged over the samples, as torchmetrics defines it;
//! - **FD**, inception score, precision and recall of all samples against the test set, as `diffuse eval` reports.
//!
//! The default prompt set is built from the caption templates: "a {tone} and {build} {class}" for every class, tone
//! and build, 40 prompts, which pair for tone and for build.

use crate::latent::LatentDecoder;
use crate::prompt::{PromptContexts, TextEncoder};
use crate::sampling::{draw, GridRequest};
use crate::scoring::Scorer;
use clap::Args;
use diffuse_autograd::{no_grad, Var};
use diffuse_diffusion::contrastive::TOKENIZER_DIR;
use diffuse_diffusion::data::captions::{fill, measure, Attributes, Measures, FASHION_CLASSES};
use diffuse_diffusion::eval::{evaluate_samples, EvalReport};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::train::checkpoint::latest_checkpoint;
use diffuse_models::clip::{ClipModel, ClipTokenizer};
use diffuse_models::Backbone;
use diffuse_tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The caption template of the default prompt set (one of the training templates).
const DEFAULT_TEMPLATE: &str = "a {tone} and {build} {class}";
/// Each attribute's two words, the one whose measure is lower first.
const AXES: [(&str, [&str; 2]); 3] = [
    ("tone", ["dark", "light"]),
    ("build", ["slim", "wide"]),
    ("texture", ["plain", "patterned"]),
];

#[derive(Args, Clone, Debug)]
pub struct PromptEvalArgs {
    /// Evaluate a text-to-image model on these prompts: a file with one per line, or `default` for the 40 prompts
    /// "a {tone} and {build} {class}" of every Fashion-MNIST class.  [default: none]
    #[arg(long, value_name = "FILE|default")]
    pub prompts: Option<String>,
    /// Samples per prompt (with --prompts).
    #[arg(long, default_value_t = 25)]
    pub per_prompt: usize,
    /// The `diffuse clip train` run (or checkpoint) whose CLIP gives the CLIP score (with --prompts): the one whose
    /// text encoder the model was trained with.  [default: none: no CLIP score]
    #[arg(long, value_name = "CLIP_DIR")]
    pub clip_model: Option<PathBuf>,
}

/// The default prompt set (see the module documentation).
pub fn default_prompts() -> Vec<String> {
    let mut prompts = Vec::new();
    for class in FASHION_CLASSES {
        for tone in AXES[0].1 {
            for build in AXES[1].1 {
                let attributes = Attributes {
                    tone,
                    build,
                    texture: "plain",
                };
                prompts.push(fill(DEFAULT_TEMPLATE, class, Some(&attributes)));
            }
        }
    }
    prompts
}

/// The prompts `--prompts` names.
pub fn read(given: &str) -> Result<Vec<String>, String> {
    if given == "default" {
        return Ok(default_prompts());
    }
    crate::prompt::read_prompts(&[], Some(Path::new(given)))
}

/// The Fashion-MNIST class a prompt names: the longest class name in it ("t-shirt/top" over "shirt").
pub fn named_class(prompt: &str) -> Option<u32> {
    let lower = prompt.to_lowercase();
    FASHION_CLASSES
        .iter()
        .enumerate()
        .filter(|(_, class)| lower.contains(*class))
        .max_by_key(|(_, class)| class.len())
        .map(|(i, _)| i as u32)
}

fn words(prompt: &str) -> Vec<String> {
    prompt
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '/')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The prompt pairs that differ only in one attribute's word: (axis, index of the low prompt, of the high one).
pub fn attribute_pairs(prompts: &[String]) -> Vec<(&'static str, usize, usize)> {
    let tokenised: Vec<Vec<String>> = prompts.iter().map(|p| words(p)).collect();
    let mut pairs = Vec::new();
    for (axis, [low, high]) in AXES {
        for (i, a) in tokenised.iter().enumerate() {
            for (j, b) in tokenised.iter().enumerate() {
                let differs: Vec<usize> = (0..a.len()).filter(|&k| a.get(k) != b.get(k)).collect();
                if a.len() == b.len()
                    && differs.len() == 1
                    && a[differs[0]] == low
                    && b[differs[0]] == high
                {
                    pairs.push((axis, i, j));
                }
            }
        }
    }
    pairs
}

/// One attribute's adherence.
#[derive(Debug, Serialize)]
pub struct AttributeAdherence {
    pub attribute: &'static str,
    /// Prompt pairs that differ only in this attribute's word.
    pub prompt_pairs: usize,
    /// Sample pairs compared (prompt pairs × samples per prompt).
    pub sample_pairs: usize,
    /// The fraction of sample pairs in the order the words say.
    pub fraction: f64,
}

/// One prompt's samples, summarised.
#[derive(Debug, Serialize)]
pub struct PromptSummary {
    pub prompt: String,
    /// The class it names, if any.
    pub class: Option<u32>,
    pub mean_tone: f64,
    pub mean_coverage: f64,
    pub mean_texture: f64,
}

/// The report of `diffuse eval --prompts`.
#[derive(Debug, Serialize)]
pub struct PromptEvalReport {
    pub prompts: usize,
    pub per_prompt: usize,
    /// The classifier's accuracy on the samples of the prompts that name a class (`null` when none does).
    pub prompt_adherence: Option<f64>,
    /// Samples whose prompt names a class.
    pub class_samples: usize,
    pub attribute_adherence: Vec<AttributeAdherence>,
    /// 100 · mean max(cos, 0) with `--clip-model`'s CLIP.
    pub clip_score: Option<f64>,
    /// FD and the rest over all samples (accuracy there too when every prompt names a class).
    pub report: EvalReport,
    pub per_prompt_summary: Vec<PromptSummary>,
}

/// What to sample and how.
pub struct PromptSampling<'a> {
    pub model: &'a Backbone,
    pub text: &'a TextEncoder,
    pub decoder: Option<&'a LatentDecoder>,
    pub scheduler: &'a Scheduler,
    pub guidance: f64,
    pub seed: u64,
}

/// A `diffuse clip train` CLIP and its tokenizer, from a run (its latest checkpoint) or a checkpoint.
pub fn load_clip(
    dir: &Path,
    device: diffuse_tensor::Device,
) -> Result<(ClipModel, ClipTokenizer), String> {
    let step = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    if !step.join(TOKENIZER_DIR).is_dir() {
        return Err(format!(
            "--clip-model {}: not a `diffuse clip train` run or checkpoint (no {} with config.json and tokenizer/)",
            dir.display(),
            step.display()
        ));
    }
    let (model, _store) = ClipModel::load(&step, device)
        .map_err(|e| format!("--clip-model {}: {e}", dir.display()))?;
    let tokenizer = ClipTokenizer::load(&step.join(TOKENIZER_DIR)).map_err(|e| e.to_string())?;
    Ok((model, tokenizer))
}

/// Draws `per_prompt` samples of every prompt (each from the seed's noise), as images (P·n, C, H, W) in [−1, 1].
pub fn sample_prompts(
    sampling: &PromptSampling,
    prompts: &[String],
    per_prompt: usize,
) -> Result<Tensor, String> {
    let bar = ProgressBar::new(prompts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} prompts ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let mut parts = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let contexts = PromptContexts::encode(
            sampling.text,
            std::slice::from_ref(prompt),
            per_prompt,
            None,
        )?;
        let mut scheduler = sampling.scheduler.clone();
        scheduler.options.seed = sampling.seed;
        let request = GridRequest {
            scheduler: &scheduler,
            classes: None,
            count: per_prompt,
            guidance: sampling.guidance,
            null_class: None,
            prompts: Some(&contexts),
        };
        let images = draw(sampling.model, &request, None)?;
        let images = match sampling.decoder {
            Some(decoder) => decoder.decode(&images)?,
            None => images,
        };
        let images = images
            .clamp(-1.0, 1.0)
            .and_then(|t| t.to_device(diffuse_tensor::Device::Cpu))
            .map_err(|e| e.to_string())?;
        parts.push(images);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::concat(&refs, 0).map_err(|e| e.to_string())
}

/// 100 · mean max(cos(image, its prompt), 0) over the samples (`per_prompt` consecutive ones per prompt).
fn clip_score(
    clip: &(ClipModel, ClipTokenizer),
    images: &Tensor,
    prompts: &[String],
    per_prompt: usize,
) -> Result<f64, String> {
    let (model, tokenizer) = clip;
    let batch = tokenizer.encode_batch(prompts).map_err(|e| e.to_string())?;
    let texts =
        no_grad(|| model.text_embeds(&batch.ids, prompts.len())).map_err(|e| e.to_string())?;
    let texts = texts.tensor().to_vec().map_err(|e| e.to_string())?;
    let pixels = images
        .to_device(model.device())
        .map_err(|e| e.to_string())?;
    let embeds =
        no_grad(|| model.image_embeds(&Var::constant(pixels))).map_err(|e| e.to_string())?;
    let embeds = embeds.tensor().to_vec().map_err(|e| e.to_string())?;
    let width = model.config().projection_dim;
    let n = images.shape()[0];
    let total: f64 = (0..n)
        .map(|i| {
            let text = &texts[(i / per_prompt) * width..(i / per_prompt + 1) * width];
            let image = &embeds[i * width..(i + 1) * width];
            let cos: f32 = text.iter().zip(image).map(|(a, b)| a * b).sum();
            100.0 * f64::from(cos.max(0.0))
        })
        .sum();
    Ok(total / n as f64)
}

/// Scores the samples `images` of `prompts` (`per_prompt` each, prompt-major).
pub fn score(
    scorer: &Scorer,
    clip: Option<&(ClipModel, ClipTokenizer)>,
    images: &Tensor,
    prompts: &[String],
    per_prompt: usize,
) -> Result<PromptEvalReport, String> {
    let &[n, c, h, w] = images.shape() else {
        return Err(format!("samples of shape {:?}", images.shape()));
    };
    let values = images.to_vec().map_err(|e| e.to_string())?;
    let plane = c * h * w;
    let measures = (0..n)
        .map(|i| measure(&values[i * plane..(i + 1) * plane], c, h, w))
        .collect::<Result<Vec<Measures>, _>>()
        .map_err(|e| e.to_string())?;
    let classes: Vec<Option<u32>> = prompts.iter().map(|p| named_class(p)).collect();
    // Accuracy over the samples of prompts that name a class.
    let named: Vec<usize> = (0..n)
        .filter(|&i| classes[i / per_prompt].is_some())
        .collect();
    let prompt_adherence = if named.is_empty() {
        None
    } else {
        let subset = images.index_select(0, &named).map_err(|e| e.to_string())?;
        let labels: Vec<u32> = named
            .iter()
            .filter_map(|&i| classes[i / per_prompt])
            .collect();
        evaluate_samples(
            &scorer.classifier,
            &subset,
            Some(&labels),
            &scorer.reference,
        )
        .map_err(|e| e.to_string())?
        .accuracy
    };
    let all_labels: Option<Vec<u32>> = (0..n).map(|i| classes[i / per_prompt]).collect();
    let report = evaluate_samples(
        &scorer.classifier,
        images,
        all_labels.as_deref(),
        &scorer.reference,
    )
    .map_err(|e| e.to_string())?;
    let pairs = attribute_pairs(prompts);
    let attribute_adherence = AXES
        .iter()
        .filter_map(|&(axis, _)| {
            let of_axis: Vec<_> = pairs.iter().filter(|p| p.0 == axis).collect();
            if of_axis.is_empty() {
                return None;
            }
            let value = |m: &Measures| match axis {
                "tone" => m.tone,
                "build" => m.coverage,
                _ => m.texture,
            };
            let mut right = 0;
            for &&(_, low, high) in &of_axis {
                for j in 0..per_prompt {
                    let (a, b) = (
                        &measures[low * per_prompt + j],
                        &measures[high * per_prompt + j],
                    );
                    right += usize::from(value(a) < value(b));
                }
            }
            let sample_pairs = of_axis.len() * per_prompt;
            Some(AttributeAdherence {
                attribute: axis,
                prompt_pairs: of_axis.len(),
                sample_pairs,
                fraction: right as f64 / sample_pairs as f64,
            })
        })
        .collect();
    let clip_score = clip
        .map(|clip| clip_score(clip, images, prompts, per_prompt))
        .transpose()?;
    let mean = |p: usize, f: &dyn Fn(&Measures) -> f32| {
        measures[p * per_prompt..(p + 1) * per_prompt]
            .iter()
            .map(|m| f64::from(f(m)))
            .sum::<f64>()
            / per_prompt as f64
    };
    let per_prompt_summary = prompts
        .iter()
        .enumerate()
        .map(|(p, prompt)| PromptSummary {
            prompt: prompt.clone(),
            class: classes[p],
            mean_tone: mean(p, &|m| m.tone),
            mean_coverage: mean(p, &|m| m.coverage),
            mean_texture: mean(p, &|m| m.texture),
        })
        .collect();
    Ok(PromptEvalReport {
        prompts: prompts.len(),
        per_prompt,
        prompt_adherence,
        class_samples: named.len(),
        attribute_adherence,
        clip_score,
        report,
        per_prompt_summary,
    })
}

/// Prints the report's headline figures.
pub fn print(report: &PromptEvalReport) {
    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    eprintln!("{} prompts × {} samples", report.prompts, report.per_prompt);
    match report.prompt_adherence {
        Some(a) => eprintln!(
            "prompt adherence (classifier accuracy on the {} samples of prompts naming a class): {}",
            report.class_samples,
            pct(a)
        ),
        None => eprintln!("prompt adherence: no prompt names a Fashion-MNIST class"),
    }
    for a in &report.attribute_adherence {
        eprintln!(
            "attribute adherence, {}: {} of {} sample pairs ({} prompt pairs) in the order the words say",
            a.attribute,
            pct(a.fraction),
            a.sample_pairs,
            a.prompt_pairs
        );
    }
    if let Some(s) = report.clip_score {
        eprintln!("CLIP score: {s:.2}");
    }
    eprintln!(
        "FD (classifier features) {:.3}, inception score {:.3}, precision {:.3}, recall {:.3}",
        report.report.fd_fashion_classifier,
        report.report.inception_score,
        report.report.precision,
        report.report.recall
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_names_the_longest_class_it_contains() {
        assert_eq!(named_class("a photo of a t-shirt"), Some(0));
        assert_eq!(named_class("A dark SHIRT"), Some(6));
        assert_eq!(named_class("an ankle boot, plain"), Some(9));
        assert_eq!(named_class("a blurry thing"), None);
    }

    #[test]
    fn the_default_prompts_pair_for_tone_and_build_only() {
        let prompts = default_prompts();
        assert_eq!(prompts.len(), 40);
        assert_eq!(prompts[0], "a dark and slim t-shirt");
        let pairs = attribute_pairs(&prompts);
        for axis in ["tone", "build"] {
            let of_axis: Vec<_> = pairs.iter().filter(|p| p.0 == axis).collect();
            assert_eq!(of_axis.len(), 20, "{axis}");
            for &&(_, low, high) in &of_axis {
                assert_eq!(named_class(&prompts[low]), named_class(&prompts[high]));
            }
        }
        assert!(pairs.iter().all(|p| p.0 != "texture"));
        // The low word comes first: dark (index 0) against light (index 2), slim (0) against wide (1).
        assert!(pairs.contains(&("tone", 0, 2)) && pairs.contains(&("build", 0, 1)));
    }

    #[test]
    fn prompts_pair_only_when_one_word_differs() {
        let prompts: Vec<String> = [
            "a light coat",
            "a dark coat",
            "a dark bag",
            "a plain dark coat",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(attribute_pairs(&prompts), vec![("tone", 1, 0)]);
    }
}
