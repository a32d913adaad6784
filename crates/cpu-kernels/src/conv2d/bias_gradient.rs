//! The bias gradient of a convolution: for each output channel o,
//!
//! ```text
//! db[o] = Σ_{n, oh, ow} dy[n, o, oh, ow]      summed in f64, rounded once to f32
//! ```
//!
//! Loop structure (here; Winograd's weight gradient sums the rows it reads anyway, in its chunk order, through the same
//! `accumulate`): channels in parallel (rayon); inside a channel, its planes image after image, each plane in blocks
//! of `LANES` floats, float `i` of a block going to partial sum `i` (a plane's last, shorter block fills the first
//! partial sums only). The `LANES` partial sums are independent, so the additions pipeline in vector registers
//! instead of waiting on one running sum, and they are combined at the end by a fixed pairwise tree. Every step of
//! that order depends only on the shape, never on the threads, so the result is bit-identical for any thread count
//! and for every build of `dispatch!` (f64 additions, no FMA).
//!
//! Rounding: every float of dy is exact in f64, and a sum of `L` of them in any order is within `L·2^-53·Σ|dy|` of
//! the exact one (2^29 times less than the same sum in f32), then rounded once to f32 (`2^-24·|db|`): unless the
//! terms cancel to a sum far below `L·2^-29·Σ|dy|`, that is the correctly rounded sum or one ulp from it, in
//! whichever of the two orders.

use rayon::prelude::*;

use crate::dispatch::dispatch;

/// Independent partial sums per channel: four AVX-512 registers of f64 (eight AVX2 ones).
const LANES: usize = 32;

/// The running partial sums of one channel.
pub(super) type Partials = [f64; LANES];

/// `grad_bias[o] = Σ` of plane `o` of every `out_image`-float image of `grad_output` (planes of `plane` floats).
pub(super) fn bias_gradient(
    grad_output: &[f32],
    plane: usize,
    out_image: usize,
    grad_bias: &mut [f32],
) {
    grad_bias
        .par_iter_mut()
        .enumerate()
        .for_each(|(channel, db)| {
            dispatch!(channel_sum(
                grad_output: &[f32],
                channel: usize,
                plane: usize,
                out_image: usize,
                db: &mut f32,
            ));
        });
}

/// `*db = Σ` of plane `channel` of every image, in the order of the module header.
#[inline(always)]
fn channel_sum(grad_output: &[f32], channel: usize, plane: usize, out_image: usize, db: &mut f32) {
    let mut partial = [0.0; LANES];
    for image in grad_output.chunks_exact(out_image) {
        accumulate(&image[channel * plane..][..plane], &mut partial);
    }
    *db = total(partial);
}

/// Adds `values` to the partial sums: float `i` of each `LANES`-float block to partial sum `i`, the last, shorter
/// block to the first partial sums. (Winograd's weight gradient calls this on each output-gradient row it reads,
/// which sums the same floats in another fixed order; see `winograd/mod.rs`.)
#[inline(always)]
pub(super) fn accumulate(values: &[f32], partial: &mut Partials) {
    let mut blocks = values.chunks_exact(LANES);
    for block in &mut blocks {
        // A fixed-length block, so the loop compiles to whole-register conversions and additions.
        let block: &[f32; LANES] = block.try_into().unwrap();
        for i in 0..LANES {
            partial[i] += f64::from(block[i]);
        }
    }
    for (sum, &v) in partial.iter_mut().zip(blocks.remainder()) {
        *sum += f64::from(v);
    }
}

/// The partial sums combined by a fixed pairwise tree, rounded to f32.
pub(super) fn total(mut partial: Partials) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            partial[i] += partial[i + width];
        }
    }
    partial[0] as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain f64 sum, on planes shorter than, equal to and off the block (1 to 70 floats), batches of 1 to
    /// 3 and one to three channels, with values of mixed signs and magnitudes: the two f64 sums differ by at most
    /// `2·L·2^-53·Σ|dy|` (each is within `L·2^-53·Σ|dy|` of the exact sum), and rounding to f32 adds at most
    /// `2^-24·|db|`.
    #[test]
    fn matches_a_plain_f64_sum() {
        for plane in [1, 2, 7, 31, 32, 33, 49, 64, 70] {
            for batch in 1..=3 {
                for channels in 1..=3 {
                    let out_image = channels * plane;
                    let dy: Vec<f32> = (0..batch * out_image)
                        .map(|i| {
                            let scale = [1e-3, 1.0, 1e3][i % 3];
                            (((i * 7919) % 1000) as f32 / 500.0 - 1.0) * scale
                        })
                        .collect();
                    let mut db = vec![f32::NAN; channels];
                    bias_gradient(&dy, plane, out_image, &mut db);
                    for (o, &got) in db.iter().enumerate() {
                        let terms = dy
                            .chunks_exact(out_image)
                            .flat_map(|image| &image[o * plane..][..plane]);
                        let (sum, abs) = terms.fold((0.0f64, 0.0f64), |(s, a), &v| {
                            (s + f64::from(v), a + f64::from(v).abs())
                        });
                        let length = (batch * plane) as f64;
                        let tolerance =
                            2.0 * length * abs * 2f64.powi(-53) + sum.abs() * 2f64.powi(-24);
                        assert!(
                            (f64::from(got) - sum).abs() <= tolerance,
                            "plane {plane}, batch {batch}, channel {o}: {got} against {sum}"
                        );
                    }
                }
            }
        }
    }
}
