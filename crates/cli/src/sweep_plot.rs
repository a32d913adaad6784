//! Fréchet distance against the number of sampling steps, one coloured line per sampler, as a small PNG drawn on the
//! canvas of [`crate::plot`]: steps on a log axis with a tick at every swept count, labelled where the label does not
//! run into the one after it (a training run's many evaluations crowd the right end), FD on a linear axis spanning the
//! values (padded by 5 %, its ends labelled), and under the step labels a coloured swatch numbered 1, 2, … for each
//! sampler in the given order (the 3×5 font has digits only; the command prints which number is which sampler).

use crate::plot::{Canvas, BOTTOM, H, LEFT, RIGHT, TOP, W};
use std::path::Path;

/// Line colours, one per sampler in order (repeating after six).
pub const COLORS: [([u8; 3], &str); 6] = [
    ([20, 60, 170], "blue"),
    ([220, 110, 0], "orange"),
    ([20, 140, 40], "green"),
    ([200, 30, 30], "red"),
    ([120, 60, 170], "purple"),
    ([100, 100, 100], "grey"),
];

/// One sampler's curve: (steps, FD) points in increasing steps.
pub struct Curve {
    pub points: Vec<(usize, f64)>,
}

/// An axis value with about four significant digits (at most 7 characters for values below 10⁶).
fn label(value: f64) -> String {
    let magnitude = value.abs().max(1e-3).log10().floor() as i32;
    format!("{value:.*}", (3 - magnitude).clamp(0, 3) as usize)
}

/// Renders the curves as PNG bytes. Every step count must be at least 1 and every FD finite.
pub fn fd_sweep_png(curves: &[Curve]) -> Result<Vec<u8>, String> {
    let all = || curves.iter().flat_map(|c| c.points.iter().copied());
    if all().next().is_none() {
        return Err("no sweep points to plot".into());
    }
    if let Some((s, fd)) = all().find(|&(s, fd)| s == 0 || !fd.is_finite()) {
        return Err(format!("cannot plot FD {fd} at {s} steps"));
    }
    let (first, last) = (
        all().map(|p| p.0).min().unwrap_or(1),
        all().map(|p| p.0).max().unwrap_or(1),
    );
    let (log_lo, log_hi) = (
        (first as f64).log10(),
        (last as f64).log10().max((first as f64).log10() + 1e-9),
    );
    // FD axis: the range of the values, padded by 5 % on each side (a flat sweep gets ±1).
    let lo = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
    let (bottom, top) = (lo - pad, hi + pad);
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let to_px = |steps: usize, fd: f64| -> (i64, i64) {
        let fx = if last == first {
            0.5
        } else {
            ((steps as f64).log10() - log_lo) / (log_hi - log_lo)
        };
        (
            (LEFT as f64 + fx * pw).round() as i64,
            (TOP as f64 + (top - fd) / (top - bottom) * ph).round() as i64,
        )
    };
    let mut c = Canvas::white();
    let axis = [0, 0, 0];
    let (x0, y0, x1) = (LEFT as i64, (H - BOTTOM) as i64, (W - RIGHT) as i64);
    c.line((x0, TOP as i64), (x0, y0), axis);
    c.line((x0, y0), (x1, y0), axis);
    c.line((x0, TOP as i64), (x1, TOP as i64), [225, 225, 225]);
    c.text(4, H - BOTTOM - 5, &label(bottom));
    c.text(4, TOP, &label(top));
    let mut labelled: Vec<usize> = all().map(|p| p.0).collect();
    labelled.sort_unstable();
    labelled.dedup();
    // Right to left, so that the last count is always labelled; `free_until` is where the label to its right begins,
    // less one blank character.
    let mut free_until = W;
    for steps in labelled.into_iter().rev() {
        let (x, _) = to_px(steps, 0.0);
        c.line((x, y0), (x, y0 + 4), axis);
        let label = steps.to_string();
        let left = (x as usize)
            .saturating_sub(4 * label.len())
            .min(W - 8 * label.len());
        if left + 8 * label.len() <= free_until {
            c.text(left, H - BOTTOM + 8, &label);
            free_until = left.saturating_sub(8);
        }
    }
    for (k, curve) in curves.iter().enumerate() {
        let color = COLORS[k % COLORS.len()].0;
        for pair in curve.points.windows(2) {
            c.line(
                to_px(pair[0].0, pair[0].1),
                to_px(pair[1].0, pair[1].1),
                color,
            );
        }
        for &(s, fd) in &curve.points {
            let (x, y) = to_px(s, fd);
            for (dx, dy) in (-2..=2).flat_map(|dx| (-2..=2).map(move |dy| (dx, dy))) {
                if x + dx >= 0 && y + dy >= 0 {
                    c.set((x + dx) as usize, (y + dy) as usize, color);
                }
            }
        }
        // Legend, under the step labels: a swatch, then the sampler's number.
        let (x, y) = (LEFT + 48 * k, H - 14);
        for dx in 0..16 {
            for dy in 4..7 {
                c.set(x + dx, y + dy, color);
            }
        }
        c.text(x + 20, y, &(k + 1).to_string());
    }
    c.png()
}

/// Writes the plot of `curves` to `path` atomically.
pub fn save_fd_sweep(curves: &[Curve], path: &Path) -> Result<(), String> {
    let bytes = fd_sweep_png(curves)?;
    crate::files::write_atomically(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
