//! [`NcclCollective`]: one process per GPU, launched by `mpirun`, summing the gradient buckets on the devices with
//! NCCL. MPI starts the job and carries what is not a gradient: rank 0 makes NCCL's unique id and broadcasts it
//! ([`MpiCollective::share_from_leader`]), every rank joins the NCCL communicator on its own GPU, and the step's
//! losses and flags (a few f64 on the host) still go over MPI.
//!
//! A bucket's all-reduce is queued on the device's stream after the kernels that packed it, so it needs no copy to
//! the host; the host then waits for it under the collective timeout, so a rank that died or hangs (which leaves
//! NCCL's kernel spinning on the others) ends the job with the same message as over MPI.

use super::collective::Collective;
use super::mpi_collective::MpiCollective;
use crate::error::{Error, Result};
use diffuse_tensor::nccl::{self, NcclGroup};
use diffuse_tensor::{Device, Tensor};

/// The ranks of `mpirun`, each on its GPU, joined in one NCCL communicator.
pub struct NcclCollective {
    group: NcclGroup,
    mpi: MpiCollective,
}

impl NcclCollective {
    /// Joins every rank of `mpi`'s world, each on `device` (its own GPU), in one NCCL communicator. Every rank must
    /// call this; when NCCL is missing on some rank, every rank returns an error (the ranks without it, the one
    /// naming the package to install).
    pub fn init(mpi: MpiCollective, device: Device) -> Result<NcclCollective> {
        let missing_here = !nccl::nccl_library_present();
        if mpi.any(missing_here)? {
            return Err(if missing_here {
                Error::from(nccl::missing_library())
            } else {
                Error::train(
                    "collective",
                    "another rank cannot load the NCCL library (its error is printed above)",
                )
            });
        }
        let id = mpi.share_from_leader("the NCCL unique id", || Ok(nccl::unique_id()?))?;
        let group = {
            let _armed = mpi.guard("joining the NCCL communicator");
            NcclGroup::join(device, mpi.rank(), mpi.size(), &id)?
        };
        Ok(NcclCollective { group, mpi })
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn size(&self) -> usize {
        self.mpi.size()
    }

    fn all_reduce_sum(&self, bucket: &Tensor) -> Result<Tensor> {
        let summed = self.group.all_reduce_sum(bucket)?;
        let _armed = self.mpi.guard(&format!(
            "NCCL all-reduce of a {}-value gradient bucket",
            bucket.numel()
        ));
        self.group.synchronize()?;
        Ok(summed)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.mpi.all_reduce_sum_f64(values)
    }

    fn abort(&self, code: i32) {
        self.mpi.abort(code)
    }
}
