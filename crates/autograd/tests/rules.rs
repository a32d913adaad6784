//! Every backward rule against central finite differences (see `common` for the check and its tolerance).

mod common;

use common::*;
use diffuse_autograd::Var;
use diffuse_tensor::{Conv2dParams, Tensor};

#[test]
fn add_sub_mul_div_with_broadcasting_match_finite_differences() {
    let a = randn(&[2, 3, 4], 1);
    let b = uniform(&[3, 1], 2, 0.5, 1.5);
    check_gradients(&[&a, &b], |v| v[0].add(&v[1]));
    check_gradients(&[&a, &b], |v| v[1].sub(&v[0]));
    check_gradients(&[&a, &b], |v| v[0].mul(&v[1]));
    check_gradients(&[&a, &b], |v| v[0].div(&v[1]));
}

#[test]
fn neg_affine_and_scalar_ops_match_finite_differences() {
    let x = randn(&[3, 4], 3);
    check_gradients(&[&x], |v| v[0].neg());
    check_gradients(&[&x], |v| v[0].affine(-1.5, 0.25));
    check_gradients(&[&x], |v| v[0].mul_scalar(3.0));
    check_gradients(&[&x], |v| v[0].add_scalar(2.0));
}

#[test]
fn exp_log_sqrt_square_powf_match_finite_differences() {
    let x = randn(&[2, 5], 4);
    let positive = uniform(&[2, 5], 5, 0.5, 2.0);
    check_gradients(&[&x], |v| v[0].exp());
    check_gradients(&[&positive], |v| v[0].log());
    check_gradients(&[&positive], |v| v[0].sqrt());
    check_gradients(&[&x], |v| v[0].square());
    check_gradients(&[&positive], |v| v[0].powf(2.5));
    check_gradients(&[&positive], |v| v[0].powf(-0.5));
}

#[test]
fn activations_match_finite_differences() {
    let x = randn(&[3, 5], 6);
    check_gradients(&[&x], |v| v[0].tanh());
    check_gradients(&[&x], |v| v[0].sigmoid());
    check_gradients(&[&x], |v| v[0].silu());
    check_gradients(&[&x], |v| v[0].gelu());
    check_gradients(&[&away_from_zero(&[3, 5], 7)], |v| v[0].relu());
}

#[test]
fn abs_and_clamp_match_finite_differences() {
    // Away from the kinks (the finite-difference step is 1e-2·max(1, |x|)): |x| ≥ 0.2 from `away_from_zero`, and
    // points on both sides of the clamp bounds ±0.5, each at least 0.08 from them.
    check_gradients(&[&away_from_zero(&[3, 5], 40)], |v| v[0].abs());
    let values = [
        -1.3, -0.62, -0.3, 0.0, 0.41, 0.8, 2.0, -0.05, 0.2, 1.1, -0.9, 0.33,
    ];
    let x = Tensor::from_slice(&values, &[3, 4], CPU).unwrap();
    check_gradients(&[&x], |v| v[0].clamp(-0.5, 0.5));
    // Every point outside: the gradient is zero everywhere.
    check_gradients(&[&uniform(&[2, 3], 42, 2.0, 1.0)], |v| {
        v[0].clamp(-1.0, 1.0)
    });
}

#[test]
fn abs_and_clamp_gradients_at_the_kinks_follow_pytorch() {
    // PyTorch: d|x|/dx = sign(x) = 0 at 0; clamp passes the gradient on its bounds (lo ≤ x ≤ hi).
    let x = Var::leaf(Tensor::from_slice(&[-2.0, -1.0, 0.0, 1.0, 3.0], &[5], CPU).unwrap());
    let g = x.abs().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        [-1.0, -1.0, 0.0, 1.0, 1.0]
    );
    let x = Var::leaf(Tensor::from_slice(&[-2.0, -1.0, 0.0, 1.0, 3.0], &[5], CPU).unwrap());
    let y = x.clamp(-1.0, 1.0).unwrap();
    assert_eq!(y.tensor().to_vec().unwrap(), [-1.0, -1.0, 0.0, 1.0, 1.0]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        [0.0, 1.0, 1.0, 1.0, 0.0]
    );
}

