//! Data-parallel training: the processes of a run ("ranks") each take a disjoint part of every global batch
//! ([`Shard`]), back-propagate their part's share of the batch loss, and sum their gradients with an all-reduce, so
//! that every rank holds the gradient of the whole batch's loss and takes the same optimiser step.
//!
//! [`Collective`] is the communication engine: [`SingleProcess`] (nothing to do), MPI (`MpiCollective`, behind the
//! `mpi` feature). The gradients travel in buckets ([`all_reduce_gradients`]): the trainable parameters in the store's
//! order (sorted by name), packed into flat buffers of up to [`BUCKET_ELEMENTS`] values, so that every rank reduces
//! the same values in the same order and a run is reproducible, and a few large messages pay the per-message latency
//! instead of hundreds of small ones.

use crate::error::{Error, Result};
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::Tensor;
use std::ops::Range;
use std::time::Instant;

/// Values per gradient bucket: 4 MiB of f32, large enough that the per-message latency (microseconds) is small beside
/// the transfer, small enough that a bucket's host copy stays modest.
pub const BUCKET_ELEMENTS: usize = 1 << 20;

/// Starts the sum over the ranks of the next gradient bucket ([`Collective::all_reduce_overlapped`]).
pub type StartBucket<'a> = dyn FnMut(Tensor) -> Result<()> + 'a;

/// The computation during which the buckets are started, given the function that starts one.
pub type BucketWork<'a> = dyn FnMut(&mut StartBucket<'_>) -> Result<()> + 'a;

/// The communication engine of a data-parallel run. Every rank calls the same operations in the same order with
/// buffers of the same lengths; each operation returns when every rank has contributed.
pub trait Collective {
    /// This process's index, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// The element-wise sum over ranks of `bucket` (a flat f32 tensor), on `bucket`'s device. Every rank receives
    /// the same values.
    fn all_reduce_sum(&self, bucket: &Tensor) -> Result<Tensor>;
    /// The sums over the ranks of buckets of `sizes[k]` values (flat f32 tensors) that `work` hands, in order, to
    /// the function it is given, while it goes on computing (a backward pass); returns them, in order, once `work`
    /// has returned, having handed over every bucket. Every rank hands the same buckets in the same order. By
    /// default each bucket is summed as it arrives ([`Collective::all_reduce_sum`], blocking); MPI starts a
    /// non-blocking all-reduce and waits for all of them after `work`.
    fn all_reduce_overlapped(
        &self,
        sizes: &[usize],
        work: &mut BucketWork<'_>,
    ) -> Result<Vec<Tensor>> {
        let mut sums = Vec::with_capacity(sizes.len());
        work(&mut |bucket| {
            check_bucket(sizes, sums.len(), &bucket)?;
            sums.push(self.all_reduce_sum(&bucket)?);
            Ok(())
        })?;
        check_all_handed(sizes, sums.len())?;
        Ok(sums)
    }

    /// Every rank's `local` (a flat f32 tensor of `counts[rank]` values) laid end to end in rank order, on `local`'s
    /// device; every rank receives the same `counts.iter().sum()` values. By default each rank places its values
    /// at its offset in a buffer of zeros and the buffers are summed ([`Collective::all_reduce_sum`]): every value
    /// is added to zeros only, which leaves it exact (a −0 comes back as +0), at N times the bytes of a true
    /// all-gather, which is nothing for the few embeddings this is for. MPI uses `MPI_Allgatherv`.
    fn all_gather(&self, local: &Tensor, counts: &[usize]) -> Result<Tensor> {
        let offset = check_gather(self.rank(), self.size(), local, counts)?;
        if self.size() == 1 {
            return Ok(local.clone());
        }
        let total: usize = counts.iter().sum();
        let (dtype, device) = (local.dtype(), local.device());
        let before = Tensor::zeros(&[offset], dtype, device)?;
        let after = Tensor::zeros(&[total - offset - local.numel()], dtype, device)?;
        let parts: Vec<&Tensor> = [&before, local, &after]
            .into_iter()
            .filter(|part| part.numel() > 0)
            .collect();
        self.all_reduce_sum(&Tensor::concat(&parts, 0)?)
    }

    /// The element-wise sum over ranks of `values`, in place (losses, flags: small host buffers).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Whether `flag` is set on any rank (to stop every rank at the same step).
    fn any(&self, flag: bool) -> Result<bool> {
        let mut value = [f64::from(u8::from(flag))];
        self.all_reduce_sum_f64(&mut value)?;
        Ok(value[0] > 0.0)
    }

    /// Ends every process of the job after an error on this one, which the others, waiting in a collective, cannot
    /// see. One process has no others: this returns, and the caller reports its error.
    fn abort(&self, code: i32);

