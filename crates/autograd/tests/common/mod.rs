//! The finite-difference gradient check shared by the autograd tests.
//!
//! For a function `f` of some input tensors, the loss is `L = Σ_j f(x)_j·w_j` with fixed random weights `w`, so every
//! output element matters with its own weight. The analytic gradient comes from `L.backward()`; the reference is the
//! central difference `(L(x + h·e_i) − L(x − h·e_i)) / 2h` for every input element `i`, with the forward run in f32
//! and `L` summed in f64 from its f32 outputs.
//!
//! Step and tolerance. `h = 1e-2·max(1, |x_i|)`. The truncation error is `h²/6·|∂³L/∂x_i³|`: about 1.7e-5 per unit of
//! third derivative (the steepest case here, `x^-0.5` at 0.5, has |f‴| ≈ 21: 3.5e-4 per unit weight). The rounding
//! error comes only from the outputs that depend on `x_i` (the others are bit-identical in both evaluations and
//! cancel): a few f32 ulps (2⁻²³ ≈ 1.2e-7) of `Σ_j |w_j·f_j|` over those, amplified by `1/2h = 50`, ≲ 2e-4 on these
//! shapes. Hence `|analytic − numeric| ≤ 1e-3 + 2e-3·|numeric|`, which is tight enough to catch a rule that is off
//! by 1% (checked by planting one).

#![allow(dead_code)]

use diffuse_autograd::{no_grad, Var};
use diffuse_tensor::{Device, Result, Tensor};

pub const CPU: Device = Device::Cpu;

/// Standard normal values of `shape` from a fixed stream.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed, 0, CPU).unwrap()
}

/// Values in [lo, lo + width) of `shape`.
pub fn uniform(shape: &[usize], seed: u64, lo: f32, width: f32) -> Tensor {
    Tensor::rand(shape, seed, 0, CPU)
        .unwrap()
        .affine(width, lo)
        .unwrap()
}

/// Values with |x| in [0.2, 2.2) and random sign: away from the kink of relu and from zero.
pub fn away_from_zero(shape: &[usize], seed: u64) -> Tensor {
    let magnitude = uniform(shape, seed, 0.2, 2.0);
    let sign = randn(shape, seed + 1).sign_like();
    magnitude.mul(&sign).unwrap()
}

trait SignLike {
    fn sign_like(&self) -> Tensor;
}

impl SignLike for Tensor {
    /// +1 where the value is positive, −1 elsewhere.
    fn sign_like(&self) -> Tensor {
        let plus = Tensor::full(&[], 1.0, self.dtype(), self.device()).unwrap();
        let minus = Tensor::full(&[], -1.0, self.dtype(), self.device()).unwrap();
        self.relu().unwrap().where_select(&plus, &minus).unwrap()
    }
}

fn weighted_loss_f64(out: &Tensor, w: &[f32]) -> f64 {
    out.to_vec()
        .unwrap()
        .iter()
        .zip(w)
        .map(|(&o, &w)| f64::from(o) * f64::from(w))
        .sum()
}

/// Checks the gradients `backward` gives for every input of `f` against central differences (see the module docs).
pub fn check_gradients(inputs: &[&Tensor], f: impl Fn(&[Var]) -> Result<Var>) {
    let leaves: Vec<Var> = inputs.iter().map(|&t| Var::leaf(t.clone())).collect();
    let out = f(&leaves).unwrap();
    let w = randn(out.shape(), 0xDEC0DE);
    let loss = out
        .mul(&Var::constant(w.clone()))
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let w = w.to_vec().unwrap();

    for (i, input) in inputs.iter().enumerate() {
        let analytic = grads
            .get(&leaves[i])
            .unwrap_or_else(|| panic!("input {i} got no gradient"))
            .to_vec()
            .unwrap();
        let base = input.to_vec().unwrap();
        for j in 0..base.len() {
            let h = 1e-2 * base[j].abs().max(1.0);
            let loss_at = |x: f32| {
                let mut values = base.clone();
                values[j] = x;
                let args: Vec<Var> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, t)| {
                        if k == i {
                            Var::constant(Tensor::from_vec(values.clone(), t.shape(), CPU).unwrap())
                        } else {
                            Var::constant((*t).clone())
                        }
                    })
                    .collect();
                let out = no_grad(|| f(&args)).unwrap();
                weighted_loss_f64(out.tensor(), &w)
            };
            // The step actually taken in f32, so the quotient divides by the true distance.
            let (plus, minus) = (base[j] + h, base[j] - h);
            let numeric = (loss_at(plus) - loss_at(minus)) / (f64::from(plus) - f64::from(minus));
            let got = f64::from(analytic[j]);
            assert!(
                (got - numeric).abs() <= 1e-3 + 2e-3 * numeric.abs(),
                "input {i} element {j}: backward gives {got}, finite differences {numeric}"
            );
        }
    }
}
