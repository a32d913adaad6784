//! NCCL, NVIDIA's collective-communication library, for data-parallel training with one process per GPU.
//!
//! The library is opened at run time, like the CUDA driver (cudarc's `dynamic-loading`), so diffuse builds and runs
//! without it; asking for NCCL where `libnccl.so` cannot be loaded is an error that names the package to install,
//! checked before any NCCL call (with dynamic loading, a call into a missing library panics).
//!
//! A run's ranks meet through a 128-byte [`UniqueId`]: rank 0 creates it ([`unique_id`]), some other channel (MPI)
//! carries it to every rank, and each rank joins with its rank and the world size ([`NcclComm::join`]). The
//! all-reduce runs on the device's one stream ([`Gpu::stream`]), so it starts after the kernels that wrote its
//! buffer and the kernels launched after it see its result, without a synchronisation on the host.

use cudarc::driver::CudaViewMut;
use cudarc::nccl::{Comm, Id, ReduceOp};

use crate::context::Gpu;
use crate::error::{KernelError, Result};

const OP: &str = "nccl";

/// The identifier of one NCCL communicator, created by rank 0 and sent to every rank.
pub type UniqueId = [u8; 128];

/// Whether the NCCL library can be opened.
pub fn nccl_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries to open the library by its usual names and closes it again; it has no
    // preconditions.
    unsafe { cudarc::nccl::sys::is_culib_present() }
}

/// The error for a machine without the NCCL library.
pub fn missing_library() -> KernelError {
    KernelError::new(
        OP,
        "the NCCL library (libnccl.so.2) could not be loaded: install NCCL (the libnccl2 package of NVIDIA's CUDA \
         repository: `apt install libnccl2`, or `pip install nvidia-nccl-cu12` with its lib folder on \
         LD_LIBRARY_PATH), or train over MPI alone with --collective mpi",
    )
}

fn require_library() -> Result<()> {
    if nccl_library_present() {
        Ok(())
    } else {
        Err(missing_library())
    }
}

fn nccl_error(doing: &str, err: cudarc::nccl::result::NcclError) -> KernelError {
    KernelError::new(OP, format!("{doing}: NCCL error {:?}", err.0))
}

/// A new communicator identifier (on rank 0 only; the other ranks receive it).
pub fn unique_id() -> Result<UniqueId> {
    require_library()?;
    let id = Id::new().map_err(|e| nccl_error("creating the unique id", e))?;
    Ok(id.internal().map(|c| c as u8))
}

/// This rank's member of an NCCL communicator, on one GPU.
#[derive(Debug)]
pub struct NcclComm {
    comm: Comm,
}

impl NcclComm {
    /// Joins the communicator `id` as rank `rank` of `size`, on `gpu`'s stream. Every rank must call this (NCCL
    /// waits for all of them), each on its own GPU.
    pub fn join(gpu: &Gpu, rank: usize, size: usize, id: &UniqueId) -> Result<NcclComm> {
        require_library()?;
        if rank >= size {
            return Err(KernelError::new(
                OP,
                format!("rank {rank} of a world of {size} processes"),
            ));
        }
        // NCCL takes its device from the thread's current context.
        gpu.context()
            .bind_to_thread()
            .map_err(|e| KernelError::new(OP, format!("binding the context: {e}")))?;
        let id = Id::uninit(id.map(|b| b as core::ffi::c_char));
        let comm = Comm::from_rank(gpu.stream().clone(), rank, size, id).map_err(|e| {
            nccl_error(
                &format!("joining the communicator as rank {rank} of {size}"),
                e,
            )
        })?;
        Ok(NcclComm { comm })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn size(&self) -> usize {
        self.comm.world_size()
    }

    /// Replaces `values` by their element-wise sum over the ranks, in place, on the stream (asynchronous: the host
    /// waits only when it reads the result).
    pub fn all_reduce_sum_in_place(&self, values: &mut CudaViewMut<'_, f32>) -> Result<()> {
        self.comm
            .all_reduce_in_place(values, &ReduceOp::Sum)
            .map_err(|e| nccl_error("all-reducing a buffer", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_an_error_naming_the_package() {
        let message = missing_library().to_string();
        assert!(message.contains("libnccl2"), "{message}");
        if !nccl_library_present() {
            let message = unique_id().unwrap_err().to_string();
            assert!(message.contains("apt install libnccl2"), "{message}");
        }
    }
}
