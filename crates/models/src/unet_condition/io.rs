//! The conditional U-Net's diffusers folder (`unet/` of a Stable Diffusion pipeline): `config.json`
//! ([`UNet2DConditionConfig`]) and `diffusion_pytorch_model.safetensors`, read and written through
//! [`crate::folder`].

use super::config::UNet2DConditionConfig;
use super::model::UNet2DConditionModel;
use crate::error::Result;
use crate::folder::{load_weights, read_config, save_folder, DIFFUSERS_WEIGHTS_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::Device;
use std::path::Path;

impl UNet2DConditionModel {
    /// Loads a diffusers `UNet2DConditionModel` folder onto `device`: the network and the store holding its
    /// parameters.
    pub fn load_diffusers(
        dir: &Path,
        device: Device,
    ) -> Result<(UNet2DConditionModel, ParamStore)> {
        let config = read_config(dir, UNet2DConditionConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = UNet2DConditionModel::new(config, &store)?;
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
