//! Fused optimiser steps, one pass over parameters, gradients and state (PyTorch semantics).
//!
//! AdamW (Loshchilov & Hutter, decoupled weight decay), step `t ≥ 1`, element-wise:
//! `p ← p − lr·wd·p`; `m ← β1·m + (1 − β1)·g`; `v ← β2·v + (1 − β2)·g²`;
//! `p ← p − lr·(m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + eps)`.
//! SGD with momentum (dampening 0, not Nesterov): `g ← g + wd·p`; `b ← μ·b + g`; `p ← p − lr·b`.
//! Both are bandwidth-bound; rayon splits the vectors into fixed chunks.

use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};

/// Elements per parallel task: 64 KiB of each stream, several tasks per core even for small models.
const CHUNK: usize = 16_384;

/// AdamW hyper-parameters (PyTorch names and meaning).
#[derive(Clone, Copy, Debug)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// One AdamW step at (1-based) `step`, updating `params`, `m` and `v` in place.
pub fn adamw_step(
    cfg: &AdamWConfig,
    step: u64,
    params: &mut [f32],
    grads: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    const OP: &str = "adamw_step";
    if step == 0 {
        return Err(KernelError::new(
            OP,
            "step is 1-based; 0 would divide by a zero bias correction",
        ));
    }
    if !(0.0..1.0).contains(&cfg.beta1) || !(0.0..1.0).contains(&cfg.beta2) {
        return Err(KernelError::new(
            OP,
            format!("betas ({}, {}) must lie in [0, 1)", cfg.beta1, cfg.beta2),
        ));
    }
    let n = params.len();
    check_len(OP, "grads", grads.len(), n)?;
    check_len(OP, "m", m.len(), n)?;
    check_len(OP, "v", v.len(), n)?;

    // Bias corrections in f64: β^t for large t underflows gracefully to 0, and 1 − β^t keeps its digits.
    let t = i32::try_from(step).unwrap_or(i32::MAX);
    let correction1 = 1.0 - f64::from(cfg.beta1).powi(t);
    let correction2 = 1.0 - f64::from(cfg.beta2).powi(t);
    let step_size = (f64::from(cfg.lr) / correction1) as f32;
    let inv_sqrt_correction2 = (1.0 / correction2.sqrt()) as f32;
    let decay = 1.0 - cfg.lr * cfg.weight_decay;
    let (b1, b2, eps) = (cfg.beta1, cfg.beta2, cfg.eps);

    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() * inv_sqrt_correction2 + eps;
                *p = *p * decay - step_size * *m / denom;
            }
        });
    Ok(())
}

/// One SGD-with-momentum step (PyTorch `SGD(momentum, weight_decay)`, dampening 0, no Nesterov).
///
/// `velocity` must start at zero: then the first step stores `g`, exactly PyTorch's initialisation of its buffer.
pub fn sgd_momentum_step(
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    params: &mut [f32],
    grads: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    const OP: &str = "sgd_momentum_step";
    check_len(OP, "grads", grads.len(), params.len())?;
    check_len(OP, "velocity", velocity.len(), params.len())?;
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(velocity.par_chunks_mut(CHUNK))
        .for_each(|((p, g), b)| {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                let g = g + weight_decay * *p;
                *b = momentum * *b + g;
                *p -= lr * *b;
            }
        });
    Ok(())
}
