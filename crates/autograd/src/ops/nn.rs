//! The heavy operations, whose rules call the backward kernels through the tensor layer:
//!
//! - matmul `Y = A·B`: `∂A = G·Bᵀ`, `∂B = Aᵀ·G`, each summed over broadcast batch axes;
//! - softmax / log-softmax along a dimension, from the saved output;
//! - conv2d, group norm (alone or fused with SiLU), layer norm and attention, from their saved inputs (and saved
//!   statistics).

use crate::reduce_to::sum_to_shape;
use crate::var::Var;
use diffuse_tensor::{Conv2dParams, Result, Tensor};

impl Var {
    /// Batched matrix product over the last two dimensions, batch dimensions broadcast.
    /// Only the gradients of operands that need one are computed (a constant input costs no product).
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        self.matmul_plus(rhs, None)
    }

    /// [`Var::matmul`] plus `bias` (`[n]`) on every row, added in the GEMM's output stage (a linear layer). Rules: as
    /// for the product, and `∂bias = Σ_rows g`.
    pub fn matmul_bias(&self, rhs: &Var, bias: &Var) -> Result<Var> {
        self.matmul_plus(rhs, Some(bias))
    }

    /// The product, with a bias when there is one. A rank-2 `rhs` (a linear layer's weight) serves every row of
    /// `self`, so the product and both gradients are taken over `self`'s rows as one `[rows, k]` matrix
    /// ([`as_rows`]): a view when the rows lie at one stride, otherwise one contiguous copy made here and shared by
    /// the forward and the weight gradient. Without it, a batched view (tokens read out of a feature map, `[n, hw,
    /// c]` with the channels `hw` apart) ran one small GEMM per batch, each packing the weight anew, and the backward
    /// copied the same rows again for the weight gradient. The GEMM's sums do not depend on how the rows are batched,
    /// so the bits are the same.
    fn matmul_plus(&self, rhs: &Var, bias: Option<&Var>) -> Result<Var> {
        let (a, b) = (self.tensor().clone(), rhs.tensor().clone());
        let flatten = b.rank() == 2 && a.rank() > 2;
        let a_shape = a.shape().to_vec();
        let a = if flatten { as_rows(&a)? } else { a };
        let y = match bias {
            Some(bias) => a.matmul_bias(&b, bias.tensor())?,
            None => a.matmul(&b)?,
        };
        let y = if flatten {
            let rows_shape = &a_shape[..a_shape.len() - 1];
            let shape: Vec<usize> = rows_shape.iter().copied().chain([b.shape()[1]]).collect();
            y.reshape(&shape)?
        } else {
            y
        };
        let (need_a, need_b) = (self.requires_grad(), rhs.requires_grad());
        let (has_bias, need_bias) = (bias.is_some(), bias.is_some_and(Var::requires_grad));
        let mut inputs = vec![self, rhs];
        inputs.extend(bias);
        Ok(Var::from_op(y, &inputs, move |g| {
            let g = if flatten { as_rows(g)? } else { g.clone() };
            let [ga, gb] = matmul_grads(&a, &b, &g, need_a, need_b)?;
            let ga = ga.map(|ga| ga.reshape(&a_shape)).transpose()?;
            let mut grads = vec![ga, gb];
            if has_bias {
                grads.push(
                    need_bias
                        .then(|| {
                            let n = g.shape()[g.rank() - 1];
                            let rows = g.numel() / n.max(1);
                            g.reshape(&[rows, n])?.sum(&[0], false)
                        })
                        .transpose()?,
                );
            }
            Ok(grads)
        }))
    }

    /// Softmax along `dim`: `∂x = y∘(g − Σ g∘y)`.
    pub fn softmax(&self, dim: usize) -> Result<Var> {
        let y = self.tensor().softmax(dim)?;
        let saved = y.clone();
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(saved.softmax_backward(g, dim)?)])
        }))
    }

    /// Log-softmax along `dim`: `∂x = g − exp(y)·Σ g`.
    pub fn log_softmax(&self, dim: usize) -> Result<Var> {
        let y = self.tensor().log_softmax(dim)?;
        let saved = y.clone();
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(saved.log_softmax_backward(g, dim)?)])
        }))
    }

    /// 2-D convolution of `self` (N, C, H, W) with `weight` (O, C/groups, KH, KW) and an optional `bias` (O). The
    /// input gradient is computed only when the input needs one: a network's first convolution reads data.
    pub fn conv2d(&self, weight: &Var, bias: Option<&Var>, p: &Conv2dParams) -> Result<Var> {
        self.conv2d_add(weight, bias, None, None, p)
    }

    /// [`Var::conv2d`] plus `channel` (N, O) broadcast over the plane and `residual` (the output's shape), added in
    /// the convolution's output stage (a residual block's time embedding and skip connection). Rules:
    /// `∂channel = Σ_{h, w} g`, `∂residual = g`, the others as for the plain convolution.
    pub fn conv2d_add(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        channel: Option<&Var>,
        residual: Option<&Var>,
        p: &Conv2dParams,
    ) -> Result<Var> {
        let (x, w) = (self.tensor().clone(), weight.tensor().clone());
        let y = x.conv2d_add(
            &w,
            bias.map(Var::tensor),
            channel.map(Var::tensor),
            residual.map(Var::tensor),
            p,
        )?;
        let p = *p;
        let mut parents = vec![self, weight];
        parents.extend(bias);
        parents.extend(channel);
        parents.extend(residual);
        let (with_bias, with_channel, with_residual) =
            (bias.is_some(), channel.is_some(), residual.is_some());
        let need_x = self.requires_grad();
        Ok(Var::from_op(y, &parents, move |g| {
            let gx = need_x
                .then(|| g.conv2d_backward_input(&w, x.shape(), &p))
                .transpose()?;
            let (gw, gb) = x.conv2d_backward_weight(g, w.shape(), &p, with_bias)?;
            let mut grads = vec![gx, Some(gw)];
            if with_bias {
                grads.push(gb);
            }
            if with_channel {
                grads.push(Some(g.sum(&[2, 3], false)?));
            }
            if with_residual {
                grads.push(Some(g.clone()));
            }
            Ok(grads)
        }))
    }

    /// Group normalisation of (N, C, ...) in `groups` channel groups with per-channel `gamma` and `beta`.
    pub fn group_norm(&self, groups: usize, gamma: &Var, beta: &Var, eps: f32) -> Result<Var> {
        let (x, gm) = (self.tensor().clone(), gamma.tensor().clone());
        let (y, mean, rstd) = x.group_norm(groups, &gm, beta.tensor(), eps)?;
        Ok(Var::from_op(y, &[self, gamma, beta], move |g| {
            let (gx, gg, gb) = g.group_norm_backward(&x, &gm, (&mean, &rstd), groups)?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }))
    }

    /// `silu(group_norm(self))` in one kernel each way: the pre-activation of a residual block. Saves only the
    /// input and the statistics (the separate ops also keep the normalised values for SiLU's rule).
    pub fn group_norm_silu(&self, groups: usize, gamma: &Var, beta: &Var, eps: f32) -> Result<Var> {
        let (x, gm, bt) = (
            self.tensor().clone(),
            gamma.tensor().clone(),
            beta.tensor().clone(),
        );
        let (y, mean, rstd) = x.group_norm_silu(groups, &gm, &bt, eps)?;
        Ok(Var::from_op(y, &[self, gamma, beta], move |g| {
            let (gx, gg, gb) =
                g.group_norm_silu_backward(&x, (&gm, &bt), (&mean, &rstd), groups)?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }))
    }

    /// Layer normalisation over the last dimension with `gamma` and `beta` of that size.
    pub fn layer_norm(&self, gamma: &Var, beta: &Var, eps: f32) -> Result<Var> {
        let (x, gm) = (self.tensor().clone(), gamma.tensor().clone());
        let (y, mean, rstd) = x.layer_norm(&gm, beta.tensor(), eps)?;
        Ok(Var::from_op(y, &[self, gamma, beta], move |g| {
            let (gx, gg, gb) = g.layer_norm_backward(&x, &gm, (&mean, &rstd))?;
            Ok(vec![Some(gx), Some(gg), Some(gb)])
        }))
    }

    /// Multi-head scaled dot-product attention of `self` = Q (N, Lq, H·d) over K, V (N, Lk, H·d), each row
    /// holding its `heads` heads side by side, as a projection writes them; the output is (N, Lq, H·d) in the same
    /// layout, so no head is split off into a copy of its own either way ([`Tensor::attention`]). A batched
    /// (BH, L, d) attention is `heads = 1`.
    pub fn attention(&self, k: &Var, v: &Var, heads: usize, scale: f32) -> Result<Var> {
        self.attention_with_bias(k, v, None, heads, scale)
    }

    /// [`Var::attention`] with a constant additive score bias (Lq, Lk) shared by every sequence and head, such as a
    /// causal mask of 0 and −∞ ([`Tensor::attention_with_bias`]); the bias gets no gradient.
    pub fn attention_with_bias(
        &self,
        k: &Var,
        v: &Var,
        bias: Option<&Tensor>,
        heads: usize,
        scale: f32,
    ) -> Result<Var> {
        let (q, kt, vt) = (
            self.tensor().clone(),
            k.tensor().clone(),
            v.tensor().clone(),
        );
        let bias = bias.cloned();
        let (out, lse) = q.attention_with_bias(&kt, &vt, bias.as_ref(), heads, scale)?;
        let saved = out.clone();
        Ok(Var::from_op(out, &[self, k, v], move |g| {
            let (gq, gk, gv) = g.attention_with_bias_backward(
                (&q, &kt, &vt),
                (&saved, &lse),
                bias.as_ref(),
                heads,
                scale,
            )?;
            Ok(vec![Some(gq), Some(gk), Some(gv)])
        }))
    }
}

