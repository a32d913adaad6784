//! The gradient all-reduce overlapped with the backward pass, as PyTorch's DistributedDataParallel does it: the
//! trainable parameters are grouped into buckets in the order backward finishes their gradients (the reverse of the
//! order the forward pass used them), and each bucket's sum over the ranks starts as soon as the last gradient in it
//! is final, while backward goes on with the layers below. docs/distributed.md explains the algorithm.
//!
//! The order is learnt on this process's first step: its backward reports each parameter as its gradient becomes
//! final ([`Var::backward_with_hook`]); that step's gradients are summed after backward, as without overlap; rank 0's
//! order is then given to every rank (and learnt again if the set of trainable parameters changes), so that every
//! rank plans the same buckets and starts them in the same order (MPI requires that of collectives). From the second
//! step on, buckets start during backward; a rank whose gradients become final in another order only starts later. Each bucket holds the same gradients in the same place
//! on every rank, and a parameter without a gradient on this rank contributes zeros.

use super::collective::{all_reduce_gradients, plan_buckets_capped, Collective, BUCKET_ELEMENTS};
use crate::error::Result;
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::Tensor;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

/// PyTorch's default bucket (`bucket_cap_mb = 25`): 25 MiB of f32 values.
pub const DEFAULT_BUCKET_ELEMENTS: usize = 25 * (1 << 20) / 4;

/// PyTorch's first bucket: 1 MiB of f32 values, so that the first all-reduce starts early in backward.
pub const FIRST_BUCKET_ELEMENTS: usize = (1 << 20) / 4;

/// The buckets, once the order is known: parameter indices in the order their gradients become final, and the
/// buckets as ranges of that order.
struct Plan {
    /// The parameters it was planned for (their variables' ids): another set (a parameter frozen or thawed) is
    /// planned again.
    params: Vec<usize>,
    order: Vec<usize>,
    buckets: Vec<Range<usize>>,
}

/// The gradients of `loss` with respect to `params`, summed over the ranks of `collective`, and the seconds spent
/// communicating: overlapped with backward through `overlap` when there is one, otherwise summed after backward in
/// buckets of [`BUCKET_ELEMENTS`]. Both trainers (the diffusion model's and the autoencoder's) take their gradients
/// through this.
pub fn backward_summed(
    overlap: Option<&mut OverlappedBackward>,
    collective: &dyn Collective,
    params: &[(String, Var)],
    loss: &Var,
) -> Result<(Gradients, f64)> {
    match overlap {
        Some(overlap) => overlap.backward(collective, params, loss),
        None => {
            let mut grads = loss.backward()?;
            let seconds = all_reduce_gradients(collective, params, &mut grads, BUCKET_ELEMENTS)?;
            Ok((grads, seconds))
        }
    }
}

/// The backward pass of a data-parallel step with its gradient all-reduce overlapped, in buckets of up to
/// `bucket_elements` values (the first of up to [`FIRST_BUCKET_ELEMENTS`]).
pub struct OverlappedBackward {
    bucket_elements: usize,
    plan: Option<Plan>,
}

impl OverlappedBackward {
    pub fn new(bucket_elements: usize) -> OverlappedBackward {
        OverlappedBackward {
            bucket_elements: bucket_elements.max(1),
            plan: None,
        }
    }

