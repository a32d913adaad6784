//! EMA, learning-rate schedules, gradient clipping and AdamW state, each against a hand computation or a plain loop.

use diffuse_autograd::Var;
use diffuse_nn::{
    clip_grad_norm, ema_decay, AdamW, Ema, EmaWarmup, Init, Linear, LrSchedule, Module, ParamStore,
};
use diffuse_tensor::{Device, Tensor};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn ema_decay_follows_the_diffusers_fraction_and_power_forms() {
    let frac = EmaWarmup::Fraction;
    assert_eq!(ema_decay(1, 0.9999, frac), 0.0);
    // n = 2: k = 1, (1 + 1)/(10 + 1) = 2/11.
    assert!(close(ema_decay(2, 0.9999, frac), 2.0 / 11.0));
    // n = 91: k = 90, 91/100.
    assert!(close(ema_decay(91, 0.9999, frac), 0.91));
    // Capped: (1 + k)/(10 + k) > 0.9 once k > 80.
    assert_eq!(ema_decay(1000, 0.9, frac), 0.9);
    let power = EmaWarmup::Power {
        inv_gamma: 1.0,
        power: 0.75,
    };
    // n = 17: k = 16, 1 − 17^(−3/4).
    assert!(close(ema_decay(17, 0.9999, power), 1.0 - 17f64.powf(-0.75)));
    assert_eq!(ema_decay(1, 0.9999, power), 0.0);
}

#[test]
fn ema_matches_a_plain_loop_reference_bit_for_bit() {
    let store = ParamStore::new(3, Device::Cpu);
    let w = store
        .root()
        .param("w", &[5], Init::Normal { std: 1.0 })
        .unwrap();
    let mut ema = Ema::new(&store, 0.95, EmaWarmup::Fraction).unwrap();
    let mut reference: Vec<f32> = w.tensor().to_vec().unwrap();
    for n in 1..=40u64 {
        // Move the live weights somewhere new.
        let live: Vec<f32> = (0..5).map(|i| ((n * 7 + i) as f32 * 0.37).sin()).collect();
        w.tensor()
            .assign(&Tensor::from_vec(live.clone(), &[5], Device::Cpu).unwrap())
            .unwrap();
        let decay = ema.update().unwrap();
        let k = (n - 1) as f64;
        let want = if n == 1 {
            0.0
        } else {
            ((1.0 + k) / (10.0 + k)).min(0.95)
        };
        assert_eq!(decay, want);
        let one_minus = (1.0 - want) as f32;
        for (s, &p) in reference.iter_mut().zip(&live) {
            *s -= one_minus * (*s - p);
        }
        let got = ema.store().get("w").unwrap().tensor().to_vec().unwrap();
        assert_eq!(got, reference, "update {n}");
    }
    assert_eq!(ema.updates(), 40);
}

#[test]
fn lr_schedules_match_their_formulas() {
    let c = LrSchedule::Constant { lr: 0.1 };
    assert_eq!(c.lr_at(0), 0.1);
    assert_eq!(c.lr_at(1_000_000), 0.1);
    let w = LrSchedule::LinearWarmup { lr: 1.0, warmup: 4 };
    let got: Vec<f32> = (0..6).map(|s| w.lr_at(s)).collect();
    assert_eq!(got, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    let cos = LrSchedule::Cosine {
        lr: 1.0,
        warmup: 2,
        total: 12,
        floor: 0.1,
    };
    assert_eq!(cos.lr_at(0), 0.5);
    assert_eq!(cos.lr_at(1), 1.0);
    assert_eq!(cos.lr_at(2), 1.0);
    // Half way through the decay (s = 7, progress 1/2): floor + 0.9·½(1 + cos π/2) = 0.55.
    assert!((cos.lr_at(7) - 0.55).abs() < 1e-7);
    // s = 4, progress 1/5: 0.1 + 0.9·½(1 + cos(π/5)).
    let want = 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI / 5.0).cos());
    assert!((f64::from(cos.lr_at(4)) - want).abs() < 1e-7);
    assert!((cos.lr_at(12) - 0.1).abs() < 1e-7);
    assert!((cos.lr_at(100) - 0.1).abs() < 1e-7);
}

