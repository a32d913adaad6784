//! How `diffuse train` was launched: alone, or as one rank of `mpirun -np N diffuse train ...` (data parallel, see
//! docs/distributed.md). The launcher is recognised by the variables it sets (Open MPI's `OMPI_COMM_WORLD_*`, the
//! PMI/PMIx ones of MPICH and Slurm); a build without the `mpi` feature refuses such a launch rather than train N
//! independent copies of the run.

use clap::Args;
use diffuse_diffusion::train::{Collective, SingleProcess};
use std::path::Path;
use std::rc::Rc;

/// The variables that give a process's rank in its MPI job, Open MPI's first.
const RANK_VARIABLES: [&str; 3] = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"];
/// The variables that give a process's index among the ranks on its node.
const LOCAL_RANK_VARIABLES: [&str; 2] = ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"];

#[derive(Args, Clone, Debug)]
pub struct LaunchArgs {
    /// Under mpirun: end the job when a gradient all-reduce waits longer than this many seconds for the other
    /// processes (one died or hangs). It must exceed the longest pause of rank 0 alone (a sample grid, an
    /// evaluation), during which the other ranks wait.
    #[arg(long, default_value_t = 600.0)]
    pub collective_timeout: f64,
}

/// The rank `mpirun` gave this process, when it was launched by one.
pub fn mpi_rank() -> Option<String> {
    RANK_VARIABLES.iter().find_map(|v| std::env::var(v).ok())
}

/// This process's index among the ranks on its node, when launched by mpirun.
pub fn local_rank() -> Option<usize> {
    LOCAL_RANK_VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The collective of this process: MPI's world under mpirun, else a single process. `out` is the run's folder, named
/// in the message of a rank that times out.
pub fn collective(args: &LaunchArgs, out: &Path) -> Result<Rc<dyn Collective>, String> {
    let Some(rank) = mpi_rank() else {
        return Ok(Rc::new(SingleProcess));
    };
    mpi_world(args, out, &rank)
}

#[cfg(feature = "mpi")]
fn mpi_world(args: &LaunchArgs, out: &Path, _rank: &str) -> Result<Rc<dyn Collective>, String> {
    use diffuse_diffusion::train::MpiCollective;
    if !(args.collective_timeout > 0.0 && args.collective_timeout.is_finite()) {
        return Err(format!(
            "--collective-timeout must be a positive number of seconds, got {}",
            args.collective_timeout
        ));
    }
    let hint = format!(
        "The last checkpoint in {} is intact; continue with `mpirun -np N diffuse train --resume {}`.",
        out.display(),
        out.display()
    );
    let timeout = std::time::Duration::from_secs_f64(args.collective_timeout);
    Ok(Rc::new(
        MpiCollective::init(timeout, hint).map_err(|e| e.to_string())?,
    ))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world(_args: &LaunchArgs, _out: &Path, rank: &str) -> Result<Rc<dyn Collective>, String> {
    Err(format!(
        "this process is rank {rank} of an MPI job (mpirun), but this diffuse was built without MPI, so every \
         process would train its own copy of the run; install Open MPI (`apt install openmpi-bin libopenmpi-dev \
         libclang-dev`) and build with `cargo build --release -p diffuse-cli --features mpi`, or run diffuse \
         without mpirun"
    ))
}