    /// The gradients of `loss` with respect to `params`, summed over the ranks of `collective` (every other leaf's
    /// gradient as backward returns it), and the seconds spent communicating outside the backward pass: packing the
    /// buckets that were not ready during it, waiting for the sums, unpacking. A parameter without a gradient on
    /// every rank stays without one.
    pub fn backward(
        &mut self,
        collective: &dyn Collective,
        params: &[(String, Var)],
        loss: &Var,
    ) -> Result<(Gradients, f64)> {
        if collective.size() == 1 {
            return Ok((loss.backward()?, 0.0));
        }
        let index: HashMap<usize, usize> = params
            .iter()
            .enumerate()
            .map(|(i, (_, p))| (p.id(), i))
            .collect();
        let ids: Vec<usize> = params.iter().map(|(_, p)| p.id()).collect();
        let planned = self.plan.as_ref().filter(|plan| plan.params == ids);
        let Some(plan) = planned else {
            let mut order = Vec::with_capacity(params.len());
            let mut grads = loss.backward_with_hook(&mut |id, _| {
                order.extend(index.get(&id));
                Ok(())
            })?;
            let communication_s =
                all_reduce_gradients(collective, params, &mut grads, BUCKET_ELEMENTS)?;
            let begun = Instant::now();
            self.plan = Some(self.agree_on_plan(collective, params, ids, order)?);
            return Ok((grads, communication_s + begun.elapsed().as_secs_f64()));
        };
        let sizes: Vec<usize> = plan
            .buckets
            .iter()
            .map(|b| {
                plan.order[b.clone()]
                    .iter()
                    .map(|&i| params[i].1.tensor().numel())
                    .sum()
            })
            .collect();
        let mut final_grads: Vec<Option<Tensor>> = vec![None; params.len()];
        let mut grads = None;
        // When backward ended: what follows (the buckets not started during it, the wait for the sums, unpacking)
        // is the communication the step waits for.
        let mut walked_at = None;
        let sums = collective.all_reduce_overlapped(&sizes, &mut |launch| {
            let mut launched = 0;
            // The error of a launch, kept while the walk is stopped with the tensor layer's error type.
            let mut launch_error = None;
            let walk = loss.backward_with_hook(&mut |id, grad| {
                let Some(&i) = index.get(&id) else {
                    return Ok(());
                };
                final_grads[i] = Some(grad.clone());
                while launched < plan.buckets.len()
                    && plan.order[plan.buckets[launched].clone()]
                        .iter()
                        .all(|&j| final_grads[j].is_some())
                {
                    let members = &plan.order[plan.buckets[launched].clone()];
                    let started = pack(params, members, &final_grads).and_then(&mut *launch);
                    if let Err(e) = started {
                        launch_error = Some(e);
                        return Err(diffuse_tensor::Error::argument(
                            "gradient all-reduce",
                            "a bucket could not be started",
                        ));
                    }
                    launched += 1;
                }
                Ok(())
            });
            if let Some(e) = launch_error {
                return Err(e);
            }
            grads = Some(walk?);
            walked_at = Some(Instant::now());
            // The buckets holding a parameter that got no gradient here (zeros in its place).
            for bucket in &plan.buckets[launched..] {
                launch(pack(params, &plan.order[bucket.clone()], &final_grads)?)?;
            }
            Ok(())
        });
        let sums = sums?;
        let mut grads = grads.expect("the backward pass ran");
        // Which parameters have a gradient on some rank: the others stay without one, as in one process.
        let mut present: Vec<f64> = final_grads
            .iter()
            .map(|g| f64::from(u8::from(g.is_some())))
            .collect();
        collective.all_reduce_sum_f64(&mut present)?;
        for (bucket, sum) in plan.buckets.iter().zip(sums) {
            let mut offset = 0;
            for &i in &plan.order[bucket.clone()] {
                let param = &params[i].1;
                let shape = param.tensor().shape();
                let n = param.tensor().numel();
                if present[i] > 0.0 {
                    grads.insert(param, sum.narrow(0, offset, n)?.reshape(shape)?);
                } else {
                    grads.remove(param);
                }
                offset += n;
            }
        }
        let communication_s = walked_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
        Ok((grads, communication_s))
    }

    /// The buckets every rank uses: rank 0's `order` (the parameters in the order their gradients became final,
    /// completed by those that got none, in `params`' order), given to every rank with one all-reduce to which only
    /// rank 0 contributes.
    fn agree_on_plan(
        &self,
        collective: &dyn Collective,
        params: &[(String, Var)],
        ids: Vec<usize>,
        mut order: Vec<usize>,
    ) -> Result<Plan> {
        let mut seen = vec![false; params.len()];
        for &i in &order {
            seen[i] = true;
        }
        order.extend((0..params.len()).filter(|&i| !seen[i]));
        let mut shared: Vec<f64> = if collective.is_leader() {
            order.iter().map(|&i| i as f64).collect()
        } else {
            vec![0.0; params.len()]
        };
        collective.all_reduce_sum_f64(&mut shared)?;
        let order: Vec<usize> = shared.iter().map(|&i| i as usize).collect();
        let sizes: Vec<usize> = order
            .iter()
            .map(|&i| params[i].1.tensor().numel())
            .collect();
        let buckets = plan_buckets_capped(
            &sizes,
            FIRST_BUCKET_ELEMENTS.min(self.bucket_elements),
            self.bucket_elements,
        );
        Ok(Plan {
            params: ids,
            order,
            buckets,
        })
    }
}

/// The gradients of `members` (indices into `params`) in one flat tensor, zeros where this rank has none.
fn pack(params: &[(String, Var)], members: &[usize], grads: &[Option<Tensor>]) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(members.len());
    for &i in members {
        let value = params[i].1.tensor();
        flat.push(match &grads[i] {
            Some(g) => g.reshape(&[g.numel()])?,
            None => Tensor::zeros(&[value.numel()], value.dtype(), value.device())?,
        });
    }
    let parts: Vec<&Tensor> = flat.iter().collect();
    Ok(Tensor::concat(&parts, 0)?)
}
