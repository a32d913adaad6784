//! Helpers shared by the `diffuse` end-to-end tests: a tiny model config, scratch folders, paths into the repository
//! and running the binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Two levels of 8 and 16 channels, no attention, class-conditional with a null class (the last line; without it
/// the model is unconditional): ~30k parameters, a step in milliseconds.
pub const TINY_CONFIG: &str = r#"{
  "_class_name": "UNet2DModel",
  "sample_size": 28, "in_channels": 1, "out_channels": 1,
  "block_out_channels": [8, 16], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "UpBlock2D"],
  "norm_num_groups": 4, "num_class_embeds": 11
}"#;

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
