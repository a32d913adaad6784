//! CLIP's tokenizer against transformers' `CLIPTokenizer` (golden ids from `fixtures/clip/make_fixtures.py` on 300
//! strings: unicode, white space, apostrophes, digits, special tokens in the text, empty and over-long), a tokenizer
//! trained here round-tripping through its folder, and the errors for folders that cannot work.

use diffuse_models::clip::tokenizer::{CLIP_CONTEXT_LENGTH, MERGES_FILE, VOCAB_FILE};
use diffuse_models::clip::ClipTokenizer;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("strings.json")).unwrap())
        .unwrap()
}

#[test]
fn ids_match_transformers_on_300_strings() {
    let tokenizer = ClipTokenizer::load(&fixtures().join("tokenizer")).unwrap();
    assert_eq!(tokenizer.context_length(), 16);
    assert_eq!(tokenizer.special_tokens().pad, "!");
    let cases = cases();
    assert_eq!(cases.len(), 300);
    for case in &cases {
        let tokens = tokenizer.encode(&case.text).unwrap();
        assert_eq!(tokens.ids, case.ids, "{:?}", case.text);
    }
}

#[test]
fn empty_long_and_unknown_prompts() {
    let tokenizer = ClipTokenizer::load(&fixtures().join("tokenizer")).unwrap();
    let (bos, eos, pad) = (tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id());
    let empty = tokenizer.encode("").unwrap();
    assert_eq!(&empty.ids[..3], &[bos, eos, pad]);
    assert_eq!(empty.truncated_from, None);
    // 'q' and 'z' are not in the fixture's vocabulary: each becomes the unknown token, here <|endoftext|>.
    let unknown = tokenizer.encode("qz").unwrap();
    assert_eq!(&unknown.ids[..4], &[bos, eos, eos, eos]);
    let batch = tokenizer
        .encode_batch(&["a coat", &"long ".repeat(40)])
        .unwrap();
    assert_eq!(
        (batch.count, batch.context_length, batch.ids.len()),
        (2, 16, 32)
    );
    assert_eq!(
        batch.ids[31], eos,
        "a truncated prompt still ends with the end token"
    );
    assert_eq!(batch.warnings.len(), 1);
    assert!(
        batch.warnings[0].contains("prompt 1") && batch.warnings[0].contains("truncated"),
        "{}",
        batch.warnings[0]
    );
}

/// Captions of the kind the Fashion-MNIST generator writes (spelled out here: that generator lives a layer above).
fn corpus() -> Vec<String> {
    let mut out = Vec::new();
    let classes = [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle boot",
    ];
    for class in classes {
        for tone in ["dark", "light"] {
            for build in ["slim", "wide"] {
                out.push(format!("a photo of a {tone} {build} {class}"));
                out.push(format!("a {build} {class}, plain"));
                out.push(format!("a patterned {class} that is {tone}"));
            }
        }
    }
    out
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("diffuse-clip-tok-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn trained_tokenizer_learns_the_caption_words_and_round_trips() {
    let corpus = corpus();
    let tokenizer = ClipTokenizer::train(&corpus, 1024, CLIP_CONTEXT_LENGTH).unwrap();
    assert_eq!(tokenizer.context_length(), 77);
    assert!(tokenizer.vocab_size() <= 1024 && tokenizer.vocab_size() > 514);
    // Every caption word appears often enough to become one token: "a photo of a dark slim coat" is 7 tokens + 2.
    let tokens = tokenizer.encode("a photo of a dark slim coat").unwrap();
    let end = tokens
        .ids
        .iter()
        .position(|&id| id == tokenizer.eos_id())
        .unwrap();
    assert_eq!(end, 8, "{:?}", &tokens.ids[..12]);
    // Unseen text still tokenizes (byte symbols), with no unknown token.
    let unseen = tokenizer.encode("Ünïcödé 👢 42").unwrap();
    assert!(
        unseen
            .ids
            .iter()
            .filter(|&&id| id == tokenizer.eos_id())
            .count()
            >= 1
    );
    let dir = TempDir::new("roundtrip");
    tokenizer.save(&dir.0).unwrap();
    let loaded = ClipTokenizer::load(&dir.0).unwrap();
    for text in
        corpus
            .iter()
            .map(String::as_str)
            .chain(["", "Ünïcödé 👢 42", "a photo of an ankle boot"])
    {
        assert_eq!(
            loaded.encode(text).unwrap(),
            tokenizer.encode(text).unwrap(),
            "{text:?}"
        );
    }
    // The saved tokenizer.json is the whole pipeline: the tokenizers library alone gives the same ids.
    let pipeline = tokenizers::Tokenizer::from_file(dir.0.join("tokenizer.json")).unwrap();
    let ids = pipeline
        .encode("a photo of a dark slim coat", true)
        .unwrap();
    assert_eq!(ids.get_ids(), &tokens.ids[..9]);
    // The vocabulary starts with the byte symbols in OpenAI's order: '!' is 0, and 'a</w>' is 256 + 64.
    let vocab: std::collections::HashMap<String, u32> =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join(VOCAB_FILE)).unwrap()).unwrap();
    assert_eq!((vocab["!"], vocab["a</w>"]), (0, 256 + 64));
}

#[test]
fn folders_that_cannot_work_are_refused_with_the_reason() {
    let dir = TempDir::new("bad");
    let src = fixtures().join("tokenizer");
    std::fs::copy(src.join(VOCAB_FILE), dir.0.join(VOCAB_FILE)).unwrap();
    std::fs::write(dir.0.join(MERGES_FILE), "#version: 0.2\nab\n").unwrap();
    let message = ClipTokenizer::load(&dir.0).err().unwrap().to_string();
    assert!(
        message.contains("line 2: expected two symbols"),
        "{message}"
    );
    std::fs::write(dir.0.join(MERGES_FILE), "#version: 0.2\nq x\n").unwrap();
    let message = ClipTokenizer::load(&dir.0).err().unwrap().to_string();
    assert!(message.contains("not in the vocabulary"), "{message}");
    std::fs::copy(src.join(MERGES_FILE), dir.0.join(MERGES_FILE)).unwrap();
    std::fs::write(
        dir.0.join("tokenizer_config.json"),
        r#"{"pad_token": "<pad>"}"#,
    )
    .unwrap();
    let message = ClipTokenizer::load(&dir.0).err().unwrap().to_string();
    assert!(
        message.contains("padding token \"<pad>\" is not in the vocabulary"),
        "{message}"
    );
    std::fs::write(
        dir.0.join("tokenizer_config.json"),
        r#"{"model_max_length": 1e30}"#,
    )
    .unwrap();
    let message = ClipTokenizer::load(&dir.0).err().unwrap().to_string();
    assert!(message.contains("model_max_length"), "{message}");
    std::fs::remove_file(dir.0.join(VOCAB_FILE)).unwrap();
    let message = ClipTokenizer::load(&dir.0).err().unwrap().to_string();
    assert!(message.contains("vocab.json"), "{message}");
}
