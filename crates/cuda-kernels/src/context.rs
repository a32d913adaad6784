//! The GPU handle: one CUDA context, one stream, the PTX modules (loaded once per context) and the device limits the
//! launch helper checks against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use crate::alloc::BufferPool;
use crate::buffer::DeviceBuffer;
use crate::error::{driver_error, Result};
use crate::jit::jit_error_log;
use crate::open_error::{driver_library_present, OpenError};

/// One hand-written PTX file in `kernels/`, embedded in the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Philox,
    Elementwise,
    Noise,
    Adamw,
    Reduce,
    Softmax,
    GroupNorm,
    GemmF32,
    GemmBf16,
    PackBf16,
    Conv2dBf16,
    Conv2d,
    Conv2dBackward,
    Attention,
    AttentionBackward,
    Index,
    Select,
    LayerNormModulate,
    GatedResidual,
    SampleMse,
}

impl Module {
    /// Every module; [`Gpu::new`] loads them all, so any entry point can be looked up.
    pub const ALL: [Module; 20] = [
        Module::Philox,
        Module::Elementwise,
        Module::Noise,
        Module::Adamw,
        Module::Reduce,
        Module::Softmax,
        Module::GroupNorm,
        Module::GemmF32,
        Module::GemmBf16,
        Module::PackBf16,
        Module::Conv2dBf16,
        Module::Conv2d,
        Module::Conv2dBackward,
        Module::Attention,
        Module::AttentionBackward,
        Module::Index,
        Module::Select,
        Module::LayerNormModulate,
        Module::GatedResidual,
        Module::SampleMse,
    ];

    /// The file name under `kernels/`.
    pub fn file(self) -> &'static str {
        match self {
            Module::Philox => "philox.ptx",
            Module::Elementwise => "elementwise.ptx",
            Module::Noise => "noise.ptx",
            Module::Adamw => "adamw.ptx",
            Module::Reduce => "reduce.ptx",
            Module::Softmax => "softmax.ptx",
            Module::GroupNorm => "group_norm.ptx",
            Module::GemmF32 => "gemm_f32.ptx",
            Module::GemmBf16 => "gemm_bf16.ptx",
            Module::PackBf16 => "pack_bf16.ptx",
            Module::Conv2dBf16 => "conv2d_bf16.ptx",
            Module::Conv2d => "conv2d.ptx",
            Module::Conv2dBackward => "conv2d_backward.ptx",
            Module::Attention => "attention.ptx",
            Module::AttentionBackward => "attention_backward.ptx",
            Module::Index => "index.ptx",
            Module::Select => "select.ptx",
            Module::LayerNormModulate => "layer_norm_modulate.ptx",
            Module::GatedResidual => "gated_residual.ptx",
            Module::SampleMse => "sample_mse.ptx",
        }
    }

    /// The PTX source text.
    pub fn source(self) -> &'static str {
        match self {
            Module::Philox => include_str!("../../../kernels/philox.ptx"),
            Module::Elementwise => include_str!("../../../kernels/elementwise.ptx"),
            Module::Noise => include_str!("../../../kernels/noise.ptx"),
            Module::Adamw => include_str!("../../../kernels/adamw.ptx"),
            Module::Reduce => include_str!("../../../kernels/reduce.ptx"),
            Module::Softmax => include_str!("../../../kernels/softmax.ptx"),
            Module::GroupNorm => include_str!("../../../kernels/group_norm.ptx"),
            Module::GemmF32 => include_str!("../../../kernels/gemm_f32.ptx"),
            Module::GemmBf16 => include_str!("../../../kernels/gemm_bf16.ptx"),
            Module::PackBf16 => include_str!("../../../kernels/pack_bf16.ptx"),
            Module::Conv2dBf16 => include_str!("../../../kernels/conv2d_bf16.ptx"),
            Module::Conv2d => include_str!("../../../kernels/conv2d.ptx"),
            Module::Conv2dBackward => include_str!("../../../kernels/conv2d_backward.ptx"),
            Module::Attention => include_str!("../../../kernels/attention.ptx"),
            Module::AttentionBackward => include_str!("../../../kernels/attention_backward.ptx"),
            Module::Index => include_str!("../../../kernels/index.ptx"),
            Module::Select => include_str!("../../../kernels/select.ptx"),
            Module::LayerNormModulate => include_str!("../../../kernels/layer_norm_modulate.ptx"),
            Module::GatedResidual => include_str!("../../../kernels/gated_residual.ptx"),
            Module::SampleMse => include_str!("../../../kernels/sample_mse.ptx"),
        }
    }
}

/// The device limits a launch is checked against (read once, at context creation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    pub max_threads_per_block: u32,
    pub max_block_dim: [u32; 3],
    pub max_grid_dim: [u32; 3],
    /// Shared memory a block may use without opting in (48 KiB on every sm_80+ part).
    pub max_shared_per_block: u32,
    /// Shared memory a block may use after `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` is raised.
    pub max_shared_per_block_optin: u32,
}

/// A CUDA device ready to run diffuse's kernels.
///
/// Create one with [`Gpu::new`]; it returns an [`OpenError`] (never panics) that says whether the machine has no such
/// device or has one that cannot run the kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: HashMap<Module, Arc<CudaModule>>,
    functions: Mutex<HashMap<(Module, &'static str), CudaFunction>>,
    name: String,
    limits: DeviceLimits,
    pool: Mutex<BufferPool>,
}

const OP: &str = "gpu";

