//! Whether a model fits in memory, checked from its config before a single weight is allocated: a `config.json`
//! with `block_out_channels: [200000, 64, 64]` asks for 640 GB, and allocating it aborts the process.
//!
//! ```text
//! parameters  U-Net: Σ_levels c² (18·L down + 27·(L+1) up, 3×3 convolutions) + 4c² per attention layer + 40 c_last²
//!                    (the mid block) + the time embedding; a cross-attention U-Net adds 20c² per transformer
//!                    layer; DiT: 18·d² per block (attention 4d², MLP 8d², adaLN 6d²)
//! training    20 bytes per parameter: f32 weights, gradients, AdamW's two moments and the EMA copy
//! activations U-Net: batch · Σ_levels 8·(2L + 1) · c · (H/2^i)(W/2^i) f32 values kept for the backward pass;
//!             DiT: batch · tokens · d · 16 per block
//! ```
//!
//! An estimate, within a factor of two of the exact count for the named configs; it refuses only what cannot fit in
//! the memory the system reports available (`MemAvailable` of `/proc/meminfo`; where that cannot be read, nothing
//! is checked).

use diffuse_models::BackboneConfig;

/// Bytes per parameter while training: weights, gradients, two AdamW moments, EMA weights (f32 each).
const TRAINING_BYTES_PER_PARAMETER: f64 = 20.0;

/// Estimated parameters and activation values (per image) of one training step of `config` on `height × width`.
fn estimate(config: &BackboneConfig, height: usize, width: usize) -> (f64, f64) {
    match config {
        BackboneConfig::UNet2D(unet) => {
            let layers = unet.layers_per_block as f64;
            let temb = unet.time_embed_dim() as f64;
            let mut parameters = 2.0 * temb * temb;
            let mut activations = 0.0;
            let attention = |kind: &str| kind.starts_with("Attn");
            for (level, &channels) in unet.block_out_channels.iter().enumerate() {
                let c = channels as f64;
                parameters += c * c * (18.0 * layers + 27.0 * (layers + 1.0))
                    + temb * c * (2.0 * layers + 1.0);
                let attention_layers = [&unet.down_block_types, &unet.up_block_types]
                    .iter()
                    .filter(|types| types.get(level).is_some_and(|kind| attention(kind)))
                    .count() as f64;
                parameters += 4.0 * c * c * attention_layers * (layers + 1.0);
                let scale = f64::from(1u32 << level.min(30));
                let pixels = (height as f64 / scale).max(1.0) * (width as f64 / scale).max(1.0);
                activations += 8.0 * (2.0 * layers + 1.0) * c * pixels;
            }
            let last = unet.block_out_channels.last().copied().unwrap_or(0) as f64;
            parameters += 40.0 * last * last;
            (parameters, activations)
        }
        BackboneConfig::UNet2DCondition(unet) => {
            let temb = unet.time_embed_dim() as f64;
            let mut parameters = 2.0 * temb * temb;
            let mut activations = 0.0;
            for (level, &channels) in unet.block_out_channels.iter().enumerate() {
                let c = channels as f64;
                let layers = unet.layers_per_block.at(level) as f64;
                parameters += c * c * (18.0 * layers + 27.0 * (layers + 1.0))
                    + temb * c * (2.0 * layers + 1.0);
                let cross = [&unet.down_block_types, &unet.up_block_types]
                    .iter()
                    .filter(|types| {
                        types
                            .get(level)
                            .is_some_and(|kind| kind.starts_with("CrossAttn"))
                    })
                    .count() as f64;
                // A transformer block: self- and cross-attention (≈ 6c²), the GEGLU feed-forward (12c²), the
                // projections in and out (2c²); its activations about three times a resnet's.
                let transformer_layers = unet.transformer_layers_per_block.at(level) as f64;
                parameters += 20.0 * c * c * transformer_layers * cross * (layers + 1.0);
                let scale = f64::from(1u32 << level.min(30));
                let pixels = (height as f64 / scale).max(1.0) * (width as f64 / scale).max(1.0);
                activations +=
                    8.0 * (2.0 * layers + 1.0) * c * pixels * (1.0 + 3.0 * cross.min(1.0));
            }
            let last = unet.block_out_channels.last().copied().unwrap_or(0) as f64;
            parameters += 60.0 * last * last;
            (parameters, activations)
        }
        BackboneConfig::DiT(dit) => {
            let d = dit.inner_dim() as f64;
            let blocks = dit.num_layers as f64;
            let patch = dit.patch_size.max(1) as f64;
            let tokens = (height as f64 / patch) * (width as f64 / patch);
            (18.0 * d * d * blocks, 16.0 * tokens * d * blocks)
        }
    }
}

/// The memory the system reports available, in bytes.
fn available_bytes() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
}

/// Refuses to train `config` (from `source`) at `batch` images of `height × width` when its estimated memory exceeds
/// what the system has available, naming the size it would need.
pub fn check_training_fits(
    config: &BackboneConfig,
    source: &str,
    batch: usize,
    height: usize,
    width: usize,
) -> Result<(), String> {
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    let (parameters, activations_per_image) = estimate(config, height, width);
    let weights = parameters * TRAINING_BYTES_PER_PARAMETER;
    let activations = activations_per_image * batch as f64 * 4.0;
    if weights + activations <= available {
        return Ok(());
    }
    Err(format!(
        "--config {source}: the {} would need about {} to train (about {:.3e} parameters × 20 bytes for weights, \
         gradients, AdamW state and EMA = {}, plus {} of activations at batch {batch} of {height}×{width}), more \
         than the {} this machine has available; choose smaller block_out_channels / layers, or a smaller \
         --batch-size or --resolution",
        config.class_name(),
        gib(weights + activations),
        parameters,
        gib(weights),
        gib(activations),
        gib(available)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate stays within a factor of two of the exact parameter counts of the named configs (README and
    /// docs/dit.md state them), so it neither refuses them nor lets a model ten times too big through.
    #[test]
    fn parameter_estimates_of_named_configs_are_within_a_factor_of_two() {
        for (name, exact) in [
            ("fashion-small", 1_114_209.0),
            ("ddpm-cifar10", 35_746_307.0),
        ] {
            let config = BackboneConfig::named(name).unwrap();
            let (estimate, _) = estimate(&config, 32, 32);
            let ratio = estimate / exact;
            assert!(
                (0.5..2.0).contains(&ratio),
                "{name}: estimate {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn a_model_of_200000_channels_is_refused_with_the_size_it_needs() {
        let text = r#"{"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [200000, 64, 64], "layers_per_block": 1,
            "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"], "norm_num_groups": 4}"#;
        let config = BackboneConfig::from_json_str(text).unwrap();
        if available_bytes().is_none() {
            return;
        }
        let error = check_training_fits(&config, "big.json", 32, 28, 28).unwrap_err();
        assert!(
            error.contains("big.json") && error.contains("GiB") && error.contains("available"),
            "{error}"
        );
        let fashion = BackboneConfig::named("fashion-small").unwrap();
        check_training_fits(&fashion, "fashion-small", 32, 28, 28).unwrap();
    }
}
