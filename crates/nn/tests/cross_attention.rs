//! `CrossAttention` against diffusers' `Attention` with `cross_attention_dim` (a golden file), against the same
//! computation composed from plain matmuls and a softmax, and its gradients against finite differences.

use diffuse_autograd::{no_grad, Var};
use diffuse_nn::{CrossAttention, ParamStore};
use diffuse_tensor::{Device, Tensor};
use safetensors::SafeTensors;

const CPU: Device = Device::Cpu;

fn values(v: &Var) -> Vec<f32> {
    v.tensor().to_vec().unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
fn cross_attention_matches_diffusers_attention() {
    // fixtures/cross_attention.py: Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4, bias=True,
    // norm_num_groups=4, residual_connection=True) on x (2, 8, 3, 2) and a context (2, 5, 6).
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cross_attention.safetensors"),
    )
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensor = |name: &str| {
        let view = file.tensor(name).unwrap();
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Tensor::from_vec(data, view.shape(), CPU).unwrap()
    };
    let store = ParamStore::new(0, CPU);
    let layer = CrossAttention::new(&store.root(), 8, 6, 2, 4, 4, 1e-5).unwrap();
    for (name, param) in store.params() {
        param.tensor().assign(&tensor(&name)).unwrap();
    }
    let y = layer
        .forward(
            &Var::constant(tensor("input.x")),
            &Var::constant(tensor("input.context")),
        )
        .unwrap();
    let want = tensor("output.y").to_vec().unwrap();
    // Both in f32 with sums of at most 8 terms through four projection stages and a softmax, in different orders:
    // a few hundred units of 2⁻²⁴ relative to the largest value (≈ 4).
    let tol = 2e-5 * max_abs(&want);
    for (i, (a, b)) in values(&y).iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= tol, "element {i}: {a} vs diffusers {b}");
    }
}

/// The layer's computation spelled out with matmuls and a softmax on (N, heads, L, head_dim) views.
fn composed(layer: &CrossAttention, x: &Var, context: &Var) -> Var {
    let [n, c, h, w] = x.shape().try_into().unwrap();
    let (heads, d, lc) = (layer.heads, layer.head_dim, context.shape()[1]);
    let gn = &layer.group_norm;
    let tokens = x
        .group_norm(gn.groups, &gn.weight, &gn.bias, gn.eps)
        .unwrap()
        .reshape(&[n, c, h * w])
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let linear = |lin: &diffuse_nn::Linear, input: &Var| {
        input
            .matmul(&lin.weight.transpose(0, 1).unwrap())
            .unwrap()
            .add(lin.bias.as_ref().unwrap())
            .unwrap()
    };
    let heads_of = |t: Var, len: usize| {
        t.reshape(&[n, len, heads, d])
            .unwrap()
            .permute(&[0, 2, 1, 3])
            .unwrap()
    };
    let q = heads_of(linear(&layer.to_q, &tokens), h * w);
    let k = heads_of(linear(&layer.to_k, context), lc);
    let v = heads_of(linear(&layer.to_v, context), lc);
    let scores = q
        .matmul(&k.transpose(2, 3).unwrap())
        .unwrap()
        .mul_scalar(1.0 / (d as f32).sqrt())
        .unwrap();
    let o = scores
        .softmax(3)
        .unwrap()
        .matmul(&v)
        .unwrap()
        .permute(&[0, 2, 1, 3])
        .unwrap()
        .reshape(&[n, h * w, heads * d])
        .unwrap();
    linear(&layer.to_out, &o)
        .transpose(1, 2)
        .unwrap()
        .reshape(&[n, c, h, w])
        .unwrap()
        .add(x)
        .unwrap()
}

#[test]
fn cross_attention_matches_a_matmul_softmax_composition() {
    // (channels, context dim, heads, head_dim, groups, h, w, context length): several heads with an inner width
    // other than the channels, one head, a 1×1 map, a context of one token.
    for (k, &(c, dc, heads, d, g, h, w, lc)) in [
        (8, 6, 2, 4, 4, 3, 5, 7),
        (6, 10, 3, 2, 3, 2, 3, 4),
        (4, 3, 1, 4, 2, 4, 4, 1),
        (4, 5, 2, 2, 1, 1, 1, 3),
    ]
    .iter()
    .enumerate()
    {
        let store = ParamStore::new(k as u64, CPU);
        let layer = CrossAttention::new(&store.root(), c, dc, heads, d, g, 1e-5).unwrap();
        let x = Var::constant(Tensor::randn(&[2, c, h, w], 10 + k as u64, 0, CPU).unwrap());
        let ctx = Var::constant(Tensor::randn(&[2, lc, dc], 20 + k as u64, 0, CPU).unwrap());
        let got = values(&layer.forward(&x, &ctx).unwrap());
        let want = values(&composed(&layer, &x, &ctx));
        // The same f32 arithmetic in other orders (fused attention kernel vs. explicit scores): sums of ≤ 10 terms.
        let tol = 1e-5 * max_abs(&want);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= tol, "case {k}, element {i}: {a} vs {b}");
        }
    }
}

