//! The score samplers against a Gaussian mixture whose score is exact at every time of every SDE: Langevin dynamics
//! at one noise level converges to the smoothed mixture, and annealed Langevin, predictor–corrector, the reverse
//! SDE and the probability-flow ODE all reproduce the data's moments.

#[path = "common/mixture.rs"]
mod mixture;

use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::sde::{
    annealed_langevin, langevin_at, predictor_corrector, probability_flow, Corrector,
    LangevinOptions, OdeOptions, PcOptions, PhiloxNoise, Predictor, Sde, Tolerances,
};
use diffuse_tensor::{Device, Tensor};
use mixture::{assert_moments, Mixture, DIM};

const BATCH: usize = 4000;

fn sdes() -> [Sde; 3] {
    [
        Sde::ve(0.01, 20.0).unwrap(),
        Sde::vp(0.1, 20.0).unwrap(),
        Sde::sub_vp(0.1, 20.0).unwrap(),
    ]
}

/// Unadjusted Langevin at a fixed σ = 0.5 of the VE SDE, from the prior (σ_max = 10) to the smoothed mixture.
/// Its stationary law is biased by the step: for a Gaussian of variance v the chain's variance is
/// v/(1 − δ/(4v)), 0.4 % high here (v ≥ 0.34, δ = 0.005), far inside the variance's standard error (2 %). Mixing
/// takes ~v/δ steps per coordinate and a few hundred to move mass between the modes; 3000 steps leave the start
/// behind.
#[test]
fn langevin_at_a_fixed_noise_level_converges_to_the_smoothed_mixture() {
    let sde = Sde::ve(0.01, 10.0).unwrap();
    let t = (0.5f64 / 0.01).ln() / (10.0f64 / 0.01).ln();
    assert!((sde.std(t) - 0.5).abs() < 1e-12);
    let model = Mixture::new(sde.clone());
    let mut noise = PhiloxNoise::new(3);
    let x = sde
        .prior_sample(&[BATCH, DIM], &mut noise, Device::Cpu)
        .unwrap();
    let x = langevin_at(&model, x, t, 0.005, 3000, &mut noise, Condition::NONE).unwrap();
    assert_moments("Langevin at σ = 0.5", &x, model.moments(t));
}

fn pc(sde: &Sde, predictor: Predictor, corrector: Corrector, steps: usize, seed: u64) -> Tensor {
    let model = Mixture::new(sde.clone());
    let options = PcOptions {
        steps,
        predictor,
        corrector,
        eps: 1e-3,
        denoise: true,
    };
    let x = predictor_corrector(
        &model,
        &options,
        &[BATCH, DIM],
        Device::Cpu,
        &mut PhiloxNoise::new(seed),
        Condition::NONE,
    )
    .unwrap();
    assert_eq!(model.evaluations.get(), options.model_evaluations() * BATCH);
    x
}

/// Predictor-only (the reverse SDE, discretised two ways) and predictor–corrector sampling end at the data's
/// moments (the marginal at ε = 10⁻³ differs from the data by s(ε)² ≤ 10⁻⁴ in variance, invisible here).
/// Observed with 4000 samples: every mean and variance within 2 standard errors. For sub-VP the reverse-diffusion
/// predictor is Euler–Maruyama (the SDE has no discrete form of its own), so those two rows coincide.
#[test]
fn reverse_sde_and_predictor_corrector_samplers_reproduce_the_mixture_moments() {
    let langevin = Corrector::Langevin {
        snr: 0.16,
        steps: 1,
    };
    for sde in sdes() {
        let want = Mixture::new(sde.clone()).moments(0.0);
        for (predictor, corrector, steps) in [
            (Predictor::ReverseDiffusion, Corrector::None, 200),
            (Predictor::EulerMaruyama, Corrector::None, 200),
            (Predictor::ReverseDiffusion, langevin, 100),
            (Predictor::EulerMaruyama, langevin, 100),
        ] {
            let x = pc(&sde, predictor, corrector, steps, 7);
            assert_moments(
                &format!(
                    "{} {predictor:?} + {corrector:?}, {steps} steps",
                    sde.name()
                ),
                &x,
                want,
            );
        }
    }
}

/// Corrector-only sampling (the paper's "C2000", here C1000): one Langevin step at each of 1000 times, annealed
/// from the prior. At r = 0.16 a step closes about 2r² = 5 % of the gap between the chain's variance and the
/// target's; the target shrinks by ln(σ_max²/σ_min²)/N per time, 1.5 % here. With 200 times of 2 steps (3.8 % per
/// step) the chain falls behind and ends at variance 20 instead of 0.88 (observed).
#[test]
fn corrector_only_sampling_reproduces_the_mixture_moments() {
    let sde = Sde::ve(0.01, 20.0).unwrap();
    let want = Mixture::new(sde.clone()).moments(0.0);
    let corrector = Corrector::Langevin {
        snr: 0.16,
        steps: 1,
    };
    let x = pc(&sde, Predictor::None, corrector, 1000, 11);
    assert_moments("VE corrector only", &x, want);
}

/// NCSN's sampler on the VE SDE: 20 geometric levels from σ_max = 20 to σ_min = 0.01, 100 steps each, step size
/// ε·σ_i²/σ_L², then the Tweedie denoising step. ε is the step at σ_min: 2·10⁻⁵ is Song & Ermon's value for
/// images; for this mixture, whose smallest variance is 0.09, a step of 10⁻⁵·σ_i²/σ_min² would leave the chain
/// frozen at the last levels, which is fine because the earlier levels have mixed it.
#[test]
fn annealed_langevin_reproduces_the_mixture_moments() {
    let sde = Sde::ve(0.01, 20.0).unwrap();
    let model = Mixture::new(sde.clone());
    let options = LangevinOptions {
        levels: 20,
        steps_per_level: 100,
        step_size: 2e-5,
        t_min: 1e-5,
        denoise: true,
    };
    let x = annealed_langevin(
        &model,
        &options,
        &[BATCH, DIM],
        Device::Cpu,
        &mut PhiloxNoise::new(5),
        Condition::NONE,
    )
    .unwrap();
    assert_eq!(model.evaluations.get(), options.model_evaluations() * BATCH);
    assert_moments("annealed Langevin", &x, model.moments(0.0));
}

/// The probability-flow ODE carries prior samples to the data's moments for each SDE, at the paper's tolerances.
#[test]
fn probability_flow_ode_reproduces_the_mixture_moments() {
    for sde in sdes() {
        let model = Mixture::new(sde.clone());
        let options = OdeOptions {
            tolerances: Tolerances {
                rtol: 1e-5,
                atol: 1e-5,
            },
            eps: 1e-3,
            denoise: true,
        };
        let (x, stats) = probability_flow(
            &model,
            &options,
            &[BATCH, DIM],
            Device::Cpu,
            &mut PhiloxNoise::new(13),
            Condition::NONE,
        )
        .unwrap();
        eprintln!("{}: {stats:?}", sde.name());
        assert_eq!(model.evaluations.get(), stats.nfe * BATCH);
        assert_eq!(
            stats.nfe,
            6 * (stats.accepted_steps + stats.rejected_steps) + 2 + 1,
            "six evaluations per step, two to start, one to denoise"
        );
        assert_moments(
            &format!("{} probability flow", sde.name()),
            &x,
            model.moments(0.0),
        );
    }
}
