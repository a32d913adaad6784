//! `Var::packed_self_attention` against finite differences (see `common`) and against the composition it replaces:
//! three slices of the projection split into heads, `Var::attention`, and the heads merged back. The two run the
//! same attention kernel on the same contiguous operands and move the other values without arithmetic, so values and
//! gradients must agree exactly (the composition's gradient adds the zero padding of the other two slices: exact).

mod common;

use common::*;
use diffuse_autograd::Var;
use diffuse_tensor::Result;

/// The unfused multi-head self-attention over `[q | k | v]` (N, L, 3·H·d).
fn composed(qkv: &Var, heads: usize, scale: f32) -> Result<Var> {
    let (n, len, width) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]);
    let inner = width / 3;
    let d = inner / heads;
    let split = |part: usize| -> Result<Var> {
        qkv.narrow(2, part * inner, inner)?
            .reshape(&[n, len, heads, d])?
            .permute(&[0, 2, 1, 3])?
            .reshape(&[n * heads, len, d])
    };
    split(0)?
        .attention(&split(1)?, &split(2)?, scale)?
        .reshape(&[n, heads, len, d])?
        .permute(&[0, 2, 1, 3])?
        .reshape(&[n, len, inner])
}

#[test]
fn packed_self_attention_matches_finite_differences() {
    // batch 2, 3 tokens, 2 heads of 2
    let qkv = randn(&[2, 3, 12], 31);
    check_gradients(&[&qkv], |v| v[0].packed_self_attention(2, 0.7));
}

#[test]
fn packed_self_attention_equals_the_composition_it_replaces() {
    // (batch, tokens, heads, head size): all ones; one head and one token; tokens off the kernel's 48-row tiles at
    // the DiT's 49
    for (case, &(n, len, heads, d)) in [(1, 1, 1, 1), (2, 5, 3, 4), (1, 49, 2, 8), (3, 50, 1, 5)]
        .iter()
        .enumerate()
    {
        let input = randn(&[n, len, 3 * heads * d], 40 + case as u64);
        let w = Var::constant(randn(&[n, len, heads * d], 60 + case as u64));
        let scale = 1.0 / (d as f32).sqrt();
        let run = |f: &dyn Fn(&Var) -> Result<Var>| {
            let qkv = Var::leaf(input.clone());
            let out = f(&qkv).unwrap();
            let grads = out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
            (
                out.tensor().to_vec().unwrap(),
                grads.get(&qkv).unwrap().to_vec().unwrap(),
            )
        };
        let fused = run(&|x| x.packed_self_attention(heads, scale));
        let unfused = run(&|x| composed(x, heads, scale));
        assert_eq!(fused.0, unfused.0, "case {case}: outputs differ");
        assert_eq!(fused.1, unfused.1, "case {case}: gradients differ");
    }
}

#[test]
fn packed_self_attention_refuses_a_projection_that_does_not_split() {
    let err = |shape: &[usize], heads: usize| {
        Var::leaf(randn(shape, 1))
            .packed_self_attention(heads, 1.0)
            .err()
            .unwrap_or_else(|| panic!("{shape:?} in {heads} heads was accepted"))
            .to_string()
    };
    assert!(err(&[4, 12], 2).contains("(N, L, 3·heads·head_dim)"));
    assert!(err(&[1, 4, 10], 2).contains("multiple of 3·heads = 6"));
    assert!(err(&[1, 4, 12], 0).contains("do not split"));
    assert!(err(&[1, 4, 0], 1).contains("do not split"));
}
