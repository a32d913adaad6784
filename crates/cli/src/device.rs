//! `--device`, shared by the commands that run a model: `auto` takes the first CUDA device when its driver loads and
//! the device opens, else the CPU; `cpu` forces the CPU kernels; `cuda` (or `cuda:N`) insists on a GPU and says why
//! when there is none. Under mpirun, `cuda` and `auto` mean the GPU of the rank's index on its node
//! ([`DeviceArgs::resolve_for_rank`]).

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

    /// As [`DeviceArgs::resolve`] for one rank of an MPI job (one process per GPU): `cuda`, and `auto` where it
    /// finds a GPU, mean `cuda:L` with `L` the rank's index among the ranks on its node (`local_rank`).
    pub fn resolve_for_rank(&self, local_rank: Option<usize>) -> Result<Device, String> {
        let Some(local) = local_rank else {
            return self.resolve();
        };
        let device = match self.device.as_str() {
            "cuda" => Device::Cuda(local),
            "auto" if matches!(Device::auto(), Device::Cuda(_)) => Device::Cuda(local),
            _ => return self.resolve(),
        };
        device.check_available().map_err(|e| {
            format!(
                "--device {}: the rank with local index {local} takes {device} (one process per GPU): {e}; start                  no more processes per node than it has GPUs, or use --device cpu",
                self.device
            )
        })?;
        Ok(device)
    }
}
