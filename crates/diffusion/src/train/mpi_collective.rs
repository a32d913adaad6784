//! [`MpiCollective`]: the ranks of `mpirun -np N` summing their gradients with `MPI_Allreduce` (Open MPI picks the
//! algorithm: recursive doubling for small messages, a ring for large ones; docs/distributed.md derives their cost).
//!
//! The buckets are copied to the host and back, so a CUDA run works over any MPI build (a CUDA-aware MPI could read
//! device memory directly; NCCL is the engine made for it). Every collective call is armed on a [`Watchdog`]: when a
//! rank died or hangs, the others report which call stalled and end the process, and `mpirun` then ends the rest of
//! the job. Checkpoints are written atomically by rank 0, so the last one stays whole.

use super::collective::{check_all_handed, check_bucket, check_gather, BucketWork, Collective};
use super::watchdog::{Guard, Watchdog};
use crate::error::{Error, Result};
use diffuse_tensor::Tensor;
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Count;
use std::time::Duration;

/// The exit status of a rank whose collective timed out.
pub const TIMEOUT_EXIT_CODE: i32 = 75;

/// The ranks of `MPI_COMM_WORLD`.
pub struct MpiCollective {
    world: SimpleCommunicator,
    watchdog: Watchdog,
    /// Finalises MPI when dropped: declared last, so the communicator goes first.
    _universe: Universe,
}

impl MpiCollective {
    /// Initialises MPI (once per process). A collective that has not returned after `timeout` prints which call
    /// stalled, this rank, and `hint` (what the user can do: the run's last checkpoint and how to resume), and exits
    /// with [`TIMEOUT_EXIT_CODE`].
    pub fn init(timeout: Duration, hint: String) -> Result<MpiCollective> {
        let universe = mpi::initialize()
            .ok_or_else(|| Error::train("mpi", "MPI was already initialised in this process"))?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let seconds = timeout.as_secs_f64();
        let watchdog = Watchdog::start(timeout, move |what| {
            eprintln!(
                "rank {rank} of {size}: {what} did not complete within {seconds} s: another process died or hangs \
                 (see mpirun's messages for which). Ending the job. {hint}"
            );
            std::process::exit(TIMEOUT_EXIT_CODE);
        });
        Ok(MpiCollective {
            world,
            watchdog,
            _universe: universe,
        })
    }

