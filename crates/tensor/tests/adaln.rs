//! The adaLN operations at the tensor layer: views are made contiguous before the kernels, and shapes that do not fit
//! together are errors naming the operand.

use diffuse_tensor::{Device, Tensor};

fn t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed, 0, Device::Cpu).unwrap()
}

#[test]
fn layer_norm_modulate_reads_views_like_their_contiguous_copies() {
    // x as a transposed view of (N, D, L), scale as a narrowed view of a wider tensor.
    let x = t(&[2, 6, 5], 1).transpose(1, 2).unwrap();
    let scale = t(&[2, 9], 2).narrow(1, 3, 6).unwrap();
    let shift = t(&[2, 6], 3);
    let (y, mean, rstd) = x.layer_norm_modulate(&scale, &shift, 1e-6).unwrap();
    let (y2, mean2, rstd2) = x
        .contiguous()
        .unwrap()
        .layer_norm_modulate(&scale.contiguous().unwrap(), &shift, 1e-6)
        .unwrap();
    assert_eq!(y.to_vec().unwrap(), y2.to_vec().unwrap());
    assert_eq!(mean.shape(), &[2, 5]);
    assert_eq!(mean.to_vec().unwrap(), mean2.to_vec().unwrap());
    assert_eq!(rstd.to_vec().unwrap(), rstd2.to_vec().unwrap());
}

#[test]
fn gated_residual_reads_views_like_their_contiguous_copies() {
    let x = t(&[3, 4, 2], 4);
    let gate = t(&[2, 3], 5).transpose(0, 1).unwrap();
    let y = t(&[3, 2, 4], 6).transpose(1, 2).unwrap();
    let out = x.gated_residual(&gate, &y).unwrap();
    let want = x
        .gated_residual(&gate.contiguous().unwrap(), &y.contiguous().unwrap())
        .unwrap();
    assert_eq!(out.to_vec().unwrap(), want.to_vec().unwrap());
}

#[test]
fn adaln_operations_name_the_operand_whose_shape_disagrees() {
    let x = t(&[2, 3, 4], 7);
    let err = x
        .layer_norm_modulate(&t(&[2, 5], 8), &t(&[2, 4], 9), 1e-6)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("scale has shape [2, 5], expected [2, 4]"),
        "{err}"
    );
    let err = t(&[6, 4], 7)
        .layer_norm_modulate(&t(&[2, 4], 8), &t(&[2, 4], 9), 1e-6)
        .unwrap_err();
    assert!(
        err.to_string().contains("x must be (batch, tokens, dim)"),
        "{err}"
    );
    let err = x
        .gated_residual(&t(&[2, 4], 8), &t(&[2, 3, 5], 9))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("y has shape [2, 3, 5], expected [2, 3, 4]"),
        "{err}"
    );
    let err = x.gated_residual(&t(&[1, 4], 8), &x).unwrap_err();
    assert!(
        err.to_string()
            .contains("gate has shape [1, 4], expected [2, 4]"),
        "{err}"
    );
}
