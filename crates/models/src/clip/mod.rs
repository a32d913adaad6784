//! CLIP as transformers defines it: the text encoder Stable Diffusion conditions on ([`ClipTextModel`]), the image
//! tower ([`ClipVisionModel`]) and the two together with the contrastive objective ([`ClipModel`],
//! [`contrastive_loss`]), with transformers' parameter names and folders, and CLIP's tokenizer ([`ClipTokenizer`]).
//!
//! Folders: a `text_encoder/` (`config.json` + `model.safetensors`, a `CLIPTextModel`), a `CLIPModel` folder (the
//! same two files for both towers), and a `tokenizer/` (`vocab.json`, `merges.txt`, `tokenizer_config.json`,
//! `special_tokens_map.json`, `tokenizer.json`).

pub mod config;
pub mod encoder;
mod init;
pub mod model;
pub mod text;
pub mod tokenizer;
pub mod vision;

pub use config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use model::{contrastive_loss, ClipModel};
pub use text::{ClipTextModel, ClipTextOutput};
pub use tokenizer::{ClipTokenizer, SpecialTokens, TokenBatch, Tokens};
pub use vision::ClipVisionModel;
