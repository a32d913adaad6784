//! Dynamic loss scaling against PyTorch's GradScaler rules, worked by hand: scaled gradients unscale exactly,
//! an overflow skips the step and halves the scale, and the scale doubles after `growth_interval` good steps.

use diffuse_autograd::{Gradients, Var};
use diffuse_nn::{LossScaler, Sgd, SgdConfig};
use diffuse_tensor::{Device, Tensor};

fn param(values: &[f32]) -> Var {
    Var::leaf(Tensor::from_slice(values, &[values.len()], Device::Cpu).unwrap())
}

/// Gradients of `scaler.scale_loss(Σ x²)`: 2x·S.
fn scaled_grads(scaler: &LossScaler, x: &Var) -> Gradients {
    let loss = x.square().unwrap().sum_all().unwrap();
    scaler.scale_loss(&loss).unwrap().backward().unwrap()
}

fn sgd(x: &Var) -> Sgd {
    let config = SgdConfig {
        lr: 0.25,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    Sgd::new([x.clone()], config).unwrap()
}

#[test]
fn unscaled_gradients_equal_those_of_the_unscaled_loss() {
    // S = 2¹⁶ is a power of two: scaling and unscaling are exact in binary floating point.
    let scaler = LossScaler::default();
    assert_eq!(scaler.scale(), 65536.0);
    let x = param(&[0.5, -1.5, 3.0e-3]);
    let mut grads = scaled_grads(&scaler, &x);
    assert_eq!(
        grads.get(&x).unwrap().to_vec().unwrap(),
        vec![65536.0, -196608.0, 393.216]
    );
    assert!(scaler.unscale(&mut grads).unwrap());
    assert_eq!(
        grads.get(&x).unwrap().to_vec().unwrap(),
        vec![1.0, -3.0, 6.0e-3]
    );
}

#[test]
fn an_overflowing_step_is_skipped_and_halves_the_scale() {
    let mut scaler = LossScaler::new(65536.0, 3).unwrap();
    let x = param(&[1.0, 3.0e33]); // 2·3e33·2¹⁶ ≈ 3.9e38 > f32::MAX: the scaled gradient is +∞.
    let mut opt = sgd(&x);
    scaler.update(true);
    assert_eq!(scaler.good_steps(), 1);
    let mut grads = scaled_grads(&scaler, &x);
    assert!(!scaler.step(&mut opt, &mut grads).unwrap());
    assert_eq!(x.tensor().to_vec().unwrap(), vec![1.0, 3.0e33]);
    assert_eq!((scaler.scale(), scaler.good_steps()), (32768.0, 0));
    // At half the scale the gradient fits (≈ 2e38): the step is taken with the true gradient 2x.
    let mut grads = scaled_grads(&scaler, &x);
    assert!(scaler.step(&mut opt, &mut grads).unwrap());
    assert_eq!(x.tensor().to_vec().unwrap(), vec![0.5, 1.5e33]);
    assert_eq!((scaler.scale(), scaler.good_steps()), (32768.0, 1));
}

#[test]
fn a_nan_gradient_also_skips_the_step() {
    let mut scaler = LossScaler::new(4.0, 10).unwrap();
    let x = param(&[f32::NAN, 1.0]);
    let mut opt = sgd(&x);
    let mut grads = scaled_grads(&scaler, &x);
    assert!(!scaler.step(&mut opt, &mut grads).unwrap());
    assert_eq!(x.tensor().to_vec().unwrap()[1], 1.0);
    assert_eq!(scaler.scale(), 2.0);
}

#[test]
fn the_scale_doubles_after_growth_interval_good_steps_in_a_row() {
    // Interval 3 from S = 8: good, good, overflow (→ 4, count reset), good ×3 (→ 8), good ×3 (→ 16).
    let mut scaler = LossScaler::new(8.0, 3).unwrap();
    let mut seen = Vec::new();
    for finite in [true, true, false, true, true, true, true, true, true] {
        scaler.update(finite);
        seen.push((scaler.scale(), scaler.good_steps()));
    }
    assert_eq!(
        seen,
        vec![
            (8.0, 1),
            (8.0, 2),
            (4.0, 0),
            (4.0, 1),
            (4.0, 2),
            (8.0, 0),
            (8.0, 1),
            (8.0, 2),
            (16.0, 0)
        ]
    );
}

#[test]
fn a_scaler_refuses_a_non_positive_scale_or_a_zero_interval() {
    for (scale, interval) in [(0.0, 10), (-1.0, 10), (f32::INFINITY, 10), (1.0, 0)] {
        let err = LossScaler::new(scale, interval).unwrap_err().to_string();
        assert!(err.contains("LossScaler"), "{err}");
    }
}

#[test]
fn the_scale_stops_growing_before_it_would_overflow() {
    // Growing from the largest power of two below f32::MAX would give infinity, which halving never undoes.
    let top = 2f32.powi(127);
    let mut scaler = LossScaler::new(top, 1).unwrap();
    scaler.update(true);
    assert_eq!(scaler.scale(), top);
    scaler.update(false);
    assert_eq!(scaler.scale(), top / 2.0);
    scaler.update(true);
    assert_eq!(scaler.scale(), top);
}
