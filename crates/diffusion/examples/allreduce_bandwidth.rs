//! The all-reduce of diffuse's gradient buckets, timed: `MpiCollective::all_reduce_sum` on a flat f32 tensor of
//! ELEMENTS values (the host copies in and out included, as in training), ITERATIONS times after 3 untimed ones.
//! Rank 0 prints the time per call, the algorithm bandwidth (bytes / time) and the bus bandwidth
//! (bytes · 2(N−1)/N / time, what each rank's link carries in a ring; docs/distributed.md), in the format of
//! `scripts/distributed/allreduce.c`, the MPI library's own call timed the same way.
//!
//! ```text
//! cargo build --release -p diffuse-diffusion --features mpi --example allreduce_bandwidth
//! mpirun -np 2 target/release/examples/allreduce_bandwidth 1048576 20
//! ```

use diffuse_diffusion::train::{Collective, MpiCollective};
use diffuse_tensor::{Device, Tensor};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let elements: usize = args.next().map_or(Ok(1 << 20), |a| a.parse())?;
    let iterations: u32 = args.next().map_or(Ok(20), |a| a.parse())?;
    if elements == 0 || iterations == 0 {
        return Err("usage: allreduce_bandwidth ELEMENTS (> 0) ITERATIONS (> 0)".into());
    }
    let collective = MpiCollective::init(Duration::from_secs(600), String::new())?;
    let bucket = Tensor::from_vec(vec![1.0f32; elements], &[elements], Device::Cpu)?;
    for _ in 0..3 {
        collective.all_reduce_sum(&bucket)?;
    }
    // Start together: a one-value all-reduce returns on every rank only when all have called it.
    collective.any(false)?;
    let begun = Instant::now();
    let mut summed = bucket.clone();
    for _ in 0..iterations {
        summed = collective.all_reduce_sum(&bucket)?;
    }
    let seconds = begun.elapsed().as_secs_f64() / f64::from(iterations);
    let size = collective.size();
    let first = summed.narrow(0, 0, 1)?.to_vec()?[0];
    if first != size as f32 {
        return Err(format!("the sum is {first}, not {size}").into());
    }
    if collective.is_leader() {
        let bytes = (elements * 4) as f64;
        let bus = bytes * 2.0 * (size - 1) as f64 / size as f64;
        println!(
            "diffuse bucket  ranks {size}  elements {elements}  bytes {bytes:.0}  seconds {seconds:.6e}  algbw_GBps \
             {:.3}  busbw_GBps {:.3}",
            bytes / seconds / 1e9,
            bus / seconds / 1e9
        );
    }
    Ok(())
}
