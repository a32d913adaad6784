//! The data-movement and selection kernels (`index.ptx`, `select.ptx`) and `silu_backward` held against their CPU
//! twins in `diffuse-cpu-kernels`, over random shapes that include batch 1, one channel, k = 0, repeated indices and
//! sizes that are not multiples of the block.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.
//! `scripts/ptxsim/check_index_select.py` runs the same PTX in the interpreter where there is no GPU.

mod common;

use common::{download, runner, upload, xorshift_values, zeros};

use diffuse_cpu_kernels::elementwise as cpu_elementwise;
use diffuse_cpu_kernels::index as cpu_index;
use diffuse_cpu_kernels::reduce::{reduce_rows, ReduceOp};
use diffuse_cpu_kernels::strided::StridedRef;
use diffuse_cuda_kernels::elementwise::{self, BinaryOp, Operand};
use diffuse_cuda_kernels::{index, select};
use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use proptest::prelude::*;

/// Deterministic values in [-2, 2) from a seed (no f32 rounding subtleties: the kernels only move and add them).
fn values(seed: u64, len: usize) -> Vec<f32> {
    xorshift_values(seed, len, 2.0)
}

/// `[outer, dim, inner]` with the awkward sizes in reach: 1 everywhere, ragged sizes up to 9.
fn odi() -> impl Strategy<Value = (usize, usize, usize)> {
    (1usize..4, 1usize..9, 1usize..6)
}

fn concat_matches_the_cpu_kernel_with_empty_parts(gpu: &Gpu) {
    let case = (
        1usize..4,
        1usize..5,
        proptest::collection::vec(0usize..5, 1..4),
        any::<u64>(),
    );
    runner()
        .run(&case, |(outer, inner, sizes, seed)| {
            let hosts: Vec<Vec<f32>> = sizes
                .iter()
                .enumerate()
                .map(|(p, &s)| values(seed + p as u64, outer * s * inner))
                .collect();
            let devices: Vec<DeviceBuffer> = hosts.iter().map(|h| upload(gpu, h)).collect();
            let views: Vec<_> = devices.iter().map(DeviceBuffer::view).collect();
            let total: usize = sizes.iter().sum();
            let mut out = zeros(gpu, outer * total * inner);
            index::concat(gpu, &views, &sizes, outer, inner, &mut out).unwrap();
            let mut want = vec![0.0; outer * total * inner];
            let parts: Vec<&[f32]> = hosts.iter().map(Vec::as_slice).collect();
            cpu_index::concat(&parts, &sizes, outer, inner, &mut want).unwrap();
            prop_assert_eq!(download(gpu, &out), want);
            Ok(())
        })
        .unwrap();
}

fn index_select_and_its_backward_match_the_cpu_kernels_bit_for_bit(gpu: &Gpu) {
    let case = odi().prop_flat_map(|(outer, dim, inner)| {
        (
            Just((outer, dim, inner)),
            proptest::collection::vec(0..dim, 0..7),
            any::<u64>(),
        )
    });
    // Both sides add the repeated-index terms in increasing j, one f32 rounding each: the results are identical.
    runner()
        .run(&case, |((outer, dim, inner), indices, seed)| {
            let k = indices.len();
            let src = values(seed, outer * dim * inner);
            let mut out = zeros(gpu, outer * k * inner);
            index::index_select(
                gpu,
                &upload(gpu, &src),
                outer,
                dim,
                inner,
                &indices,
                &mut out,
            )
            .unwrap();
            let mut want = vec![0.0; outer * k * inner];
            cpu_index::index_select(&src, outer, dim, inner, &indices, &mut want).unwrap();
            prop_assert_eq!(download(gpu, &out), want);

            let grad = values(seed ^ 1, outer * k * inner);
            let mut gsrc = zeros(gpu, outer * dim * inner);
            index::index_select_backward(
                gpu,
                &upload(gpu, &grad),
                outer,
                dim,
                inner,
                &indices,
                &mut gsrc,
            )
            .unwrap();
            let mut want = vec![0.0; outer * dim * inner];
            cpu_index::index_select_backward(&grad, outer, dim, inner, &indices, &mut want)
                .unwrap();
            prop_assert_eq!(download(gpu, &gsrc), want);
            Ok(())
        })
        .unwrap();
}

fn gather_and_its_backward_match_the_cpu_kernels_bit_for_bit(gpu: &Gpu) {
    let case = (odi(), 0usize..6).prop_flat_map(|((outer, dim, inner), k)| {
        (
            Just((outer, dim, inner, k)),
            proptest::collection::vec(0..dim, outer * k * inner),
            any::<u64>(),
        )
    });
    runner()
        .run(&case, |((outer, dim, inner, k), idx, seed)| {
            let src = values(seed, outer * dim * inner);
            let mut out = zeros(gpu, outer * k * inner);
            index::gather(
                gpu,
                &upload(gpu, &src),
                outer,
                dim,
                inner,
                &idx,
                k,
                &mut out,
            )
            .unwrap();
            let mut want = vec![0.0; outer * k * inner];
            cpu_index::gather(&src, outer, dim, inner, &idx, k, &mut want).unwrap();
            prop_assert_eq!(download(gpu, &out), want);

            let grad = values(seed ^ 1, outer * k * inner);
            let mut gsrc = zeros(gpu, outer * dim * inner);
            index::gather_backward(
                gpu,
                &upload(gpu, &grad),
                outer,
                dim,
                inner,
                &idx,
                k,
                &mut gsrc,
            )
            .unwrap();
            let mut want = vec![0.0; outer * dim * inner];
            cpu_index::gather_backward(&grad, outer, dim, inner, &idx, k, &mut want).unwrap();
            prop_assert_eq!(download(gpu, &gsrc), want);
            Ok(())
        })
        .unwrap();
}

