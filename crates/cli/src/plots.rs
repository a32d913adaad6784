//! The command's plots, drawn by `diffuse-plot` in the look every figure of the project shares: the loss curve of a
//! training run with its learning-rate schedule underneath (`loss.png`), FD against training step (`eval.png`), and
//! FD against sampling steps, one line per sampler (`diffuse eval --sweep-steps`).

use diffuse_plot::{fd_sweep_chart, Axis, Chart, Curve, Figure, Legend, Panel, Series, CHART_SIZE};
use std::path::Path;

/// One logged training step.
#[derive(Clone, Copy, Debug)]
pub struct LossPoint {
    pub step: u64,
    pub loss: f64,
    pub smoothed: f64,
    /// The learning rate of the step (absent from metrics files written before it was logged).
    pub lr: Option<f64>,
}

/// The loss curve: per-step loss (faint) and its moving average on a log axis, and, when the points carry it, the
/// learning rate against the same steps in a panel below. Points that are not finite and positive are left out.
pub fn save_loss_curve(points: &[LossPoint], path: &Path) -> Result<(), String> {
    let raw = points.iter().map(|p| (p.step as f64, p.loss)).collect();
    let smoothed = points.iter().map(|p| (p.step as f64, p.smoothed)).collect();
    let loss = Chart::new("Training loss", Axis::linear("step"), Axis::log("loss"))
        .with(Series::faint("per step", raw))
        .with(Series::line("moving average", smoothed));
    let lr: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((p.step as f64, p.lr?)))
        .collect();
    let figure = if lr.is_empty() {
        Figure::single(loss)
    } else {
        let schedule = Chart::new("", Axis::linear("step"), Axis::linear("learning rate"))
            .with(Series::line("", lr).color(1));
        Figure {
            width: CHART_SIZE.0,
            height: CHART_SIZE.1 + 240,
            panels: vec![(Panel::Chart(loss), 2.4), (Panel::Chart(schedule), 1.0)],
        }
    };
    Ok(figure.save(path)?)
}

/// FD against sampling steps, one line per sampler (`diffuse_plot::fd_sweep_chart`).
pub fn save_fd_sweep(curves: &[Curve], path: &Path) -> Result<(), String> {
    Ok(Figure::single(fd_sweep_chart(curves)).save(path)?)
}

/// FD of the evaluations during training against the training step.
pub fn save_eval_curve(points: &[(u64, f64)], path: &Path) -> Result<(), String> {
    let points = points.iter().map(|&(step, fd)| (step as f64, fd)).collect();
    let chart = Chart::new(
        "Fréchet distance during training",
        Axis::linear("training step"),
        Axis::linear("FD (classifier features)"),
    )
    .with(Series::line_markers("EMA weights", points))
    .legend(Legend::UpperRight);
    Ok(Figure::single(chart).save(path)?)
}
