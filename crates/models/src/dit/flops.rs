//! The arithmetic of one forward pass, counted from the shapes: each multiply-add of a matrix product, convolution
//! or attention is two floating-point operations. Element-wise work (normalisation, activations, residual adds) is
//! linear in the activations and left out, as the DiT paper leaves it out; its "Gflops" count multiply-adds, half
//! of the figure here.
//!
//! Per image at `H × W`, with `L = HW/p²` tokens of width `D`, `C` channels in and `C'` out:
//!
//! ```text
//! patch embedding       2·L·(C·p²)·D
//! per block             2·(256·D + D² + 6D²)                       conditioning and modulation (per image)
//!                     + 2·L·4D²                                    q, k, v and the output projection
//!                     + 2·2·L²·D                                   q·kᵀ and the weighted sum of v
//!                     + 2·L·8D²                                    feed-forward D → 4D → D
//! final layer           2·2D² + 2·L·D·(p²·C')
//! ```

use super::config::DiTConfig;
use super::embedding::TIMESTEP_CODE_CHANNELS;

/// Floating-point operations of one forward pass of one `height × width` image (both multiples of the patch size).
pub fn flops_per_image(config: &DiTConfig, height: usize, width: usize) -> f64 {
    let p = config.patch_size as f64;
    let d = config.inner_dim() as f64;
    let l = (height * width) as f64 / (p * p);
    let c_in = config.in_channels as f64;
    let c_out = config.output_channels() as f64;
    let code = TIMESTEP_CODE_CHANNELS as f64;
    let patch = 2.0 * l * c_in * p * p * d;
    let conditioning = 2.0 * (code * d + d * d + 6.0 * d * d);
    let attention = 2.0 * l * 4.0 * d * d + 4.0 * l * l * d;
    let feed_forward = 2.0 * l * 8.0 * d * d;
    let block = conditioning + attention + feed_forward;
    let last = 4.0 * d * d + 2.0 * l * d * p * p * c_out;
    patch + config.num_layers as f64 * block + last
}
