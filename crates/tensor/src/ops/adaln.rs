//! The two fused operations of a DiT block's adaptive layer norm (adaLN-Zero, Peebles & Xie 2023), on token
//! sequences `(N, L, D)` conditioned per sample by `(N, D)` vectors:
//!
//! - [`Tensor::layer_norm_modulate`]: `LayerNorm(x)·(1 + scale) + shift`, the normalisation having no affine of its
//!   own (the modulation replaces it);
//! - [`Tensor::gated_residual`]: `x + gate∘y`, a branch joining the residual stream through its gate;
//!
//! and the backward pass of each (used by autograd). Operands are made contiguous and every shape is checked against
//! the others, with an error naming the operand that disagrees.

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::Tensor;
use diffuse_cpu_kernels::gated_residual::GatedShape;
use diffuse_cpu_kernels::layer_norm_modulate::ModulateShape;

/// `(N, L, D)` of the token tensor `t`, or an error naming `what`.
fn tokens_shape(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 3]> {
    match *t.shape() {
        [n, l, d] => Ok([n, l, d]),
        ref other => Err(Error::shape(
            op,
            format!("{what} must be (batch, tokens, dim), got shape {other:?}"),
        )),
    }
}

/// Checks that `t` is `want` and shares `x`'s device and dtype.
fn expect(op: &'static str, what: &str, x: &Tensor, t: &Tensor, want: &[usize]) -> Result<()> {
    x.check_compatible(op, t)?;
    if t.shape() == want {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{what} has shape {:?}, expected {want:?}", t.shape()),
        ))
    }
}

impl Tensor {
    /// The layer norm of each token of `self` (N, L, D) over D (no affine of its own, `eps` inside the square root),
    /// modulated by its sample's `scale` and `shift` (N, D): `x̂·(1 + scale) + shift`. Returns (y, mean, rstd), the
    /// statistics as (N, L) f32 tensors for the backward pass.
    pub fn layer_norm_modulate(
        &self,
        scale: &Tensor,
        shift: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm_modulate";
        let [n, l, d] = tokens_shape(OP, "x", self)?;
        expect(OP, "scale", self, scale, &[n, d])?;
        expect(OP, "shift", self, shift, &[n, d])?;
        let shape = ModulateShape {
            batch: n,
            tokens: l,
            dim: d,
            eps,
        };
        let [x, scale, shift] = [self, scale, shift].map(Tensor::contiguous);
        let (x, scale, shift) = (x?, scale?, shift?);
        let [y, mean, rstd] =
            x.storage()
                .layer_norm_modulate(&shape, &scale.storage(), &shift.storage())?;
        Ok((
            Tensor::from_contiguous(y, &[n, l, d])?,
            Tensor::from_contiguous(mean, &[n, l])?,
            Tensor::from_contiguous(rstd, &[n, l])?,
        ))
    }

    /// The gradients (∂x, ∂scale, ∂shift) of [`Tensor::layer_norm_modulate`]: `self` is the output gradient; `mean`
    /// and `rstd` are the statistics the forward returned.
    pub fn layer_norm_modulate_backward(
        &self,
        x: &Tensor,
        scale: &Tensor,
        (mean, rstd): (&Tensor, &Tensor),
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm_modulate_backward";
        let [n, l, d] = tokens_shape(OP, "x", x)?;
        expect(OP, "output gradient", x, self, &[n, l, d])?;
        expect(OP, "scale", x, scale, &[n, d])?;
        for (what, t) in [("mean", mean), ("rstd", rstd)] {
            if t.shape() != [n, l] {
                return Err(Error::shape(
                    OP,
                    format!("{what} has shape {:?}, expected {:?}", t.shape(), [n, l]),
                ));
            }
        }
        let shape = ModulateShape {
            batch: n,
            tokens: l,
            dim: d,
            eps: 0.0,
        };
        let [x, scale, mean, rstd, gy] = [x, scale, mean, rstd, self].map(Tensor::contiguous);
        let (x, scale, mean, rstd, gy) = (x?, scale?, mean?, rstd?, gy?);
        let [dx, dscale, dshift] = Storage::layer_norm_modulate_backward(
            &shape,
            [
                &x.storage(),
                &scale.storage(),
                &mean.storage(),
                &rstd.storage(),
                &gy.storage(),
            ],
        )?;
        Ok((
            Tensor::from_contiguous(dx, &[n, l, d])?,
            Tensor::from_contiguous(dscale, &[n, d])?,
            Tensor::from_contiguous(dshift, &[n, d])?,
        ))
    }

    /// `self + gate∘y` for the residual stream `self` and a branch output `y` (N, L, D), gated per sample and
    /// feature by `gate` (N, D).
    pub fn gated_residual(&self, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
        const OP: &str = "gated_residual";
        let [n, l, d] = tokens_shape(OP, "x", self)?;
        expect(OP, "gate", self, gate, &[n, d])?;
        expect(OP, "y", self, y, &[n, l, d])?;
        let shape = GatedShape {
            batch: n,
            tokens: l,
            dim: d,
        };
        let [x, gate, y] = [self, gate, y].map(Tensor::contiguous);
        let (x, gate, y) = (x?, gate?, y?);
        let out = x
            .storage()
            .gated_residual(&shape, &gate.storage(), &y.storage())?;
        Tensor::from_contiguous(out, &[n, l, d])
    }

    /// The gradients (∂y, ∂gate) of [`Tensor::gated_residual`]: `self` is the output gradient (which is also the
    /// gradient of the residual stream).
    pub fn gated_residual_backward(&self, gate: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor)> {
        const OP: &str = "gated_residual_backward";
        let [n, l, d] = tokens_shape(OP, "y", y)?;
        expect(OP, "output gradient", y, self, &[n, l, d])?;
        expect(OP, "gate", y, gate, &[n, d])?;
        let shape = GatedShape {
            batch: n,
            tokens: l,
            dim: d,
        };
        let [gate, y, g] = [gate, y, self].map(Tensor::contiguous);
        let (gate, y, g) = (gate?, y?, g?);
        let [dy, dgate] = Storage::gated_residual_backward(
            &shape,
            [&gate.storage(), &y.storage(), &g.storage()],
        )?;
        Ok((
            Tensor::from_contiguous(dy, &[n, l, d])?,
            Tensor::from_contiguous(dgate, &[n, d])?,
        ))
    }
}