/// Gradients of a tiny linear model, with known values: loss = Σ (W·x)·k for fixed x and k.
fn linear_grads(scale: f32) -> (ParamStore, diffuse_autograd::Gradients, Vec<Var>) {
    let store = ParamStore::new(9, Device::Cpu);
    let lin = Linear::new(&store.root().sub("lin"), 3, 2, true).unwrap();
    let x = Var::constant(Tensor::from_vec(vec![1.0, -2.0, 0.5], &[1, 3], Device::Cpu).unwrap());
    let k = Var::constant(
        Tensor::from_vec(vec![3.0 * scale, -4.0 * scale], &[1, 2], Device::Cpu).unwrap(),
    );
    let loss = lin.forward(&x).unwrap().mul(&k).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let params = vec![lin.weight.clone(), lin.bias.clone().unwrap()];
    (store, grads, params)
}

#[test]
fn clipping_returns_the_global_norm_and_scales_every_gradient_by_one_factor() {
    let (_store, mut grads, params) = linear_grads(1.0);
    let before: Vec<Vec<f32>> = params
        .iter()
        .map(|p| grads.get(p).unwrap().to_vec().unwrap())
        .collect();
    // ∂W = k ⊗ x = [[3, −6, 1.5], [−4, 8, −2]], ∂b = [3, −4]: Σ g² = 9+36+2.25+16+64+4+9+16 = 156.25, norm 12.5.
    let norm = clip_grad_norm(&mut grads, 2.5).unwrap();
    assert_eq!(norm, 12.5);
    let coef = (2.5f64 / (12.5 + 1e-6)) as f32;
    for (p, b) in params.iter().zip(&before) {
        let after = grads.get(p).unwrap().to_vec().unwrap();
        let want: Vec<f32> = b.iter().map(|&g| g * coef).collect();
        assert_eq!(after, want);
    }
}

#[test]
fn clipping_leaves_gradients_below_the_bound_untouched() {
    let (_store, mut grads, params) = linear_grads(0.01);
    let before: Vec<Vec<f32>> = params
        .iter()
        .map(|p| grads.get(p).unwrap().to_vec().unwrap())
        .collect();
    let norm = clip_grad_norm(&mut grads, 1.0).unwrap();
    assert!((norm - 0.125).abs() < 1e-6);
    for (p, b) in params.iter().zip(&before) {
        assert_eq!(&grads.get(p).unwrap().to_vec().unwrap(), b);
    }
    assert!(clip_grad_norm(&mut grads, 0.0).is_err());
}

#[test]
fn adamw_state_round_trips_so_training_continues_identically() {
    let dir = std::env::temp_dir().join(format!("diffuse-adamw-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("optimizer.safetensors");
    let run = |steps: usize, save_after: Option<usize>, load: bool| -> Vec<f32> {
        let (store, _, params) = linear_grads(1.0);
        let mut opt = AdamW::for_store(&store, AdamW::default_config(0.1)).unwrap();
        if load {
            store.load(dir.join("params.safetensors")).unwrap();
            opt.load_state(&path).unwrap();
        }
        let lin_w = params[0].clone();
        for i in 0..steps {
            let x = Var::constant(
                Tensor::from_vec(vec![1.0, -2.0, 0.5], &[1, 3], Device::Cpu).unwrap(),
            );
            let loss = x
                .matmul(&lin_w.transpose(0, 1).unwrap())
                .unwrap()
                .square()
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads).unwrap();
            if save_after == Some(i + 1) {
                store.save(dir.join("params.safetensors")).unwrap();
                opt.save_state(&path).unwrap();
            }
        }
        lin_w.tensor().to_vec().unwrap()
    };
    let straight = run(6, Some(3), false);
    let resumed = run(3, None, true);
    assert_eq!(straight, resumed);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adamw_state_refuses_a_file_of_another_model() {
    let dir = std::env::temp_dir().join(format!("diffuse-adamw-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("optimizer.safetensors");
    let (store, _, _) = linear_grads(1.0);
    AdamW::for_store(&store, AdamW::default_config(0.1))
        .unwrap()
        .save_state(&path)
        .unwrap();
    let other = ParamStore::new(1, Device::Cpu);
    Linear::new(&other.root().sub("lin"), 3, 4, true).unwrap();
    let err = AdamW::for_store(&other, AdamW::default_config(0.1))
        .unwrap()
        .load_state(&path)
        .unwrap_err();
    assert!(err.to_string().contains("exp_avg.lin.bias"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
