//! Gradients of the cross-attention U-Net's new pieces. GEGLU, the one new operation, against finite differences of
//! a naive f64 reference; then the whole network: every parameter receives a finite, non-zero gradient, and the
//! context (the prompt's states) receives one too, so a text encoder could be trained through it.

use diffuse_autograd::Var;
use diffuse_models::unet_condition::feed_forward::Geglu;
use diffuse_models::unet_condition::{UNet2DConditionConfig, UNet2DConditionModel};
use diffuse_nn::{Module, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// Naive GEGLU in f64: `[a, g] = x·Wᵀ + b`, out = a·GELU(g), GELU(g) = g·Φ(g) with Φ from erf.
fn geglu_f64(x: &[f64], w: &[f64], b: &[f64], rows: usize, dim: usize, inner: usize) -> Vec<f64> {
    let erf = |z: f64| libm::erf(z);
    let mut out = vec![0.0; rows * inner];
    for r in 0..rows {
        let proj = |o: usize| {
            b[o] + (0..dim)
                .map(|k| x[r * dim + k] * w[o * dim + k])
                .sum::<f64>()
        };
        for i in 0..inner {
            let (a, g) = (proj(i), proj(inner + i));
            out[r * inner + i] = a * g * 0.5 * (1.0 + erf(g / std::f64::consts::SQRT_2));
        }
    }
    out
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.to_vec().unwrap().iter().map(|&v| v as f64).collect()
}

/// ∂L/∂x, ∂L/∂W, ∂L/∂b of L = Σ out ∘ c (c fixed random weights) from autograd (f32), against central differences of
/// the f64 reference with h = 1e-6: their truncation error is O(h²) ≈ 1e-12 and their rounding error ≈ 1e-16/h =
/// 1e-10, so the differences are exact to f32's precision; the f32 gradient is a sum of at most 2·inner = 10 terms of
/// size ~1, so 1e-4 absolute plus 1e-4 relative bounds its rounding. Shapes: batch 2 of 3 tokens (rows off any tile),
/// dim 4, inner 5, and a single row of width 1.
#[test]
fn geglu_gradients_match_finite_differences_of_an_f64_reference() {
    for (shape, dim, inner, seed) in [(vec![2, 3], 4, 5, 1u64), (vec![1], 1, 1, 2)] {
        let store = ParamStore::new(seed, Device::Cpu);
        let geglu = Geglu::new(&store.root(), dim, inner).unwrap();
        let rows: usize = shape.iter().product();
        let mut x_shape = shape.clone();
        x_shape.push(dim);
        let mut out_shape = shape.clone();
        out_shape.push(inner);
        let x = Var::leaf(Tensor::randn(&x_shape, seed + 10, 0, Device::Cpu).unwrap());
        let c = Tensor::randn(&out_shape, seed + 20, 0, Device::Cpu).unwrap();
        let loss = geglu
            .forward(&x)
            .unwrap()
            .mul(&Var::constant(c.clone()))
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();

        let c64 = to_f64(&c);
        let w_var = &geglu.proj.weight;
        let b_var = geglu.proj.bias.as_ref().unwrap();
        let (x64, w64, b64) = (
            to_f64(x.tensor()),
            to_f64(w_var.tensor()),
            to_f64(b_var.tensor()),
        );
        let loss64 = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            geglu_f64(x, w, b, rows, dim, inner)
                .iter()
                .zip(&c64)
                .map(|(o, c)| o * c)
                .sum()
        };
        let h = 1e-6;
        let check = |name: &str, var: &Var, which: usize| {
            let autograd = grads.get(var).unwrap().to_vec().unwrap();
            let base = [x64.clone(), w64.clone(), b64.clone()];
            for (i, &g) in autograd.iter().enumerate() {
                let at = |delta: f64| {
                    let mut args = base.clone();
                    args[which][i] += delta;
                    loss64(&args[0], &args[1], &args[2])
                };
                let fd = (at(h) - at(-h)) / (2.0 * h);
                assert!(
                    (g as f64 - fd).abs() <= 1e-4 + 1e-4 * fd.abs(),
                    "{name}[{i}] (dim {dim}, inner {inner}): autograd {g}, finite difference {fd}"
                );
            }
        };
        check("x", &x, 0);
        check("proj.weight", w_var, 1);
        check("proj.bias", b_var, 2);
    }
}

#[test]
fn every_parameter_and_the_context_get_a_finite_gradient() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet_condition/linear_proj_heads_classes/config.json");
    let config =
        UNet2DConditionConfig::from_json_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let store = ParamStore::new(9, Device::Cpu);
    let model = UNet2DConditionModel::new(config, &store).unwrap();
    let x = Var::constant(Tensor::randn(&[2, 3, 8, 8], 1, 0, Device::Cpu).unwrap());
    let context = Var::leaf(Tensor::randn(&[2, 5, 6], 2, 0, Device::Cpu).unwrap());
    let target = Tensor::randn(&[2, 2, 8, 8], 3, 0, Device::Cpu).unwrap();
    let grads = model
        .forward(&x, &[10.0, 700.0], &context, Some(&[0, 2]))
        .unwrap()
        .sub(&Var::constant(target))
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, param) in store
        .params()
        .iter()
        .chain([("context".to_string(), context.clone())].iter())
    {
        let g = grads
            .get(param)
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let values = g.to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
        // Only the rows of the class embedding of labels outside the batch may be zero.
        if name != "class_embedding.weight" {
            assert!(values.iter().any(|&v| v != 0.0), "{name} is all zero");
        }
    }
}
