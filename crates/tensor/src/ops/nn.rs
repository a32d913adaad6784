//! Neural-network operations backed by the heavy kernels: softmax over a dimension, 2-D convolution, group and layer
//! normalisation, scaled dot-product attention, and the backward pass of each (used by autograd).
//!
//! Each method makes its operands contiguous (the kernels read plain row-major buffers), checks every shape against
//! the others, and returns an error naming the operand that disagrees.

use crate::error::{Error, Result};
use crate::layout::dims_product;
use crate::storage::Storage;
use crate::Tensor;
use diffuse_cpu_kernels::attention::AttentionShape;
use diffuse_cpu_kernels::group_norm::GroupNormShape;
use diffuse_cpu_kernels::layer_norm::LayerNormShape;
use diffuse_cpu_kernels::Conv2dShape;

/// Stride, padding and dilation as (height, width), and the number of channel groups of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, no dilation, one group.
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

fn shape_mismatch(op: &'static str, what: &str, got: &[usize], want: &[usize]) -> Error {
    Error::shape(op, format!("{what} has shape {got:?}, expected {want:?}"))
}

fn expect_shape(op: &'static str, what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.shape() == want {
        Ok(())
    } else {
        Err(shape_mismatch(op, what, t.shape(), want))
    }
}

fn expect_rank(op: &'static str, what: &str, t: &Tensor, rank: usize, form: &str) -> Result<()> {
    if t.rank() == rank {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{what} must be {form}, got shape {:?}", t.shape()),
        ))
    }
}

impl Tensor {
    /// Moves `dim` last and makes the result contiguous: the `[rows, cols]` form the softmax kernels read.
    fn rows_along(&self, op: &'static str, dim: usize) -> Result<(Tensor, usize, usize)> {
        let rank = self.rank();
        if dim >= rank {
            return Err(Error::argument(
                op,
                format!(
                    "dimension {dim} is out of range for shape {:?}",
                    self.shape()
                ),
            ));
        }
        let moved = self.transpose(dim, rank - 1)?.contiguous()?;
        let cols = self.shape()[dim];
        let rows = self.numel().checked_div(cols).unwrap_or(0);
        Ok((moved, rows, cols))
    }

    /// Runs a row kernel along `dim` and puts `dim` back in place.
    fn softmax_like(&self, op: &'static str, dim: usize, log: bool) -> Result<Tensor> {
        let (rows_view, rows, cols) = self.rows_along(op, dim)?;
        let storage = rows_view.storage().softmax(rows, cols, log)?;
        let out = Tensor::from_contiguous(storage, rows_view.shape())?;
        out.transpose(dim, self.rank() - 1)?.contiguous()
    }

    fn softmax_like_backward(
        &self,
        op: &'static str,
        grad: &Tensor,
        dim: usize,
        log: bool,
    ) -> Result<Tensor> {
        self.check_compatible(op, grad)?;
        expect_shape(op, "gradient", grad, self.shape())?;
        let (y, rows, cols) = self.rows_along(op, dim)?;
        let (g, _, _) = grad.rows_along(op, dim)?;
        let storage = y
            .storage()
            .softmax_backward(&g.storage(), rows, cols, log)?;
        let out = Tensor::from_contiguous(storage, y.shape())?;
        out.transpose(dim, self.rank() - 1)?.contiguous()
    }

