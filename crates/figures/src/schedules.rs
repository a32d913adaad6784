//! ᾱ_t and log-SNR = ln(ᾱ_t/(1 − ᾱ_t)) of every beta schedule at T = 1000, with the parameters each is used with
//! (DDPM's 1e-4..0.02 for linear and sigmoid, Stable Diffusion's 0.00085..0.012 for scaled linear), straight from
//! `NoiseSchedule`.

use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_plot::{Axis, Chart, Figure, Legend, Series};
use std::path::Path;

/// The (β_start, β_end) a schedule is usually run with (ignored by the curve-defined ones).
fn usual_betas(schedule: BetaSchedule) -> (f64, f64) {
    match schedule {
        BetaSchedule::ScaledLinear => (0.00085, 0.012),
        _ => (1e-4, 0.02),
    }
}

pub fn draw(out: &Path) -> Result<(), String> {
    let steps = 1000;
    let mut alpha_bar = Chart::new(
        "ᾱₜ: the share of the signal's variance left after step t (T = 1000)",
        Axis::linear("training timestep (code index t − 1)"),
        Axis::linear("ᾱₜ").range(0.0, 1.0),
    );
    let mut log_snr = Chart::new(
        "log-SNR: ln(ᾱₜ / (1 − ᾱₜ))",
        Axis::linear("training timestep (code index t − 1)"),
        Axis::linear("log-SNR (nats)"),
    )
    .legend(Legend::UpperRight);
    for schedule in BetaSchedule::ALL {
        let (start, end) = usual_betas(schedule);
        let s =
            NoiseSchedule::new(schedule, steps, start, end, false).map_err(|e| e.to_string())?;
        let label = schedule.name();
        let a: Vec<(f64, f64)> = s
            .alphas_cumprod
            .iter()
            .enumerate()
            .map(|(t, &a)| (t as f64, a))
            .collect();
        let l: Vec<(f64, f64)> = a.iter().map(|&(t, a)| (t, (a / (1.0 - a)).ln())).collect();
        alpha_bar = alpha_bar.with(Series::line(label, a));
        log_snr = log_snr.with(Series::line(label, l));
    }
    crate::save(&Figure::single(alpha_bar), out, "schedules-alpha-bar.png")?;
    crate::save(&Figure::single(log_snr), out, "schedules-log-snr.png")
}
