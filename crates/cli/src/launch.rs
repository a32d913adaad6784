//! How `diffuse train`, `diffuse vae train` or `diffuse clip train` was launched: alone, or as one rank of `mpirun
//! -np N diffuse train ...` (data parallel, see docs/distributed.md). The launcher is recognised by the variables it
//! sets (Open MPI's `OMPI_COMM_WORLD_*`, the PMI/PMIx ones of MPICH and Slurm); a build without the `mpi` feature
//! refuses such a launch rather than train N independent copies of the run, and so do the training commands without
//! data parallelism ([`refuse_several_ranks`]). Under mpirun the gradients are summed over MPI through host memory,
//! or with NCCL on the GPUs (`--collective`).

use crate::device::DeviceArgs;
use clap::{Args, ValueEnum};
use diffuse_diffusion::train::{Collective, Shard, SingleProcess};
use diffuse_tensor::Device;
use std::path::Path;
use std::rc::Rc;

/// The variables that give a process's rank in its MPI job, Open MPI's first.
const RANK_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"];
/// The variables that give the number of processes of an MPI job.
const SIZE_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"];
/// The variables that give a process's index among the ranks on its node.
const LOCAL_RANK_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"];

/// How the ranks of an MPI job communicate: every data-parallel command's options.
#[derive(Args, Clone, Debug)]
pub struct CollectiveArgs {
    /// Under mpirun: end the job when a gradient all-reduce waits longer than this many seconds for the other
    /// processes (one died or hangs). It must exceed the longest pause of rank 0 alone (a sample grid, an
    /// evaluation), during which the other ranks wait.
    #[arg(long, default_value_t = 600.0)]
    pub collective_timeout: f64,
    /// Under mpirun: how the ranks sum their gradients. nccl: on the GPUs, one process per GPU (needs NCCL's
    /// libnccl2); mpi: through host memory over MPI; auto: nccl when training on CUDA and the NCCL library loads,
    /// else mpi.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub collective: Engine,
}

/// The options of a data-parallel command that can overlap its gradient all-reduce with backward.
#[derive(Args, Clone, Debug)]
pub struct LaunchArgs {
    #[command(flatten)]
    pub engine: CollectiveArgs,
    /// Under mpirun: sum the gradients in buckets of up to this many MiB, each started while the backward pass
    /// goes on (the first bucket at most 1 MiB); 0 sums them all after backward. PyTorch's default, 25.
    #[arg(long, default_value_t = 25.0)]
    pub bucket_mb: f64,
}

impl LaunchArgs {
    /// `--bucket-mb` in f32 values: `None` for 0 (no overlap), an error when it is not a size.
    pub fn overlap_bucket_elements(&self) -> Result<Option<usize>, String> {
        let mb = self.bucket_mb;
        if !(mb >= 0.0 && mb.is_finite()) {
            return Err(format!(
                "--bucket-mb must be 0 (no overlap) or a positive size in MiB, got {mb}"
            ));
        }
        let elements = (mb * f64::from(1u32 << 20) / 4.0).round() as usize;
        Ok((mb > 0.0).then_some(elements.max(1)))
    }
}

/// The engine that sums the gradients of an MPI job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    Auto,
    Mpi,
    Nccl,
}

impl Engine {
    /// Whether a run on `device` sums with NCCL, given whether the NCCL library loads; an error when NCCL is asked
    /// for where it cannot run.
    pub fn uses_nccl(self, device: Device, nccl_present: bool) -> Result<bool, String> {
        match (self, device) {
            (Engine::Mpi, _) | (Engine::Auto, Device::Cpu) => Ok(false),
            (Engine::Auto, Device::Cuda(_)) => Ok(nccl_present),
            (Engine::Nccl, Device::Cpu) => Err(
                "--collective nccl sums gradients on GPUs: train with --device cuda, or use --collective mpi".into(),
            ),
            (Engine::Nccl, Device::Cuda(_)) if !nccl_present => {
                Err(diffuse_tensor::nccl::missing_library().to_string())
            }
            (Engine::Nccl, Device::Cuda(_)) => Ok(true),
        }
    }
}

/// The device of this process: `--device` as asked, or under mpirun the GPU of the rank's index on its node.
pub fn device(args: &DeviceArgs) -> Result<Device, String> {
    match mpi_rank() {
        Some(_) => args.resolve_for_rank(local_rank()),
        None => args.resolve(),
    }
}

/// The rank `mpirun` gave this process, when it was launched by one.
pub fn mpi_rank() -> Option<String> {
    RANK_VARIABLES.iter().find_map(|v| std::env::var(v).ok())
}

