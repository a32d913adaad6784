//! The guidance scale's convention, as `docs/diffusion.md` states it: diffuse (like diffusers) returns
//! `ε_u + w·(ε_c − ε_u)`, so `w = 1` is the plain conditional model and `w = 0` the unconditional one; Ho & Salimans
//! write `(1 + w')·ε_c − w'·ε_u`, which is the same output at `w' = w − 1`.

use diffuse_diffusion::sampler::{ClassifierFreeGuidance, Condition, Denoiser, Prediction};
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};

/// ε_c = 2x + class, ε_u = 2x + null class (the label is the only difference).
struct LabelledOutput;

impl Denoiser for LabelledOutput {
    fn predict(&self, x_t: &Tensor, _t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        let class = cond.class.unwrap_or(&[]);
        let per = x_t.numel() / class.len().max(1);
        let x = x_t.to_vec()?;
        let out = x
            .iter()
            .enumerate()
            .map(|(i, v)| 2.0 * v + class[i / per] as f32)
            .collect();
        Ok(Tensor::from_vec(out, x_t.shape(), x_t.device())?)
    }
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

fn guided(scale: f64, x: &Tensor) -> Vec<f32> {
    let model = LabelledOutput;
    let cfg = ClassifierFreeGuidance {
        model: &model,
        scale,
        null_class: Some(9),
        null_context: None,
    };
    cfg.predict(x, &[3.0, 3.0], Condition::class(&[1, 4]))
        .unwrap()
        .to_vec()
        .unwrap()
}

#[test]
fn scale_one_is_the_conditional_model_and_scale_zero_the_unconditional_one() {
    let x = Tensor::from_vec(vec![0.5, -1.0, 0.25, 2.0], &[2, 2], Device::Cpu).unwrap();
    assert_eq!(guided(1.0, &x), vec![2.0, -1.0, 4.5, 8.0]);
    assert_eq!(guided(0.0, &x), vec![10.0, 7.0, 9.5, 13.0]);
}

#[test]
fn scale_w_equals_ho_and_salimans_with_w_minus_one() {
    let x = Tensor::from_vec(vec![0.5, -1.0, 0.25, 2.0], &[2, 2], Device::Cpu).unwrap();
    for w in [1.5f64, 2.0, 7.5] {
        let theirs = w - 1.0;
        let want: Vec<f32> = x
            .to_vec()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (c, u) = (2.0 * v as f64 + [1.0, 4.0][i / 2], 2.0 * v as f64 + 9.0);
                ((1.0 + theirs) * c - theirs * u) as f32
            })
            .collect();
        // Small integers and halves: exact in f32 apart from the final rounding of the combination.
        for (g, w_) in guided(w, &x).iter().zip(&want) {
            assert!((g - w_).abs() <= 1e-5, "w = {w}: {g} vs {w_}");
        }
    }
}
