//! `diffuse info --devices`: what this process can compute on. The CPU always; each CUDA device the driver sees,
//! with its name, compute capability and memory, and whether it opens for diffuse (context, compute capability, every
//! PTX module JIT-compiled); and what `--device auto` would pick.

use diffuse_tensor::{cuda_devices, Device};

pub fn run() -> Result<(), String> {
    println!("{}", Device::Cpu.describe());
    match cuda_devices::driver_version() {
        Ok((major, minor)) => println!("cuda driver {major}.{minor}"),
        Err(err) => println!("cuda: {err}"),
    }
    if let Ok(devices) = cuda_devices::list() {
        for info in devices {
            let device = Device::Cuda(info.ordinal);
            let (major, minor) = info.compute_capability;
            let status = match device.open() {
                Ok(()) => "opens: every kernel module loaded".to_string(),
                Err(err) => format!("cannot be used: {err}"),
            };
            println!(
                "{device}: {}, compute capability {major}.{minor}, {:.1} GiB; {status}",
                info.name,
                info.memory_bytes as f64 / f64::from(1u32 << 30)
            );
        }
    }
    // auto() itself says which device it picked and why
    Device::auto();
    Ok(())
}
