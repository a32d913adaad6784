//! The forward process against its closed form, computed here independently in f64.

use diffuse_diffusion::forward::q_sample;
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_tensor::{Device, Tensor};

#[test]
fn q_sample_matches_closed_form_per_sample_timestep() {
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap();
    let x0 = Tensor::from_vec(
        (0..24).map(|i| (i as f32 - 12.0) / 12.0).collect(),
        &[3, 2, 2, 2],
        Device::Cpu,
    )
    .unwrap();
    let timesteps = [0, 499, 999];
    let (x_t, eps) = q_sample(&schedule, &x0, &timesteps, 3, 0).unwrap();
    let (x, xt, e) = (
        x0.to_vec().unwrap(),
        x_t.to_vec().unwrap(),
        eps.to_vec().unwrap(),
    );
    for (i, ((&x, &xt), &e)) in x.iter().zip(&xt).zip(&e).enumerate() {
        let t = timesteps[i / 8];
        // ᾱ_t = Π (1 − β_s) with β linear from 1e-4 to 0.02, recomputed here.
        let ab: f64 = (0..=t)
            .map(|s| 1.0 - (1e-4 + (0.02 - 1e-4) * s as f64 / 999.0))
            .product();
        let want = ab.sqrt() * f64::from(x) + (1.0 - ab).sqrt() * f64::from(e);
        assert!(
            (f64::from(xt) - want).abs() < 2e-6,
            "element {i} at t={t}: {xt} vs {want}"
        );
    }
    // A timestep past the schedule is an error, not a panic.
    assert!(q_sample(&schedule, &x0, &[0, 1, 1000], 3, 0).is_err());
}
