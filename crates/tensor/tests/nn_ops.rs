//! The tensor methods over the heavy kernels: each against a plain f64 reference where one is short, otherwise
//! against the kernel called directly on the same buffers (the kernels are tested in `diffuse-cpu-kernels`; here the
//! question is whether the method hands them the right shapes and layouts). Inputs include non-contiguous views.
//!
//! Tolerances: softmax, normalisation and attention results are O(1) values computed from short f32 sums (≤ 16
//! terms), well within 1e-5; results compared with the kernel itself must be identical.

use diffuse_cpu_kernels as k;
use diffuse_tensor::{AdamWConfig, Conv2dParams, DType, Device, Tensor};

const CPU: Device = Device::Cpu;

fn seq(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, seed, 0, CPU).unwrap()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn softmax_along_a_middle_dimension_matches_reference() {
    let x = seq(&[2, 3, 4], 1);
    let v = x.to_vec().unwrap();
    let y = x.softmax(1).unwrap();
    let ly = x.log_softmax(1).unwrap();
    let mut want = vec![0.0; 24];
    for a in 0..2 {
        for c in 0..4 {
            let at = |b: usize| a * 12 + b * 4 + c;
            let s: f64 = (0..3).map(|b| f64::from(v[at(b)]).exp()).sum();
            for b in 0..3 {
                want[at(b)] = f64::from(v[at(b)]).exp() / s;
            }
        }
    }
    assert_close(&y.to_vec().unwrap(), &want, 1e-6);
    let log_want: Vec<f64> = want.iter().map(|w| w.ln()).collect();
    assert_close(&ly.to_vec().unwrap(), &log_want, 1e-6);
}

#[test]
fn softmax_backward_matches_its_formula_on_a_transposed_view() {
    let x = seq(&[4, 3], 2).transpose(0, 1).unwrap();
    let g = seq(&[3, 4], 3);
    let y = x.softmax(1).unwrap();
    let dx = y.softmax_backward(&g, 1).unwrap().to_vec().unwrap();
    let (yv, gv) = (y.to_vec().unwrap(), g.to_vec().unwrap());
    let mut want = vec![0.0; 12];
    for r in 0..3 {
        let dot: f64 = (0..4)
            .map(|c| f64::from(yv[r * 4 + c] * gv[r * 4 + c]))
            .sum();
        for c in 0..4 {
            want[r * 4 + c] = f64::from(yv[r * 4 + c]) * (f64::from(gv[r * 4 + c]) - dot);
        }
    }
    assert_close(&dx, &want, 1e-6);
    let ly = x.log_softmax(1).unwrap();
    let ldx = ly.log_softmax_backward(&g, 1).unwrap().to_vec().unwrap();
    let mut lwant = vec![0.0; 12];
    for r in 0..3 {
        let sum: f64 = (0..4).map(|c| f64::from(gv[r * 4 + c])).sum();
        for c in 0..4 {
            lwant[r * 4 + c] = f64::from(gv[r * 4 + c]) - f64::from(yv[r * 4 + c]) * sum;
        }
    }
    assert_close(&ldx, &lwant, 1e-6);
}

fn conv_shape() -> (k::Conv2dShape, Conv2dParams) {
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (1, 2),
        dilation: (1, 2),
        groups: 2,
    };
    let s = k::Conv2dShape {
        batch: 2,
        in_channels: 4,
        in_h: 5,
        in_w: 6,
        out_channels: 6,
        kernel_h: 3,
        kernel_w: 2,
        stride: p.stride,
        padding: p.padding,
        dilation: p.dilation,
        groups: p.groups,
    };
    (s, p)
}