/// All of `t`'s rows (`[.., m, k]`) as one `[rows, k]` matrix: a view when they lie at one stride, else a
/// contiguous copy.
fn as_rows(t: &Tensor) -> Result<Tensor> {
    let k = t.shape()[t.rank() - 1];
    let rows = t.shape()[..t.rank() - 1].iter().product::<usize>();
    t.reshape(&[rows, k])
}

/// The gradients of `y = a·b` from `g = ∂y`: `∂a = g·bᵀ`, `∂b = aᵀ·g`, each summed over broadcast batch axes and
/// computed only when asked for.
fn matmul_grads(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    need_a: bool,
    need_b: bool,
) -> Result<[Option<Tensor>; 2]> {
    let (ra, rb) = (a.rank(), b.rank());
    let ga = need_a
        .then(|| sum_to_shape(&g.matmul(&b.transpose(rb - 2, rb - 1)?)?, a.shape()))
        .transpose()?;
    let gb = need_b
        .then(|| {
            if rb == 2 {
                // b (a linear layer's weight) served every row of a: its gradient is one product over all of a's
                // rows (for a batched a, rather than a product per batch and a sum of the copies).
                let rows = a.shape()[..ra - 1].iter().product::<usize>();
                let (k, n) = (a.shape()[ra - 1], g.shape()[ra - 1]);
                let (a_rows, g_rows) = (a.reshape(&[rows, k])?, g.reshape(&[rows, n])?);
                if !b.is_contiguous() && b.transpose(0, 1)?.is_contiguous() {
                    // b is the transpose of a contiguous [n, k] matrix (a linear layer's weightᵀ): its gradient
                    // is formed as (gᵀ·a)ᵀ, so that it lies in the weight's own layout and reaches the optimiser
                    // contiguous, where aᵀ·g would arrive as a transposed view to be copied. Each element is the
                    // same sum of the same products in the same order (the GEMM's order does not depend on which
                    // operand is A), so the bits are those of aᵀ·g.
                    g_rows.transpose(0, 1)?.matmul(&a_rows)?.transpose(0, 1)
                } else {
                    a_rows.transpose(0, 1)?.matmul(&g_rows)
                }
            } else {
                sum_to_shape(&a.transpose(ra - 2, ra - 1)?.matmul(g)?, b.shape())
            }
        })
        .transpose()?;
    Ok([ga, gb])
}
