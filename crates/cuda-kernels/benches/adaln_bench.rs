//! The fused adaLN kernels on the GPU at the `dit-s-2` shape (batch 64, 196 tokens of 192 features), timed with CUDA
//! events (3 warm-up runs, median of 20), beside the composition they replace (layer norm as group norm, a broadcast
//! multiply by `1 + scale`, a broadcast add of `shift`; a broadcast multiply by the gate and an add). Bandwidth is the
//! ideal DRAM traffic (each input read once, each output written once).
//!
//! PyTorch peer (composed eager ops, same shape): `python benches/peers/torch_adaln.py --device cuda`.
//! Run: `cargo bench -p diffuse-cuda-kernels --bench adaln_bench` (without a CUDA driver it says so and exits 0;
//! with a driver it cannot run on, it exits 1 with the driver's message).

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaSlice;
use diffuse_cuda_kernels::elementwise::{binary, BinaryOp, Operand};
use diffuse_cuda_kernels::gated_residual::{
    gated_residual_backward, gated_residual_forward, GatedShape,
};
use diffuse_cuda_kernels::group_norm::{group_norm_forward, GroupNormShape};
use diffuse_cuda_kernels::layer_norm_modulate::{
    layer_norm_modulate_backward, layer_norm_modulate_forward, ModulateShape,
};
use diffuse_cuda_kernels::open_error::driver_library_present;
use diffuse_cuda_kernels::philox::fill_normal;
use diffuse_cuda_kernels::{Gpu, KernelError, Result};

const BATCH: usize = 64;
const TOKENS: usize = 196;
const DIM: usize = 192;

fn median_ms(gpu: &Gpu, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let fail = |what: &str, e: cudarc::driver::DriverError| {
        KernelError::new("bench", format!("{what}: {e}"))
    };
    for _ in 0..3 {
        work()?;
    }
    let mut times = Vec::with_capacity(20);
    for _ in 0..20 {
        let event = || {
            gpu.context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        };
        let (start, end) = (
            event().map_err(|e| fail("event", e))?,
            event().map_err(|e| fail("event", e))?,
        );
        start.record(gpu.stream()).map_err(|e| fail("record", e))?;
        work()?;
        end.record(gpu.stream()).map_err(|e| fail("record", e))?;
        times.push(f64::from(
            start.elapsed_ms(&end).map_err(|e| fail("timing", e))?,
        ));
    }
    times.sort_by(f64::total_cmp);
    Ok(times[10])
}

fn buffer(gpu: &Gpu, len: usize, seed: u64) -> Result<CudaSlice<f32>> {
    let mut b = gpu
        .stream()
        .alloc_zeros(len)
        .map_err(|e| KernelError::new("bench", format!("allocation: {e}")))?;
    fill_normal(gpu, seed, 0, &mut b)?;
    Ok(b)
}

fn report(name: &str, ms: f64, passes: f64) {
    let gbs = passes * 4.0 * (BATCH * TOKENS * DIM) as f64 / ms / 1e6;
    println!("{name:<36} {ms:>9.4} ms {gbs:>9.1} GB/s");
}

fn run(gpu: &Gpu) -> Result<()> {
    let (len, cond, rows) = (BATCH * TOKENS * DIM, BATCH * DIM, BATCH * TOKENS);
    let (x, g, other) = (
        buffer(gpu, len, 1)?,
        buffer(gpu, len, 2)?,
        buffer(gpu, len, 3)?,
    );
    let (scale, shift) = (buffer(gpu, cond, 4)?, buffer(gpu, cond, 5)?);
    let (mut y, mut tmp, mut dx) = (
        buffer(gpu, len, 6)?,
        buffer(gpu, len, 7)?,
        buffer(gpu, len, 8)?,
    );
    let (mut mean, mut rstd) = (buffer(gpu, rows, 9)?, buffer(gpu, rows, 10)?);
    let (mut ds, mut db) = (buffer(gpu, cond, 11)?, buffer(gpu, cond, 12)?);
    let s = ModulateShape {
        batch: BATCH,
        tokens: TOKENS,
        dim: DIM,
        eps: 1e-6,
    };
    let ms = median_ms(gpu, || {
        layer_norm_modulate_forward(gpu, &s, &x, &scale, &shift, &mut y, &mut mean, &mut rstd)
    })?;
    report("modulate forward fused", ms, 2.0);
    let plain = GroupNormShape {
        batch: rows,
        channels: DIM,
        spatial: 1,
        groups: 1,
        eps: 1e-6,
    };
    let (ones, zeros) = (buffer(gpu, DIM, 13)?, buffer(gpu, DIM, 14)?);
    let (full, per_sample) = (
        [(TOKENS * DIM) as isize, DIM as isize, 1],
        [DIM as isize, 0, 1],
    );
    let shape = [BATCH, TOKENS, DIM];
    // The multiply takes `scale` for `1 + scale` (the same work).
    let ms = median_ms(gpu, || {
        group_norm_forward(
            gpu, &plain, &x, &ones, &zeros, &mut tmp, &mut mean, &mut rstd,
        )?;
        binary(
            gpu,
            BinaryOp::Mul,
            &shape,
            &tmp,
            Operand::new(&full, 0),
            &scale,
            Operand::new(&per_sample, 0),
            &mut dx,
        )?;
        binary(
            gpu,
            BinaryOp::Add,
            &shape,
            &dx,
            Operand::new(&full, 0),
            &shift,
            Operand::new(&per_sample, 0),
            &mut y,
        )
    })?;
    report("modulate forward composed", ms, 2.0);
    let ms = median_ms(gpu, || {
        layer_norm_modulate_backward(
            gpu, &s, &x, &scale, &mean, &rstd, &g, &mut dx, &mut ds, &mut db,
        )
    })?;
    report("modulate backward fused", ms, 3.0);
    let gs = GatedShape {
        batch: BATCH,
        tokens: TOKENS,
        dim: DIM,
    };
    let ms = median_ms(gpu, || {
        gated_residual_forward(gpu, &gs, &x, &scale, &other, &mut y)
    })?;
    report("gated residual forward fused", ms, 3.0);
    let ms = median_ms(gpu, || {
        binary(
            gpu,
            BinaryOp::Mul,
            &shape,
            &other,
            Operand::new(&full, 0),
            &scale,
            Operand::new(&per_sample, 0),
            &mut tmp,
        )?;
        binary(
            gpu,
            BinaryOp::Add,
            &shape,
            &x,
            Operand::new(&full, 0),
            &tmp,
            Operand::new(&full, 0),
            &mut y,
        )
    })?;
    report("gated residual forward composed", ms, 3.0);
    let ms = median_ms(gpu, || {
        gated_residual_backward(gpu, &gs, &scale, &other, &g, &mut dx, &mut ds)
    })?;
    report("gated residual backward fused", ms, 3.0);
    Ok(())
}

fn main() {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(err) if !driver_library_present() => {
            eprintln!("adaln_bench: nothing to time: {err}");
            return;
        }
        Err(err) => {
            eprintln!("adaln_bench: cannot run on device 0: {err}");
            std::process::exit(1);
        }
    };
    println!("adaLN kernels at B{BATCH} L{TOKENS} D{DIM}; median of 20");
    if let Err(err) = run(&gpu) {
        eprintln!("adaln_bench: {err}");
        std::process::exit(1);
    }
}