#[test]
fn conv2d_and_its_gradients_match_direct_kernel_calls() {
    let (s, p) = conv_shape();
    // The input is a permuted view, so the method must make it contiguous in NCHW order.
    let x = seq(&[2, 5, 6, 4], 4).permute(&[0, 3, 1, 2]).unwrap();
    let w = seq(&[6, 2, 3, 2], 5);
    let b = seq(&[6], 6);
    let y = x.conv2d(&w, Some(&b), &p).unwrap();
    assert_eq!(y.shape(), &[2, 6, s.out_h(), s.out_w()]);
    let (xv, wv, bv) = (
        x.to_vec().unwrap(),
        w.to_vec().unwrap(),
        b.to_vec().unwrap(),
    );
    let mut want = vec![0.0; s.output_len()];
    k::conv2d_forward(&s, &xv, &wv, Some(&bv), &mut want).unwrap();
    assert_eq!(y.to_vec().unwrap(), want);

    let g = seq(y.shape(), 7);
    let gv = g.to_vec().unwrap();
    let dx = g.conv2d_backward_input(&w, x.shape(), &p).unwrap();
    let mut dx_want = vec![0.0; s.input_len()];
    k::conv2d_backward_input(&s, &gv, &wv, &mut dx_want).unwrap();
    assert_eq!(dx.to_vec().unwrap(), dx_want);

    let (dw, db) = x.conv2d_backward_weight(&g, w.shape(), &p, true).unwrap();
    let (mut dw_want, mut db_want) = (vec![0.0; s.weight_len()], vec![0.0; 6]);
    k::conv2d_backward_weight(&s, &xv, &gv, &mut dw_want, Some(&mut db_want)).unwrap();
    assert_eq!(dw.to_vec().unwrap(), dw_want);
    assert_eq!(db.unwrap().to_vec().unwrap(), db_want);
}

#[test]
fn conv2d_errors_name_the_disagreeing_operand() {
    let x = seq(&[1, 3, 4, 4], 1);
    let w = seq(&[2, 2, 3, 3], 2);
    let msg = x
        .conv2d(&w, None, &Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("input channels"), "{msg}");
    let w = seq(&[2, 3, 3, 3], 2);
    let b = seq(&[3], 3);
    let msg = x
        .conv2d(&w, Some(&b), &Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bias"), "{msg}");
}

#[test]
fn group_norm_and_backward_match_direct_kernel_calls() {
    let x = seq(&[2, 4, 3, 2], 8);
    let (gamma, beta) = (seq(&[4], 9), seq(&[4], 10));
    let (y, mean, rstd) = x.group_norm(2, &gamma, &beta, 1e-5).unwrap();
    assert_eq!(
        (mean.shape(), rstd.shape()),
        (&[2usize, 2][..], &[2usize, 2][..])
    );
    let s = k::group_norm::GroupNormShape {
        batch: 2,
        channels: 4,
        spatial: 6,
        groups: 2,
        eps: 1e-5,
    };
    let (xv, gv, bv) = (
        x.to_vec().unwrap(),
        gamma.to_vec().unwrap(),
        beta.to_vec().unwrap(),
    );
    let (mut yw, mut mw, mut rw) = (vec![0.0; 48], vec![0.0; 4], vec![0.0; 4]);
    k::group_norm::group_norm_forward(&s, &xv, &gv, &bv, &mut yw, &mut mw, &mut rw).unwrap();
    assert_eq!(y.to_vec().unwrap(), yw);
    assert_eq!(mean.to_vec().unwrap(), mw);
    assert_eq!(rstd.to_vec().unwrap(), rw);

    let g = seq(x.shape(), 11);
    let (dx, dg, db) = g
        .group_norm_backward(&x, &gamma, (&mean, &rstd), 2)
        .unwrap();
    let (mut dxw, mut dgw, mut dbw) = (vec![0.0; 48], vec![0.0; 4], vec![0.0; 4]);
    k::group_norm::group_norm_backward(
        &s,
        &xv,
        &gv,
        &mw,
        &rw,
        &g.to_vec().unwrap(),
        &mut dxw,
        &mut dgw,
        &mut dbw,
    )
    .unwrap();
    assert_eq!(dx.to_vec().unwrap(), dxw);
    assert_eq!(dg.to_vec().unwrap(), dgw);
    assert_eq!(db.to_vec().unwrap(), dbw);
}

#[test]
fn group_norm_refuses_groups_that_do_not_divide_channels() {
    let x = seq(&[1, 6, 2, 2], 1);
    let g = seq(&[6], 2);
    let msg = x.group_norm(4, &g, &g, 1e-5).unwrap_err().to_string();
    assert!(msg.contains("6 channels") && msg.contains("4"), "{msg}");
}

#[test]
fn group_norm_silu_refuses_mismatched_affine_parameters() {
    let x = seq(&[1, 6, 2, 2], 1);
    let (g, short) = (seq(&[6], 2), seq(&[5], 3));
    let msg = x
        .group_norm_silu(3, &g, &short, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("group_norm_silu") && msg.contains("beta"),
        "{msg}"
    );
    let (y, mean, rstd) = x.group_norm_silu(3, &g, &g, 1e-5).unwrap();
    let msg = y
        .group_norm_silu_backward(&x, (&g, &short), (&mean, &rstd), 3)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("group_norm_silu_backward") && msg.contains("beta"),
        "{msg}"
    );
}

