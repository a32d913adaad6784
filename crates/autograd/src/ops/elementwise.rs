//! Element-wise operations and their rules. With `y = f(x)` and output gradient `g`, a unary rule is `g·f'(x)`; a
//! binary rule gives each operand `g·∂f/∂operand`, summed back over the axes that operand was broadcast along.

use crate::reduce_to::sum_to_shape;
use crate::var::Var;
use diffuse_tensor::{Result, Tensor};

impl Var {
    fn unary_op(&self, y: Tensor, rule: impl FnOnce(&Tensor) -> Result<Tensor> + 'static) -> Var {
        Var::from_op(y, &[self], move |g| Ok(vec![Some(rule(g)?)]))
    }

    /// A binary operation's node. `rule` gets the output gradient and which operands need a gradient (fixed when the
    /// operation is recorded: a constant operand, such as a training target, costs the backward pass nothing) and
    /// returns the gradient of each that does.
    fn binary_op(
        &self,
        rhs: &Var,
        y: Tensor,
        rule: impl FnOnce(&Tensor, [bool; 2]) -> Result<[Option<Tensor>; 2]> + 'static,
    ) -> Var {
        let (a_shape, b_shape) = (self.shape().to_vec(), rhs.shape().to_vec());
        let needs = [self.requires_grad(), rhs.requires_grad()];
        Var::from_op(y, &[self, rhs], move |g| {
            let [ga, gb] = rule(g, needs)?;
            Ok(vec![
                ga.map(|ga| sum_to_shape(&ga, &a_shape)).transpose()?,
                gb.map(|gb| sum_to_shape(&gb, &b_shape)).transpose()?,
            ])
        })
    }

