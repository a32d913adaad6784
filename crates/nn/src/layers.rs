//! Layers. Each registers its parameters under the path it is built from, with PyTorch's names (`weight`, `bias`),
//! and implements [`Module`] where its input is one tensor.

use crate::store::{Init, Path};
use diffuse_autograd::Var;
use diffuse_tensor::{Conv2dParams, Error, Result};

/// A layer applied to one input.
pub trait Module {
    fn forward(&self, x: &Var) -> Result<Var>;
}

/// `y = x·Wᵀ + b` over the last dimension of `x`; `weight` is (out, in), `bias` (out).
pub struct Linear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl Linear {
    pub fn new(path: &Path, in_features: usize, out_features: usize, bias: bool) -> Result<Linear> {
        let init = Init::kaiming_uniform(in_features);
        Ok(Linear {
            weight: path.param("weight", &[out_features, in_features], init)?,
            bias: bias
                .then(|| path.param("bias", &[out_features], init))
                .transpose()?,
        })
    }
}

impl Module for Linear {
    /// One GEMM; the bias, when there is one, is added in its output stage ([`Var::matmul_bias`]).
    fn forward(&self, x: &Var) -> Result<Var> {
        let weight_t = self.weight.transpose(0, 1)?;
        match &self.bias {
            Some(b) => x.matmul_bias(&weight_t, b),
            None => x.matmul(&weight_t),
        }
    }
}

/// 2-D convolution; `weight` is (out, in/groups, KH, KW), `bias` (out).
pub struct Conv2d {
    pub weight: Var,
    pub bias: Option<Var>,
    pub params: Conv2dParams,
}

impl Conv2d {
    pub fn new(
        path: &Path,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        bias: bool,
    ) -> Result<Conv2d> {
        if params.groups == 0
            || !in_channels.is_multiple_of(params.groups)
            || !out_channels.is_multiple_of(params.groups)
        {
            return Err(Error::argument(
                "Conv2d",
                format!(
                    "{} groups must divide both {in_channels} input and {out_channels} output channels",
                    params.groups
                ),
            ));
        }
        let group_in = in_channels / params.groups;
        let init = Init::kaiming_uniform(group_in * kernel.0 * kernel.1);
        Ok(Conv2d {
            weight: path.param(
                "weight",
                &[out_channels, group_in, kernel.0, kernel.1],
                init,
            )?,
            bias: bias
                .then(|| path.param("bias", &[out_channels], init))
                .transpose()?,
            params,
        })
    }

    /// `forward(x) + channel[:, :, None, None] + residual` with both additions fused into the convolution's output
    /// stage: `channel` (N, out_channels) is one value per image and channel (a projected time embedding),
    /// `residual` has the output's shape (a skip connection); either may be absent.
    pub fn forward_add(
        &self,
        x: &Var,
        channel: Option<&Var>,
        residual: Option<&Var>,
    ) -> Result<Var> {
        x.conv2d_add(
            &self.weight,
            self.bias.as_ref(),
            channel,
            residual,
            &self.params,
        )
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.params)
    }
}

/// Group normalisation of (N, C, ...) with a per-channel affine `weight` (γ) and `bias` (β).
pub struct GroupNorm {
    pub weight: Var,
    pub bias: Var,
    pub groups: usize,
    pub eps: f32,
}

impl GroupNorm {
    pub fn new(path: &Path, groups: usize, channels: usize, eps: f32) -> Result<GroupNorm> {
        Ok(GroupNorm {
            weight: path.param("weight", &[channels], Init::Constant(1.0))?,
            bias: path.param("bias", &[channels], Init::Constant(0.0))?,
            groups,
            eps,
        })
    }

    /// `silu(self.forward(x))` in one fused kernel each way (the pre-activation of a residual block).
    pub fn forward_silu(&self, x: &Var) -> Result<Var> {
        x.group_norm_silu(self.groups, &self.weight, &self.bias, self.eps)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.group_norm(self.groups, &self.weight, &self.bias, self.eps)
    }
}

/// Layer normalisation over the last dimension with `weight` (γ) and `bias` (β).
pub struct LayerNorm {
    pub weight: Var,
    pub bias: Var,
    pub eps: f32,
}

impl LayerNorm {
    pub fn new(path: &Path, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: path.param("weight", &[dim], Init::Constant(1.0))?,
            bias: path.param("bias", &[dim], Init::Constant(0.0))?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.layer_norm(&self.weight, &self.bias, self.eps)
    }
}

/// A lookup table of `num` vectors of size `dim` (`weight`, initialised N(0, 1)).
pub struct Embedding {
    pub weight: Var,
}

impl Embedding {
    pub fn new(path: &Path, num: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding {
            weight: path.param("weight", &[num, dim], Init::Normal { std: 1.0 })?,
        })
    }

    /// The rows `ids`, as (ids.len(), dim).
    pub fn forward(&self, ids: &[usize]) -> Result<Var> {
        self.weight.index_select(0, ids)
    }
}

/// x·σ(x).
pub struct SiLU;

impl Module for SiLU {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.silu()
    }
}

/// x·Φ(x), the exact GELU (`torch.nn.GELU()` with `approximate='none'`), Φ the standard normal distribution.
pub struct GELU;

impl Module for GELU {
    fn forward(&self, x: &Var) -> Result<Var> {
        x.gelu()
    }
}
