//! The per-sample mean squared error of a diffusion training loss, forward and backward each in one pass:
//!
//! ```text
//! mse[n] = (1/D) Σ_i (p[n, i] − t[n, i])²              p (prediction), t (target) [batch, D]; mse [batch]
//! ∂L/∂p[n, i] = (2/D)·g[n]·(p[n, i] − t[n, i])          g = ∂L/∂mse [batch]
//! ```
//!
//! The loss weighting (the timestep weight of each sample, the mean over the batch) acts on the `batch` values of
//! `mse`, so it reaches the kernel as `g`: the backward pass applies it while it writes the gradient. Unfused, the
//! loss is a subtraction, a square and a mean, each writing or reading the whole batch, and their backward rules
//! three more passes (the mean's broadcast, the square's `2·x·g`, the subtraction's negation for the target);
//! fused, the forward reads `p` and `t` once and writes `batch` floats, and the backward reads them once more and
//! writes the gradient once. The gradient of the target is `−∂L/∂p` (the caller negates it when a target needs
//! one; a training target is data and never does).
//!
//! Loop structure. Each sample is cut into fixed blocks of `BLOCK` elements; forward, a task sums one block's
//! squared differences in f64, and each sample's partials are added in block order, so the result does not depend
//! on the thread count. Backward, elements are independent and tasks take whole blocks. A call on fewer than
//! `BLOCK` elements runs on the calling thread (the same arithmetic, without a rayon hand-off).

use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};

/// Elements per parallel task, and the granularity of the forward pass's partial sums.
const BLOCK: usize = 8192;

/// `batch` samples of `len` elements each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleShape {
    pub batch: usize,
    pub len: usize,
}

impl SampleShape {
    /// Elements of the prediction, or an error when the shape overflows.
    fn elements(&self, op: &'static str) -> Result<usize> {
        self.batch
            .checked_mul(self.len)
            .ok_or_else(|| KernelError::new(op, format!("shape {self:?} overflows usize")))
    }
}

/// `mse[n] = mean_i (prediction[n, i] − target[n, i])²`, overwritten; a sample of no elements has an MSE of 0.
pub fn sample_mse_forward(
    s: &SampleShape,
    prediction: &[f32],
    target: &[f32],
    mse: &mut [f32],
) -> Result<()> {
    const OP: &str = "sample_mse_forward";
    let elements = s.elements(OP)?;
    check_len(OP, "prediction", prediction.len(), elements)?;
    check_len(OP, "target", target.len(), elements)?;
    check_len(OP, "mse", mse.len(), s.batch)?;
    if s.len == 0 {
        mse.fill(0.0);
        return Ok(());
    }
    let blocks = s.len.div_ceil(BLOCK);
    // Partial sums per (sample, block), in f64: `len` squares of f32 differences each.
    let mut partial = vec![0.0f64; s.batch * blocks];
    let block_sum = |(sum, (p, t)): (&mut f64, (&[f32], &[f32]))| {
        *sum = p
            .iter()
            .zip(t)
            .map(|(&p, &t)| {
                let d = f64::from(p) - f64::from(t);
                d * d
            })
            .sum();
    };
    fn blocks_of(x: &[f32], len: usize) -> Vec<&[f32]> {
        x.chunks_exact(len)
            .flat_map(|sample| sample.chunks(BLOCK))
            .collect()
    }
    let (p_blocks, t_blocks) = (blocks_of(prediction, s.len), blocks_of(target, s.len));
    if elements <= BLOCK {
        partial
            .iter_mut()
            .zip(p_blocks.into_iter().zip(t_blocks))
            .for_each(block_sum);
    } else {
        partial
            .par_iter_mut()
            .zip(p_blocks.into_par_iter().zip(t_blocks))
            .for_each(block_sum);
    }
    for (m, sample) in mse.iter_mut().zip(partial.chunks_exact(blocks)) {
        *m = (sample.iter().sum::<f64>() / s.len as f64) as f32;
    }
    Ok(())
}

/// `grad_prediction[n, i] = (2/D)·grad_mse[n]·(prediction[n, i] − target[n, i])`, overwritten.
pub fn sample_mse_backward(
    s: &SampleShape,
    prediction: &[f32],
    target: &[f32],
    grad_mse: &[f32],
    grad_prediction: &mut [f32],
) -> Result<()> {
    const OP: &str = "sample_mse_backward";
    let elements = s.elements(OP)?;
    check_len(OP, "prediction", prediction.len(), elements)?;
    check_len(OP, "target", target.len(), elements)?;
    check_len(OP, "grad_mse", grad_mse.len(), s.batch)?;
    check_len(OP, "grad_prediction", grad_prediction.len(), elements)?;
    if elements == 0 {
        return Ok(());
    }
    let len = s.len;
    // One rounding for the per-sample factor, one for the difference, one for the product.
    let scale: Vec<f32> = grad_mse
        .iter()
        .map(|&g| (2.0 * f64::from(g) / len as f64) as f32)
        .collect();
    // A block may straddle samples: it is walked in runs of one sample each.
    let block = |b: usize, gp: &mut [f32], p: &[f32], t: &[f32]| {
        let (mut at, first) = (0, b * BLOCK);
        while at < gp.len() {
            let n = (first + at) / len;
            let end = ((n + 1) * len - first).min(gp.len());
            let k = scale[n];
            for (gp, (&p, &t)) in gp[at..end]
                .iter_mut()
                .zip(p[at..end].iter().zip(&t[at..end]))
            {
                *gp = k * (p - t);
            }
            at = end;
        }
    };
    if elements <= BLOCK {
        block(0, grad_prediction, prediction, target);
    } else {
        grad_prediction
            .par_chunks_mut(BLOCK)
            .zip(prediction.par_chunks(BLOCK).zip(target.par_chunks(BLOCK)))
            .enumerate()
            .for_each(|(b, (gp, (p, t)))| block(b, gp, p, t));
    }
    Ok(())
}
