//! The one launch helper: checks a launch shape against the device limits, then launches, naming the kernel and the
//! shape in any error.

use cudarc::driver::sys::CUfunction_attribute as FuncAttr;
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::context::{Gpu, Module};
use crate::elementwise::LayoutParam;
use crate::error::{driver_error, KernelError, Result};

/// One kernel parameter. Device pointers travel as `Ptr` (a raw `CUdeviceptr`, taken from a buffer with
/// `device_ptr` / `device_ptr_mut` while its guard is alive).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    Ptr(u64),
    U64(u64),
    U32(u32),
    F32(f32),
    Layout(LayoutParam),
}

/// A kernel and the shape to launch it with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Launch {
    pub module: Module,
    pub kernel: &'static str,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

impl Launch {
    /// A 1-D launch of `blocks` blocks of `threads` threads, no dynamic shared memory.
    pub fn linear(module: Module, kernel: &'static str, blocks: u32, threads: u32) -> Launch {
        Launch {
            module,
            kernel,
            grid: (blocks, 1, 1),
            block: (threads, 1, 1),
            shared_bytes: 0,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (grid {:?}, block {:?}, {} B dynamic shared memory)",
            self.kernel, self.grid, self.block, self.shared_bytes
        )
    }

    fn check(&self, gpu: &Gpu) -> std::result::Result<(), String> {
        let limits = gpu.limits();
        let grid = [self.grid.0, self.grid.1, self.grid.2];
        let block = [self.block.0, self.block.1, self.block.2];
        for axis in 0..3 {
            if grid[axis] == 0 || grid[axis] > limits.max_grid_dim[axis] {
                return Err(format!(
                    "grid dimension {axis} is {} but must be in 1..={}",
                    grid[axis], limits.max_grid_dim[axis]
                ));
            }
            if block[axis] == 0 || block[axis] > limits.max_block_dim[axis] {
                return Err(format!(
                    "block dimension {axis} is {} but must be in 1..={}",
                    block[axis], limits.max_block_dim[axis]
                ));
            }
        }
        let threads = u64::from(block[0]) * u64::from(block[1]) * u64::from(block[2]);
        if threads > u64::from(limits.max_threads_per_block) {
            return Err(format!(
                "{threads} threads per block exceed the device limit {}",
                limits.max_threads_per_block
            ));
        }
        if self.shared_bytes > limits.max_shared_per_block_optin {
            return Err(format!(
                "{} B of dynamic shared memory exceed the device limit {} B",
                self.shared_bytes, limits.max_shared_per_block_optin
            ));
        }
        Ok(())
    }
}

/// Checks `launch` against the device limits and launches it on the handle's stream with `args`.
pub(crate) fn launch(gpu: &Gpu, op: &'static str, launch: Launch, args: &[Arg]) -> Result<()> {
    launch.check(gpu).map_err(|why| {
        KernelError::new(op, format!("cannot launch {}: {why}", launch.describe()))
    })?;
    let function = gpu.function(launch.module, launch.kernel)?;
    if launch.shared_bytes > gpu.limits().max_shared_per_block {
        // Above 48 KiB a kernel must opt in to the larger carve-out; the value was checked against the device above.
        function
            .set_attribute(
                FuncAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                launch.shared_bytes as i32,
            )
            .map_err(|e| {
                driver_error(
                    op,
                    &format!("raising shared memory for {}", launch.describe()),
                    e,
                )
            })?;
    }
    let stream = gpu.stream();
    let mut builder = stream.launch_builder(&function);
    for arg in args {
        match arg {
            Arg::Ptr(v) | Arg::U64(v) => builder.arg(v),
            Arg::U32(v) => builder.arg(v),
            Arg::F32(v) => builder.arg(v),
            Arg::Layout(v) => builder.arg(v),
        };
    }
    let config = LaunchConfig {
        grid_dim: launch.grid,
        block_dim: launch.block,
        shared_mem_bytes: launch.shared_bytes,
    };
    // SAFETY: every caller passes exactly the parameters the PTX entry declares, in order and with the declared
    // widths (u64 for pointers and sizes, u32/f32 for scalars, the 152-byte layout struct), and has checked that each buffer behind a `Ptr`
    // holds at least as many elements as the kernel will index for these arguments. The buffers' guards outlive this
    // call, and the stream orders the kernel after earlier work on them.
    unsafe { builder.launch(config) }
        .map(|_| ())
        .map_err(|e| driver_error(op, &format!("launching {}", launch.describe()), e))
}

/// Blocks of `threads` threads needed to give one thread to each of `work` items, capped so that a grid-stride loop
/// covers the rest (the kernels that use this helper all loop by the grid size).
pub(crate) fn grid_for(work: u64, threads: u32, gpu: &Gpu) -> u32 {
    let cap = u64::from(gpu.limits().multiprocessors.max(1)) * 32;
    work.div_ceil(u64::from(threads)).clamp(1, cap) as u32
}
