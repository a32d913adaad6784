//! What an NCCL run needs of MPI before NCCL starts, on the CPU: rank 0's unique id reaches every rank, a failure to
//! make it on rank 0 fails every rank instead of leaving them waiting, and a missing NCCL library fails every rank.
//!
//! Each test launches this binary under `mpirun -np 2`; a process started by mpirun (it sees `OMPI_COMM_WORLD_RANK`)
//! plays one rank of the scenario named by `MPI_SHARE_SCENARIO`, prints `rank R: ok` when its rank's outcome is the
//! expected one, and exits non-zero otherwise. Needs the `mpi` feature:
//! `cargo test --release -p diffuse-diffusion --features mpi --test mpi_share`.

use diffuse_diffusion::train::{Collective, MpiCollective, NcclCollective};
use diffuse_diffusion::Error;
use diffuse_tensor::Device;
use libtest_mimic::{Arguments, Failed, Trial};
use std::process::Command;
use std::time::Duration;

const SCENARIO: &str = "MPI_SHARE_SCENARIO";

/// The 128 bytes rank `rank` would make: different on every rank, so a rank that kept its own is caught.
fn id_of(rank: usize) -> [u8; 128] {
    std::array::from_fn(|i| (i * 7 + rank * 101 + 1) as u8)
}

/// One rank of `scenario`: `Ok` when this rank saw what it must.
fn play(scenario: &str) -> Result<(), String> {
    let mpi =
        MpiCollective::init(Duration::from_secs(60), "(test)".into()).map_err(|e| e.to_string())?;
    let rank = mpi.rank();
    match scenario {
        "share" => {
            let id = mpi
                .share_from_leader("a test id", || {
                    // Only rank 0 makes the value.
                    assert_eq!(rank, 0, "rank {rank} made the value");
                    Ok(id_of(rank))
                })
                .map_err(|e| e.to_string())?;
            if id != id_of(0) {
                return Err(format!("rank {rank} holds another id than rank 0's"));
            }
        }
        "leader-fails" => {
            let shared: Result<[u8; 128], Error> = mpi.share_from_leader("a test id", || {
                Err(Error::train("test", "rank 0 cannot make the id"))
            });
            let message = shared
                .err()
                .ok_or(format!("rank {rank} got a value"))?
                .to_string();
            let expected = if rank == 0 {
                "rank 0 cannot make the id"
            } else {
                "rank 0 could not make a test id"
            };
            if !message.contains(expected) {
                return Err(format!("rank {rank}: {message}"));
            }
        }
        "nccl-missing" => {
            let message = match NcclCollective::init(mpi, Device::Cuda(0)) {
                Ok(_) => return Err(format!("rank {rank} joined NCCL without its library")),
                Err(e) => e.to_string(),
            };
            if !message.contains("apt install libnccl2") {
                return Err(format!("rank {rank}: {message}"));
            }
        }
        other => return Err(format!("unknown scenario {other}")),
    }
    println!("rank {rank}: ok");
    Ok(())
}

/// Runs `scenario` on two ranks and checks that both reported success.
fn launch(scenario: &str) -> Result<(), Failed> {
    let output = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", "--bind-to", "none"])
        .arg(std::env::current_exe()?)
        .env(SCENARIO, scenario)
        // CI containers run as root, which Open MPI refuses unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !stdout.contains("rank 0: ok") || !stdout.contains("rank 1: ok")
    {
        return Err(format!(
            "mpirun -np 2 ({scenario}) exited {}:\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn main() {
    if std::env::var_os("OMPI_COMM_WORLD_RANK").is_some() {
        let scenario = std::env::var(SCENARIO).unwrap_or_default();
        if let Err(message) = play(&scenario) {
            eprintln!("{message}");
            std::process::exit(1);
        }
        return;
    }
    // Where NCCL is installed the missing-library path cannot be taken (ignored; the GPU tests join NCCL instead).
    let nccl_installed = diffuse_tensor::nccl::nccl_library_present();
    let trials = vec![
        Trial::test("rank_zeros_id_reaches_every_rank", || launch("share")),
        Trial::test("a_failure_on_rank_zero_fails_every_rank", || {
            launch("leader-fails")
        }),
        Trial::test(
            "a_missing_nccl_library_fails_every_rank_naming_the_package",
            || launch("nccl-missing"),
        )
        .with_ignored_flag(nccl_installed),
    ];
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
