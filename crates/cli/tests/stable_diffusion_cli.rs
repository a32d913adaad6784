//! `diffuse sample --prompt` on a diffusers `StableDiffusionPipeline` folder, end to end and without Python: a tiny
//! random pipeline (CLIP text encoder and tokenizer, AutoencoderKL, cross-attention U-Net, DDIM) saved by diffusers
//! 0.42.1, sampled by diffusers from given latents with prompts, negative prompts and guidance, must come out of
//! `diffuse sample --init-noise … --out-tensor …` the same (fixture and script:
//! `crates/diffusion/tests/fixtures/stable_diffusion/`). And a text encoder or tokenizer that does not fit is
//! refused, naming both sides.

mod common;

use common::{diffuse, repo, temp_dir};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde_json::Value;
use std::path::Path;

const FIXTURE: &str = "crates/diffusion/tests/fixtures/stable_diffusion";

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn write_tensor(path: &Path, values: &[f32], shape: &[usize]) {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes).unwrap();
    std::fs::write(path, safetensors::serialize([("x", view)], &None).unwrap()).unwrap();
}

fn read_samples(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensor("samples")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn runs() -> Vec<Value> {
    let text = std::fs::read_to_string(repo(&format!("{FIXTURE}/expected.json"))).unwrap();
    let fixtures: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(fixtures["diffusers_version"], "0.42.1");
    fixtures["runs"].as_array().unwrap().clone()
}

/// The `diffuse sample` arguments that reproduce `run` on `pipeline`, its latents written into `dir`.
fn sample_args(run: &Value, pipeline: &str, dir: &Path) -> Vec<String> {
    let shape: Vec<usize> = run["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let latents = dir.join("latents.safetensors");
    write_tensor(&latents, &floats(&run["latents"]), &shape);
    let mut args: Vec<String> = vec![
        "sample".into(),
        "--checkpoint".into(),
        pipeline.into(),
        "--device".into(),
        "cpu".into(),
        "--steps".into(),
        run["steps"].to_string(),
        "--count".into(),
        "1".into(),
        "--guidance".into(),
        run["guidance"].to_string(),
        "--init-noise".into(),
        latents.display().to_string(),
        "--out".into(),
        dir.join("grid.png").display().to_string(),
        "--out-tensor".into(),
        dir.join("out.safetensors").display().to_string(),
    ];
    for prompt in run["prompts"].as_array().unwrap() {
        args.extend(["--prompt".into(), prompt.as_str().unwrap().to_string()]);
    }
    if let Some(negative) = run["negative_prompt"].as_str() {
        args.extend(["--negative-prompt".into(), negative.to_string()]);
    }
    args
}

#[test]
fn sampling_a_stable_diffusion_pipeline_from_prompts_gives_diffusers_images() {
    let tmp = temp_dir("stable-diffusion");
    let pipeline = repo(&format!("{FIXTURE}/tiny_sd"));
    for (i, run) in runs().iter().enumerate() {
        let dir = tmp.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let args = sample_args(run, &pipeline, &dir);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = diffuse(&refs);
        let name = &run["prompts"];
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = read_samples(&dir.join("out.safetensors"));
        let want = floats(&run["output"]);
        assert_eq!(got.len(), want.len(), "{name}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}: largest difference {worst:.3e}, output magnitude {scale:.3e}");
        // Text encoder, two to four guided U-Net calls and the decoder, all f32 on both sides, each held to about
        // 1e-6 relative by its own golden test: 1e-4 of the images' scale leaves a wide margin.
        assert!(
            worst <= 1e-4 * scale,
            "{name}: largest difference {worst:.3e}, output magnitude {scale:.3e}"
        );
        // The grid carries a column of prompt labels left of the images (a plain grid of 16-pixel images would be
        // a few dozen pixels wide): the PNG's width, bytes 16..20 of its header.
        let png = std::fs::read(dir.join("grid.png")).unwrap();
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        assert!(
            width > 150,
            "{name}: a grid {width} pixels wide has no label column"
        );
    }
}

/// A copy of the fixture pipeline with its `component` folder replaced by `replacement` (a folder of the repository).
fn pipeline_with(tag: &str, component: &str, replacement: &str) -> String {
    let dir = temp_dir(tag).join("tiny_sd");
    let source = Path::new(&repo(&format!("{FIXTURE}/tiny_sd"))).to_path_buf();
    for entry in walk(&source) {
        let relative = entry.strip_prefix(&source).unwrap();
        if relative.starts_with(component) {
            continue;
        }
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let replacement = Path::new(&repo(replacement)).to_path_buf();
    std::fs::create_dir_all(dir.join(component)).unwrap();
    for entry in walk(&replacement) {
        let name = entry.file_name().unwrap();
        std::fs::copy(&entry, dir.join(component).join(name)).unwrap();
    }
    dir.display().to_string()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn refusal(pipeline: &str, tag: &str) -> String {
    let dir = temp_dir(tag);
    let args = sample_args(&runs()[0], pipeline, &dir);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = diffuse(&refs);
    assert!(!out.status.success());
    assert!(!dir.join("out.safetensors").exists() && !dir.join("grid.png").exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_text_encoder_or_tokenizer_that_does_not_fit_is_refused_naming_both() {
    // A (consistent) text encoder of width 12 where the U-Net attends to 8-wide states.
    let wide = pipeline_with(
        "sd-wide",
        "text_encoder",
        "crates/models/tests/fixtures/clip/text_gelu_legacy_eos",
    );
    let err = refusal(&wide, "sd-wide-out");
    assert!(
        err.contains("12-wide states (hidden_size)")
            && err.contains("8-wide ones (cross_attention_dim)"),
        "{err}"
    );
    // A tokenizer with 626 ids where the text encoder embeds 529.
    let big = pipeline_with(
        "sd-big-vocab",
        "tokenizer",
        "crates/models/tests/fixtures/clip/tokenizer",
    );
    let err = refusal(&big, "sd-big-vocab-out");
    assert!(
        err.contains("ids up to 625") && err.contains("embeds only 529 tokens (vocab_size)"),
        "{err}"
    );
    // Without a prompt, a text-to-image model says what it needs.
    let dir = temp_dir("sd-no-prompt");
    let mut args = sample_args(&runs()[0], &repo(&format!("{FIXTURE}/tiny_sd")), &dir);
    let at = args.iter().position(|a| a == "--prompt").unwrap();
    args.truncate(at);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = diffuse(&refs);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--prompt"), "{err}");
}
