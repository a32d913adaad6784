//! A model config that fits the training images. A named config is a recipe, so it adapts: its input and output
//! channels, its sample size and its classes become the dataset's (a dataset without labels drops the class embedding).
//! An explicit `config.json` is a file the user chose, so it is only checked: where it does not fit, the error names
//! both sides and the flag or key that makes them agree.

use diffuse_models::unet::{SampleSize, UNetConfig};
use diffuse_models::unet_condition::UNet2DConditionConfig;
use diffuse_models::BackboneConfig;

/// What the network sees of the data: image shape and whether (and how many) classes.
#[derive(Clone, Copy, Debug)]
pub struct DataShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Number of classes when the dataset has labels.
    pub classes: Option<usize>,
}

/// The sample size of images of `data`'s shape.
fn sample_size(data: DataShape) -> SampleSize {
    if data.height == data.width {
        SampleSize::Square(data.height)
    } else {
        SampleSize::Rect(data.height, data.width)
    }
}

/// `config` (the named config `name`) adapted to `data`, with one line per change for the user.
pub fn adapt_named(
    name: &str,
    config: BackboneConfig,
    data: DataShape,
) -> Result<(BackboneConfig, Vec<String>), String> {
    let mut notes = Vec::new();
    let (in_before, size_before) = (config.in_channels(), config.sample_size());
    let adapted = match config {
        BackboneConfig::UNet2D(unet) => {
            let num_class_embeds = match (unet.num_class_embeds, data.classes) {
                (Some(_), Some(classes)) => Some(classes + 1),
                (Some(_), None) => {
                    notes.push(format!(
                        "{name}: the dataset has no labels, so the model is unconditional (class embedding dropped)"
                    ));
                    None
                }
                (None, _) => None,
            };
            if let (Some(before), Some(after)) = (unet.num_class_embeds, num_class_embeds) {
                if before != after {
                    notes.push(format!(
                        "{name}: {after} class embeddings (the dataset's {} classes and the null class) instead \
                         of {before}",
                        after - 1
                    ));
                }
            }
            BackboneConfig::UNet2D(UNetConfig {
                in_channels: data.channels,
                out_channels: data.channels,
                sample_size: Some(sample_size(data)),
                class_embed_type: if num_class_embeds.is_some() {
                    unet.class_embed_type
                } else {
                    None
                },
                num_class_embeds,
                ..unet
            })
        }
        // Conditioned on text, not labels: the dataset's classes do not change it.
        BackboneConfig::UNet2DCondition(unet) => {
            BackboneConfig::UNet2DCondition(UNet2DConditionConfig {
                in_channels: data.channels,
                out_channels: data.channels,
                sample_size: Some(sample_size(data)),
                ..unet
            })
        }
        BackboneConfig::DiT(mut dit) => {
            let Some(classes) = data.classes else {
                return Err(format!(
                    "{name} is a class-conditional DiT but the dataset has no labels; add a labels.txt \
                     (`path,label` lines) or class sub-folders, or train a U-Net (--config fashion-small)"
                ));
            };
            if data.height != data.width {
                return Err(format!(
                    "{name} is a DiT, which trains on square images, but the dataset's are {}×{}; pass \
                     --resolution N",
                    data.height, data.width
                ));
            }
            if dit.num_embeds_ada_norm != Some(classes) {
                notes.push(format!(
                    "{name}: {classes} classes (the dataset's) and the null class"
                ));
            }
            let learned_variance = dit.learns_variance();
            dit.in_channels = data.channels;
            dit.out_channels = learned_variance.then_some(2 * data.channels);
            dit.sample_size = data.height;
            dit.num_embeds_ada_norm = Some(classes);
            BackboneConfig::DiT(dit)
        }
    };
    if in_before != data.channels {
        notes.push(format!(
            "{name}: {} input channels (the dataset's) instead of {in_before}",
            data.channels
        ));
    }
    let size = (data.height, data.width);
    if size_before != Some(size) {
        notes.push(format!(
            "{name}: sample size {}×{} (the dataset's)",
            size.0, size.1
        ));
    }
    Ok((adapted, notes))
}

/// Checks that the `config.json` at `path` fits `data` (from `source`); the error names both and the fix.
pub fn check_explicit(
    config: &BackboneConfig,
    path: &str,
    data: DataShape,
    source: &str,
) -> Result<(), String> {
    let class = config.class_name();
    let channels = data.channels;
    if config.in_channels() != channels {
        return Err(format!(
            "{path}: the {class} takes in_channels = {} but {source} holds {channels}-channel images; pass \
             --channels {} to convert the images, or set in_channels (and out_channels) to {channels}",
            config.in_channels(),
            config.in_channels()
        ));
    }
    let out = if config.learns_variance() {
        2 * channels
    } else {
        channels
    };
    if config.out_channels() != out {
        return Err(format!(
            "{path}: the {class} gives out_channels = {} but images of {channels} channels need {out}; set \
             out_channels to {out}",
            config.out_channels()
        ));
    }
    if let Some((height, width)) = config
        .sample_size()
        .filter(|&s| s != (data.height, data.width))
    {
        let flag = if height == width {
            format!("pass --resolution {height} to resize the images, or ")
        } else {
            String::new()
        };
        return Err(format!(
            "{path}: the {class} has sample_size {height}×{width} but {source} holds {}×{} images; {flag}set \
             sample_size to {}",
            data.height, data.width, data.height
        ));
    }
    match (config.num_class_embeds(), data.classes) {
        (Some(embeds), None) => Err(format!(
            "{path}: the {class} is class-conditional ({embeds} class embeddings) but {source} has no labels; add a \
             labels.txt (`path,label` lines) or class sub-folders, or remove the class embedding \
             (num_class_embeds: null)"
        )),
        _ => Ok(()),
    }
}