    /// Arms the collective timeout around `what`, a call that waits for every rank (see [`MpiCollective::init`]).
    pub fn guard(&self, what: &str) -> Guard<'_> {
        self.watchdog.guard(what)
    }

    /// The value of `make()` on rank 0, on every rank: `make` runs on rank 0 only, and its `N` bytes are broadcast
    /// (an NCCL unique id). When it fails, rank 0 returns its error and every other rank an error naming `what`,
    /// so no rank waits for a value that will not come.
    pub fn share_from_leader<const N: usize>(
        &self,
        what: &str,
        make: impl FnOnce() -> Result<[u8; N]>,
    ) -> Result<[u8; N]> {
        // Byte 0: whether rank 0 made the value; bytes 1..=N: the value.
        let mut message = vec![0u8; N + 1];
        let made = if self.rank() == 0 {
            let made = make();
            if let Ok(value) = &made {
                message[0] = 1;
                message[1..].copy_from_slice(value);
            }
            Some(made)
        } else {
            None
        };
        {
            let _armed = self.guard(&format!("MPI broadcast of {what} from rank 0"));
            self.world
                .process_at_rank(0)
                .broadcast_into(&mut message[..]);
        }
        match made {
            Some(made) => made,
            None if message[0] == 1 => {
                let mut value = [0u8; N];
                value.copy_from_slice(&message[1..]);
                Ok(value)
            }
            None => Err(Error::train(
                "collective",
                format!("rank 0 could not make {what} (its error is printed above)"),
            )),
        }
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, bucket: &Tensor) -> Result<Tensor> {
        let send = bucket.to_vec()?;
        let mut received = vec![0.0f32; send.len()];
        {
            let _armed = self.watchdog.guard(&format!(
                "MPI all-reduce of a {}-value gradient bucket",
                send.len()
            ));
            self.world
                .all_reduce_into(&send[..], &mut received[..], SystemOperation::sum());
        }
        Ok(Tensor::from_vec(received, bucket.shape(), bucket.device())?)
    }

    /// Each bucket's `MPI_Iallreduce` starts when `work` hands it over and runs while `work` goes on; every call into
    /// this engine meanwhile also tests the requests in flight, which lets Open MPI progress them (it has no
    /// progress thread by default). After `work`, the host waits for all of them under the collective timeout.
    fn all_reduce_overlapped(
        &self,
        sizes: &[usize],
        work: &mut BucketWork<'_>,
    ) -> Result<Vec<Tensor>> {
        // The buffers outlive the scope in which their requests run (the mpi crate's rule for immediate calls).
        let mut sends: Vec<Vec<f32>> = vec![Vec::new(); sizes.len()];
        let mut receives: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
        let mut devices = Vec::with_capacity(sizes.len());
        let worked = mpi::request::scope(|scope| {
            let mut buffers = sends.iter_mut().zip(receives.iter_mut());
            let mut in_flight = Vec::with_capacity(sizes.len());
            let worked = work(&mut |bucket| {
                check_bucket(sizes, devices.len(), &bucket)?;
                let (send, receive) = buffers.next().expect("checked against the plan");
                *send = bucket.to_vec()?;
                let send: &Vec<f32> = send;
                devices.push(bucket.device());
                in_flight.push(Some(self.world.immediate_all_reduce_into(
                    scope,
                    &send[..],
                    &mut receive[..],
                    SystemOperation::sum(),
                )));
                for slot in in_flight.iter_mut() {
                    if let Some(request) = slot.take() {
                        *slot = request.test().err();
                    }
                }
                Ok(())
            });
            // Every request started must complete before its buffers go, error or not (the other ranks start the
            // same buckets, so these complete unless a rank died, which the timeout reports).
            let _armed = self.watchdog.guard(&format!(
                "MPI non-blocking all-reduce of {} gradient buckets",
                sizes.len()
            ));
            for request in in_flight.into_iter().flatten() {
                request.wait_without_status();
            }
            worked
        });
        worked?;
        check_all_handed(sizes, devices.len())?;
        receives
            .into_iter()
            .zip(devices)
            .map(|(values, device)| {
                let n = values.len();
                Ok(Tensor::from_vec(values, &[n], device)?)
            })
            .collect()
    }

    fn all_gather(&self, local: &Tensor, counts: &[usize]) -> Result<Tensor> {
        check_gather(self.rank(), self.size(), local, counts)?;
        let send = local.to_vec()?;
        let total: usize = counts.iter().sum();
        let count = |n: usize| {
            Count::try_from(n).map_err(|_| {
                Error::train(
                    "collective",
                    format!("an all-gather of {total} values exceeds MPI's count type"),
                )
            })
        };
        let sizes = counts
            .iter()
            .map(|&n| count(n))
            .collect::<Result<Vec<_>>>()?;
        let offsets = counts
            .iter()
            .scan(0, |offset, &n| {
                let start = *offset;
                *offset += n;
                Some(count(start))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut received = vec![0.0f32; total];
        {
            let _armed = self
                .watchdog
                .guard(&format!("MPI all-gather of {total} values"));
            let mut partition = PartitionMut::new(&mut received[..], sizes, offsets);
            self.world
                .all_gather_varcount_into(&send[..], &mut partition);
        }
        Ok(Tensor::from_vec(received, &[total], local.device())?)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        let _armed = self
            .watchdog
            .guard("MPI all-reduce of the step's losses and flags");
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn abort(&self, code: i32) {
        self.world.abort(code)
    }
}
