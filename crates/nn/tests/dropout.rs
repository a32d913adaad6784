//! Dropout: the mask is reproducible from (seed, offset), the kept values are scaled so the mean is preserved,
//! evaluation and p = 0 are identities, and p outside [0, 1) is refused. (Its gradient against finite differences
//! is in diffuse-autograd's rule tests.) Also the GELU layer against torch's values.

use diffuse_autograd::Var;
use diffuse_nn::{Dropout, Module, GELU};
use diffuse_tensor::{DType, Device, Tensor};

fn ones(n: usize) -> Var {
    Var::leaf(Tensor::ones(&[n], DType::F32, Device::Cpu).unwrap())
}

fn values(v: &Var) -> Vec<f32> {
    v.tensor().to_vec().unwrap()
}

#[test]
fn dropout_keeps_the_mean_and_a_fraction_one_minus_p() {
    // On x = 1 every output is 0 or 1/(1 − p), so the mean of n outputs is (kept/n)/(1 − p), an average of n
    // independent values with mean 1 and variance p/(1 − p). For n = 2^20 and p = 0.3 its standard deviation is
    // √(0.3/0.7/2^20) ≈ 6.4e-4; 5σ = 3.2e-3 (the draw is fixed by the seed, so the test is not flaky either way).
    let (n, p) = (1usize << 20, 0.3f32);
    let y = values(&Dropout::new(p, 42).unwrap().forward(&ones(n)).unwrap());
    let scale = 1.0 / (1.0 - p);
    assert!(y.iter().all(|&v| v == 0.0 || v == scale));
    let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    assert!((mean - 1.0).abs() < 3.2e-3, "mean {mean}");
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    // The kept fraction has standard deviation √(p(1 − p)/n) ≈ 4.5e-4; 5σ ≈ 2.2e-3.
    assert!((kept - 0.7).abs() < 2.2e-3, "kept {kept}");
}

#[test]
fn dropout_masks_repeat_for_equal_seed_and_offset_and_differ_otherwise() {
    let x = ones(4096);
    let mask = |seed, offset| values(&x.dropout(0.5, seed, offset).unwrap());
    assert_eq!(mask(7, 100), mask(7, 100));
    assert_ne!(mask(7, 100), mask(7, 4196));
    assert_ne!(mask(7, 100), mask(8, 100));
    // Element i uses stream element offset + i: shifting the offset by k shifts the mask by k.
    assert_eq!(mask(7, 100)[10..], mask(7, 110)[..4086]);

    // The layer advances its offset by the elements it used, so consecutive calls differ and a restored offset
    // repeats them.
    let layer = Dropout::new(0.5, 7).unwrap();
    let first = values(&layer.forward(&x).unwrap());
    let second = values(&layer.forward(&x).unwrap());
    assert_eq!(layer.offset(), 2 * 4096);
    assert_ne!(first, second);
    layer.set_offset(4096);
    assert_eq!(values(&layer.forward(&x).unwrap()), second);
    assert_eq!(first, mask(7, 0));
}

#[test]
fn dropout_in_evaluation_mode_or_with_p_zero_is_the_identity() {
    let x = Var::leaf(Tensor::randn(&[3, 5], 1, 0, Device::Cpu).unwrap());
    let layer = Dropout::new(0.5, 3).unwrap();
    layer.set_training(false);
    assert!(!layer.is_training());
    assert_eq!(values(&layer.forward(&x).unwrap()), values(&x));
    assert_eq!(layer.offset(), 0);
    let zero = Dropout::new(0.0, 3).unwrap();
    let y = zero.forward(&x).unwrap();
    assert_eq!(values(&y), values(&x));
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![1.0; 15]);
}

#[test]
fn dropout_refuses_p_outside_zero_to_one() {
    for p in [1.0, 1.5, -0.1, f32::NAN] {
        let err = Dropout::new(p, 0).err().expect("accepted").to_string();
        assert!(err.contains("[0, 1)"), "p = {p}: {err}");
        let err = ones(3).dropout(p, 0, 0).unwrap_err().to_string();
        assert!(err.contains("[0, 1)"), "p = {p}: {err}");
    }
}

#[test]
fn gelu_layer_matches_torch_exact_gelu() {
    let x = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0];
    // torch.nn.functional.gelu in float64 (torch 2.15).
    let torch = [
        -0.004_049_694_094_890_31,
        -0.158_655_253_931_457_02,
        -0.154_268_769_362_993_44,
        0.0,
        0.345_731_230_637_006_56,
        0.841_344_746_068_543,
        2.995_950_305_905_11,
    ];
    let y = GELU
        .forward(&Var::constant(
            Tensor::from_slice(&x, &[7], Device::Cpu).unwrap(),
        ))
        .unwrap();
    // f32 GELU of values below 3 in magnitude: a few ulps of 3 (2^-22 ≈ 2.4e-7) plus the erf approximation's error.
    for (got, want) in values(&y).iter().zip(torch) {
        assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
    }
}
