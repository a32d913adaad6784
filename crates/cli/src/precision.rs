//! `--precision`: what the matrix products of a CUDA run compute in. `f32` everywhere by default; `bf16` rounds the
//! operands of every `matmul` and every ungrouped convolution (forward and backward) to bf16 and multiplies them on
//! the tensor cores, accumulating in f32, while weights, the optimiser's state, activations and gradients stay f32
//! (see `diffuse_tensor::Precision`).
//! The CPU computes in f32 only, so `bf16` there is refused rather than ignored; `f16` is refused by name until
//! diffuse has f16 tensor-core kernels (it needs loss scaling, which bf16, with f32's exponent range, does not; the
//! training loop takes a scaler already: `Trainer::set_loss_scaler`).

use clap::Args;
use diffuse_tensor::{set_matmul_precision, Device, Precision};

#[derive(Args, Clone, Debug)]
pub struct PrecisionArgs {
    /// f32, or bf16 (CUDA only: matrix products and convolutions on the tensor cores from bf16-rounded operands,
    /// f32 weights, activations and gradients). Not stored with the run: give it again with --resume.
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub precision: String,
}

impl PrecisionArgs {
    /// Sets this thread's matmul precision for a run on `device`, or says why it cannot be had there.
    pub fn apply(&self, device: Device) -> Result<(), String> {
        let precision = match (self.precision.as_str(), device) {
            ("f32", _) => Precision::F32,
            ("bf16", Device::Cuda(_)) => Precision::Bf16,
            ("bf16", Device::Cpu) => {
                return Err(
                    "--precision bf16 needs a CUDA device (the CPU kernels compute in f32 only); use --device cuda, or --precision f32".into(),
                )
            }
            (other, _) => {
                return Err(format!(
                    "--precision {other}: diffuse has no {other} tensor-core kernels yet; use bf16 (it keeps f32's \
                     exponent range, so it needs no loss scaling) or f32"
                ))
            }
        };
        set_matmul_precision(precision);
        Ok(())
    }
}
