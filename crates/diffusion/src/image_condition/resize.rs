//! Resizing planar images (`planes × H × W` values, one plane per image channel) on the host: the box average that
//! makes a low-resolution image, and the bilinear and bicubic upsampling of PyTorch's `F.interpolate` with
//! `align_corners=False` (no antialiasing) that bring it back.
//!
//! Output pixel `o` of a side resized from `n` to `m` samples the input at `s = (o + ½)·n/m − ½` (pixel centres
//! aligned). Both upsamplings are separable: rows first, then columns.
//!
//! - bilinear: `s` clamped below at 0, `i = ⌊s⌋`, `λ = s − i`: `(1 − λ)·x[i] + λ·x[min(i + 1, n − 1)]`;
//! - bicubic (Keys' cubic convolution with `A = −0.75`, as PyTorch): `i = ⌊s⌋`, `t = s − i`, taps `i − 1 … i + 2`
//!   clamped into `[0, n − 1]`, weights `W(1 + t), W(t), W(1 − t), W(2 − t)` with
//!   `W(d) = (A + 2)|d|³ − (A + 3)|d|² + 1` for `|d| ≤ 1` and `A|d|³ − 5A|d|² + 8A|d| − 4A` for `1 < |d| < 2`.
//!
//! The box average of factor `f` is the mean of each `f × f` block (PyTorch's `avg_pool2d(x, f)`): it is what a
//! camera of `f`-times larger pixels records, and the shape the base model of a cascade is trained on.

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Keys' cubic convolution parameter PyTorch uses.
const CUBIC_A: f64 = -0.75;

/// The mean of each `factor × factor` block: `planes × h × w` → `planes × (h/factor) × (w/factor)`.
pub fn downsample_box(
    pixels: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    factor: usize,
) -> Result<Vec<f32>> {
    if factor == 0 || h % factor != 0 || w % factor != 0 {
        return Err(Error::train(
            "resize",
            format!("a {h}×{w} image cannot be averaged in blocks of {factor}×{factor} (the factor must divide both sides)"),
        ));
    }
    check_len(pixels, planes, h, w)?;
    let (oh, ow) = (h / factor, w / factor);
    let scale = 1.0 / (factor * factor) as f64;
    let mut out = vec![0.0f32; planes * oh * ow];
    out.par_chunks_mut(oh * ow)
        .zip(pixels.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = 0.0f64;
                    for y in oy * factor..(oy + 1) * factor {
                        for x in ox * factor..(ox + 1) * factor {
                            sum += f64::from(src[y * w + x]);
                        }
                    }
                    dst[oy * ow + ox] = (sum * scale) as f32;
                }
            }
        });
    Ok(out)
}

/// How [`upsample`] interpolates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

/// Resizes `planes × h × w` to `planes × out_h × out_w` as PyTorch's `F.interpolate(size=(out_h, out_w),
/// mode=…, align_corners=False)`.
pub fn upsample(
    pixels: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
    mode: Interpolation,
) -> Result<Vec<f32>> {
    check_len(pixels, planes, h, w)?;
    if out_h == 0 || out_w == 0 {
        return Err(Error::train(
            "resize",
            format!("cannot resize to {out_h}×{out_w}"),
        ));
    }
    let rows = taps(h, out_h, mode);
    let cols = taps(w, out_w, mode);
    let mut out = vec![0.0f32; planes * out_h * out_w];
    out.par_chunks_mut(out_h * out_w)
        .zip(pixels.par_chunks(h * w))
        .for_each(|(dst, src)| {
            // Rows first: each input row resized to out_w, then each output row mixes the resized input rows.
            let mut wide = vec![0.0f64; h * out_w];
            for y in 0..h {
                for (ox, col) in cols.iter().enumerate() {
                    wide[y * out_w + ox] = col
                        .iter()
                        .map(|&(x, weight)| weight * f64::from(src[y * w + x]))
                        .sum();
                }
            }
            for (oy, row) in rows.iter().enumerate() {
                for ox in 0..out_w {
                    let value: f64 = row
                        .iter()
                        .map(|&(y, weight)| weight * wide[y * out_w + ox])
                        .sum();
                    dst[oy * out_w + ox] = value as f32;
                }
            }
        });
    Ok(out)
}

/// For each output index along a side resized from `n` to `m`, the input indices it reads and their weights.
fn taps(n: usize, m: usize, mode: Interpolation) -> Vec<Vec<(usize, f64)>> {
    let scale = n as f64 / m as f64;
    let last = n as i64 - 1;
    (0..m)
        .map(|o| {
            let s = (o as f64 + 0.5) * scale - 0.5;
            match mode {
                Interpolation::Bilinear => {
                    let s = s.max(0.0);
                    let i = s.floor() as i64;
                    let lambda = s - i as f64;
                    vec![
                        (i.min(last) as usize, 1.0 - lambda),
                        ((i + 1).min(last) as usize, lambda),
                    ]
                }
                Interpolation::Bicubic => {
                    let i = s.floor() as i64;
                    let t = s - i as f64;
                    [1.0 + t, t, 1.0 - t, 2.0 - t]
                        .iter()
                        .enumerate()
                        .map(|(k, &d)| ((i - 1 + k as i64).clamp(0, last) as usize, cubic(d)))
                        .collect()
                }
            }
        })
        .collect()
}

/// Keys' cubic convolution kernel at distance `d` (`0 ≤ d < 2`).
fn cubic(d: f64) -> f64 {
    let a = CUBIC_A;
    if d <= 1.0 {
        ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    } else {
        ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    }
}

fn check_len(pixels: &[f32], planes: usize, h: usize, w: usize) -> Result<()> {
    if pixels.len() != planes * h * w || h == 0 || w == 0 {
        return Err(Error::train(
            "resize",
            format!("{} values are not {planes} planes of {h}×{w}", pixels.len()),
        ));
    }
    Ok(())
}
