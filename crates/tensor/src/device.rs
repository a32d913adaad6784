//! Where a tensor's storage lives.

use std::fmt;

use crate::backend::cuda::check_storable;
use crate::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl Device {
    /// Ok when tensors can live on this device: always for the CPU; for a CUDA device, when the driver loads and the
    /// device opens (else [`crate::Error::DeviceUnavailable`] naming the device and the reason).
    pub fn check_available(self) -> crate::Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(ordinal) => check_storable("device", ordinal, DType::F32),
        }
    }

    /// The first CUDA device when one opens, else the CPU: what `--device auto` means.
    pub fn auto() -> Device {
        match Device::Cuda(0).check_available() {
            Ok(()) => Device::Cuda(0),
            Err(_) => Device::Cpu,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device '{s}' (expected cpu, cuda or cuda:N)")),
        }
    }
}