/// The number of processes of the MPI job that launched this one, when its launcher says.
pub fn mpi_world_size() -> Option<usize> {
    SIZE_VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// An error naming what is `missing` when this process is one of several ranks of an MPI job: `command` trains in
/// one process only, and N copies of it would each train the whole run into the same folder.
pub fn refuse_several_ranks(command: &str, missing: &str) -> Result<(), String> {
    match mpi_world_size() {
        Some(size) if size > 1 => Err(format!(
            "`diffuse {command}` trains in one process only, but this is one of {size} processes started by mpirun, \
             each of which would train its own copy of the run into the same folder: {missing}. Run it without \
             mpirun (or with -np 1)"
        )),
        _ => Ok(()),
    }
}

/// This process's index among the ranks on its node, when launched by mpirun.
pub fn local_rank() -> Option<usize> {
    LOCAL_RANK_VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// What a training command's opening line says of its ranks: ` over N processes (rank 0: ITEMS a..b)` for `size`
/// ranks of which rank 0 takes `shard` of each batch (`items`: what a batch holds), nothing in one process.
pub fn processes_note(size: usize, shard: Shard, items: &str) -> String {
    match size {
        1 => String::new(),
        n => format!(
            " over {n} processes (rank 0: {items} {}..{})",
            shard.start, shard.end
        ),
    }
}

/// Runs `train` on this process's device and collective (see [`collective`]); an error on one of several ranks ends
/// the others too, which would otherwise wait in a collective until they time out.
pub fn run_training(
    args: &CollectiveArgs,
    device: &DeviceArgs,
    command: &str,
    out: &Path,
    train: impl FnOnce(Device, Rc<dyn Collective>) -> Result<(), String>,
) -> Result<(), String> {
    let device = self::device(device)?;
    let collective = collective(args, command, out, device)?;
    let result = train(device, Rc::clone(&collective));
    if let Err(message) = &result {
        if collective.size() > 1 {
            eprintln!("error on rank {}: {message}", collective.rank());
            collective.abort(1);
        }
    }
    result
}

/// The collective of this process, training on `device`: MPI's world under mpirun (its gradients summed by the
/// `--collective` engine), else a single process. `command` (`train`, `vae train`, `clip train`) and the run's
/// folder `out` are named in the message of a rank that times out.
pub fn collective(
    args: &CollectiveArgs,
    command: &str,
    out: &Path,
    device: Device,
) -> Result<Rc<dyn Collective>, String> {
    let Some(rank) = mpi_rank() else {
        return Ok(Rc::new(SingleProcess));
    };
    let nccl = args
        .collective
        .uses_nccl(device, diffuse_tensor::nccl::nccl_library_present())?;
    mpi_world(args, command, out, device, nccl, &rank)
}

#[cfg(feature = "mpi")]
fn mpi_world(
    args: &CollectiveArgs,
    command: &str,
    out: &Path,
    device: Device,
    nccl: bool,
    _rank: &str,
) -> Result<Rc<dyn Collective>, String> {
    use diffuse_diffusion::train::{MpiCollective, NcclCollective};
    if !(args.collective_timeout > 0.0 && args.collective_timeout.is_finite()) {
        return Err(format!(
            "--collective-timeout must be a positive number of seconds, got {}",
            args.collective_timeout
        ));
    }
    let hint = format!(
        "The last checkpoint in {} is intact; continue with `mpirun -np N diffuse {command} --resume {}`.",
        out.display(),
        out.display()
    );
    let timeout = std::time::Duration::from_secs_f64(args.collective_timeout);
    let mpi = MpiCollective::init(timeout, hint).map_err(|e| e.to_string())?;
    if !nccl {
        return Ok(Rc::new(mpi));
    }
    Ok(Rc::new(
        NcclCollective::init(mpi, device).map_err(|e| e.to_string())?,
    ))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(
    _args: &CollectiveArgs,
    _command: &str,
    _out: &Path,
    _device: Device,
    _nccl: bool,
    rank: &str,
) -> Result<Rc<dyn Collective>, String> {
    Err(format!(
        "this process is rank {rank} of an MPI job (mpirun), but this diffuse was built without MPI, so every \
         process would train its own copy of the run; install Open MPI (`apt install openmpi-bin libopenmpi-dev \
         libclang-dev`) and build with `cargo build --release -p diffuse-cli --features mpi`, or run diffuse \
         without mpirun"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_nccl_only_on_cuda_with_the_library() {
        assert!(!Engine::Auto.uses_nccl(Device::Cpu, true).unwrap());
        assert!(!Engine::Auto.uses_nccl(Device::Cuda(0), false).unwrap());
        assert!(Engine::Auto.uses_nccl(Device::Cuda(1), true).unwrap());
        assert!(!Engine::Mpi.uses_nccl(Device::Cuda(0), true).unwrap());
        assert!(Engine::Nccl.uses_nccl(Device::Cuda(0), true).unwrap());
    }

    #[test]
    fn bucket_sizes_are_read_in_mib_and_zero_turns_overlap_off() {
        let args = |bucket_mb| LaunchArgs {
            engine: CollectiveArgs {
                collective_timeout: 600.0,
                collective: Engine::Auto,
            },
            bucket_mb,
        };
        assert_eq!(args(0.0).overlap_bucket_elements().unwrap(), None);
        assert_eq!(
            args(25.0).overlap_bucket_elements().unwrap(),
            Some(25 << 18)
        );
        assert_eq!(args(1e-9).overlap_bucket_elements().unwrap(), Some(1));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let e = args(bad).overlap_bucket_elements().unwrap_err();
            assert!(e.contains("--bucket-mb"), "{e}");
        }
    }

    #[test]
    fn nccl_where_it_cannot_run_is_refused_with_the_fix() {
        let e = Engine::Nccl.uses_nccl(Device::Cuda(0), false).unwrap_err();
        assert!(e.contains("libnccl2"), "{e}");
        let e = Engine::Nccl.uses_nccl(Device::Cpu, true).unwrap_err();
        assert!(e.contains("--device cuda"), "{e}");
    }
}
