//! Why [`crate::Gpu::new`] could not open a device, sorted by what the caller should do about it.
//!
//! - **No device**: the CUDA driver library is not installed (or only its build-time stub is), the driver finds no
//!   CUDA device, or no device has the ordinal asked for. This machine cannot run a kernel: a GPU test reports itself
//!   ignored, `--device auto` takes the CPU, `cuda_bench` says there is nothing to time.
//! - **Unusable**: a driver and a device are there, but diffuse cannot run on them: the context cannot be created
//!   (the device is busy in exclusive mode, out of memory, or the driver is broken), a PTX module does not JIT (the
//!   driver is older than the module's ISA version, or the PTX is wrong), or the device is older than sm_80. That is
//!   a fault to report, never a reason to skip: GPU tests fail with the driver's message, `cuda_bench` exits
//!   non-zero, and `--device auto` warns before it falls back to the CPU.

use std::fmt;

use cudarc::driver::sys::CUresult;
use cudarc::driver::DriverError;

use crate::error::KernelError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No CUDA driver, no CUDA device, or no device with this ordinal; the message says which.
    NoDevice(String),
    /// A device is there but cannot run diffuse's kernels; the message carries the driver's words.
    Unusable(String),
}

impl OpenError {
    /// The driver library is not there at all.
    pub fn no_driver() -> OpenError {
        OpenError::NoDevice("no CUDA driver (libcuda.so could not be loaded)".into())
    }

    /// The error of a failed driver call made while `doing` something (e.g. "creating a context on device 0"):
    /// [`OpenError::NoDevice`] for the codes that mean this machine has no such CUDA device, [`OpenError::Unusable`]
    /// for every other code.
    pub fn from_driver(doing: &str, err: DriverError) -> OpenError {
        let message = format!("{doing}: {}", describe(err));
        match err.0 {
            // cuInit on a machine without a GPU, cuDeviceGet past the last ordinal, and the toolkit's link-time stub
            // of libcuda found in place of a real driver.
            CUresult::CUDA_ERROR_NO_DEVICE
            | CUresult::CUDA_ERROR_INVALID_DEVICE
            | CUresult::CUDA_ERROR_STUB_LIBRARY => OpenError::NoDevice(message),
            _ => OpenError::Unusable(message),
        }
    }

    /// True when the machine has no such device (as opposed to a device that fails).
    pub fn is_no_device(&self) -> bool {
        matches!(self, OpenError::NoDevice(_))
    }

    pub fn message(&self) -> &str {
        match self {
            OpenError::NoDevice(message) | OpenError::Unusable(message) => message,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for OpenError {}

impl From<OpenError> for KernelError {
    fn from(e: OpenError) -> KernelError {
        KernelError::new("gpu", e.to_string())
    }
}

/// True when the CUDA driver library can be loaded. Every driver call panics in cudarc's dynamic loading when it
/// cannot, so this is asked before the first one.
pub fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries to open the driver library by its usual names and closes it again; it
    // has no preconditions.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// `CUDA_ERROR_NAME (the driver's description)`. The description is asked of the driver only when its library is
/// loaded (a driver error made up in a test, on a machine without one, is named but not described).
pub fn describe(err: DriverError) -> String {
    let name = format!("{:?}", err.0);
    if !driver_library_present() {
        return name;
    }
    match err.error_string() {
        Ok(text) => format!("{name} ({})", text.to_string_lossy()),
        Err(_) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_device_and_a_missing_ordinal_mean_no_device() {
        for code in [
            CUresult::CUDA_ERROR_NO_DEVICE,
            CUresult::CUDA_ERROR_INVALID_DEVICE,
            CUresult::CUDA_ERROR_STUB_LIBRARY,
        ] {
            let err = OpenError::from_driver("creating a context on device 0", DriverError(code));
            assert!(err.is_no_device(), "{code:?}: {err}");
            assert!(err.message().contains(&format!("{code:?}")), "{err}");
        }
    }

    #[test]
    fn every_other_driver_failure_means_an_unusable_device() {
        for code in [
            CUresult::CUDA_ERROR_INVALID_PTX,
            CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION,
            CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU,
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            CUresult::CUDA_ERROR_DEVICE_UNAVAILABLE,
            CUresult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH,
            CUresult::CUDA_ERROR_UNKNOWN,
        ] {
            let err = OpenError::from_driver("loading gemm_bf16.ptx", DriverError(code));
            assert!(
                !err.is_no_device(),
                "{code:?} must not be taken for a missing device"
            );
            assert!(
                err.message().starts_with("loading gemm_bf16.ptx: ")
                    && err.message().contains(&format!("{code:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_open_error_becomes_a_kernel_error_of_the_gpu_with_the_same_words() {
        let err = KernelError::from(OpenError::Unusable("device 0 is sm_75".into()));
        assert_eq!((err.op, err.message.as_str()), ("gpu", "device 0 is sm_75"));
    }
}
