//! The adaLN kernels (`layer_norm_modulate.ptx`, `gated_residual.ptx`) and the GELU op codes (tanh and exact) of
//! `elementwise.ptx` held against their CPU twins in `diffuse-cpu-kernels`, over random shapes that include batch 1,
//! one token, one feature, features off every multiple of the warp and of the 256-thread block, and more rows than
//! one block of 8 warps. Also the attention kernels at the DiT's shapes (49 and 196 tokens, heads of 32 and 64).
//!
//! Tolerances (|gpu − cpu| ≤ abs + rel·|cpu|): the CPU accumulates the row statistics and the per-sample sums in f64
//! and rounds once, the GPU in f32 (a lane's dim/32 terms, then 5 butterfly levels; or a thread's `tokens` terms in
//! order), so a sum of k terms of size ≤ 3 may differ by ~k·2⁻²⁴·3; the statistics' rounding is amplified by rstd,
//! which reaches 1/√eps = 1000 for a row of one feature. The gated forward and ∂y are one or two correctly rounded
//! operations on each side (the GPU fuses them into one fma): a few ulps.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.
//! `scripts/ptxsim/check_adaln.py` runs the same PTX in the interpreter where there is no GPU.

mod common;

use common::{download, runner, upload, xorshift_values, zeros};

use diffuse_cpu_kernels::attention as cpu_attention;
use diffuse_cpu_kernels::elementwise as cpu_elementwise;
use diffuse_cpu_kernels::gated_residual as cpu_gated;
use diffuse_cpu_kernels::layer_norm_modulate as cpu_modulate;
use diffuse_cuda_kernels::attention::{attention_forward, AttentionShape};
use diffuse_cuda_kernels::attention_backward::attention_backward;
use diffuse_cuda_kernels::elementwise::{self, BinaryOp, Operand, UnaryOp};
use diffuse_cuda_kernels::gated_residual::{
    gated_residual_backward, gated_residual_forward, GatedShape,
};
use diffuse_cuda_kernels::layer_norm_modulate::{
    layer_norm_modulate_backward, layer_norm_modulate_forward, ModulateShape,
};
use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use proptest::prelude::*;

/// Deterministic values in [-3, 3) from a seed.
fn values(seed: u64, len: usize) -> Vec<f32> {
    xorshift_values(seed, len, 3.0)
}

fn assert_near(
    what: &str,
    gpu: &[f32],
    cpu: &[f32],
    abs: f32,
    rel: f32,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(gpu.len(), cpu.len());
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        prop_assert!(
            (g - c).abs() <= abs + rel * c.abs(),
            "{}[{}]: gpu {} vs cpu {}",
            what,
            i,
            g,
            c
        );
    }
    Ok(())
}

/// (batch, tokens, dim): batch 1 and one token reachable, dim from 1 past one 256-thread block, rows past 8.
fn shapes() -> impl Strategy<Value = (usize, usize, usize)> {
    (
        1usize..4,
        1usize..20,
        prop_oneof![1usize..40, 250usize..300],
    )
}

fn layer_norm_modulate_and_its_backward_match_the_cpu_kernels(gpu: &Gpu) {
    runner()
        .run(&(shapes(), any::<u64>()), |((batch, tokens, dim), seed)| {
            let s = ModulateShape {
                batch,
                tokens,
                dim,
                eps: 1e-6,
            };
            let (rows, len, cond) = (batch * tokens, batch * tokens * dim, batch * dim);
            let x = values(seed, len);
            let scale: Vec<f32> = values(seed ^ 1, cond).iter().map(|v| v / 3.0).collect();
            let shift = values(seed ^ 2, cond);
            let dy = values(seed ^ 3, len);

            let (mut y, mut mean, mut rstd) = (vec![0.0; len], vec![0.0; rows], vec![0.0; rows]);
            cpu_modulate::layer_norm_modulate_forward(
                &s, &x, &scale, &shift, &mut y, &mut mean, &mut rstd,
            )
            .unwrap();
            let (mut dx, mut dscale, mut dshift) =
                (vec![0.0; len], vec![0.0; cond], vec![0.0; cond]);
            cpu_modulate::layer_norm_modulate_backward(
                &s,
                &x,
                &scale,
                &mean,
                &rstd,
                &dy,
                &mut dx,
                &mut dscale,
                &mut dshift,
            )
            .unwrap();

            let (gx, gscale, gshift, gdy) = (
                upload(gpu, &x),
                upload(gpu, &scale),
                upload(gpu, &shift),
                upload(gpu, &dy),
            );
            let (mut gy, mut gmean, mut grstd) =
                (zeros(gpu, len), zeros(gpu, rows), zeros(gpu, rows));
            layer_norm_modulate_forward(
                gpu, &s, &gx, &gscale, &gshift, &mut gy, &mut gmean, &mut grstd,
            )
            .unwrap();
            // a row of one feature has rstd = 1/√eps = 1000, which amplifies the statistics' rounding
            let amplify = if dim == 1 { 1000.0 } else { 1.0 };
            assert_near("y", &download(gpu, &gy), &y, 1e-5 * amplify, 1e-5)?;
            assert_near("mean", &download(gpu, &gmean), &mean, 1e-6, 1e-5)?;
            assert_near("rstd", &download(gpu, &grstd), &rstd, 0.0, 1e-5)?;
            // the backward from the CPU's statistics, so that only the backward kernels differ
            let (cm, cr) = (upload(gpu, &mean), upload(gpu, &rstd));
            let (mut gdx, mut gds, mut gdb) = (zeros(gpu, len), zeros(gpu, cond), zeros(gpu, cond));
            layer_norm_modulate_backward(
                gpu, &s, &gx, &gscale, &cm, &cr, &gdy, &mut gdx, &mut gds, &mut gdb,
            )
            .unwrap();
            assert_near("dx", &download(gpu, &gdx), &dx, 1e-4 * amplify, 1e-4)?;
            let sum_tol = tokens as f32 * 3.0 * 3.0 * 6e-8;
            assert_near(
                "dscale",
                &download(gpu, &gds),
                &dscale,
                sum_tol * amplify,
                1e-5,
            )?;
            assert_near("dshift", &download(gpu, &gdb), &dshift, sum_tol, 1e-5)?;
            Ok(())
        })
        .unwrap();
}