/// GEGLU over rank 1 (one row of one feature), a batch of token rows, and a transposed (non-contiguous) input; the
/// forward against the composition it fuses, `hidden·gelu(gate)` on the two halves.
#[test]
fn geglu_matches_finite_differences_and_its_composition() {
    check_gradients(&[&randn(&[2], 11)], |v| v[0].geglu());
    check_gradients(&[&randn(&[2, 3, 8], 12)], |v| v[0].geglu());
    let stored = randn(&[6, 4], 13);
    check_gradients(&[&stored.transpose(0, 1).unwrap()], |v| v[0].geglu());
    let x = randn(&[5, 14], 14);
    let fused = x.geglu().unwrap().to_vec().unwrap();
    let (hidden, gate) = (x.narrow(1, 0, 7).unwrap(), x.narrow(1, 7, 7).unwrap());
    let composed = hidden.mul(&gate.gelu().unwrap()).unwrap().to_vec().unwrap();
    assert_eq!(fused, composed);
    let odd = randn(&[2, 5], 15).geglu().unwrap_err().to_string();
    assert!(
        odd.contains("must be even") && odd.contains("[2, 5]"),
        "{odd}"
    );
}

#[test]
fn gelu_gradient_at_zero_is_one_half() {
    let x = Var::leaf(Tensor::zeros(&[1], diffuse_tensor::DType::F32, CPU).unwrap());
    let g = x.gelu().unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.5]);
}

#[test]
fn dropout_with_a_fixed_mask_matches_finite_differences() {
    // A fixed (seed, offset) fixes the mask, so dropout is a linear function of x that the check can probe.
    let x = randn(&[4, 6], 9);
    check_gradients(&[&x], |v| v[0].dropout(0.4, 17, 3));
}

#[test]
fn sum_and_mean_over_axes_match_finite_differences() {
    let x = randn(&[2, 3, 4], 8);
    check_gradients(&[&x], |v| v[0].sum(&[0, 2], false));
    check_gradients(&[&x], |v| v[0].sum(&[1], true));
    check_gradients(&[&x], |v| v[0].mean(&[2, 0], true));
    check_gradients(&[&x], |v| v[0].mean_all());
    check_gradients(&[&x], |v| v[0].sum_all());
}

#[test]
fn matmul_with_broadcast_batch_and_transposed_operand_matches_finite_differences() {
    let a = randn(&[2, 1, 3, 4], 9);
    let b_t = randn(&[3, 5, 4], 10);
    check_gradients(&[&a, &b_t], |v| v[0].matmul(&v[1].transpose(1, 2)?));
}

#[test]
fn a_linear_layer_over_a_transposed_batch_gives_the_bits_of_its_contiguous_copy() {
    // Tokens read out of an (N, C, HW) map as an (N, HW, C) transposed view, through a weight and bias as
    // `Transformer2DModel`'s linear projections take them: the product and every gradient must carry the same bits
    // as for a contiguous copy of the tokens (one product over all rows either way), with an output gradient that is
    // itself a transposed view. Sizes off the GEMM's tiles (12 × 32) and its 256-row short order.
    let (n, c, hw, out) = (3, 37, 101, 45);
    let map = randn(&[n, c, hw], 31);
    let (weight, bias) = (randn(&[out, c], 32), randn(&[out], 33));
    let upstream = randn(&[n, out, hw], 34);
    let run = |tokens: Tensor| {
        let (x, w, b) = (
            Var::leaf(tokens),
            Var::leaf(weight.clone()),
            Var::leaf(bias.clone()),
        );
        let y = x.matmul_bias(&w.transpose(0, 1).unwrap(), &b).unwrap();
        // Read back as a map, so the gradient y receives is a transposed view.
        let map_out = y.transpose(1, 2).unwrap();
        let loss = map_out.mul(&Var::constant(upstream.clone())).unwrap();
        let grads = loss.sum_all().unwrap().backward().unwrap();
        let bits =
            |t: &Tensor| -> Vec<u32> { t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect() };
        [
            bits(y.tensor()),
            bits(grads.get(&x).unwrap()),
            bits(grads.get(&w).unwrap()),
            bits(grads.get(&b).unwrap()),
        ]
    };
    let view = map.transpose(1, 2).unwrap();
    let copy = view.contiguous().unwrap();
    assert!(!view.is_contiguous());
    assert_eq!(run(view), run(copy));
}

