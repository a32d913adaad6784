//! The gated residual connection of a DiT block (adaLN-Zero, Peebles & Xie 2023): a branch output `y` is scaled per
//! sample and feature by its gate before it joins the residual stream `x`,
//!
//! ```text
//! out[n, l, c] = x[n, l, c] + gate[n, c]·y[n, l, c]        x, y, out [batch, tokens, dim], gate [batch, dim]
//! ```
//!
//! Backward, with `g = ∂L/∂out`: `∂L/∂x = g` (the caller passes `g` on, no kernel), `∂L/∂y = gate[n]∘g` and
//! `∂L/∂gate[n, c] = Σ_tokens g∘y`. Unfused, the forward is a broadcast multiply into a temporary and an add; fused, it
//! reads `x` and `y` once and writes `out` once, and the backward reads `g` and `y` once for both of its outputs.
//!
//! Loop structure. Forward: rows (one token's `dim` features) are independent; rayon hands out runs of rows. Backward:
//! the tokens of each sample are cut into fixed blocks of `TOKENS_PER_TASK`; a task writes its block's rows of `∂y`
//! and sums its `Σ g∘y` into a partial of `dim` f64 values, and each sample's partials are added in block order, so
//! the result does not depend on the thread count.

use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};

/// Tokens per parallel task of the backward pass (and the granularity of its `∂gate` partial sums).
const TOKENS_PER_TASK: usize = 16;

/// The shape of a gated residual add: `x`, `y` `[batch, tokens, dim]`, `gate [batch, dim]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatedShape {
    pub batch: usize,
    pub tokens: usize,
    pub dim: usize,
}

impl GatedShape {
    /// Checks the shape; returns (elements of `x`, elements of `gate`).
    fn validate(&self, op: &'static str) -> Result<(usize, usize)> {
        let overflow = || KernelError::new(op, format!("shape {self:?} overflows usize"));
        let len = self
            .batch
            .checked_mul(self.tokens)
            .and_then(|rows| rows.checked_mul(self.dim))
            .ok_or_else(overflow)?;
        let gate = self.batch.checked_mul(self.dim).ok_or_else(overflow)?;
        Ok((len, gate))
    }
}

/// `out = x + gate[n]∘y` for every token of every sample `n`.
pub fn gated_residual_forward(
    s: &GatedShape,
    x: &[f32],
    gate: &[f32],
    y: &[f32],
    out: &mut [f32],
) -> Result<()> {
    const OP: &str = "gated_residual_forward";
    let (len, gate_len) = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "out", out.len(), len)?;
    check_len(OP, "gate", gate.len(), gate_len)?;
    if len == 0 {
        return Ok(());
    }
    let (d, tokens) = (s.dim, s.tokens);
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(y.par_chunks(d)))
        .enumerate()
        .with_min_len((4096 / d).max(1))
        .for_each(|(row, (out, (x, y)))| {
            let n = row / tokens;
            let gate = &gate[n * d..(n + 1) * d];
            for (((o, &x), &g), &y) in out.iter_mut().zip(x).zip(gate).zip(y) {
                *o = x + g * y;
            }
        });
    Ok(())
}

/// Gradients of [`gated_residual_forward`] with respect to `y` and `gate` (both overwritten) from the output gradient
/// `grad_out`; the gradient with respect to `x` is `grad_out` itself.
pub fn gated_residual_backward(
    s: &GatedShape,
    gate: &[f32],
    y: &[f32],
    grad_out: &[f32],
    grad_y: &mut [f32],
    grad_gate: &mut [f32],
) -> Result<()> {
    const OP: &str = "gated_residual_backward";
    let (len, gate_len) = s.validate(OP)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "grad_out", grad_out.len(), len)?;
    check_len(OP, "grad_y", grad_y.len(), len)?;
    check_len(OP, "gate", gate.len(), gate_len)?;
    check_len(OP, "grad_gate", grad_gate.len(), gate_len)?;
    if len == 0 {
        grad_gate.fill(0.0);
        return Ok(());
    }
    let (d, tokens) = (s.dim, s.tokens);
    let blocks = tokens.div_ceil(TOKENS_PER_TASK);
    let block_len = TOKENS_PER_TASK * d;
    let sample_len = tokens * d;
    // Per sample and block: Σ g∘y over the block's tokens, dim values.
    let mut partial = vec![0.0f64; s.batch * blocks * d];
    grad_y
        .par_chunks_mut(sample_len)
        .zip(
            y.par_chunks(sample_len)
                .zip(grad_out.par_chunks(sample_len)),
        )
        .zip(partial.par_chunks_mut(blocks * d))
        .zip(gate.par_chunks(d))
        .for_each(|(((grad_y, (y, grad_out)), partial), gate)| {
            grad_y
                .par_chunks_mut(block_len)
                .zip(y.par_chunks(block_len).zip(grad_out.par_chunks(block_len)))
                .zip(partial.par_chunks_mut(d))
                .for_each(|((grad_y, (y, grad_out)), sum_gy)| {
                    let rows = grad_y
                        .chunks_exact_mut(d)
                        .zip(y.chunks_exact(d).zip(grad_out.chunks_exact(d)));
                    for (gy, (y, g)) in rows {
                        for j in 0..d {
                            gy[j] = gate[j] * g[j];
                            sum_gy[j] += f64::from(g[j]) * f64::from(y[j]);
                        }
                    }
                });
        });
    grad_gate
        .par_chunks_mut(d)
        .zip(partial.par_chunks(blocks * d))
        .for_each(|(grad_gate, partial)| {
            let mut sum = vec![0.0f64; d];
            for block in partial.chunks_exact(d) {
                for (acc, &v) in sum.iter_mut().zip(block) {
                    *acc += v;
                }
            }
            for (g, v) in grad_gate.iter_mut().zip(sum) {
                *g = v as f32;
            }
        });
    Ok(())
}
