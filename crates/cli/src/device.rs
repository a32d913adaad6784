//! `--device`, shared by the commands that run a model: `auto` takes the first CUDA device when its driver loads and
//! the device opens, else the CPU; `cpu` forces the CPU kernels; `cuda` (or `cuda:N`) insists on a GPU and says why
//! when there is none.

use clap::Args;
use diffuse_tensor::Device;

#[derive(Args, Clone, Debug)]
pub struct DeviceArgs {
    /// auto (the first CUDA device when a driver and a device are present, else cpu), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl DeviceArgs {
    /// The device asked for, checked to be usable.
    pub fn resolve(&self) -> Result<Device, String> {
        if self.device == "auto" {
            return Ok(Device::auto());
        }
        let device: Device = self
            .device
            .parse()
            .map_err(|e| format!("--device: {e} or auto"))?;
        device
            .check_available()
            .map_err(|e| format!("--device {}: {e}; use --device cpu", self.device))?;
        Ok(device)
    }
}