    /// `exp(x_i) / Σ_j exp(x_j)` along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_like("softmax", dim, false)
    }

    /// `x_i − ln Σ_j exp(x_j)` along `dim`.
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        self.softmax_like("log_softmax", dim, true)
    }

    /// The input gradient of softmax: `self` is the softmax output, `grad` the gradient at it.
    pub fn softmax_backward(&self, grad: &Tensor, dim: usize) -> Result<Tensor> {
        self.softmax_like_backward("softmax_backward", grad, dim, false)
    }

    /// The input gradient of log-softmax: `self` is the log-softmax output, `grad` the gradient at it.
    pub fn log_softmax_backward(&self, grad: &Tensor, dim: usize) -> Result<Tensor> {
        self.softmax_like_backward("log_softmax_backward", grad, dim, true)
    }

    // ---- convolution ----------------------------------------------------------------------------------------------

    /// 2-D convolution of an (N, C, H, W) input with an (O, C/groups, KH, KW) weight and an optional (O) bias.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        self.conv2d_add(weight, bias, None, None, p)
    }

    /// [`Tensor::conv2d`] with addends fused into the kernel's output stage:
    /// `conv2d(x, w) + bias + channel[:, :, None, None] + residual`, with `channel` (N, O) one value per image and
    /// output channel (a time embedding) and `residual` of the output's shape (a skip connection). Each is optional;
    /// the result equals the separate additions up to rounding.
    pub fn conv2d_add(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        channel: Option<&Tensor>,
        residual: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let shape = conv_shape(OP, self.shape(), weight, p)?;
        self.check_compatible(OP, weight)?;
        let out = out_shape(&shape);
        let addends = [
            ("bias", bias, &[shape.out_channels][..]),
            ("channel addend", channel, &out[..2]),
            ("residual", residual, &out[..]),
        ];
        for (what, t, want) in addends {
            if let Some(t) = t {
                self.check_compatible(OP, t)?;
                expect_shape(OP, what, t, want)?;
            }
        }
        let contiguous = |t: Option<&Tensor>| t.map(Tensor::contiguous).transpose();
        let (x, w) = (self.contiguous()?, weight.contiguous()?);
        let (b, c, r) = (
            contiguous(bias)?,
            contiguous(channel)?,
            contiguous(residual)?,
        );
        let storage = {
            let (b, c, r) = (
                b.as_ref().map(|t| t.storage()),
                c.as_ref().map(|t| t.storage()),
                r.as_ref().map(|t| t.storage()),
            );
            x.storage().conv2d(
                &shape,
                &w.storage(),
                [b.as_deref(), c.as_deref(), r.as_deref()],
            )?
        };
        Tensor::from_contiguous(storage, &out)
    }

    /// The input gradient of [`Tensor::conv2d`]: `self` is the output gradient, `input_shape` the (N, C, H, W) shape
    /// of the input.
    pub fn conv2d_backward_input(
        &self,
        weight: &Tensor,
        input_shape: &[usize],
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d_backward_input";
        let shape = conv_shape(OP, input_shape, weight, p)?;
        self.check_compatible(OP, weight)?;
        expect_shape(OP, "output gradient", self, &out_shape(&shape))?;
        let (g, w) = (self.contiguous()?, weight.contiguous()?);
        let storage = g.storage().conv2d_backward_input(&shape, &w.storage())?;
        Tensor::from_contiguous(storage, input_shape)
    }

    /// The weight gradient (and the bias gradient when `with_bias`) of [`Tensor::conv2d`]: `self` is the input,
    /// `grad_out` the output gradient, `weight_shape` the (O, C/groups, KH, KW) shape of the weight.
    pub fn conv2d_backward_weight(
        &self,
        grad_out: &Tensor,
        weight_shape: &[usize],
        p: &Conv2dParams,
        with_bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        const OP: &str = "conv2d_backward_weight";
        let probe = Tensor::zeros(&[], self.dtype(), self.device())?.broadcast_to(weight_shape)?;
        let shape = conv_shape(OP, self.shape(), &probe, p)?;
        self.check_compatible(OP, grad_out)?;
        expect_shape(OP, "output gradient", grad_out, &out_shape(&shape))?;
        let (x, g) = (self.contiguous()?, grad_out.contiguous()?);
        let (gw, gb) = x
            .storage()
            .conv2d_backward_weight(&shape, &g.storage(), with_bias)?;
        let gb = gb
            .map(|s| Tensor::from_contiguous(s, &[shape.out_channels]))
            .transpose()?;
        Ok((Tensor::from_contiguous(gw, weight_shape)?, gb))
    }

    // ---- normalisation --------------------------------------------------------------------------------------------

    /// Group normalisation of an (N, C, ...) tensor in `groups` groups of channels, with per-channel `gamma` and
    /// `beta` (C). Returns (y, mean, rstd), the statistics as (N, groups) f32 tensors for the backward pass.
    pub fn group_norm(
        &self,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm";
        let shape = self.group_norm_shape(OP, groups, eps)?;
        for (what, t) in [("gamma", gamma), ("beta", beta)] {
            self.check_compatible(OP, t)?;
            expect_shape(OP, what, t, &[shape.channels])?;
        }
        let (x, g, b) = (self.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
        let [y, mean, rstd] = x.storage().group_norm(&shape, &g.storage(), &b.storage())?;
        let stats = [shape.batch, groups];
        Ok((
            Tensor::from_contiguous(y, self.shape())?,
            Tensor::from_contiguous(mean, &stats)?,
            Tensor::from_contiguous(rstd, &stats)?,
        ))
    }

    /// The gradients (∂x, ∂γ, ∂β) of [`Tensor::group_norm`]: `self` is the output gradient; `mean` and `rstd` are
    /// the statistics the forward returned.
    pub fn group_norm_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        (mean, rstd): (&Tensor, &Tensor),
        groups: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm_backward";
        let shape = x.group_norm_shape(OP, groups, 0.0)?;
        self.check_compatible(OP, x)?;
        self.check_compatible(OP, gamma)?;
        expect_shape(OP, "output gradient", self, x.shape())?;
        expect_shape(OP, "gamma", gamma, &[shape.channels])?;
        for (what, t) in [("mean", mean), ("rstd", rstd)] {
            expect_shape(OP, what, t, &[shape.batch, groups])?;
        }
        let ts = [x, gamma, mean, rstd, self].map(Tensor::contiguous);
        let [x, gamma, mean, rstd, gy] = ts;
        let (x, gamma, mean, rstd, gy) = (x?, gamma?, mean?, rstd?, gy?);
        let [dx, dg, db] = Storage::group_norm_backward(
            &shape,
            [
                &x.storage(),
                &gamma.storage(),
                &mean.storage(),
                &rstd.storage(),
                &gy.storage(),
            ],
        )?;
        Ok((
            Tensor::from_contiguous(dx, x.shape())?,
            Tensor::from_contiguous(dg, &[shape.channels])?,
            Tensor::from_contiguous(db, &[shape.channels])?,
        ))
    }

    /// [`Tensor::group_norm`] followed by SiLU in one kernel: returns (silu(y), mean, rstd). Its backward,
    /// [`Tensor::group_norm_silu_backward`], needs only the input and the statistics (not the normalised values).
    pub fn group_norm_silu(
        &self,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm_silu";
        let shape = self.group_norm_shape(OP, groups, eps)?;
        for (what, t) in [("gamma", gamma), ("beta", beta)] {
            self.check_compatible(OP, t)?;
            expect_shape(OP, what, t, &[shape.channels])?;
        }
        let (x, g, b) = (self.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
        let [y, mean, rstd] = x
            .storage()
            .group_norm_silu(&shape, &g.storage(), &b.storage())?;
        let stats = [shape.batch, groups];
        Ok((
            Tensor::from_contiguous(y, self.shape())?,
            Tensor::from_contiguous(mean, &stats)?,
            Tensor::from_contiguous(rstd, &stats)?,
        ))
    }

    /// The gradients (∂x, ∂γ, ∂β) of [`Tensor::group_norm_silu`]: `self` is the output gradient; `mean` and `rstd`
    /// are the statistics the forward returned.
    pub fn group_norm_silu_backward(
        &self,
        x: &Tensor,
        (gamma, beta): (&Tensor, &Tensor),
        (mean, rstd): (&Tensor, &Tensor),
        groups: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm_silu_backward";
        let shape = x.group_norm_shape(OP, groups, 0.0)?;
        self.check_compatible(OP, x)?;
        expect_shape(OP, "output gradient", self, x.shape())?;
        for (what, t) in [("gamma", gamma), ("beta", beta)] {
            self.check_compatible(OP, t)?;
            expect_shape(OP, what, t, &[shape.channels])?;
        }
        for (what, t) in [("mean", mean), ("rstd", rstd)] {
            expect_shape(OP, what, t, &[shape.batch, groups])?;
        }
        let [x, gamma, beta, mean, rstd, gy] =
            [x, gamma, beta, mean, rstd, self].map(Tensor::contiguous);
        let (x, gamma, beta, mean, rstd, gy) = (x?, gamma?, beta?, mean?, rstd?, gy?);
        let [dx, dg, db] = Storage::group_norm_silu_backward(
            &shape,
            [
                &x.storage(),
                &gamma.storage(),
                &beta.storage(),
                &mean.storage(),
                &rstd.storage(),
                &gy.storage(),
            ],
        )?;
        Ok((
            Tensor::from_contiguous(dx, x.shape())?,
            Tensor::from_contiguous(dg, &[shape.channels])?,
            Tensor::from_contiguous(db, &[shape.channels])?,
        ))
    }

    fn group_norm_shape(
        &self,
        op: &'static str,
        groups: usize,
        eps: f32,
    ) -> Result<GroupNormShape> {
        if self.rank() < 2 {
            return Err(Error::shape(
                op,
                format!(
                    "expects an (N, C, ...) tensor, got shape {:?}",
                    self.shape()
                ),
            ));
        }
        let channels = self.shape()[1];
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::argument(
                op,
                format!("{channels} channels cannot be split into {groups} equal groups"),
            ));
        }
        Ok(GroupNormShape {
            batch: self.shape()[0],
            channels,
            spatial: dims_product(&self.shape()[2..]),
            groups,
            eps,
        })
    }

    /// Layer normalisation over the last dimension (D) with `gamma` and `beta` (D). Returns (y, mean, rstd), the
    /// statistics shaped like `self` without its last dimension, in f32.
    pub fn layer_norm(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm";
        let shape = self.layer_norm_shape(OP, eps)?;
        for (what, t) in [("gamma", gamma), ("beta", beta)] {
            self.check_compatible(OP, t)?;
            expect_shape(OP, what, t, &[shape.dim])?;
        }
        let (x, g, b) = (self.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
        let [y, mean, rstd] = x.storage().layer_norm(&shape, &g.storage(), &b.storage())?;
        let stats = &self.shape()[..self.rank() - 1];
        Ok((
            Tensor::from_contiguous(y, self.shape())?,
            Tensor::from_contiguous(mean, stats)?,
            Tensor::from_contiguous(rstd, stats)?,
        ))
    }

    /// The gradients (∂x, ∂γ, ∂β) of [`Tensor::layer_norm`]: `self` is the output gradient.
    pub fn layer_norm_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        (mean, rstd): (&Tensor, &Tensor),
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm_backward";
        let shape = x.layer_norm_shape(OP, 0.0)?;
        self.check_compatible(OP, x)?;
        self.check_compatible(OP, gamma)?;
        expect_shape(OP, "output gradient", self, x.shape())?;
        expect_shape(OP, "gamma", gamma, &[shape.dim])?;
        let stats = &x.shape()[..x.rank() - 1];
        for (what, t) in [("mean", mean), ("rstd", rstd)] {
            expect_shape(OP, what, t, stats)?;
        }
        let [x, gamma, mean, rstd, gy] = [x, gamma, mean, rstd, self].map(Tensor::contiguous);
        let (x, gamma, mean, rstd, gy) = (x?, gamma?, mean?, rstd?, gy?);
        let [dx, dg, db] = Storage::layer_norm_backward(
            &shape,
            [
                &x.storage(),
                &gamma.storage(),
                &mean.storage(),
                &rstd.storage(),
                &gy.storage(),
            ],
        )?;
        Ok((
            Tensor::from_contiguous(dx, x.shape())?,
            Tensor::from_contiguous(dg, &[shape.dim])?,
            Tensor::from_contiguous(db, &[shape.dim])?,
        ))
    }

    fn layer_norm_shape(&self, op: &'static str, eps: f32) -> Result<LayerNormShape> {
        let Some(&dim) = self.shape().last() else {
            return Err(Error::shape(op, "cannot normalise a rank-0 tensor"));
        };
        let rows = self.numel().checked_div(dim).unwrap_or(0);
        Ok(LayerNormShape { rows, dim, eps })
    }

    // ---- attention ------------------------------------------------------------------------------------------------

    /// Multi-head scaled dot-product attention `softmax(scale·Q·Kᵀ)·V` of `self` = Q (N, Lq, H·d) over K, V
    /// (N, Lk, H·d), each row holding its `heads` heads side by side (as a projection writes them), per sequence and
    /// head; the output is (N, Lq, H·d) in the same layout. A batched (BH, L, d) attention is `heads = 1`. Returns
    /// (out, lse), `lse` (N, H, Lq) in f32 being the log-sum-exp of each score row, kept for the backward pass.
    pub fn attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        self.attention_with_bias(k, v, None, heads, scale)
    }

    /// [`Tensor::attention`] with an additive score bias (Lq, Lk) shared by every sequence and head:
    /// `softmax(scale·Q·Kᵀ + bias)·V`. The bias may hold −∞ (a mask such as the causal one); a query row whose scores
    /// are all −∞ attends to nothing and its output is 0.
    pub fn attention_with_bias(
        &self,
        k: &Tensor,
        v: &Tensor,
        bias: Option<&Tensor>,
        heads: usize,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "attention";
        let shape = attention_shape(OP, self, k, v, heads, scale)?;
        let bias = attention_bias(OP, self, bias, &shape)?;
        let [q, k, v] = [self, k, v].map(Tensor::contiguous);
        let (q, k, v) = (q?, k?, v?);
        let bias_storage = bias.as_ref().map(Tensor::storage);
        let [out, lse] = Storage::attention(
            &shape,
            [&q.storage(), &k.storage(), &v.storage()],
            bias_storage.as_deref(),
        )?;
        Ok((
            Tensor::from_contiguous(out, q.shape())?,
            Tensor::from_contiguous(lse, &[shape.batch, shape.heads, shape.q_len])?,
        ))
    }

    /// The gradients (∂Q, ∂K, ∂V) of [`Tensor::attention`]: `self` is the output gradient, `(out, lse)` what the
    /// forward returned.
    pub fn attention_backward(
        &self,
        qkv: (&Tensor, &Tensor, &Tensor),
        out_lse: (&Tensor, &Tensor),
        heads: usize,
        scale: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.attention_with_bias_backward(qkv, out_lse, None, heads, scale)
    }

    /// The gradients (∂Q, ∂K, ∂V) of [`Tensor::attention_with_bias`] with the forward's `bias` (which gets none).
    pub fn attention_with_bias_backward(
        &self,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        (out, lse): (&Tensor, &Tensor),
        bias: Option<&Tensor>,
        heads: usize,
        scale: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "attention_backward";
        let shape = attention_shape(OP, q, k, v, heads, scale)?;
        self.check_compatible(OP, q)?;
        expect_shape(OP, "output gradient", self, q.shape())?;
        expect_shape(OP, "out", out, q.shape())?;
        expect_shape(OP, "lse", lse, &[shape.batch, shape.heads, shape.q_len])?;
        let bias = attention_bias(OP, q, bias, &shape)?;
        let [q, k, v, out, lse, g] = [q, k, v, out, lse, self].map(Tensor::contiguous);
        let (q, k, v, out, lse, g) = (q?, k?, v?, out?, lse?, g?);
        let bias_storage = bias.as_ref().map(Tensor::storage);
        let [dq, dk, dv] = Storage::attention_backward(
            &shape,
            [
                &q.storage(),
                &k.storage(),
                &v.storage(),
                &out.storage(),
                &lse.storage(),
                &g.storage(),
            ],
            bias_storage.as_deref(),
        )?;
        Ok((
            Tensor::from_contiguous(dq, q.shape())?,
            Tensor::from_contiguous(dk, k.shape())?,
            Tensor::from_contiguous(dv, v.shape())?,
        ))
    }
}

