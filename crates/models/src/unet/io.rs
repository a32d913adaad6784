//! The U-Net's diffusers folder: `config.json` ([`UNetConfig`]) and `diffusion_pytorch_model.safetensors`, read and
//! written through [`crate::folder`].

use super::config::UNetConfig;
use super::model::UNet2DModel;
use crate::error::Result;
use crate::folder::{load_weights, read_config, save_folder, DIFFUSERS_WEIGHTS_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::Device;
use std::path::Path;

impl UNet2DModel {
    /// Loads a diffusers model folder onto `device`: the network and the store holding its parameters.
    pub fn load_diffusers(dir: &Path, device: Device) -> Result<(UNet2DModel, ParamStore)> {
        let config = read_config(dir, UNetConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = UNet2DModel::new(config, &store)?;
        load_weights(&store, &dir.join(DIFFUSERS_WEIGHTS_FILE))?;
        Ok((model, store))
    }

    /// Writes this model's `config.json` and its parameters (from `store`, the store it was built in) as f32 into
    /// `dir`, which is created if missing.
    pub fn save_diffusers(&self, store: &ParamStore, dir: &Path) -> Result<()> {
        save_folder(
            dir,
            &self.config().to_json_string(),
            store,
            DIFFUSERS_WEIGHTS_FILE,
        )
    }
}