impl Gpu {
    /// Opens device `ordinal`: checks that the CUDA driver library can be loaded, creates the context and a stream,
    /// reads the device limits, checks the compute capability and loads (JIT-compiles) every PTX module.
    pub fn new(ordinal: usize) -> std::result::Result<Gpu, OpenError> {
        // Checking first matters: with dynamic loading, any driver call panics when the library is missing.
        if !driver_library_present() {
            return Err(OpenError::no_driver());
        }
        let driver = |doing: &str| {
            let doing = format!("{doing} on device {ordinal}");
            move |e| OpenError::from_driver(&doing, e)
        };
        let ctx = CudaContext::new(ordinal).map_err(driver("creating a context"))?;
        let name = ctx.name().map_err(driver("reading the name"))?;
        let limits = read_limits(&ctx).map_err(|e| OpenError::Unusable(e.to_string()))?;
        check_compute_capability(ordinal, &name, limits.compute_capability)?;
        let stream = ctx.new_stream().map_err(driver("creating a stream"))?;
        let mut modules = HashMap::new();
        for module in Module::ALL {
            let loaded = ctx
                .load_module(Ptx::from_src(module.source()))
                .map_err(|e| module_error(ordinal, &name, module, e))?;
            modules.insert(module, loaded);
        }
        Ok(Gpu {
            ctx,
            stream,
            modules,
            functions: Mutex::new(HashMap::new()),
            name,
            limits,
            pool: Mutex::new(BufferPool::default()),
        })
    }

    /// The device's name as the driver reports it, e.g. "NVIDIA H200".
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every kernel of this handle is launched on, in call order.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn limits(&self) -> &DeviceLimits {
        &self.limits
    }

    /// The caching allocator of this device (see [`crate::alloc`]).
    pub fn pool(&self) -> &Mutex<BufferPool> {
        &self.pool
    }

    /// A device buffer of `len` f32s from the caching allocator (contents are whatever its last user left).
    pub fn take_buffer(&self, len: usize) -> Result<DeviceBuffer> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(&self.stream, len)
    }

    /// Returns a buffer to the caching allocator for reuse.
    pub fn give_back_buffer(&self, buffer: DeviceBuffer) {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .give_back(buffer);
    }

    /// Waits until every launched kernel has finished.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_error(OP, "synchronising the stream", e))
    }

    /// The entry point `name` of `module`, looked up once and cached.
    pub(crate) fn function(&self, module: Module, name: &'static str) -> Result<CudaFunction> {
        let mut functions = self
            .functions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(f) = functions.get(&(module, name)) {
            return Ok(f.clone());
        }
        let f = self.modules[&module]
            .load_function(name)
            .map_err(|e| driver_error(OP, &format!("finding {name} in {}", module.file()), e))?;
        functions.insert((module, name), f.clone());
        Ok(f)
    }
}

/// The oldest architecture the kernels are written for (`.target sm_80`: `cp.async`, bf16 `mma.sync`).
const MIN_COMPUTE_CAPABILITY: (i32, i32) = (8, 0);

/// An [`OpenError::Unusable`] naming the device when it is older than sm_80.
pub fn check_compute_capability(
    ordinal: usize,
    name: &str,
    (major, minor): (i32, i32),
) -> std::result::Result<(), OpenError> {
    if (major, minor) >= MIN_COMPUTE_CAPABILITY {
        return Ok(());
    }
    Err(OpenError::Unusable(format!(
        "device {ordinal} ({name}) has compute capability {major}.{minor}; the kernels need sm_80 or newer"
    )))
}

/// A PTX module that did not load: the driver's error and, when it has one, its JIT log (the assembler's complaint
/// with the line number).
fn module_error(ordinal: usize, name: &str, module: Module, err: DriverError) -> OpenError {
    let doing = format!(
        "loading kernels/{} on device {ordinal} ({name})",
        module.file()
    );
    match OpenError::from_driver(&doing, err) {
        OpenError::Unusable(message) => OpenError::Unusable(match jit_error_log(module.source()) {
            Some(log) => format!("{message}; the driver's JIT log:\n{log}"),
            None => message,
        }),
        no_device => no_device,
    }
}

fn read_limits(ctx: &Arc<CudaContext>) -> Result<DeviceLimits> {
    let attr = |a: Attr| -> Result<u32> {
        let v = ctx
            .attribute(a)
            .map_err(|e| driver_error(OP, &format!("reading device attribute {a:?}"), e))?;
        Ok(u32::try_from(v).unwrap_or(0))
    };
    let compute_capability = ctx
        .compute_capability()
        .map_err(|e| driver_error(OP, "reading the compute capability", e))?;
    Ok(DeviceLimits {
        compute_capability,
        multiprocessors: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        max_threads_per_block: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        max_block_dim: [
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
        ],
        max_grid_dim: [
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
        ],
        max_shared_per_block: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?,
        max_shared_per_block_optin: attr(
            Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::check_compute_capability;

    #[test]
    fn a_device_older_than_sm_80_is_unusable_and_named() {
        let err = check_compute_capability(1, "Tesla T4", (7, 5)).unwrap_err();
        assert!(!err.is_no_device(), "an old device is a device: {err}");
        assert!(
            err.message().contains("device 1 (Tesla T4)") && err.message().contains("7.5"),
            "{err}"
        );
        for capability in [(8, 0), (8, 6), (9, 0), (12, 0)] {
            assert!(check_compute_capability(0, "any", capability).is_ok());
        }
    }
}