/// The score bias of an attention call, checked against `q` and the shape and made contiguous.
fn attention_bias(
    op: &'static str,
    q: &Tensor,
    bias: Option<&Tensor>,
    shape: &AttentionShape,
) -> Result<Option<Tensor>> {
    let Some(bias) = bias else {
        return Ok(None);
    };
    q.check_compatible(op, bias)?;
    expect_shape(op, "bias", bias, &[shape.q_len, shape.kv_len])?;
    Ok(Some(bias.contiguous()?))
}

fn attention_shape(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
) -> Result<AttentionShape> {
    for (what, t) in [("q", q), ("k", k), ("v", v)] {
        expect_rank(op, what, t, 3, "(batch, length, heads·head_dim)")?;
    }
    q.check_compatible(op, k)?;
    q.check_compatible(op, v)?;
    let (n, lq, inner) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    if heads == 0 || inner % heads != 0 {
        return Err(Error::argument(
            op,
            format!(
                "{heads} heads do not divide the {inner} channels of q {:?}: pass a number of heads that divides \
                 heads·head_dim",
                q.shape()
            ),
        ));
    }
    let lk = k.shape()[1];
    expect_shape(op, "k", k, &[n, lk, inner])?;
    expect_shape(op, "v", v, &[n, lk, inner])?;
    Ok(AttentionShape::dense(
        n,
        heads,
        lq,
        lk,
        inner / heads,
        scale,
    ))
}

fn conv_shape(
    op: &'static str,
    input: &[usize],
    weight: &Tensor,
    p: &Conv2dParams,
) -> Result<Conv2dShape> {
    let &[n, c, h, w] = input else {
        return Err(Error::shape(
            op,
            format!("input must be (N, C, H, W), got shape {input:?}"),
        ));
    };
    expect_rank(op, "weight", weight, 4, "(O, C/groups, KH, KW)")?;
    let ws = weight.shape();
    let shape = Conv2dShape {
        batch: n,
        in_channels: c,
        in_h: h,
        in_w: w,
        out_channels: ws[0],
        kernel_h: ws[2],
        kernel_w: ws[3],
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
        groups: p.groups,
    };
    shape.validate().map_err(|e| Error::shape(op, e.message))?;
    if ws[1].checked_mul(p.groups) != Some(c) {
        return Err(Error::shape(
            op,
            format!(
                "weight {ws:?} expects {} input channels per group in {} groups, but the input {input:?} has {c}",
                ws[1], p.groups
            ),
        ));
    }
    Ok(shape)
}

fn out_shape(s: &Conv2dShape) -> [usize; 4] {
    [s.batch, s.out_channels, s.out_h(), s.out_w()]
}
