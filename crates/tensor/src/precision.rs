//! The precision of matrix products (and convolutions) on CUDA devices, set per thread (like PyTorch's autocast
//! state).
//!
//! - [`Precision::F32`] (the default): `matmul` multiplies f32 on the FMA pipes (`kernels/gemm_f32.ptx`).
//! - [`Precision::Bf16`]: `matmul` rounds both operands to bf16 (nearest, ties to even) and multiplies them on the
//!   tensor cores with f32 accumulation and an f32 result (`kernels/pack_bf16.ptx`, `kernels/gemm_bf16.ptx`).
//!   Tensors stay f32: weights (the optimiser's master copy), activations and gradients are stored and updated in
//!   f32, and only the products' inputs are rounded, in the forward and (through autograd, which calls `matmul`)
//!   the backward pass. bf16 keeps f32's exponent range, so gradients need no loss scaling. The error of one product
//!   is at most `(2⁻⁸ + (k + 2)·2⁻²⁴) Σᵢ |aᵢ bᵢ|` against the exact product of the f32 operands.
//!
//!   Ungrouped convolutions follow the setting too (forward and both gradients: `kernels/conv2d_bf16.ptx` lays the
//!   patches out as bf16 operands of the same GEMM, see `diffuse_cuda_kernels::conv_bf16`), with the same bound over
//!   each output's reduction.
//!
//! Grouped convolutions and attention compute in f32 whatever the setting, and so does every operation on the CPU:
//! the setting changes nothing there (the CLI refuses `--precision bf16` with `--device cpu` rather than ignore it).

use std::cell::Cell;

/// What the products of a CUDA `matmul` are computed in (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

thread_local! {
    static MATMUL: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Sets the precision of this thread's CUDA matrix products and returns the one it replaces.
pub fn set_matmul_precision(precision: Precision) -> Precision {
    MATMUL.with(|cell| cell.replace(precision))
}

/// The precision of this thread's CUDA matrix products.
pub fn matmul_precision() -> Precision {
    MATMUL.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precision_is_f32_until_set_and_belongs_to_one_thread() {
        assert_eq!(matmul_precision(), Precision::F32);
        assert_eq!(set_matmul_precision(Precision::Bf16), Precision::F32);
        assert_eq!(matmul_precision(), Precision::Bf16);
        let elsewhere = std::thread::spawn(matmul_precision).join().unwrap();
        assert_eq!(
            elsewhere,
            Precision::F32,
            "another thread saw this thread's setting"
        );
        assert_eq!(set_matmul_precision(Precision::F32), Precision::Bf16);
    }
}
