//! Philox4x32-10 random numbers on the GPU: the same stream, element for element, as the CPU generator
//! (`kernels/philox.ptx` has the math).

use cudarc::driver::DevicePtrMut;

use crate::context::{Gpu, Module};
use crate::error::Result;
use crate::launch::{grid_for, launch, Arg, Launch};

const THREADS: u32 = 256;

/// Writes stream elements `offset .. offset + out.len()` of the uniform stream of `seed` into `out` (values in (0, 1]).
pub fn fill_uniform(
    gpu: &Gpu,
    seed: u64,
    offset: u64,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    fill(gpu, "fill_uniform", seed, offset, out)
}

/// Writes stream elements `offset .. offset + out.len()` of the standard-normal stream of `seed` into `out`.
pub fn fill_normal(
    gpu: &Gpu,
    seed: u64,
    offset: u64,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    fill(gpu, "fill_normal", seed, offset, out)
}

fn fill(
    gpu: &Gpu,
    kernel: &'static str,
    seed: u64,
    offset: u64,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let len = out.len() as u64;
    if len == 0 {
        return Ok(());
    }
    // One thread per Philox block touched: elements offset..offset+len span blocks offset/4 ..= (offset+len-1)/4.
    let blocks_touched = (offset + len).div_ceil(4) - offset / 4;
    let grid = grid_for(blocks_touched, THREADS, gpu);
    let (out_ptr, _out_guard) = out.device_ptr_mut(gpu.stream());
    launch(
        gpu,
        kernel,
        Launch::linear(Module::Philox, kernel, grid, THREADS),
        &[
            Arg::Ptr(out_ptr),
            Arg::U64(len),
            Arg::U64(seed),
            Arg::U64(offset),
        ],
    )
}
