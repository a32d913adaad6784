//! Summing a tensor over the processes of a data-parallel run with NCCL, one process per GPU (see
//! `diffuse_cuda_kernels::nccl` for how the library is loaded and how the processes meet).

use crate::backend::cuda;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::{DType, Device, Tensor};
use diffuse_cuda_kernels::nccl::NcclComm;

pub use diffuse_cuda_kernels::nccl::{nccl_library_present, UniqueId};

/// The error for a machine without the NCCL library, naming the package to install.
pub fn missing_library() -> Error {
    Error::Kernel(diffuse_cuda_kernels::nccl::missing_library())
}

/// A new communicator identifier, made by rank 0 and sent to the others (an error naming the package to install
/// when the NCCL library is missing).
pub fn unique_id() -> Result<UniqueId> {
    Ok(diffuse_cuda_kernels::nccl::unique_id()?)
}

/// This process's member of an NCCL communicator, on one CUDA device.
#[derive(Debug)]
pub struct NcclGroup {
    comm: NcclComm,
    ordinal: usize,
}

impl NcclGroup {
    /// Joins the communicator `id` as rank `rank` of `size` on `device` (a CUDA device; each rank its own). Returns
    /// once every rank has joined.
    pub fn join(device: Device, rank: usize, size: usize, id: &UniqueId) -> Result<NcclGroup> {
        let Device::Cuda(ordinal) = device else {
            return Err(Error::argument(
                "nccl",
                format!("NCCL sums tensors on CUDA devices, not on {device}; use --device cuda"),
            ));
        };
        Ok(NcclGroup {
            comm: cuda::join_nccl(ordinal, rank, size, id)?,
            ordinal,
        })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    pub fn size(&self) -> usize {
        self.comm.size()
    }

    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    /// Waits until every all-reduce queued so far (and every kernel before it) has finished.
    pub fn synchronize(&self) -> Result<()> {
        cuda::synchronize(self.ordinal)
    }

    /// The element-wise sum over the ranks of `tensor` (f32, on this group's device), in a new contiguous tensor of
    /// its shape. Every rank must call this with a tensor of the same shape, in the same order.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<Tensor> {
        if tensor.device() != self.device() {
            return Err(Error::DeviceMismatch {
                op: "nccl_all_reduce_sum",
                lhs: tensor.device(),
                rhs: self.device(),
            });
        }
        if tensor.dtype() != DType::F32 {
            return Err(Error::argument(
                "nccl_all_reduce_sum",
                format!("NCCL sums f32 tensors here, not {}", tensor.dtype()),
            ));
        }
        let storage = match &*tensor.storage() {
            Storage::Cuda(s) => cuda::nccl_all_reduce_sum(&self.comm, s, tensor.layout())?,
            Storage::Cpu(_) => {
                return Err(Error::argument(
                    "nccl_all_reduce_sum",
                    "a tensor on a CUDA device holds host memory",
                ))
            }
        };
        Tensor::from_contiguous(Storage::Cuda(storage), tensor.shape())
    }
}
