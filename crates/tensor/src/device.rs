//! Where a tensor's storage lives.

use std::fmt;

use crate::backend::cuda::{availability, check_storable, describe};
use crate::DType;
use crate::OpenError;

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

    /// Ok when tensors can live on this device, else why not: [`OpenError::NoDevice`] when this machine has no such
    /// device, [`OpenError::Unusable`] when it has one that cannot run the kernels.
    pub fn open(self) -> Result<(), OpenError> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(ordinal) => availability(ordinal),
        }
    }

    /// A line about the device: "cpu (16 threads)", or "cuda:0 (NVIDIA H200, compute capability 9.0, 132 SMs)"
    /// for a CUDA device that opens (else the reason it does not).
    pub fn describe(self) -> String {
        match self {
            Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Cuda(ordinal) => match describe(ordinal) {
                Ok(what) => format!("{self} ({what})"),
                Err(err) => err.to_string(),
            },
        }
    }

    /// The first CUDA device when one opens, else the CPU: what `--device auto` means. Says on stderr which device
    /// it picked and why, and warns when a CUDA device is there but cannot run the kernels (that is a fault, not a
    /// machine without a GPU: `--device cuda` turns it into an error).
    pub fn auto() -> Device {
        let (device, why) =
            Device::auto_choice(Device::Cuda(0).open(), || Device::Cuda(0).describe());
        eprintln!("{why}");
        device
    }

    /// What `--device auto` picks given how opening `cuda:0` went, and the lines that say why (`describe` names the
    /// device when it opened).
    pub fn auto_choice(
        cuda0: Result<(), OpenError>,
        describe: impl FnOnce() -> String,
    ) -> (Device, String) {
        match cuda0 {
            Ok(()) => (
                Device::Cuda(0),
                format!("device: {} (--device auto)", describe()),
            ),
            Err(OpenError::NoDevice(why)) => {
                (Device::Cpu, format!("device: cpu (--device auto: {why})"))
            }
            Err(OpenError::Unusable(why)) => (
                Device::Cpu,
                format!(
                    "warning: cuda:0 is present but cannot run diffuse's kernels: {why}\n\
                     device: cpu (--device auto falls back; --device cuda makes this an error)"
                ),
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> String {
        "cuda:0 (NVIDIA H200, compute capability 9.0, 132 SMs)".into()
    }

    #[test]
    fn auto_takes_a_cuda_device_that_opens_and_names_it() {
        let (device, why) = Device::auto_choice(Ok(()), named);
        assert_eq!(device, Device::Cuda(0));
        assert_eq!(
            why,
            "device: cuda:0 (NVIDIA H200, compute capability 9.0, 132 SMs) (--device auto)"
        );
    }

    #[test]
    fn auto_takes_the_cpu_on_a_machine_without_a_gpu_and_says_why() {
        let no_driver =
            OpenError::NoDevice("no CUDA driver: libcuda.so could not be loaded".into());
        let (device, why) = Device::auto_choice(Err(no_driver), || unreachable!());
        assert_eq!(device, Device::Cpu);
        assert!(
            why.starts_with("device: cpu") && why.contains("no CUDA driver"),
            "{why}"
        );
        assert!(!why.contains("warning"), "{why}");
    }

    #[test]
    fn auto_warns_when_a_gpu_is_there_but_cannot_run_the_kernels() {
        let broken = OpenError::Unusable(
            "loading kernels/gemm_bf16.ptx on device 0: CUDA_ERROR_INVALID_PTX".into(),
        );
        let (device, why) = Device::auto_choice(Err(broken), || unreachable!());
        assert_eq!(device, Device::Cpu);
        assert!(
            why.starts_with("warning: cuda:0 is present but cannot run")
                && why.contains("CUDA_ERROR_INVALID_PTX")
                && why.contains("--device cuda makes this an error"),
            "{why}"
        );
    }
}