fn gated_residual_and_its_backward_match_the_cpu_kernels(gpu: &Gpu) {
    runner()
        .run(&(shapes(), any::<u64>()), |((batch, tokens, dim), seed)| {
            let s = GatedShape { batch, tokens, dim };
            let (len, cond) = (batch * tokens * dim, batch * dim);
            let (x, gate, y, dout) = (
                values(seed, len),
                values(seed ^ 1, cond),
                values(seed ^ 2, len),
                values(seed ^ 3, len),
            );
            let mut out = vec![0.0; len];
            cpu_gated::gated_residual_forward(&s, &x, &gate, &y, &mut out).unwrap();
            let (mut dy, mut dgate) = (vec![0.0; len], vec![0.0; cond]);
            cpu_gated::gated_residual_backward(&s, &gate, &y, &dout, &mut dy, &mut dgate).unwrap();

            let (gx, gg, gyv, gd) = (
                upload(gpu, &x),
                upload(gpu, &gate),
                upload(gpu, &y),
                upload(gpu, &dout),
            );
            let mut gout = zeros(gpu, len);
            gated_residual_forward(gpu, &s, &gx, &gg, &gyv, &mut gout).unwrap();
            // |x + gate·y| ≤ 12: the CPU's two roundings against the GPU's one fma
            assert_near("out", &download(gpu, &gout), &out, 12.0 * 1.2e-7, 0.0)?;
            let (mut gdy, mut gdg) = (zeros(gpu, len), zeros(gpu, cond));
            gated_residual_backward(gpu, &s, &gg, &gyv, &gd, &mut gdy, &mut gdg).unwrap();
            prop_assert_eq!(download(gpu, &gdy), dy);
            assert_near(
                "dgate",
                &download(gpu, &gdg),
                &dgate,
                tokens as f32 * 9.0 * 6e-8,
                1e-6,
            )?;
            Ok(())
        })
        .unwrap();
}

/// One activation's GPU op codes (`unary` forward, `binary` gradient) against its CPU ops, on inputs in [-12, 12) (both
/// tails and the bend) and output gradients in [-3, 3); tolerances `abs + 1e-5·|cpu|`, `abs` per direction.
struct Activation {
    name: &'static str,
    unary: (UnaryOp, cpu_elementwise::UnaryOp),
    binary: (BinaryOp, cpu_elementwise::BinaryOp),
    forward_abs: f32,
    backward_abs: f32,
}

fn activation_and_its_backward_match_the_cpu_kernels(gpu: &Gpu, a: &Activation) {
    runner()
        .run(&(1usize..3000, any::<u64>()), |(len, seed)| {
            let x: Vec<f32> = values(seed, len).iter().map(|v| 4.0 * v).collect();
            let g = values(seed ^ 1, len);
            let contiguous = [1isize];
            let (gx, gg) = (upload(gpu, &x), upload(gpu, &g));
            let mut out = zeros(gpu, len);
            elementwise::unary(
                gpu,
                a.unary.0,
                &[len],
                &gx,
                Operand::new(&contiguous, 0),
                &mut out,
            )
            .unwrap();
            let want: Vec<f32> = x.iter().map(|&v| a.unary.1.apply(v)).collect();
            assert_near(a.name, &download(gpu, &out), &want, a.forward_abs, 1e-5)?;
            elementwise::binary(
                gpu,
                a.binary.0,
                &[len],
                &gx,
                Operand::new(&contiguous, 0),
                &gg,
                Operand::new(&contiguous, 0),
                &mut out,
            )
            .unwrap();
            let want: Vec<f32> = x
                .iter()
                .zip(&g)
                .map(|(&v, &w)| a.binary.1.apply(v, w))
                .collect();
            let what = format!("{}_backward", a.name);
            assert_near(&what, &download(gpu, &out), &want, a.backward_abs, 1e-5)?;
            Ok(())
        })
        .unwrap();
}

