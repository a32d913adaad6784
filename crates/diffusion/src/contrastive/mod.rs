//! Contrastive language–image pre-training (CLIP) on captioned images: the training loop ([`ClipTrainer`]), where the
//! captions come from ([`ImageCaptions`]), and the zero-shot and retrieval evaluation ([`evaluate`]).
//!
//! ```text
//! DIR/latest                         "step-N": the newest complete checkpoint
//! DIR/step-N/config.json             CLIPModel config (transformers)
//! DIR/step-N/model.safetensors       both towers, both projections, logit_scale
//! DIR/step-N/text_encoder/           the text tower alone: a CLIPTextModel folder, what Stable Diffusion loads
//! DIR/step-N/tokenizer/              the BPE tokenizer trained on the captions (CLIPTokenizer's files)
//! DIR/step-N/optimizer.safetensors   AdamW moments and step
//! DIR/step-N/clip_trainer_state.json step and the full training config
//! ```
//!
//! Every random choice (the batch order, each caption's template) is a function of (seed, step), so a run resumed
//! from a checkpoint takes exactly the steps an uninterrupted one would.

mod captions;
mod eval;
mod trainer;

pub use captions::ImageCaptions;
pub use eval::{evaluate, ClipEvalReport, RetrievalTemplates};
pub use trainer::{
    ClipArchitecture, ClipStepReport, ClipTrainConfig, ClipTrainer, ClipTrainerState, STATE_FILE,
    TEXT_ENCODER_DIR, TOKENIZER_DIR,
};
