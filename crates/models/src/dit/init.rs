//! The DiT paper's initialisation (Peebles & Xie 2023, and its released code), which diffusers' class (built to
//! load trained weights) does not reproduce:
//!
//! - every linear layer: Xavier-uniform weights, `U(−a, a)` with `a = √(6/(fan_in + fan_out))`, and zero biases;
//!   the patch projection likewise, its weight seen as a linear map of flattened patches;
//! - the timestep MLP's weights and the label table: N(0, 0.02²);
//! - **adaLN-Zero**: the linear layer that maps the conditioning to each block's shifts, scales and gates, the
//!   final layer's shift and scale, and the final projection all start at zero. Every gate is then 0, so each block
//!   starts as the identity on the residual stream, and the network's output starts at 0 (see `docs/dit.md`).

use diffuse_nn::{Init, Linear, Path};
use diffuse_tensor::Result;

/// N(0, std²).
pub fn normal(std: f32) -> Init {
    Init::Normal { std }
}

pub fn zeros() -> Init {
    Init::Constant(0.0)
}

/// Xavier-uniform for a map from `fan_in` to `fan_out` values.
pub fn xavier_uniform(fan_in: usize, fan_out: usize) -> Init {
    let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
    Init::Uniform { lo: -a, hi: a }
}

/// A linear layer `in_features → out_features` with weights drawn from `weight` and, when `bias`, zero biases.
pub fn linear(
    path: &Path,
    in_features: usize,
    out_features: usize,
    weight: Init,
    bias: bool,
) -> Result<Linear> {
    Ok(Linear {
        weight: path.param("weight", &[out_features, in_features], weight)?,
        bias: bias
            .then(|| path.param("bias", &[out_features], zeros()))
            .transpose()?,
    })
}

/// A Xavier-initialised linear layer with a zero bias when `bias`.
pub fn xavier_linear(
    path: &Path,
    in_features: usize,
    out_features: usize,
    bias: bool,
) -> Result<Linear> {
    linear(
        path,
        in_features,
        out_features,
        xavier_uniform(in_features, out_features),
        bias,
    )
}