    /// a + b (broadcasting): ∂a = g, ∂b = g.
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        let y = self.tensor().add(rhs.tensor())?;
        Ok(self.binary_op(rhs, y, |g, [na, nb]| {
            Ok([na.then(|| g.clone()), nb.then(|| g.clone())])
        }))
    }

    /// a − b: ∂a = g, ∂b = −g.
    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        let y = self.tensor().sub(rhs.tensor())?;
        Ok(self.binary_op(rhs, y, |g, [na, nb]| {
            Ok([na.then(|| g.clone()), nb.then(|| g.neg()).transpose()?])
        }))
    }

    /// a·b: ∂a = g·b, ∂b = g·a. Each operand is kept only for the other's gradient.
    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        let y = self.tensor().mul(rhs.tensor())?;
        let a = rhs.requires_grad().then(|| self.tensor().clone());
        let b = self.requires_grad().then(|| rhs.tensor().clone());
        Ok(self.binary_op(rhs, y, move |g, _| {
            Ok([
                b.map(|b| g.mul(&b)).transpose()?,
                a.map(|a| g.mul(&a)).transpose()?,
            ])
        }))
    }

    /// a / b: ∂a = g / b, ∂b = −g·a / b² = −(g / b)·y.
    pub fn div(&self, rhs: &Var) -> Result<Var> {
        let b = rhs.tensor().clone();
        let y = self.tensor().div(&b)?;
        let saved_y = rhs.requires_grad().then(|| y.clone());
        Ok(self.binary_op(rhs, y, move |g, [na, _]| {
            let g_over_b = g.div(&b)?;
            let gb = saved_y.map(|y| g_over_b.mul(&y)?.neg()).transpose()?;
            Ok([na.then_some(g_over_b), gb])
        }))
    }

    /// −x.
    pub fn neg(&self) -> Result<Var> {
        Ok(self.unary_op(self.tensor().neg()?, |g| g.neg()))
    }

    /// x·mul + add: ∂x = g·mul.
    pub fn affine(&self, mul: f32, add: f32) -> Result<Var> {
        Ok(self.unary_op(self.tensor().affine(mul, add)?, move |g| g.mul_scalar(mul)))
    }

    pub fn mul_scalar(&self, value: f32) -> Result<Var> {
        self.affine(value, 0.0)
    }

    pub fn add_scalar(&self, value: f32) -> Result<Var> {
        self.affine(1.0, value)
    }

    /// eˣ: ∂x = g·y.
    pub fn exp(&self) -> Result<Var> {
        let y = self.tensor().exp()?;
        let saved = y.clone();
        Ok(self.unary_op(y, move |g| g.mul(&saved)))
    }

    /// ln x: ∂x = g / x.
    pub fn log(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.log()?, move |g| g.div(&x)))
    }

    /// √x: ∂x = g / (2y).
    pub fn sqrt(&self) -> Result<Var> {
        let y = self.tensor().sqrt()?;
        let saved = y.clone();
        Ok(self.unary_op(y, move |g| g.div(&saved)?.mul_scalar(0.5)))
    }

    /// x²: ∂x = 2g·x.
    pub fn square(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.square()?, move |g| g.mul(&x)?.mul_scalar(2.0)))
    }

    /// xᵖ: ∂x = g·p·xᵖ⁻¹.
    pub fn powf(&self, p: f32) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.powf(p)?, move |g| g.mul(&x.powf(p - 1.0)?)?.mul_scalar(p)))
    }

    /// tanh x: ∂x = g·(1 − y²).
    pub fn tanh(&self) -> Result<Var> {
        let y = self.tensor().tanh()?;
        let saved = y.clone();
        Ok(self.unary_op(y, move |g| g.mul(&saved.square()?.affine(-1.0, 1.0)?)))
    }

    /// σ(x): ∂x = g·y·(1 − y).
    pub fn sigmoid(&self) -> Result<Var> {
        let y = self.tensor().sigmoid()?;
        let saved = y.clone();
        Ok(self.unary_op(y, move |g| g.mul(&saved.mul(&saved.affine(-1.0, 1.0)?)?)))
    }

    /// x·σ(x): ∂x = g·σ(x)·(1 + x·(1 − σ(x))).
    pub fn silu(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.silu()?, move |g| x.silu_backward(g)))
    }

    /// x·Φ(x) (exact GELU): ∂x = g·(Φ(x) + x·φ(x)), φ the standard normal density, in one fused pass
    /// ([`Tensor::gelu_backward`]).
    pub fn gelu(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.gelu()?, move |g| x.gelu_backward(g)))
    }

    /// GEGLU: `h·gelu(a)` with `h, a` the halves of the last dimension (`2·inner` → `inner`). ∂h = g·gelu(a) and
    /// ∂a = g·h·gelu′(a), written into the two halves of one gradient in one fused pass ([`Tensor::geglu_backward`]).
    pub fn geglu(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.geglu()?, move |g| x.geglu_backward(g)))
    }

    /// |x|: ∂x = g·sign(x), with sign(0) = 0 (PyTorch's subgradient at the kink).
    ///
    /// The sign is selected, not computed as x/|x|: `g` where x > 0, −g where x < 0, 0 at 0.
    pub fn abs(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.abs()?, move |g| {
            let zero = Tensor::full(&[], 0.0, g.dtype(), g.device())?;
            let negative = x.neg()?.relu()?.where_select(&g.neg()?, &zero)?;
            x.relu()?.where_select(g, &negative)
        }))
    }

    /// min(max(x, lo), hi): ∂x = g where lo ≤ x ≤ hi, else 0 (bounds included, as PyTorch's `clamp`).
    ///
    /// The mask is where the clamp changed nothing: y − x = 0 exactly inside the bounds (and on them), non-zero
    /// outside.
    pub fn clamp(&self, lo: f32, hi: f32) -> Result<Var> {
        let x = self.tensor().clone();
        let y = x.clamp(lo, hi)?;
        let moved = y.sub(&x)?;
        Ok(self.unary_op(y, move |g| {
            let zero = Tensor::full(&[], 0.0, g.dtype(), g.device())?;
            moved.where_select(&zero, g)
        }))
    }

    /// The tanh-approximated GELU (PyTorch's `gelu(x, approximate='tanh')`): ∂x in one fused pass
    /// ([`Tensor::gelu_tanh_backward`]).
    pub fn gelu_tanh(&self) -> Result<Var> {
        let x = self.tensor().clone();
        Ok(self.unary_op(x.gelu_tanh()?, move |g| x.gelu_tanh_backward(g)))
    }

    /// max(x, 0): ∂x = g where x > 0, else 0 (the subgradient 0 at the kink, as PyTorch).
    pub fn relu(&self) -> Result<Var> {
        let y = self.tensor().relu()?;
        let saved = y.clone();
        Ok(self.unary_op(y, move |g| {
            let zero = Tensor::full(&[], 0.0, g.dtype(), g.device())?;
            saved.where_select(g, &zero)
        }))
    }
}
