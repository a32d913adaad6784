//! `SpatialSelfAttention` against a plain-loop f64 reference of diffusers' `Attention` on a feature map.

use diffuse_autograd::Var;
use diffuse_nn::{ParamStore, SpatialSelfAttention};
use diffuse_tensor::{Device, Tensor};

fn values(v: &Var) -> Vec<f64> {
    v.tensor()
        .to_vec()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect()
}

/// y = x + to_out(attention(to_q(gn(x)), to_k(gn(x)), to_v(gn(x)))) over the h·w positions, in f64.
fn reference(layer: &SpatialSelfAttention, x: &[f64], shape: [usize; 4]) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let (len, heads, d) = (h * w, layer.heads, layer.head_dim);
    let inner = heads * d;
    let g = layer.group_norm.groups;
    let (gamma, beta) = (
        values(&layer.group_norm.weight),
        values(&layer.group_norm.bias),
    );
    let eps = layer.group_norm.eps as f64;
    let mut y = x.to_vec();
    for b in 0..n {
        let xb = &x[b * c * len..(b + 1) * c * len];
        // Group norm.
        let mut xn = vec![0.0; c * len];
        let per = c / g;
        for gi in 0..g {
            let part = &xb[gi * per * len..(gi + 1) * per * len];
            let mean = part.iter().sum::<f64>() / part.len() as f64;
            let var = part.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / part.len() as f64;
            for ch in gi * per..(gi + 1) * per {
                for p in 0..len {
                    xn[ch * len + p] =
                        (xb[ch * len + p] - mean) / (var + eps).sqrt() * gamma[ch] + beta[ch];
                }
            }
        }
        // Projections, token-major: proj[p][o] = Σ_ch W[o][ch]·xn[ch][p] + b[o].
        let project = |lin: &diffuse_nn::Linear,
                       out: usize,
                       input: &dyn Fn(usize, usize) -> f64,
                       k: usize| {
            let (wt, bias) = (values(&lin.weight), values(lin.bias.as_ref().unwrap()));
            let mut r = vec![0.0; len * out];
            for p in 0..len {
                for o in 0..out {
                    r[p * out + o] =
                        bias[o] + (0..k).map(|i| wt[o * k + i] * input(p, i)).sum::<f64>();
                }
            }
            r
        };
        let token = |p: usize, ch: usize| xn[ch * len + p];
        let q = project(&layer.to_q, inner, &token, c);
        let k = project(&layer.to_k, inner, &token, c);
        let v = project(&layer.to_v, inner, &token, c);
        let mut o = vec![0.0; len * inner];
        for hd in 0..heads {
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..d)
                            .map(|e| q[i * inner + hd * d + e] * k[j * inner + hd * d + e])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                for e in 0..d {
                    o[i * inner + hd * d + e] = (0..len)
                        .map(|j| weights[j] * v[j * inner + hd * d + e])
                        .sum::<f64>()
                        / total;
                }
            }
        }
        let attended = |p: usize, i: usize| o[p * inner + i];
        let out = project(&layer.to_out, c, &attended, inner);
        for ch in 0..c {
            for p in 0..len {
                y[b * c * len + ch * len + p] += out[p * c + ch];
            }
        }
    }
    y
}

#[test]
fn spatial_self_attention_matches_a_plain_loop_reference() {
    // (channels, heads, head_dim, groups, h, w): several heads; an inner width (4) other than the channels (6);
    // one head over all channels; a 1×1 map.
    for (k, &(c, heads, d, g, h, w)) in [
        (8, 2, 4, 4, 3, 5),
        (6, 2, 2, 3, 2, 3),
        (4, 1, 4, 2, 4, 4),
        (4, 2, 2, 1, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let store = ParamStore::new(k as u64, Device::Cpu);
        let layer = SpatialSelfAttention::new(&store.root(), c, heads, d, g, 1e-5).unwrap();
        // Non-trivial norm affine, so that its use is checked too.
        for p in [&layer.group_norm.weight, &layer.group_norm.bias] {
            let t = Tensor::randn(&[c], 90 + k as u64, 0, Device::Cpu).unwrap();
            p.tensor().assign(&t).unwrap();
        }
        let shape = [2, c, h, w];
        let x = Tensor::randn(&shape, 100 + k as u64, 0, Device::Cpu).unwrap();
        let y = layer.forward(&Var::constant(x.clone())).unwrap();
        assert_eq!(y.shape(), &shape);
        let x64: Vec<f64> = x.to_vec().unwrap().iter().map(|&v| v as f64).collect();
        let want = reference(&layer, &x64, shape);
        let got = values(&y);
        // f32 sums of at most max(c, inner, h·w) ≤ 15 terms, chained through four GEMM-like stages and a softmax:
        // a few hundred units of 2⁻²⁴ relative to the largest value.
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 2e-5 * scale,
                "case {k}, element {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn spatial_self_attention_uses_diffusers_parameter_names() {
    let store = ParamStore::new(0, Device::Cpu);
    SpatialSelfAttention::new(&store.root().sub("attn"), 8, 2, 3, 4, 1e-6).unwrap();
    let names: Vec<(String, Vec<usize>)> = store
        .params()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    let expect = [
        ("attn.group_norm.bias", vec![8]),
        ("attn.group_norm.weight", vec![8]),
        ("attn.to_k.bias", vec![6]),
        ("attn.to_k.weight", vec![6, 8]),
        ("attn.to_out.0.bias", vec![8]),
        ("attn.to_out.0.weight", vec![8, 6]),
        ("attn.to_q.bias", vec![6]),
        ("attn.to_q.weight", vec![6, 8]),
        ("attn.to_v.bias", vec![6]),
        ("attn.to_v.weight", vec![6, 8]),
    ];
    let expect: Vec<(String, Vec<usize>)> = expect
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect();
    assert_eq!(names, expect);
}

#[test]
fn spatial_self_attention_refuses_zero_heads_and_non_maps() {
    let store = ParamStore::new(0, Device::Cpu);
    let err = SpatialSelfAttention::new(&store.root(), 8, 0, 16, 4, 1e-6)
        .err()
        .unwrap();
    assert!(err.to_string().contains("0 heads"), "{err}");
    let layer = SpatialSelfAttention::new(&store.root().sub("a"), 8, 1, 8, 4, 1e-6).unwrap();
    let flat =
        Var::constant(Tensor::zeros(&[2, 8], diffuse_tensor::DType::F32, Device::Cpu).unwrap());
    let err = layer.forward(&flat).err().unwrap();
    assert!(err.to_string().contains("(N, C, H, W)"), "{err}");
}