#[test]
fn cross_attention_gradients_match_finite_differences() {
    // A tiny layer: map (1, 4, 2, 1), context (1, 3, 3), two heads of 2. The loss is Σ y·r with fixed weights r;
    // the check and its tolerance are those of diffuse-autograd's rule tests (h = 1e-2·max(1, |x|), central
    // differences of an f32 forward summed in f64, |Δ| ≤ 1e-3 + 2e-3·|numeric|).
    let store = ParamStore::new(3, CPU);
    let layer = CrossAttention::new(&store.root(), 4, 3, 2, 2, 2, 1e-5).unwrap();
    let x = Tensor::randn(&[1, 4, 2, 1], 31, 0, CPU).unwrap();
    let ctx = Tensor::randn(&[1, 3, 3], 32, 0, CPU).unwrap();
    let r = Tensor::randn(&[1, 4, 2, 1], 33, 0, CPU)
        .unwrap()
        .to_vec()
        .unwrap();
    let loss = |x: &Var, ctx: &Var| -> f64 {
        let y = no_grad(|| layer.forward(x, ctx)).unwrap();
        values(&y)
            .iter()
            .zip(&r)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    let (xv, cv) = (Var::leaf(x.clone()), Var::leaf(ctx.clone()));
    let rv = Var::constant(Tensor::from_slice(&r, &[1, 4, 2, 1], CPU).unwrap());
    let grads = layer
        .forward(&xv, &cv)
        .unwrap()
        .mul(&rv)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // The map, the context, and the key projection (which only the context reaches).
    let probes: [(&str, &Tensor, &Var); 3] = [
        ("x", &x, &xv),
        ("context", &ctx, &cv),
        (
            "to_k.weight",
            layer.to_k.weight.tensor(),
            &layer.to_k.weight,
        ),
    ];
    for (what, base, var) in probes {
        let analytic = grads.get(var).unwrap().to_vec().unwrap();
        let base_values = base.to_vec().unwrap();
        for j in 0..base_values.len() {
            let h = 1e-2 * base_values[j].abs().max(1.0);
            let at = |value: f32| {
                let mut moved = base_values.clone();
                moved[j] = value;
                let moved = Tensor::from_vec(moved, base.shape(), CPU).unwrap();
                match what {
                    "x" => loss(&Var::constant(moved), &Var::constant(ctx.clone())),
                    "context" => loss(&Var::constant(x.clone()), &Var::constant(moved)),
                    _ => {
                        let saved = base.to_vec().unwrap();
                        base.assign(&moved).unwrap();
                        let l = loss(&Var::constant(x.clone()), &Var::constant(ctx.clone()));
                        base.assign(&Tensor::from_vec(saved, base.shape(), CPU).unwrap())
                            .unwrap();
                        l
                    }
                }
            };
            let (plus, minus) = (base_values[j] + h, base_values[j] - h);
            let numeric = (at(plus) - at(minus)) / (f64::from(plus) - f64::from(minus));
            let got = f64::from(analytic[j]);
            assert!(
                (got - numeric).abs() <= 1e-3 + 2e-3 * numeric.abs(),
                "{what}[{j}]: backward {got}, finite differences {numeric}"
            );
        }
    }
}

#[test]
fn cross_attention_uses_diffusers_names_and_refuses_a_mismatched_context() {
    let store = ParamStore::new(0, CPU);
    let layer = CrossAttention::new(&store.root().sub("attn2"), 8, 5, 2, 3, 4, 1e-6).unwrap();
    let names: Vec<(String, Vec<usize>)> = store
        .params()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    let expect: Vec<(String, Vec<usize>)> = [
        ("attn2.group_norm.bias", vec![8]),
        ("attn2.group_norm.weight", vec![8]),
        ("attn2.to_k.bias", vec![6]),
        ("attn2.to_k.weight", vec![6, 5]),
        ("attn2.to_out.0.bias", vec![8]),
        ("attn2.to_out.0.weight", vec![8, 6]),
        ("attn2.to_q.bias", vec![6]),
        ("attn2.to_q.weight", vec![6, 8]),
        ("attn2.to_v.bias", vec![6]),
        ("attn2.to_v.weight", vec![6, 5]),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), s.clone()))
    .collect();
    assert_eq!(names, expect);

    let x = Var::constant(Tensor::randn(&[2, 8, 2, 2], 1, 0, CPU).unwrap());
    for bad in [vec![2, 3, 4], vec![1, 3, 5], vec![2, 5]] {
        let ctx = Var::constant(Tensor::randn(&bad, 2, 0, CPU).unwrap());
        let err = layer.forward(&x, &ctx).err().unwrap().to_string();
        assert!(
            err.contains("context") && err.contains(&format!("{bad:?}")),
            "{err}"
        );
    }
    let err = CrossAttention::new(&store.root().sub("b"), 8, 0, 2, 3, 4, 1e-6)
        .err()
        .unwrap();
    assert!(err.to_string().contains("context of 0"), "{err}");
}