fn upsample_nearest2x_and_its_backward_match_the_cpu_kernels_bit_for_bit(gpu: &Gpu) {
    runner()
        .run(
            &(1usize..5, 1usize..8, 1usize..8, any::<u64>()),
            |(planes, h, w, seed)| {
                let src = values(seed, planes * h * w);
                let mut out = zeros(gpu, planes * 4 * h * w);
                index::upsample_nearest2x(gpu, &upload(gpu, &src), planes, h, w, &mut out).unwrap();
                let mut want = vec![0.0; planes * 4 * h * w];
                cpu_index::upsample_nearest2x(&src, planes, h, w, &mut want).unwrap();
                prop_assert_eq!(download(gpu, &out), want);

                let grad = values(seed ^ 1, planes * 4 * h * w);
                let mut gsrc = zeros(gpu, planes * h * w);
                index::upsample_nearest2x_backward(
                    gpu,
                    &upload(gpu, &grad),
                    planes,
                    h,
                    w,
                    &mut gsrc,
                )
                .unwrap();
                let mut want = vec![0.0; planes * h * w];
                cpu_index::upsample_nearest2x_backward(&grad, planes, h, w, &mut want).unwrap();
                prop_assert_eq!(download(gpu, &gsrc), want);
                Ok(())
            },
        )
        .unwrap();
}

fn an_index_out_of_range_is_refused_before_the_launch(gpu: &Gpu) {
    let src = upload(gpu, &[1.0, 2.0, 3.0]);
    let mut out = zeros(gpu, 2);
    let err = index::index_select(gpu, &src, 1, 3, 1, &[2, 3], &mut out).unwrap_err();
    assert!(
        err.message
            .contains("index 3 at position 1 is out of range for a dimension of size 3"),
        "{err}"
    );
}

fn where_select_and_row_argmax_match_the_cpu_kernels(gpu: &Gpu) {
    runner()
        .run(
            &(1usize..6, 1usize..40, any::<u64>()),
            |(rows, cols, seed)| {
                let n = rows * cols;
                // a condition with exact zeros, negative zeros and NaN among the non-zeros
                let cond: Vec<f32> = values(seed, n)
                    .iter()
                    .map(|&v| match (v * 4.0) as i32 {
                        0 => 0.0,
                        1 => -0.0,
                        2 => f32::NAN,
                        _ => v,
                    })
                    .collect();
                let (a, b) = (values(seed ^ 1, n), values(seed ^ 2, n));
                let mut out = zeros(gpu, n);
                select::where_select(
                    gpu,
                    &upload(gpu, &cond),
                    &upload(gpu, &a),
                    &upload(gpu, &b),
                    &mut out,
                )
                .unwrap();
                let mut want = vec![0.0; n];
                let flat = StridedRef {
                    strides: &[1],
                    offset: 0,
                };
                cpu_elementwise::where_select(&[n], &cond, flat, &a, flat, &b, flat, &mut want)
                    .unwrap();
                prop_assert_eq!(download(gpu, &out), want);

                // ties (values on a coarse grid) and a NaN in some rows
                let mut x: Vec<f32> = a.iter().map(|v| (v * 2.0).round()).collect();
                if seed % 3 == 0 {
                    x[(seed as usize / 3) % n] = f32::NAN;
                }
                let mut arg = zeros(gpu, rows);
                select::row_argmax(gpu, rows, cols, &upload(gpu, &x), &mut arg).unwrap();
                let mut want = vec![0.0; rows];
                reduce_rows(ReduceOp::ArgMax, rows, cols, &x, &mut want).unwrap();
                prop_assert_eq!(download(gpu, &arg), want);
                Ok(())
            },
        )
        .unwrap();
}

fn silu_backward_matches_the_cpu_kernel_with_a_broadcast_gradient(gpu: &Gpu) {
    runner()
        .run(
            &(1usize..5, 1usize..30, any::<u64>()),
            |(rows, cols, seed)| {
                let x: Vec<f32> = values(seed, rows * cols).iter().map(|v| 3.0 * v).collect();
                let g = values(seed ^ 1, rows);
                let mut out = zeros(gpu, rows * cols);
                elementwise::binary(
                    gpu,
                    BinaryOp::SiluBackward,
                    &[rows, cols],
                    &upload(gpu, &x),
                    Operand::new(&[cols as isize, 1], 0),
                    &upload(gpu, &g),
                    Operand::new(&[1, 0], 0),
                    &mut out,
                )
                .unwrap();
                let got = download(gpu, &out);
                // the GPU sigmoid (ex2.approx with a correction, rcp.rn) is within ~2e-7 relative of the CPU's; a handful
                // of roundings on top: 1e-5 relative, absolute below 1
                for (i, &v) in got.iter().enumerate() {
                    let want = cpu_elementwise::BinaryOp::SiluBackward.apply(x[i], g[i / cols]);
                    prop_assert!(
                        (v - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "element {}: {} vs {}",
                        i,
                        v,
                        want
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        concat_matches_the_cpu_kernel_with_empty_parts,
        index_select_and_its_backward_match_the_cpu_kernels_bit_for_bit,
        gather_and_its_backward_match_the_cpu_kernels_bit_for_bit,
        upsample_nearest2x_and_its_backward_match_the_cpu_kernels_bit_for_bit,
        an_index_out_of_range_is_refused_before_the_launch,
        where_select_and_row_argmax_match_the_cpu_kernels,
        silu_backward_matches_the_cpu_kernel_with_a_broadcast_gradient,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
