//! The per-sample mean squared error of a diffusion training loss, `mse[n] = mean over the rest of (p − t)²`, and its
//! backward pass (used by autograd), each one kernel (`diffuse_cpu_kernels::sample_mse`).

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::Tensor;
use diffuse_cpu_kernels::sample_mse::SampleShape;

/// The shape of the loss over `prediction` (N, ...) and `target`, which must match it, or an error naming both.
fn sample_shape(op: &'static str, prediction: &Tensor, target: &Tensor) -> Result<SampleShape> {
    prediction.check_compatible(op, target)?;
    if prediction.shape() != target.shape() {
        return Err(Error::shape(
            op,
            format!(
                "prediction {:?} and target {:?} must have the same shape",
                prediction.shape(),
                target.shape()
            ),
        ));
    }
    match prediction.shape().split_first() {
        Some((&batch, rest)) => Ok(SampleShape {
            batch,
            len: rest.iter().product(),
        }),
        None => Err(Error::shape(
            op,
            "a per-sample loss needs a batch dimension; got a scalar (reshape it to [1])",
        )),
    }
}

impl Tensor {
    /// The mean squared error of each sample of `self` (N, ...) against `target` of the same shape: an (N) tensor.
    pub fn sample_mse(&self, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "sample_mse";
        let shape = sample_shape(OP, self, target)?;
        let (p, t) = (self.contiguous()?, target.contiguous()?);
        let mse = p.storage().sample_mse(&shape, &t.storage())?;
        Tensor::from_contiguous(mse, &[shape.batch])
    }

    /// ∂prediction of [`Tensor::sample_mse`], `(2/D)·g[n]·(p − t)`, from the (N) gradient `self` of its output (the
    /// target's gradient is its negation).
    pub fn sample_mse_backward(&self, prediction: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "sample_mse_backward";
        let shape = sample_shape(OP, prediction, target)?;
        prediction.check_compatible(OP, self)?;
        if self.shape() != [shape.batch] {
            return Err(Error::shape(
                OP,
                format!(
                    "the output gradient has shape {:?}, expected [{}]",
                    self.shape(),
                    shape.batch
                ),
            ));
        }
        let [p, t, g] = [prediction, target, self].map(Tensor::contiguous);
        let (p, t, g) = (p?, t?, g?);
        let gp = Storage::sample_mse_backward(&shape, [&p.storage(), &t.storage(), &g.storage()])?;
        Tensor::from_contiguous(gp, prediction.shape())
    }
}