#[test]
fn layer_norm_matches_reference_and_backward_matches_kernel() {
    let x = seq(&[3, 2, 5], 12);
    let (gamma, beta) = (seq(&[5], 13), seq(&[5], 14));
    let (y, mean, rstd) = x.layer_norm(&gamma, &beta, 1e-5).unwrap();
    assert_eq!(mean.shape(), &[3, 2]);
    let (xv, gv, bv) = (
        x.to_vec().unwrap(),
        gamma.to_vec().unwrap(),
        beta.to_vec().unwrap(),
    );
    let mut want = vec![0.0; 30];
    for r in 0..6 {
        let row: Vec<f64> = xv[r * 5..r * 5 + 5].iter().map(|&v| f64::from(v)).collect();
        let mu = row.iter().sum::<f64>() / 5.0;
        let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 5.0;
        for c in 0..5 {
            want[r * 5 + c] =
                (row[c] - mu) / (var + 1e-5).sqrt() * f64::from(gv[c]) + f64::from(bv[c]);
        }
    }
    assert_close(&y.to_vec().unwrap(), &want, 1e-5);

    let g = seq(x.shape(), 15);
    let (dx, dg, db) = g.layer_norm_backward(&x, &gamma, (&mean, &rstd)).unwrap();
    let s = k::layer_norm::LayerNormShape {
        rows: 6,
        dim: 5,
        eps: 1e-5,
    };
    let (mut dxw, mut dgw, mut dbw) = (vec![0.0; 30], vec![0.0; 5], vec![0.0; 5]);
    let (mv, rv) = (mean.to_vec().unwrap(), rstd.to_vec().unwrap());
    k::layer_norm::layer_norm_backward(
        &s,
        &xv,
        &gv,
        &mv,
        &rv,
        &g.to_vec().unwrap(),
        &mut dxw,
        &mut dgw,
        &mut dbw,
    )
    .unwrap();
    assert_eq!(dx.to_vec().unwrap(), dxw);
    assert_eq!(dg.to_vec().unwrap(), dgw);
    assert_eq!(db.to_vec().unwrap(), dbw);
}

#[test]
fn attention_matches_softmax_of_scaled_scores_and_backward_matches_kernel() {
    let (bh, lq, lk, d) = (2, 3, 5, 4);
    let q = seq(&[bh, lq, d], 16);
    let kt = seq(&[bh, lk, d], 17);
    let v = seq(&[bh, lk, d], 18);
    let scale = 0.5;
    let (out, lse) = q.attention(&kt, &v, 1, scale).unwrap();
    let scores = q
        .matmul(&kt.transpose(1, 2).unwrap())
        .unwrap()
        .mul_scalar(scale)
        .unwrap();
    let want = scores
        .softmax(2)
        .unwrap()
        .matmul(&v)
        .unwrap()
        .to_vec()
        .unwrap();
    let want: Vec<f64> = want.iter().map(|&w| f64::from(w)).collect();
    assert_close(&out.to_vec().unwrap(), &want, 1e-5);
    assert_eq!(lse.shape(), &[bh, 1, lq]); // (sequences, heads, queries)

    let g = seq(out.shape(), 19);
    let (dq, dk, dv) = g
        .attention_backward((&q, &kt, &v), (&out, &lse), 1, scale)
        .unwrap();
    assert_backward_matches_kernel([&q, &kt, &v, &out, &lse, &g], None, scale, [&dq, &dk, &dv]);
}

