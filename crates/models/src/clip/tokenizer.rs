//! CLIP's tokenizer, as transformers' `CLIPTokenizer` builds it on Hugging Face's `tokenizers`, and its `tokenizer/`
//! folder (`vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`, `tokenizer.json`).
//!
//! ```text
//! text ─ NFC, every run of white space → one space, lower case              (normalizer)
//!      ─ split into <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd | letter runs | single digits
//!        | runs of other non-space characters; the white space between is dropped   (pre-tokenizer, 1)
//!      ─ each piece as bytes, each byte one of 256 printable characters (GPT-2's byte-level map)  (pre-tokenizer, 2)
//!      ─ BPE inside each piece, its last symbol carrying the end-of-word suffix `</w>`   (model)
//!      ─ <|startoftext|> ids <|endoftext|>                                       (post-processor)
//!      ─ truncated to the context (the last kept id is <|endoftext|>), padded with the pad token
//! ```
//!
//! Every byte is a symbol, so any text tokenizes; a byte whose symbol the vocabulary lacks becomes the unknown token.
//! The start/end/pad/unknown tokens are matched in the raw text before normalisation, as transformers registers them
//! as special tokens.
//!
//! [`ClipTokenizer::train`] learns the merges on a caption corpus with the same pipeline (the `tokenizers` BPE
//! trainer) and lays out the vocabulary as OpenAI's CLIP does: the 256 byte symbols, the same with `</w>`, one entry
//! per merge, then the start and end tokens.

use crate::error::{Error, Result};
use crate::folder::{file_error, sync_dir, write_atomically};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainer, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::{replace::ReplacePattern, Lowercase, Replace, Sequence, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// The pieces CLIP's pre-tokenizer keeps (transformers' pattern).
const CLIP_SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// The suffix on the last symbol of every word.
pub const END_OF_WORD: &str = "</w>";
/// CLIP's context length, the `model_max_length` of its tokenizers.
pub const CLIP_CONTEXT_LENGTH: usize = 77;

/// The files of a `tokenizer/` folder.
pub const VOCAB_FILE: &str = "vocab.json";
pub const MERGES_FILE: &str = "merges.txt";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS_FILE: &str = "special_tokens_map.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The special tokens of a CLIP tokenizer, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: String,
    pub eos: String,
    pub pad: String,
    pub unk: String,
}

impl Default for SpecialTokens {
    /// CLIP's: `<|startoftext|>`, and `<|endoftext|>` for end, padding and unknown.
    fn default() -> Self {
        SpecialTokens {
            bos: "<|startoftext|>".into(),
            eos: "<|endoftext|>".into(),
            pad: "<|endoftext|>".into(),
            unk: "<|endoftext|>".into(),
        }
    }
}

/// One prompt's token ids, exactly `context_length` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// The length before truncation (start and end tokens included) when the prompt did not fit.
    pub truncated_from: Option<usize>,
}

/// Many prompts' ids, row-major (`count × context_length`), and a warning per truncated prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub count: usize,
    pub context_length: usize,
    /// "prompt N (…) has M tokens; truncated to L": print them where the user sees them.
    pub warnings: Vec<String>,
}

/// A CLIP BPE tokenizer with fixed-length output.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    vocab: HashMap<String, u32>,
    merges: Vec<(String, String)>,
    special: SpecialTokens,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    context_length: usize,
}