#[test]
fn views_match_finite_differences() {
    let x = randn(&[2, 3, 4], 11);
    check_gradients(&[&x], |v| {
        v[0].reshape(&[4, 6])?.mul(&v[0].reshape(&[4, 6])?)
    });
    check_gradients(&[&x], |v| v[0].permute(&[2, 0, 1])?.exp());
    check_gradients(&[&x], |v| v[0].transpose(0, 2)?.square());
    check_gradients(&[&x], |v| v[0].narrow(2, 1, 2)?.square());
    check_gradients(&[&x], |v| v[0].narrow(1, 0, 1)?.exp());
    check_gradients(&[&randn(&[3, 1], 12)], |v| {
        v[0].broadcast_to(&[2, 3, 4])?.square()
    });
    check_gradients(&[&x], |v| v[0].unsqueeze(1)?.squeeze(1)?.tanh());
}

#[test]
fn concat_matches_finite_differences() {
    let a = randn(&[2, 3], 13);
    let b = randn(&[2, 1], 14);
    let c = randn(&[2, 2], 15);
    check_gradients(&[&a, &b, &c], |v| {
        Var::concat(&[&v[0], &v[1], &v[2]], 1)?.square()
    });
}

#[test]
fn index_select_with_repeats_matches_finite_differences() {
    // An embedding table of 5 rows of width 3, looked up with a repeated index.
    let table = randn(&[5, 3], 16);
    check_gradients(&[&table], |v| v[0].index_select(0, &[4, 1, 1, 0]));
}

#[test]
fn gather_matches_finite_differences() {
    let x = randn(&[2, 4], 17);
    check_gradients(&[&x], |v| v[0].gather(1, &[2, 3], &[3, 0, 3, 1, 1, 2]));
}

#[test]
fn softmax_and_log_softmax_match_finite_differences() {
    let x = randn(&[3, 4, 2], 18);
    check_gradients(&[&x], |v| v[0].softmax(1));
    check_gradients(&[&x], |v| v[0].log_softmax(2));
    check_gradients(&[&x], |v| v[0].log_softmax(0));
}

#[test]
fn conv2d_matches_finite_differences() {
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (1, 0),
        dilation: (1, 2),
        groups: 2,
    };
    let x = randn(&[2, 4, 5, 5], 19);
    let w = randn(&[4, 2, 3, 2], 20);
    let b = randn(&[4], 21);
    check_gradients(&[&x, &w, &b], |v| v[0].conv2d(&v[1], Some(&v[2]), &p));
    let w1 = randn(&[3, 4, 2, 2], 22);
    check_gradients(&[&x, &w1], |v| {
        v[0].conv2d(&v[1], None, &Conv2dParams::default())
    });
}