/// The tensor-level attention backward `got` (dq, dk, dv) equals one direct call of the CPU kernel on the same
/// operands `[q, kᵀ rows, v, out, lse, g]` (bit for bit: the tensor op is that kernel call).
fn assert_backward_matches_kernel(
    operands: [&Tensor; 6],
    bias: Option<&Tensor>,
    scale: f32,
    got: [&Tensor; 3],
) {
    let [q, kt, v, ..] = operands;
    let (bh, lq, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let lk = kt.shape()[1];
    let s = k::attention::AttentionShape::dense(bh, 1, lq, lk, d, scale);
    let mut want = [
        vec![0.0; bh * lq * d],
        vec![0.0; bh * lk * d],
        vec![0.0; v.numel()],
    ];
    let vecs = operands.map(|t| t.to_vec().unwrap());
    let bias = bias.map(|b| b.to_vec().unwrap());
    let [dqw, dkw, dvw] = &mut want;
    k::attention::attention_backward(
        &s,
        &vecs[0],
        &vecs[1],
        &vecs[2],
        bias.as_deref(),
        &vecs[3],
        &vecs[4],
        &vecs[5],
        dqw,
        dkw,
        dvw,
    )
    .unwrap();
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(&got.to_vec().unwrap(), want);
    }
}

/// The causal mask of a text encoder, `[len, len]`: 0 where key j ≤ query i, −∞ above the diagonal.
fn causal_bias(len: usize) -> Tensor {
    let values = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(values, &[len, len], CPU).unwrap()
}

#[test]
fn attention_with_a_causal_bias_matches_the_masked_softmax_and_its_backward_the_kernel() {
    // One problem (batch·heads 1), one head dim, and 7 rows (off the 6-row register tile) among the cases.
    for (bh, len, d) in [(1, 1, 1), (3, 7, 5), (2, 20, 16)] {
        let q = seq(&[bh, len, d], 21);
        let kt = seq(&[bh, len, d], 22);
        let v = seq(&[bh, len, d], 23);
        let (bias, scale) = (causal_bias(len), 0.7);
        let (out, lse) = q
            .attention_with_bias(&kt, &v, Some(&bias), 1, scale)
            .unwrap();
        let want = q
            .matmul(&kt.transpose(1, 2).unwrap())
            .unwrap()
            .mul_scalar(scale)
            .unwrap()
            .add(&bias)
            .unwrap()
            .softmax(2)
            .unwrap()
            .matmul(&v)
            .unwrap()
            .to_vec()
            .unwrap();
        let want: Vec<f64> = want.iter().map(|&w| f64::from(w)).collect();
        // f32 throughout, sums of at most 20 terms of order 1: both sides within a few ulps of the exact value.
        assert_close(&out.to_vec().unwrap(), &want, 1e-5);

        let g = seq(out.shape(), 24);
        let (dq, dk, dv) = g
            .attention_with_bias_backward((&q, &kt, &v), (&out, &lse), Some(&bias), 1, scale)
            .unwrap();
        assert_backward_matches_kernel(
            [&q, &kt, &v, &out, &lse, &g],
            Some(&bias),
            scale,
            [&dq, &dk, &dv],
        );
    }
}

#[test]
fn attention_refuses_keys_with_another_head_dim() {
    let q = seq(&[1, 2, 4], 1);
    let kt = seq(&[1, 3, 5], 2);
    let msg = q.attention(&kt, &kt, 1, 1.0).unwrap_err().to_string();
    assert!(msg.contains("k has shape [1, 3, 5]"), "{msg}");
}

#[test]
fn randn_and_rand_are_the_philox_stream_from_the_offset() {
    let z = Tensor::randn(&[3, 5], 42, 7, CPU).unwrap();
    let mut want = vec![0.0; 15];
    k::philox::fill_normal(42, 7, &mut want);
    assert_eq!(z.to_vec().unwrap(), want);
    let u = Tensor::rand(&[15], 42, 7, CPU).unwrap();
    k::philox::fill_uniform(42, 7, &mut want);
    assert_eq!(u.to_vec().unwrap(), want);
    assert!(want.iter().all(|&x| x > 0.0 && x < 1.0));
}