    /// Whether this rank writes the run's files (checkpoints, metrics, grids, the progress bar).
    fn is_leader(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every sum is the value itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, bucket: &Tensor) -> Result<Tensor> {
        Ok(bucket.clone())
    }

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn abort(&self, _code: i32) {}
}

/// An error unless `bucket` is the `index`-th of buckets of `sizes` values ([`Collective::all_reduce_overlapped`]).
pub fn check_bucket(sizes: &[usize], index: usize, bucket: &Tensor) -> Result<()> {
    match sizes.get(index) {
        Some(&n) if bucket.shape() == [n] => Ok(()),
        Some(&n) => Err(Error::train(
            "collective",
            format!(
                "gradient bucket {index} has shape {:?}, planned as {n} values",
                bucket.shape()
            ),
        )),
        None => Err(Error::train(
            "collective",
            format!(
                "gradient bucket {index} was started, but only {} were planned",
                sizes.len()
            ),
        )),
    }
}

/// Where rank `rank`'s values start in an all-gather of `counts` values per rank ([`Collective::all_gather`]); an
/// error unless there is one count per rank and `local` is a flat tensor of this rank's count.
pub fn check_gather(rank: usize, size: usize, local: &Tensor, counts: &[usize]) -> Result<usize> {
    if counts.len() != size || local.shape() != [counts[rank]] {
        return Err(Error::train(
            "collective",
            format!(
                "all-gather on rank {rank} of {size}: {} counts, and a local tensor of shape {:?} where rank \
                 {rank}'s count is {:?}",
                counts.len(),
                local.shape(),
                counts.get(rank)
            ),
        ));
    }
    Ok(counts[..rank].iter().sum())
}

/// An error unless all `sizes.len()` planned buckets were handed over (`handed`).
pub fn check_all_handed(sizes: &[usize], handed: usize) -> Result<()> {
    if handed == sizes.len() {
        Ok(())
    } else {
        Err(Error::train(
            "collective",
            format!(
                "{handed} of {} planned gradient buckets were started",
                sizes.len()
            ),
        ))
    }
}

/// A rank's part of a global batch of `batch` samples: samples `start..end` with `start = ⌊r·B/N⌋`,
/// `end = ⌊(r+1)·B/N⌋`, so the parts are disjoint, cover the batch in order, and differ in size by at most one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub start: usize,
    pub end: usize,
}

