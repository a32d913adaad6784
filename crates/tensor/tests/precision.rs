//! The matmul precision setting changes the CUDA backend only: on the CPU a product is the same to the bit whatever
//! this thread's setting (the CUDA side is held to the bf16 bound in `tests/cuda.rs`).

use diffuse_tensor::{set_matmul_precision, Device, Precision, Tensor};

fn values(seed: u32, len: usize) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 137.0 - 3.5)
        .collect()
}

#[test]
fn the_bf16_setting_leaves_cpu_products_bit_for_bit_unchanged() {
    let a = Tensor::from_vec(values(1, 2 * 5 * 13), &[2, 5, 13], Device::Cpu).unwrap();
    let b = Tensor::from_vec(values(2, 13 * 7), &[13, 7], Device::Cpu).unwrap();
    let f32_product = a.matmul(&b).unwrap().to_vec().unwrap();
    let previous = set_matmul_precision(Precision::Bf16);
    let bf16_setting = a.matmul(&b).unwrap().to_vec().unwrap();
    set_matmul_precision(previous);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&bf16_setting), bits(&f32_product));
}
