//! Prompts on the command line: a text-to-image model's tokenizer and frozen text encoder turn each prompt into the
//! states its cross-attention U-Net attends to, as diffusers' `StableDiffusionPipeline.encode_prompt` does: every
//! prompt padded (with the pad token) or truncated to the tokenizer's `model_max_length`, the encoder's
//! `last_hidden_state` taken whole. The negative prompt (the empty one by default) is encoded the same way and is the
//! unconditional context of classifier-free guidance.

use diffuse_models::clip::{ClipTextModel, ClipTokenizer};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// A tokenizer and the text encoder it feeds, checked against each other and against the U-Net.
pub struct TextEncoder {
    pub tokenizer: ClipTokenizer,
    pub encoder: ClipTextModel,
    /// The encoder's weights (as loaded), for saving it into a pipeline folder.
    store: ParamStore,
}

impl TextEncoder {
    /// Loads `tokenizer_dir` and `encoder_dir` onto `device` and checks that the tokenizer's ids all have
    /// embeddings, that its context fits the encoder's positions, and (when given) that the encoder's width is the
    /// U-Net's `cross_attention_dim`.
    pub fn load(
        tokenizer_dir: &Path,
        encoder_dir: &Path,
        context_dim: Option<usize>,
        device: Device,
    ) -> Result<TextEncoder, String> {
        let tokenizer = ClipTokenizer::load(tokenizer_dir).map_err(|e| e.to_string())?;
        let (encoder, store) = ClipTextModel::load(encoder_dir, device)
            .map_err(|e| format!("{}: {e}", encoder_dir.display()))?;
        let c = encoder.config();
        let (t, e) = (tokenizer_dir.display(), encoder_dir.display());
        if let Some(dim) = context_dim {
            if c.hidden_size != dim {
                return Err(format!(
                    "the text encoder {e} gives {}-wide states (hidden_size) but the U-Net attends to {dim}-wide ones \
                     (cross_attention_dim): pair the U-Net with the text encoder it was trained on",
                    c.hidden_size
                ));
            }
        }
        if tokenizer.vocab_size() > c.vocab_size {
            return Err(format!(
                "the tokenizer {t} has ids up to {} but the text encoder {e} embeds only {} tokens (vocab_size): \
                 use the tokenizer the text encoder was trained with",
                tokenizer.vocab_size() - 1,
                c.vocab_size
            ));
        }
        if tokenizer.context_length() > c.max_position_embeddings {
            return Err(format!(
                "the tokenizer {t} pads prompts to {} tokens (model_max_length) but the text encoder {e} has {} \
                 positions (max_position_embeddings): set model_max_length to at most {}",
                tokenizer.context_length(),
                c.max_position_embeddings,
                c.max_position_embeddings
            ));
        }
        Ok(TextEncoder {
            tokenizer,
            encoder,
            store,
        })
    }

    /// Writes the tokenizer into `tokenizer_dir` and the text encoder into `encoder_dir` (transformers folders).
    pub fn save(&self, tokenizer_dir: &Path, encoder_dir: &Path) -> diffuse_models::Result<()> {
        self.tokenizer.save(tokenizer_dir)?;
        self.encoder.save(&self.store, encoder_dir)
    }

    /// The states (N, L, D) of `prompts`, warning on stderr about each one truncated.
    pub fn encode<S: AsRef<str>>(&self, prompts: &[S]) -> Result<Tensor, String> {
        let batch = self
            .tokenizer
            .encode_batch(prompts)
            .map_err(|e| e.to_string())?;
        for warning in &batch.warnings {
            eprintln!("warning: {warning}");
        }
        self.encoder
            .encode(&batch.ids, batch.count)
            .map_err(|e| e.to_string())
    }
}

/// The prompts of `--prompt` (each given) and `--prompts FILE` (one per non-empty line), in that order.
pub fn read_prompts(given: &[String], file: Option<&Path>) -> Result<Vec<String>, String> {
    let mut prompts = given.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        prompts.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
        if prompts.len() == given.len() {
            return Err(format!(
                "{}: holds no prompt (one per line)",
                path.display()
            ));
        }
    }
    Ok(prompts)
}

/// What a text-to-image sample is conditioned on.
pub struct PromptContexts {
    /// The prompts, each the condition of `count` consecutive samples.
    pub prompts: Vec<String>,
    /// (N, L, D): each sample's prompt's states.
    pub context: Tensor,
    /// (1, L, D): the negative (by default the empty) prompt's states, the unconditional context.
    pub null_context: Tensor,
}

impl PromptContexts {
    /// Each of `prompts` repeated `count` times (prompt-major), with `negative` (or the empty prompt) as the
    /// unconditional context.
    pub fn encode(
        text: &TextEncoder,
        prompts: &[String],
        count: usize,
        negative: Option<&str>,
    ) -> Result<PromptContexts, String> {
        let repeated: Vec<&str> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.as_str(), count))
            .collect();
        Ok(PromptContexts {
            prompts: prompts.to_vec(),
            context: text.encode(&repeated)?,
            null_context: text.encode(&[negative.unwrap_or("")])?,
        })
    }
}

/// Writes `images` (N, C, H, W) in [−1, 1], `columns` per prompt, as a PNG grid with each row labelled with its
/// prompt (shortened to fit the label column).
pub fn save_prompt_grid(
    images: &Tensor,
    prompts: &[String],
    columns: usize,
    path: &Path,
) -> Result<(), String> {
    use diffuse_plot::{Figure, ImageGrid, Panel, RgbImage};
    let &[n, c, h, w] = images.shape() else {
        return Err(format!(
            "a grid needs (N, C, H, W) images, got {:?}",
            images.shape()
        ));
    };
    let values = images.to_vec().map_err(|e| e.to_string())?;
    let plane = c * h * w;
    let pictures = (0..n)
        .map(|i| RgbImage::from_signed_unit(c, h, w, &values[i * plane..(i + 1) * plane]))
        .collect::<Result<Vec<_>, _>>()?;
    const LABEL_CHARS: usize = 22;
    let labels = prompts
        .iter()
        .map(|p| match p.char_indices().nth(LABEL_CHARS) {
            Some((cut, _)) => format!("{}…", &p[..cut]),
            None => p.clone(),
        })
        .collect();
    let rows = n.div_ceil(columns.max(1));
    // Each image enlarged to about 96 pixels, beside a 150-pixel label column.
    let factor = (96 / h.max(w)).max(1);
    let grid = ImageGrid {
        title: String::new(),
        images: pictures,
        columns,
        row_labels: labels,
        column_labels: Vec::new(),
    };
    let figure = Figure {
        width: (180 + columns * (w * factor + 4)) as u32,
        height: (24 + rows * (h * factor + 4)) as u32,
        panels: vec![(Panel::Images(grid), 1.0)],
    };
    figure
        .save(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