fn gelu_tanh_and_its_backward_match_the_cpu_kernels(gpu: &Gpu) {
    activation_and_its_backward_match_the_cpu_kernels(
        gpu,
        &Activation {
            name: "gelu_tanh",
            unary: (UnaryOp::GeluTanh, cpu_elementwise::UnaryOp::GeluTanh),
            binary: (
                BinaryOp::GeluTanhBackward,
                cpu_elementwise::BinaryOp::GeluTanhBackward,
            ),
            // the PTX exp is within ~1e-6 relative of the correctly rounded value
            forward_abs: 1e-6,
            backward_abs: 1e-5,
        },
    );
}

fn gelu_and_its_backward_match_the_cpu_kernels(gpu: &Gpu) {
    activation_and_its_backward_match_the_cpu_kernels(
        gpu,
        &Activation {
            name: "gelu",
            unary: (UnaryOp::Gelu, cpu_elementwise::UnaryOp::Gelu),
            binary: (
                BinaryOp::GeluBackward,
                cpu_elementwise::BinaryOp::GeluBackward,
            ),
            // the PTX erfc (Abramowitz & Stegun 7.1.26) is within 1.5e-7 absolute, the CPU's within 1.2e-7 relative:
            // Φ within ~2e-7 absolute, times |x| ≤ 12; the gradient: Φ as above (|g| ≤ 3) plus x·φ(x) ≤ 0.25 with
            // exp's ~1e-6 relative
            forward_abs: 3e-6,
            backward_abs: 2e-6,
        },
    );
}

fn attention_and_its_backward_match_the_cpu_at_dit_shapes(gpu: &Gpu) {
    // (batch, heads, tokens, head size), the heads side by side in each row as the DiT's projections write them:
    // patch 4 or latents (49 tokens) and patch 2 (196) at the named configs' heads of 64, and a batch of 32-channel
    // heads. Inputs in [−1, 1) and the scale 1/√d keep the scores O(1); the kernels sum d-term dot products and L-term
    // softmax rows in different orders: 1e-4 relative (absolute below 1) holds out, lse and the gradients.
    for (batch, heads, len, d) in [(2, 3, 49, 64), (1, 3, 196, 64), (2, 4, 196, 32)] {
        let bh = batch * heads;
        let s = AttentionShape::dense(batch, heads, len, len, d, 1.0 / (d as f32).sqrt());
        let n = bh * len * d;
        let third = |seed: u64| -> Vec<f32> { values(seed, n).iter().map(|v| v / 3.0).collect() };
        let (q, k, v, g) = (third(1), third(2), third(3), third(4));
        let (mut out, mut lse) = (vec![0.0; n], vec![0.0; bh * len]);
        cpu_attention::attention_forward(&s, &q, &k, &v, None, &mut out, &mut lse).unwrap();
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        cpu_attention::attention_backward(
            &s, &q, &k, &v, None, &out, &lse, &g, &mut dq, &mut dk, &mut dv,
        )
        .unwrap();

        let (gq, gk, gv, gg) = (
            upload(gpu, &q),
            upload(gpu, &k),
            upload(gpu, &v),
            upload(gpu, &g),
        );
        let no_bias: Option<&DeviceBuffer> = None;
        let (mut gout, mut glse) = (zeros(gpu, n), zeros(gpu, bh * len));
        attention_forward(gpu, &s, &gq, &gk, &gv, no_bias, &mut gout, &mut glse).unwrap();
        let check = |what: &str, gpu_values: &[f32], cpu_values: &[f32]| {
            for (i, (&a, &b)) in gpu_values.iter().zip(cpu_values).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{what} {bh}×{len}×{d} [{i}]: gpu {a} vs cpu {b}"
                );
            }
        };
        check("out", &download(gpu, &gout), &out);
        check("lse", &download(gpu, &glse), &lse);
        // the backward from the CPU's forward, so that only the backward kernels differ
        let (co, cl) = (upload(gpu, &out), upload(gpu, &lse));
        let (mut gdq, mut gdk, mut gdv) = (zeros(gpu, n), zeros(gpu, n), zeros(gpu, n));
        attention_backward(
            gpu, &s, &gq, &gk, &gv, no_bias, &co, &cl, &gg, &mut gdq, &mut gdk, &mut gdv,
        )
        .unwrap();
        check("dq", &download(gpu, &gdq), &dq);
        check("dk", &download(gpu, &gdk), &dk);
        check("dv", &download(gpu, &gdv), &dv);
    }
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        layer_norm_modulate_and_its_backward_match_the_cpu_kernels,
        gated_residual_and_its_backward_match_the_cpu_kernels,
        gelu_tanh_and_its_backward_match_the_cpu_kernels,
        gelu_and_its_backward_match_the_cpu_kernels,
        attention_and_its_backward_match_the_cpu_at_dit_shapes,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