impl Shard {
    /// Rank `rank`'s part of a batch of `batch` samples among `size` ranks; every rank needs at least one sample.
    pub fn of(batch: usize, rank: usize, size: usize) -> Result<Shard> {
        if size == 0 || rank >= size {
            return Err(Error::train(
                "rank",
                format!("rank {rank} of a world of {size} processes"),
            ));
        }
        if batch < size {
            return Err(Error::train(
                "batch_size",
                format!(
                    "the global batch of {batch} cannot be split over {size} processes (each needs at least one \
                     sample); use --batch-size {size} or more, or fewer processes"
                ),
            ));
        }
        let bound = |r: usize| r * batch / size;
        Ok(Shard {
            start: bound(rank),
            end: bound(rank + 1),
        })
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Replaces every gradient of `params` by its sum over the ranks of `collective`, in buckets of up to
/// `bucket_elements` values ([`BUCKET_ELEMENTS`] in training) taken in `params`' order; returns the seconds spent communicating (packing and
/// unpacking included). A parameter without a gradient on this rank contributes zeros; one without a gradient on
/// every rank stays without one, as it would in a single process. With one process nothing is done.
pub fn all_reduce_gradients(
    collective: &dyn Collective,
    params: &[(String, Var)],
    grads: &mut Gradients,
    bucket_elements: usize,
) -> Result<f64> {
    if collective.size() == 1 {
        return Ok(0.0);
    }
    let begun = Instant::now();
    // Which parameters have a gradient on some rank.
    let mut present: Vec<f64> = params
        .iter()
        .map(|(_, p)| f64::from(u8::from(grads.get(p).is_some())))
        .collect();
    collective.all_reduce_sum_f64(&mut present)?;
    let reduced: Vec<&Var> = params
        .iter()
        .zip(&present)
        .filter(|(_, &n)| n > 0.0)
        .map(|((_, p), _)| p)
        .collect();
    let sizes: Vec<usize> = reduced.iter().map(|p| p.tensor().numel()).collect();
    for bucket in plan_buckets(&sizes, bucket_elements) {
        reduce_bucket(collective, &reduced[bucket], grads)?;
    }
    Ok(begun.elapsed().as_secs_f64())
}

/// The buckets of tensors of `sizes` elements, in order: consecutive runs, each closed as soon as it holds at least
/// `bucket_elements` values (so a tensor larger than a bucket travels alone, and the last bucket may be smaller).
/// Every rank plans the same buckets from the same sizes, which fixes the order of every sum.
pub fn plan_buckets(sizes: &[usize], bucket_elements: usize) -> Vec<Range<usize>> {
    plan_buckets_capped(sizes, bucket_elements, bucket_elements)
}

/// [`plan_buckets`] with the first bucket closed at `first_elements` and the others at `bucket_elements` (a small
/// first bucket starts the overlapped all-reduce early).
pub fn plan_buckets_capped(
    sizes: &[usize],
    first_elements: usize,
    bucket_elements: usize,
) -> Vec<Range<usize>> {
    let mut buckets = Vec::new();
    let (mut start, mut filled) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        filled += size;
        let cap = if buckets.is_empty() {
            first_elements
        } else {
            bucket_elements
        };
        if filled >= cap || i + 1 == sizes.len() {
            buckets.push(start..i + 1);
            start = i + 1;
            filled = 0;
        }
    }
    buckets
}

/// Packs the gradients of `params` (zeros where this rank has none) into one flat tensor, sums it over the ranks,
/// and puts the slices back.
fn reduce_bucket(
    collective: &dyn Collective,
    params: &[&Var],
    grads: &mut Gradients,
) -> Result<()> {
    let mut flat = Vec::with_capacity(params.len());
    for param in params {
        let value = param.tensor();
        let g = match grads.get(param) {
            Some(g) => g.reshape(&[g.numel()])?,
            None => Tensor::zeros(&[value.numel()], value.dtype(), value.device())?,
        };
        flat.push(g);
    }
    let parts: Vec<&Tensor> = flat.iter().collect();
    let summed = collective.all_reduce_sum(&Tensor::concat(&parts, 0)?)?;
    let mut offset = 0;
    for param in params {
        let value = param.tensor();
        let n = value.numel();
        let g = summed.narrow(0, offset, n)?.reshape(value.shape())?;
        grads.insert(param, g);
        offset += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_ordered_and_cover_the_batch() {
        for batch in 1..40 {
            for size in 1..=batch.min(9) {
                let shards: Vec<Shard> = (0..size)
                    .map(|r| Shard::of(batch, r, size).unwrap())
                    .collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[size - 1].end, batch);
                for pair in shards.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                let (min, max) = shards.iter().fold((usize::MAX, 0), |(lo, hi), s| {
                    (lo.min(s.len()), hi.max(s.len()))
                });
                assert!(
                    min >= 1 && max - min <= 1,
                    "{batch} over {size}: {shards:?}"
                );
            }
        }
    }

    #[test]
    fn buckets_cover_the_tensors_in_order_and_close_at_the_threshold() {
        assert!(plan_buckets(&[], 4).is_empty());
        assert_eq!(plan_buckets(&[1, 2, 3], 100), vec![0..3]);
        // 3 + 2 reaches 4 and closes; the 10 exceeds a bucket alone; the 1 is what is left.
        assert_eq!(plan_buckets(&[3, 2, 10, 1], 4), vec![0..2, 2..3, 3..4]);
        assert_eq!(plan_buckets(&[4, 4], 4), vec![0..1, 1..2]);
        for bucket_elements in 1..12 {
            let sizes = [5, 1, 1, 7, 2, 3, 1];
            let buckets = plan_buckets(&sizes, bucket_elements);
            assert_eq!(buckets.first().unwrap().start, 0);
            assert_eq!(buckets.last().unwrap().end, sizes.len());
            for pair in buckets.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            for bucket in &buckets[..buckets.len() - 1] {
                let filled: usize = sizes[bucket.clone()].iter().sum();
                let before_last: usize = sizes[bucket.start..bucket.end - 1].iter().sum();
                assert!(filled >= bucket_elements && before_last < bucket_elements);
            }
        }
    }

    #[test]
    fn the_first_bucket_closes_at_its_own_cap() {
        assert_eq!(
            plan_buckets_capped(&[1, 1, 3, 3, 3, 1], 2, 5),
            vec![0..2, 2..4, 4..6]
        );
        assert_eq!(plan_buckets_capped(&[9, 1], 2, 5), vec![0..1, 1..2]);
    }

    #[test]
    fn a_batch_smaller_than_the_world_is_refused_by_name() {
        let e = Shard::of(3, 0, 4).unwrap_err().to_string();
        assert!(e.contains("--batch-size 4"), "{e}");
        assert!(Shard::of(8, 4, 4).is_err());
    }
}
