//! The feed-forward of a Stable Diffusion transformer block: diffusers' `FeedForward` with `activation_fn = "geglu"`,
//! a gated linear unit with a GELU gate (Shazeer 2020):
//!
//! ```text
//! [a, g] = x·Wᵀ + b                      `net.0.proj`: dim → 2·inner, split in halves along the last dimension
//! h      = a ∘ GELU(g)                   exact GELU, x·Φ(x)
//! y      = h·W₂ᵀ + b₂                    `net.2`: inner → dim      (`net.1` is a dropout, absent at p = 0)
//! ```
//!
//! GEGLU is one fused operation ([`Var::geglu`]): the forward reads the projection once and writes `h` once, and the
//! backward writes both halves of the projection's gradient, ∂a = ∂h ∘ GELU(g) and ∂g = ∂h ∘ a ∘ GELU′(g), in one
//! pass (composed of two views, a GELU and a product, the backward would also build two zero-padded halves and add
//! them).

use diffuse_autograd::Var;
use diffuse_nn::{Linear, Module, Path};
use diffuse_tensor::{Error, Result};

/// diffusers' `GEGLU`: one projection to twice the inner width, the first half gated by the GELU of the second.
pub struct Geglu {
    /// `proj`: dim → 2·inner.
    pub proj: Linear,
    pub inner: usize,
}

impl Geglu {
    pub fn new(path: &Path, dim: usize, inner: usize) -> Result<Geglu> {
        if inner == 0 {
            return Err(Error::argument(
                "GEGLU",
                "the inner width must be at least 1",
            ));
        }
        Ok(Geglu {
            proj: Linear::new(&path.sub("proj"), dim, 2 * inner, true)?,
            inner,
        })
    }
}

impl Module for Geglu {
    /// (…, dim) → (…, inner).
    fn forward(&self, x: &Var) -> Result<Var> {
        self.proj.forward(x)?.geglu()
    }
}

/// diffusers' `FeedForward(dim, activation_fn="geglu")`: `net.0` (GEGLU, dim → 4·dim) then `net.2` (4·dim → dim).
pub struct FeedForward {
    /// `net.0`.
    pub geglu: Geglu,
    /// `net.2`.
    pub proj_out: Linear,
}

impl FeedForward {
    pub fn new(path: &Path, dim: usize) -> Result<FeedForward> {
        let net = path.sub("net");
        Ok(FeedForward {
            geglu: Geglu::new(&net.sub(0), dim, 4 * dim)?,
            proj_out: Linear::new(&net.sub(2), 4 * dim, dim, true)?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Var) -> Result<Var> {
        self.proj_out.forward(&self.geglu.forward(x)?)
    }
}