impl ClipTokenizer {
    /// The tokenizer of `vocab` and `merges` (in rank order) with `special` tokens, padding and truncating to
    /// `context_length` (at least 2: the start and end tokens).
    pub fn new(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        special: SpecialTokens,
        context_length: usize,
    ) -> Result<ClipTokenizer> {
        let err = |m: String| Error::model("ClipTokenizer", m);
        if context_length < 2 {
            return Err(err(format!(
                "the context length must hold the start and end tokens (at least 2), got {context_length}"
            )));
        }
        let id = |token: &str, role: &str| {
            vocab.get(token).copied().ok_or_else(|| {
                err(format!(
                    "the {role} token {token:?} is not in the vocabulary"
                ))
            })
        };
        let (bos_id, eos_id, pad_id) = (
            id(&special.bos, "start")?,
            id(&special.eos, "end")?,
            id(&special.pad, "padding")?,
        );
        id(&special.unk, "unknown")?;
        for (a, b) in &merges {
            for part in [a, b, &format!("{a}{b}")] {
                if !vocab.contains_key(part.as_str()) {
                    return Err(err(format!(
                        "the merge \"{a} {b}\" needs {part:?}, which is not in the vocabulary"
                    )));
                }
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .iter()
                    .map(|(t, &i)| (t.clone(), i))
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges.clone(),
            )
            .unk_token(special.unk.clone())
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix(END_OF_WORD.into())
            .fuse_unk(false)
            .build()
            .map_err(|e| err(format!("cannot build the BPE model: {e}")))?;
        let mut tokenizer = clip_pipeline(Tokenizer::new(bpe))?;
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new((special.eos.clone(), eos_id), (special.bos.clone(), bos_id))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        let mut added: Vec<AddedToken> = Vec::new();
        for token in [&special.bos, &special.eos, &special.unk, &special.pad] {
            if !added.iter().any(|a| &a.content == token) {
                added.push(AddedToken::from(token.clone(), true));
            }
        }
        tokenizer.add_special_tokens(&added);
        Ok(ClipTokenizer {
            tokenizer,
            vocab,
            merges,
            special,
            bos_id,
            eos_id,
            pad_id,
            context_length,
        })
    }

    /// Learns a tokenizer on `corpus` with the CLIP pipeline: at most `vocab_size` entries (the 512 byte symbols and
    /// the two special tokens included), merges of pairs seen at least twice.
    pub fn train<S: AsRef<str> + Sync>(
        corpus: &[S],
        vocab_size: usize,
        context_length: usize,
    ) -> Result<ClipTokenizer> {
        let err = |m: String| Error::model("ClipTokenizer::train", m);
        let base = 2 * 256 + 2;
        if vocab_size <= base {
            return Err(err(format!(
                "a vocabulary of {vocab_size} leaves no room for merges beside the {base} byte symbols and special tokens"
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainer::builder()
            .vocab_size(vocab_size - base + 256)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .end_of_word_suffix(END_OF_WORD.into())
            .build()
            .into();
        let mut learner = clip_pipeline(Tokenizer::new(BPE::default()))?;
        learner
            .train(&mut trainer, corpus.iter().map(|s| s.as_ref().to_string()))
            .map_err(|e| err(format!("training failed: {e}")))?;
        // The learned merges, in rank order, from the model's serialised form.
        let model = serde_json::to_value(learner.get_model())
            .map_err(|e| err(format!("cannot read the learned model: {e}")))?;
        let pairs: Vec<(String, String)> = serde_json::from_value(model["merges"].clone())
            .map_err(|e| err(format!("cannot read the learned merges: {e}")))?;
        let mut symbols: Vec<String> = byte_symbols().iter().map(char::to_string).collect();
        symbols.extend(byte_symbols().iter().map(|c| format!("{c}{END_OF_WORD}")));
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for s in symbols {
            let next = vocab.len() as u32;
            vocab.entry(s).or_insert(next);
        }
        let mut merges = Vec::new();
        for (a, b) in pairs {
            if vocab.len() + 2 >= vocab_size {
                break;
            }
            let next = vocab.len() as u32;
            vocab.entry(format!("{a}{b}")).or_insert(next);
            merges.push((a, b));
        }
        let special = SpecialTokens::default();
        for token in [&special.bos, &special.eos] {
            let next = vocab.len() as u32;
            vocab.entry(token.clone()).or_insert(next);
        }
        ClipTokenizer::new(vocab, merges, special, context_length)
    }

    /// Loads a transformers `tokenizer/` folder: `vocab.json` and `merges.txt`, with the special tokens and
    /// `model_max_length` from `tokenizer_config.json` or `special_tokens_map.json` when present (CLIP's otherwise).
    pub fn load(dir: &Path) -> Result<ClipTokenizer> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))
        };
        let vocab_path = dir.join(VOCAB_FILE);
        let vocab: HashMap<String, u32> = serde_json::from_str(&read(VOCAB_FILE)?)
            .map_err(|e| file_error(&vocab_path, format!("not a token → id map: {e}")))?;
        let merges_path = dir.join(MERGES_FILE);
        let mut merges = Vec::new();
        for (index, line) in read(MERGES_FILE)?.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let (a, b) = line.split_once(' ').ok_or_else(|| {
                file_error(
                    &merges_path,
                    format!(
                        "line {}: expected two symbols separated by a space, found {line:?}",
                        index + 1
                    ),
                )
            })?;
            merges.push((a.to_string(), b.to_string()));
        }
        let mut special = SpecialTokens::default();
        let mut context_length = CLIP_CONTEXT_LENGTH;
        for name in [SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&read(name)?)
                .map_err(|e| file_error(&path, format!("not JSON: {e}")))?;
            for (key, slot) in [
                ("bos_token", &mut special.bos),
                ("eos_token", &mut special.eos),
                ("pad_token", &mut special.pad),
                ("unk_token", &mut special.unk),
            ] {
                match &json[key] {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => *slot = s.clone(),
                    serde_json::Value::Object(o) => match o.get("content") {
                        Some(serde_json::Value::String(s)) => *slot = s.clone(),
                        _ => {
                            return Err(file_error(
                                &path,
                                format!("{key} has no \"content\" string"),
                            ))
                        }
                    },
                    other => {
                        return Err(file_error(&path, format!("{key} is {other}, not a token")))
                    }
                }
            }
            if let Some(max) = json.get("model_max_length") {
                context_length = max
                    .as_u64()
                    .filter(|&m| (2..=1 << 20).contains(&m))
                    .ok_or_else(|| {
                        file_error(
                            &path,
                            format!("model_max_length {max} is not a context length; set it to the text encoder's max_position_embeddings"),
                        )
                    })? as usize;
            }
        }
        ClipTokenizer::new(vocab, merges, special, context_length)
            .map_err(|e| file_error(dir, e.to_string()))
    }

    /// Writes the folder [`ClipTokenizer::load`] reads and transformers' `CLIPTokenizer.from_pretrained` loads, each
    /// file atomically: `vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json` and the
    /// whole pipeline as `tokenizer.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let json = |value: &serde_json::Value| {
            serde_json::to_string_pretty(value).map_err(|e| file_error(dir, e))
        };
        let ordered: BTreeMap<u32, &str> =
            self.vocab.iter().map(|(t, &i)| (i, t.as_str())).collect();
        let mut vocab = serde_json::Map::new();
        for (id, token) in ordered {
            vocab.insert(token.to_string(), id.into());
        }
        write_atomically(&dir.join(VOCAB_FILE), json(&vocab.into())?.as_bytes())?;
        let mut merges = String::from("#version: 0.2\n");
        for (a, b) in &self.merges {
            merges.push_str(&format!("{a} {b}\n"));
        }
        write_atomically(&dir.join(MERGES_FILE), merges.as_bytes())?;
        let s = &self.special;
        let tokens = serde_json::json!({
            "bos_token": s.bos, "eos_token": s.eos, "pad_token": s.pad, "unk_token": s.unk,
        });
        write_atomically(&dir.join(SPECIAL_TOKENS_FILE), json(&tokens)?.as_bytes())?;
        let mut config = tokens;
        config["tokenizer_class"] = "CLIPTokenizer".into();
        config["model_max_length"] = self.context_length.into();
        config["clean_up_tokenization_spaces"] = false.into();
        config["do_lower_case"] = true.into();
        config["errors"] = "replace".into();
        write_atomically(&dir.join(TOKENIZER_CONFIG_FILE), json(&config)?.as_bytes())?;
        let pipeline = self
            .tokenizer
            .to_string(true)
            .map_err(|e| file_error(dir, format!("cannot serialise the tokenizer: {e}")))?;
        write_atomically(&dir.join(TOKENIZER_FILE), pipeline.as_bytes())?;
        sync_dir(dir)
    }

    /// `text` as exactly [`Self::context_length`] ids: start, tokens, end, padding; an over-long text keeps its first
    /// `context_length − 2` tokens and still ends with the end token.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::model("ClipTokenizer::encode", format!("{text:?}: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        let length = ids.len();
        let truncated_from = (length > self.context_length).then_some(length);
        if truncated_from.is_some() {
            ids.truncate(self.context_length - 1);
            ids.push(self.eos_id);
        }
        ids.resize(self.context_length, self.pad_id);
        Ok(Tokens {
            ids,
            truncated_from,
        })
    }

    /// Every prompt through [`Self::encode`], with a warning for each one truncated.
    pub fn encode_batch<S: AsRef<str>>(&self, prompts: &[S]) -> Result<TokenBatch> {
        let mut ids = Vec::with_capacity(prompts.len() * self.context_length);
        let mut warnings = Vec::new();
        for (index, prompt) in prompts.iter().enumerate() {
            let tokens = self.encode(prompt.as_ref())?;
            if let Some(length) = tokens.truncated_from {
                warnings.push(format!(
                    "prompt {index} ({:?}) has {length} tokens with the start and end tokens; truncated to the text encoder's {}",
                    prompt.as_ref(),
                    self.context_length
                ));
            }
            ids.extend(tokens.ids);
        }
        Ok(TokenBatch {
            ids,
            count: prompts.len(),
            context_length: self.context_length,
            warnings,
        })
    }

    /// An error naming both sides unless every id fits `text_encoder`'s token table and every encoding its positions.
    pub fn check_fits(&self, text_encoder: &super::ClipTextConfig) -> Result<()> {
        let err = |m: String| Error::model("tokenizer and text encoder", m);
        if self.vocab_size() > text_encoder.vocab_size {
            return Err(err(format!(
                "the tokenizer's vocabulary has ids up to {} but the text encoder's vocab_size is {}; use the tokenizer/ saved with this text_encoder/",
                self.vocab_size() - 1,
                text_encoder.vocab_size
            )));
        }
        if self.context_length > text_encoder.max_position_embeddings {
            return Err(err(format!(
                "the tokenizer pads to {} tokens (model_max_length) but the text encoder has max_position_embeddings = {}",
                self.context_length, text_encoder.max_position_embeddings
            )));
        }
        if text_encoder.eos_token_id != Some(2) && text_encoder.eos_token_id != Some(self.eos_id) {
            return Err(err(format!(
                "the tokenizer's end token {:?} has id {} but the text encoder pools at eos_token_id = {:?}",
                self.special.eos, self.eos_id, text_encoder.eos_token_id
            )));
        }
        Ok(())
    }

    /// One more than the largest id: the token embedding needs at least this many rows.
    pub fn vocab_size(&self) -> usize {
        self.vocab.values().max().map_or(0, |&m| m as usize + 1)
    }

    /// The length every encoding has (`model_max_length`).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// `tokenizer` with CLIP's normalizer and pre-tokenizer.
fn clip_pipeline(mut tokenizer: Tokenizer) -> Result<Tokenizer> {
    let err = |e: tokenizers::Error| {
        Error::model(
            "ClipTokenizer",
            format!("cannot build CLIP's pipeline: {e}"),
        )
    };
    let whitespace = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(err)?;
    tokenizer.with_normalizer(Some(Sequence::new(vec![
        NFC.into(),
        whitespace.into(),
        Lowercase.into(),
    ])));
    let split = Split::new(
        SplitPattern::Regex(CLIP_SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )
    .map_err(err)?;
    tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    Ok(tokenizer)
}

/// The 256 characters GPT-2's byte-level map gives the bytes, in the order of OpenAI's CLIP vocabulary: the printable
/// bytes `!`–`~`, `¡`–`¬`, `®`–`ÿ` as themselves, then every other byte `b`, in order, as the character 256 + (its
/// rank among them).
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut symbols: Vec<char> = (0..256)
        .filter(|&b| printable(b))
        .filter_map(char::from_u32)
        .collect();
    let others = (0..256u32).filter(|&b| !printable(b));
    symbols.extend(
        others
            .enumerate()
            .filter_map(|(n, _)| char::from_u32(256 + n as u32)),
    );
    symbols
}
