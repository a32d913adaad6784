//! SGD with momentum against a hand-computed f64 loop and against numbers from `torch.optim.SGD`, and its saved
//! state against an uninterrupted run.

use diffuse_autograd::{Gradients, Var};
use diffuse_nn::{Init, ParamStore, Sgd, SgdConfig};
use diffuse_tensor::{Device, Tensor};

const P0: [f32; 5] = [0.5, -1.25, 2.0, 0.0, -0.375];
const GRADS: [[f32; 5]; 3] = [
    [0.25, -0.5, 1.0, 2.0, -0.125],
    [-1.0, 0.75, 0.5, 0.0, 0.25],
    [0.125, 0.125, -2.0, 1.5, -0.75],
];
const CONFIG: SgdConfig = SgdConfig {
    lr: 0.1,
    momentum: 0.9,
    weight_decay: 0.01,
};

/// The gradient of `Σ p·g` with respect to `p` is exactly `g`: a backward pass that hands the optimiser `g`.
fn gradients_equal_to(p: &Var, g: &[f32]) -> Gradients {
    let g = Var::constant(Tensor::from_slice(g, p.shape(), Device::Cpu).unwrap());
    p.mul(&g).unwrap().sum_all().unwrap().backward().unwrap()
}

fn run_three_steps() -> Vec<Vec<f32>> {
    let p = Var::leaf(Tensor::from_slice(&P0, &[5], Device::Cpu).unwrap());
    let mut opt = Sgd::new([p.clone()], CONFIG).unwrap();
    GRADS
        .iter()
        .map(|g| {
            opt.step(&gradients_equal_to(&p, g)).unwrap();
            p.tensor().to_vec().unwrap()
        })
        .collect()
}

#[test]
fn sgd_steps_match_a_hand_computed_loop() {
    let (lr, mu, wd) = (0.1f64, 0.9f64, 0.01f64);
    let mut p: Vec<f64> = P0.iter().map(|&x| f64::from(x)).collect();
    let mut b = [0.0f64; 5];
    for (step, (got, g)) in run_three_steps().iter().zip(&GRADS).enumerate() {
        for i in 0..5 {
            let g = f64::from(g[i]) + wd * p[i];
            // PyTorch's first step sets the buffer to g; later ones blend.
            b[i] = if step == 0 { g } else { mu * b[i] + g };
            p[i] -= lr * b[i];
        }
        // Three steps of a handful of f32 roundings each on values below 4: 1e-6 is ~20 ulps.
        for (i, (&x, &r)) in got.iter().zip(&p).enumerate() {
            assert!(
                (f64::from(x) - r).abs() < 1e-6,
                "step {step} element {i}: {x} vs {r}"
            );
        }
    }
}

#[test]
fn sgd_steps_match_torch_optim_sgd() {
    // torch 2.15, `torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)`, the parameter after each step
    // with `p.grad` set to the rows of GRADS.
    let torch: [[f64; 5]; 3] = [
        [
            0.474_500_0,
            -1.198_750_0,
            1.898_000_0,
            -0.200_000_0,
            -0.362_125_0,
        ],
        [
            0.551_075_5,
            -1.226_426_2,
            1.754_302_0,
            -0.379_800_0,
            -0.375_175_4,
        ],
        [
            0.606_942_4,
            -1.262_608_4,
            1.823_219_5,
            -0.691_240_2,
            -0.311_545_6,
        ],
    ];
    // Both evaluate the same f32 operations in the same order; the figures above carry 7 decimals, so 2e-7 is the
    // printing resolution plus one rounding.
    for (step, (got, want)) in run_three_steps().iter().zip(&torch).enumerate() {
        for (i, (&x, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(x) - w).abs() <= 2e-7,
                "step {step} element {i}: {x} vs torch {w}"
            );
        }
    }
}

#[test]
fn sgd_skips_parameters_without_a_gradient() {
    let store = ParamStore::new(5, Device::Cpu);
    let a = store.root().param("a", &[3], Init::Constant(1.0)).unwrap();
    let b = store.root().param("b", &[2], Init::Constant(2.0)).unwrap();
    let mut opt = Sgd::for_store(&store, CONFIG).unwrap();
    opt.step(&gradients_equal_to(&a, &[1.0, 1.0, 1.0])).unwrap();
    assert_eq!(b.tensor().to_vec().unwrap(), vec![2.0, 2.0]);
    assert_ne!(a.tensor().to_vec().unwrap(), vec![1.0; 3]);
}

#[test]
fn sgd_refuses_negative_or_non_finite_hyper_parameters() {
    let p = Var::leaf(Tensor::from_slice(&P0, &[5], Device::Cpu).unwrap());
    for (config, needle) in [
        (SgdConfig { lr: -0.1, ..CONFIG }, "learning rate"),
        (
            SgdConfig {
                momentum: f32::NAN,
                ..CONFIG
            },
            "momentum",
        ),
        (
            SgdConfig {
                weight_decay: -1.0,
                ..CONFIG
            },
            "weight decay",
        ),
    ] {
        let err = Sgd::new([p.clone()], config)
            .err()
            .expect("accepted")
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn sgd_state_round_trips_so_training_continues_identically() {
    let dir = std::env::temp_dir().join(format!("diffuse-sgd-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (params, state) = (dir.join("params.safetensors"), dir.join("sgd.safetensors"));
    let run = |steps: std::ops::Range<usize>, save_after: Option<usize>, load: bool| {
        let store = ParamStore::new(9, Device::Cpu);
        let w = store.root().param("w", &[5], Init::Constant(0.0)).unwrap();
        w.tensor()
            .assign(&Tensor::from_slice(&P0, &[5], Device::Cpu).unwrap())
            .unwrap();
        let mut opt = Sgd::for_store(&store, CONFIG).unwrap();
        if load {
            store.load(&params).unwrap();
            opt.load_state(&state).unwrap();
            assert_eq!(opt.steps(), 2);
        }
        for i in steps {
            opt.step(&gradients_equal_to(&w, &GRADS[i])).unwrap();
            if save_after == Some(i + 1) {
                store.save(&params).unwrap();
                opt.save_state(&state).unwrap();
            }
        }
        w.tensor().to_vec().unwrap()
    };
    let straight = run(0..3, Some(2), false);
    let resumed = run(2..3, None, true);
    assert_eq!(straight, resumed);

    let other = ParamStore::new(1, Device::Cpu);
    other.root().param("v", &[5], Init::Constant(0.0)).unwrap();
    let err = Sgd::for_store(&other, CONFIG)
        .unwrap()
        .load_state(&state)
        .unwrap_err();
    assert!(err.to_string().contains("momentum_buffer.v"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