/// The fused addends of a convolution (time embedding per image and channel, residual) with and without bias, on a
/// strided grouped convolution without padding, a one-channel batch-1 one and the U-Net's 3×3 'same' one.
#[test]
fn conv2d_add_matches_finite_differences() {
    let strided = Conv2dParams {
        stride: (2, 2),
        padding: (0, 0),
        dilation: (1, 1),
        groups: 2,
    };
    let x = randn(&[2, 4, 5, 6], 30);
    let w = randn(&[4, 2, 3, 3], 31);
    let (b, t, r) = (
        randn(&[4], 32),
        randn(&[2, 4], 33),
        randn(&[2, 4, 2, 2], 34),
    );
    check_gradients(&[&x, &w, &b, &t, &r], |v| {
        v[0].conv2d_add(&v[1], Some(&v[2]), Some(&v[3]), Some(&v[4]), &strided)
    });
    check_gradients(&[&x, &w, &r], |v| {
        v[0].conv2d_add(&v[1], None, None, Some(&v[2]), &strided)
    });
    let single = Conv2dParams::default();
    let (x1, w1) = (randn(&[1, 1, 3, 4], 35), randn(&[1, 1, 2, 2], 36));
    let (t1, b1) = (randn(&[1, 1], 37), randn(&[1], 38));
    check_gradients(&[&x1, &w1, &b1, &t1], |v| {
        v[0].conv2d_add(&v[1], Some(&v[2]), Some(&v[3]), None, &single)
    });
    let same = Conv2dParams {
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let (x3, w3) = (randn(&[2, 3, 4, 5], 39), randn(&[2, 3, 3, 3], 40));
    let (b3, t3, r3) = (
        randn(&[2], 41),
        randn(&[2, 2], 42),
        randn(&[2, 2, 4, 5], 43),
    );
    check_gradients(&[&x3, &w3, &b3, &t3, &r3], |v| {
        v[0].conv2d_add(&v[1], Some(&v[2]), Some(&v[3]), Some(&v[4]), &same)
    });
}

/// The fused convolution computes the separate additions up to the rounding of its sums, forward and backward.
#[test]
fn conv2d_add_equals_conv2d_then_adds() {
    let p = Conv2dParams {
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let (x, w, b) = (
        randn(&[3, 4, 6, 5], 50),
        randn(&[5, 4, 3, 3], 51),
        randn(&[5], 52),
    );
    let (t, r) = (randn(&[3, 5], 53), randn(&[3, 5, 6, 5], 54));
    let run = |fused: bool| {
        let leaves = [&x, &w, &b, &t, &r].map(|t| Var::leaf(t.clone()));
        let [x, w, b, t, r] = &leaves;
        let y = if fused {
            x.conv2d_add(w, Some(b), Some(t), Some(r), &p).unwrap()
        } else {
            let t4 = t.reshape(&[3, 5, 1, 1]).unwrap();
            x.conv2d(w, Some(b), &p)
                .unwrap()
                .add(&t4)
                .unwrap()
                .add(r)
                .unwrap()
        };
        let dy = Var::constant(randn(y.shape(), 55));
        let grads = y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![y.tensor().to_vec().unwrap()];
        out.extend(
            leaves
                .iter()
                .map(|l| grads.get(l).unwrap().to_vec().unwrap()),
        );
        out
    };
    let (fused, separate) = (run(true), run(false));
    // Only the forward sums round differently (the addends join the products in another order): outputs and
    // gradients are sums of at most 4·9 + 3 (forward) or 3·30 (weight gradient) unit-size terms, of magnitude below
    // 10, and differ by a few ulps of that.
    for (got, want) in fused.iter().zip(&separate) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}

#[test]
fn group_norm_matches_finite_differences() {
    let x = randn(&[2, 4, 3, 2], 22);
    let gamma = randn(&[4], 23);
    let beta = randn(&[4], 24);
    check_gradients(&[&x, &gamma, &beta], |v| {
        v[0].group_norm(2, &v[1], &v[2], 1e-5)
    });
}

#[test]
fn group_norm_silu_matches_finite_differences() {
    let x = randn(&[2, 4, 3, 2], 22);
    let gamma = randn(&[4], 23);
    let beta = randn(&[4], 24);
    check_gradients(&[&x, &gamma, &beta], |v| {
        v[0].group_norm_silu(2, &v[1], &v[2], 1e-5)
    });
}

/// The fused op computes what group norm followed by SiLU computes, forward and backward, bit for bit: the same
/// normalised values, SiLU and sums in the same order (crates/cpu-kernels/src/group_norm_silu.rs).
#[test]
fn group_norm_silu_is_group_norm_then_silu() {
    let (x, gamma, beta) = (randn(&[3, 8, 5, 7], 40), randn(&[8], 41), randn(&[8], 42));
    let run = |fused: bool| {
        let leaves = [&x, &gamma, &beta].map(|t| Var::leaf(t.clone()));
        let [x, g, b] = &leaves;
        let y = if fused {
            x.group_norm_silu(4, g, b, 1e-5).unwrap()
        } else {
            x.group_norm(4, g, b, 1e-5).unwrap().silu().unwrap()
        };
        let w = Var::constant(randn(y.shape(), 43));
        let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut out = vec![y.tensor().to_vec().unwrap()];
        out.extend(
            leaves
                .iter()
                .map(|v| grads.get(v).unwrap().to_vec().unwrap()),
        );
        out
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn layer_norm_matches_finite_differences() {
    let x = randn(&[3, 2, 5], 25);
    let gamma = randn(&[5], 26);
    let beta = randn(&[5], 27);
    check_gradients(&[&x, &gamma, &beta], |v| {
        v[0].layer_norm(&v[1], &v[2], 1e-5)
    });
}

#[test]
fn attention_matches_finite_differences() {
    let q = randn(&[2, 3, 4], 28);
    let k = randn(&[2, 5, 4], 29);
    let v = randn(&[2, 5, 4], 30);
    check_gradients(&[&q, &k, &v], |x| x[0].attention(&x[1], &x[2], 1, 0.5));
}

#[test]
fn attention_with_a_causal_bias_matches_finite_differences() {
    // 4 queries over 4 keys, key j visible to query i when j ≤ i: the first row attends to one key only.
    let values = (0..16)
        .map(|i| {
            if i % 4 > i / 4 {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let bias = Tensor::from_vec(values, &[4, 4], CPU).unwrap();
    let q = randn(&[2, 4, 3], 32);
    let k = randn(&[2, 4, 3], 33);
    let v = randn(&[2, 4, 3], 34);
    check_gradients(&[&q, &k, &v], |x| {
        x[0].attention_with_bias(&x[1], &x[2], Some(&bias), 1, 0.5)
    });
}

#[test]
fn multi_head_attention_matches_finite_differences() {
    // One sequence, three heads of 5 channels side by side in each row (5: off the kernel's 16-column register
    // tile), 3 queries over 4 keys, with and without a bias that masks the first query's last keys.
    let q = randn(&[1, 3, 15], 35);
    let k = randn(&[1, 4, 15], 36);
    let v = randn(&[1, 4, 15], 37);
    check_gradients(&[&q, &k, &v], |x| x[0].attention(&x[1], &x[2], 3, 0.4));
    let values = (0..12)
        .map(|i| {
            if (2..4).contains(&i) {
                f32::NEG_INFINITY
            } else {
                0.1 * (i % 3) as f32
            }
        })
        .collect();
    let bias = Tensor::from_vec(values, &[3, 4], CPU).unwrap();
    check_gradients(&[&q, &k, &v], |x| {
        x[0].attention_with_bias(&x[1], &x[2], Some(&bias), 3, 0.4)
    });
}

/// Heads side by side in each row give what the split-off heads give: the attention of (N, L, H·d) with H heads equals
/// that of the (N·H, L, d) copy with one head, moved back, forward and backward.
#[test]
fn interleaved_heads_match_split_heads() {
    let (n, heads, lq, lk, d) = (2, 3, 5, 7, 4);
    let q = randn(&[n, lq, heads * d], 38);
    let k = randn(&[n, lk, heads * d], 39);
    let v = randn(&[n, lk, heads * d], 40);
    let w = randn(&[n, lq, heads * d], 41);
    let split = |t: &Var, len: usize| -> Var {
        t.reshape(&[n, len, heads, d])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
            .reshape(&[n * heads, len, d])
            .unwrap()
    };
    let run = |interleaved: bool| -> Vec<Vec<f32>> {
        let (q, k, v) = (
            Var::leaf(q.clone()),
            Var::leaf(k.clone()),
            Var::leaf(v.clone()),
        );
        let o = if interleaved {
            q.attention(&k, &v, heads, 0.5).unwrap()
        } else {
            split(&q, lq)
                .attention(&split(&k, lk), &split(&v, lk), 1, 0.5)
                .unwrap()
                .reshape(&[n, heads, lq, d])
                .unwrap()
                .permute(&[0, 2, 1, 3])
                .unwrap()
                .reshape(&[n, lq, heads * d])
                .unwrap()
        };
        let loss = o.mul(&Var::constant(w.clone())).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut all = vec![o.tensor().to_vec().unwrap()];
        all.extend([&q, &k, &v].map(|x| grads.get(x).unwrap().to_vec().unwrap()));
        all
    };
    // The same products in the same order per (sequence, head): identical bits.
    assert_eq!(run(true), run(false));
}

#[test]
fn upsample_nearest2x_matches_finite_differences() {
    check_gradients(&[&randn(&[1, 2, 2, 3], 31)], |v| {
        v[0].upsample_nearest2x()?.square()
    });
}

#[test]
fn a_linear_layers_weight_gradient_arrives_in_the_weights_layout() {
    // x·Wᵀ (+ b) with W stored (out, in): W's gradient is formed in that layout, so the optimiser reads it in place
    // rather than copying a transposed view. Batched (rank 3) and plain (rank 2) inputs.
    for x_shape in [vec![2, 3, 4], vec![3, 4]] {
        let x = Var::leaf(randn(&x_shape, 31));
        let w = Var::leaf(randn(&[5, 4], 32));
        let b = Var::leaf(randn(&[5], 33));
        let y = x.matmul_bias(&w.transpose(0, 1).unwrap(), &b).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let gw = grads.get(&w).unwrap();
        assert_eq!(gw.shape(), [5, 4]);
        assert!(
            gw.is_contiguous(),
            "{x_shape:?}: strides {:?}",
            gw.layout().strides()
        );
        // ∂W[o][i] = Σ_rows x[row][i] (the output gradient is all ones).
        // f32 sums of at most 6 terms of size ≤ ~4: a few ulp, far inside 1e-5.
        let xs = x.tensor().to_vec().unwrap();
        let got = gw.to_vec().unwrap();
        for o in 0..5 {
            for i in 0..4 {
                let want: f32 = xs.iter().skip(i).step_by(4).sum();
                assert!(
                    (got[o * 4 + i] - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "∂W[{o}][{i}]"
                );
            }
        }
    }
}