#[test]
fn adamw_step_updates_parameter_and_moments_in_place_like_the_kernel() {
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let p = seq(&[2, 3], 20).contiguous().unwrap();
    let g = seq(&[3, 2], 21).transpose(0, 1).unwrap();
    let (m, v) = (
        Tensor::zeros(&[2, 3], DType::F32, CPU).unwrap(),
        Tensor::zeros(&[2, 3], DType::F32, CPU).unwrap(),
    );
    let (mut pw, gw) = (p.to_vec().unwrap(), g.to_vec().unwrap());
    let (mut mw, mut vw) = (vec![0.0; 6], vec![0.0; 6]);
    for step in 1..=3 {
        p.adamw_step(&g, &m, &v, &cfg, step).unwrap();
        k::adamw::adamw_step(&cfg, step, &mut pw, &gw, &mut mw, &mut vw).unwrap();
    }
    assert_eq!(p.to_vec().unwrap(), pw);
    assert_eq!(m.to_vec().unwrap(), mw);
    assert_eq!(v.to_vec().unwrap(), vw);
}

#[test]
fn adamw_step_refuses_aliased_buffers_and_views() {
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let p = seq(&[4], 1).contiguous().unwrap();
    let g = seq(&[4], 2);
    let m = Tensor::zeros(&[4], DType::F32, CPU).unwrap();
    let msg = p.adamw_step(&g, &m, &m, &cfg, 1).unwrap_err().to_string();
    assert!(msg.contains("m and v share one buffer"), "{msg}");
    let msg = p
        .adamw_step(&p, &m, &seq(&[4], 3), &cfg, 1)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("param and grad share"), "{msg}");
    let big = seq(&[8], 4);
    let view = big.narrow(0, 2, 4).unwrap();
    let msg = view
        .adamw_step(&g, &m, &seq(&[4], 3), &cfg, 1)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("param is a view"), "{msg}");
}

#[test]
fn sgd_momentum_step_updates_parameter_and_velocity_in_place_like_the_kernel() {
    let (lr, momentum, wd) = (0.05, 0.9, 0.01);
    let p = seq(&[2, 3], 30).contiguous().unwrap();
    let g = seq(&[3, 2], 31).transpose(0, 1).unwrap();
    let b = Tensor::zeros(&[2, 3], DType::F32, CPU).unwrap();
    let (mut pw, gw, mut bw) = (p.to_vec().unwrap(), g.to_vec().unwrap(), vec![0.0; 6]);
    for _ in 0..3 {
        p.sgd_momentum_step(&g, &b, lr, momentum, wd).unwrap();
        k::adamw::sgd_momentum_step(lr, momentum, wd, &mut pw, &gw, &mut bw).unwrap();
    }
    assert_eq!(p.to_vec().unwrap(), pw);
    assert_eq!(b.to_vec().unwrap(), bw);
}

#[test]
fn sgd_momentum_step_refuses_aliased_buffers_views_and_other_shapes() {
    let p = seq(&[4], 1).contiguous().unwrap();
    let b = Tensor::zeros(&[4], DType::F32, CPU).unwrap();
    let msg = p
        .sgd_momentum_step(&b, &b, 0.1, 0.9, 0.0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("grad and velocity share one buffer"), "{msg}");
    let msg = p
        .sgd_momentum_step(&seq(&[3], 2), &b, 0.1, 0.9, 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sgd_momentum_step") && msg.contains("grad has shape [3]"),
        "{msg}"
    );
    let big = seq(&[8], 4);
    let msg = p
        .sgd_momentum_step(&seq(&[4], 2), &big.narrow(0, 2, 4).unwrap(), 0.1, 0.9, 0.0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("velocity is a view"), "{msg}");
}

#[test]
fn assign_overwrites_in_place_from_a_strided_source() {
    let target = Tensor::zeros(&[2, 3], DType::F32, CPU).unwrap();
    let alias = target.clone();
    let src = Tensor::arange(0.0, 6.0, 1.0, CPU)
        .unwrap()
        .reshape(&[3, 2])
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    target.assign(&src).unwrap();
    assert_eq!(alias.to_vec().unwrap(), vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    let msg = target.assign(&seq(&[3, 2], 1)).unwrap_err().to_string();
    assert!(msg.contains("[3, 2]") && msg.contains("[2, 3]"), "{msg}");
}
