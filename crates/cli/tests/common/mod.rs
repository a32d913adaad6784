//! Helpers shared by the `diffuse` end-to-end tests: a tiny model config, synthetic datasets, scratch folders, paths
//! into the repository and running the binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tiny UNet of the end-to-end tests: two levels of 8 and 16 channels, no attention, ~30k parameters (a step in
/// milliseconds), for `sample_size`² images of `in_channels` (`out_channels` predicted); class-conditional with
/// `num_class_embeds` embeddings when given (the last is the null class), unconditional without.
pub fn tiny_unet_config(
    sample_size: usize,
    in_channels: usize,
    out_channels: usize,
    num_class_embeds: Option<usize>,
) -> String {
    let classes = num_class_embeds
        .map(|n| format!(r#", "num_class_embeds": {n}"#))
        .unwrap_or_default();
    format!(
        r#"{{
  "_class_name": "UNet2DModel",
  "sample_size": {sample_size}, "in_channels": {in_channels}, "out_channels": {out_channels},
  "block_out_channels": [8, 16], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "UpBlock2D"],
  "norm_num_groups": 4{classes}
}}"#
    )
}

/// The tiny UNet for 1×28×28 images of ten classes (plus the null class).
pub fn tiny_config() -> String {
    tiny_unet_config(28, 1, 1, Some(11))
}

/// The options of the tiny CLIP of the `clip train` runs: 16 wide (the text states the tiny cross-attention U-Nets
/// attend to), one layer of 2 heads and a 16-wide MLP per tower, 7×7 patches of the 28×28 images, 8-wide
/// projections (a training step in milliseconds).
pub const TINY_CLIP: [&str; 12] = [
    "--width",
    "16",
    "--layers",
    "1",
    "--heads",
    "2",
    "--mlp",
    "16",
    "--patch-size",
    "7",
    "--projection-dim",
    "8",
];

/// A three-level autoencoder of 8 channels from 28×28 grey images to 4×7×7 latents (~20k parameters, a training
/// step in milliseconds).
pub const TINY_VAE_CONFIG: &str = r#"{
  "_class_name": "AutoencoderKL",
  "in_channels": 1, "out_channels": 1, "latent_channels": 4, "sample_size": 28,
  "block_out_channels": [8, 8, 8], "norm_num_groups": 4,
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
}"#;

/// The f32 tensor "samples" of a safetensors file and its shape.
pub fn read_samples(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor("samples").unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

/// An empty scratch folder unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path inside the repository, as a command-line argument.
pub fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .to_str()
        .unwrap()
        .to_string()
}

/// Runs `diffuse` with `args` to completion.
pub fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `diffuse` with `args`, which must succeed; its stderr.
pub fn ok(args: &[&str]) -> String {
    let run = diffuse(args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{args:?}: {stderr}");
    stderr
}

/// Runs `diffuse` with `args`, which must fail; its stderr.
pub fn fails(args: &[&str]) -> String {
    let run = diffuse(args);
    assert!(!run.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// The stderr of a run that must succeed (the assertion shows it if not).
pub fn success(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    stderr
}

/// The stderr of a run that must fail.
pub fn failure(output: Output) -> String {
    assert!(!output.status.success(), "should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `diffuse train` on `data` with the tiny settings the end-to-end tests share (batch 4, a checkpoint and a 2-step
/// grid of 2 columns every 2 steps, 50 training timesteps, a constant learning rate), then `extra`.
pub fn tiny_train(data: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data,
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--grid-steps",
        "2",
        "--grid-columns",
        "2",
        "--log-every",
        "1",
        "--num-train-timesteps",
        "50",
        "--lr-schedule",
        "constant",
    ];
    args.extend(extra);
    diffuse(&args)
}

/// Writes an uncompressed IDX file: magic (0, 0, type 0x08 = u8, rank), big-endian dims, then the bytes.
pub fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// Writes split `prefix` (`train` or `t10k`) of `count` pseudo-random `side`×`side` images into `dir`, labelled 0..9
/// cyclically when `labels`.
pub fn synthetic_split(dir: &Path, prefix: &str, count: u32, side: u32, labels: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 0x2545_f491_u32;
    let pixels: Vec<u8> = (0..count * side * side)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    write_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte")),
        &[count, side, side],
        &pixels,
    );
    if labels {
        let classes: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte")),
            &[count],
            &classes,
        );
    }
}

/// A dataset folder with the same `count` pseudo-random 28×28 images in both splits, labelled 0..9 cyclically when
/// `labels`.
pub fn synthetic_data(dir: &Path, count: u32, labels: bool) {
    for prefix in ["train", "t10k"] {
        synthetic_split(dir, prefix, count, 28, labels);
    }
}
