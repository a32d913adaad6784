//! What the CUDA driver sees, without opening anything: the devices, their names, compute capabilities and memory.
//! `diffuse info --devices` prints this beside whether each device opens for diffuse ([`crate::Gpu::new`]).

use cudarc::driver::result;
use cudarc::driver::sys::CUdevice_attribute as Attr;

use crate::open_error::{driver_library_present, OpenError};

/// One CUDA device as the driver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub memory_bytes: usize,
}

/// The driver's version as (major, minor), e.g. (13, 0): the newest PTX ISA it JIT-compiles follows from it.
pub fn driver_version() -> Result<(i32, i32), OpenError> {
    if !driver_library_present() {
        return Err(OpenError::no_driver());
    }
    result::init().map_err(|e| OpenError::from_driver("initialising the driver", e))?;
    let mut version = 0;
    // SAFETY: the driver is initialised and `version` is a valid place for the one int it writes.
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| OpenError::from_driver("reading the driver version", e))?;
    Ok((version / 1000, version % 1000 / 10))
}

/// Every device the driver sees, in ordinal order; [`OpenError::NoDevice`] when there is no driver or no device.
pub fn list() -> Result<Vec<DeviceInfo>, OpenError> {
    if !driver_library_present() {
        return Err(OpenError::no_driver());
    }
    let driver = |doing: String| move |e| OpenError::from_driver(&doing, e);
    result::init().map_err(driver("initialising the driver".into()))?;
    let count = result::device::get_count().map_err(driver("counting the devices".into()))?;
    if count <= 0 {
        return Err(OpenError::NoDevice(
            "the CUDA driver is installed but sees no device".into(),
        ));
    }
    (0..count)
        .map(|ordinal| {
            let device =
                result::device::get(ordinal).map_err(driver(format!("device {ordinal}")))?;
            let attribute = |a: Attr| {
                // SAFETY: `device` was returned by `cuDeviceGet` just above.
                unsafe { result::device::get_attribute(device, a) }
                    .map_err(driver(format!("reading {a:?} of device {ordinal}")))
            };
            Ok(DeviceInfo {
                ordinal: ordinal as usize,
                name: result::device::get_name(device)
                    .map_err(driver(format!("reading the name of device {ordinal}")))?,
                compute_capability: (
                    attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                    attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
                ),
                // SAFETY: as above.
                memory_bytes: unsafe { result::device::total_mem(device) }
                    .map_err(driver(format!("reading the memory of device {ordinal}")))?,
            })
        })
        .collect()
}
