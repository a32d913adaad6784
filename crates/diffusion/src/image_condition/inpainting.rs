//! A trained inpainting denoiser (as diffusers' inpainting U-Nets): the network sees, besides `x_t`, the mask and the
//! image with its masked region blanked, as `1 + C` extra input channels in diffusers' order
//! `[x_t, mask, masked image]`. The mask is 1 where the network must fill in and 0 where the pixels are known; the
//! masked image is `x0·(1 − mask)`, so the unknown region reads 0 (mid-grey on the `[−1, 1]` scale).
//!
//! Training draws one mask per image from that image's `u64` draw ([`random_mask`]): half of them cover one half of
//! the image (top, bottom, left or right: the half-masked test images of the evaluation), the other half a
//! rectangle of random position with sides uniform in `⌈side/4⌉ … ⌊3·side/4⌋`.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Inpainting training: the masks are drawn, the rest is the image's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inpainting;

/// The `h × w` mask (1: fill in, 0: known) that the draw `u` selects.
pub fn random_mask(u: u64, h: usize, w: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(u);
    let kind = rng.below(8);
    let inside: Box<dyn Fn(usize, usize) -> bool> = match kind {
        0 => Box::new(move |y, _| y < h / 2),
        1 => Box::new(move |y, _| y >= h / 2),
        2 => Box::new(move |_, x| x < w / 2),
        3 => Box::new(move |_, x| x >= w / 2),
        _ => {
            let side = |n: usize, rng: &mut SplitMix64| {
                let (lo, hi) = (n.div_ceil(4).max(1), (3 * n / 4).max(1));
                let len = lo.min(hi) + rng.below((hi.saturating_sub(lo) + 1) as u64) as usize;
                let start = rng.below((n - len + 1) as u64) as usize;
                (start, start + len)
            };
            let (y0, y1) = side(h, &mut rng);
            let (x0, x1) = side(w, &mut rng);
            Box::new(move |y, x| (y0..y1).contains(&y) && (x0..x1).contains(&x))
        }
    };
    (0..h * w)
        .map(|i| f32::from(u8::from(inside(i / w, i % w))))
        .collect()
}

/// The extra channels `[mask, x0·(1 − mask)]` of each of the `masks.len() / (h·w)` images `x0`
/// (`n × channels × h × w`), one `h × w` mask per image.
pub fn inpainting_channels(x0: &[f32], masks: &[f32], channels: usize, hw: usize) -> Vec<f32> {
    let n = masks.len() / hw;
    let mut out = Vec::with_capacity(n * (1 + channels) * hw);
    for i in 0..n {
        let mask = &masks[i * hw..(i + 1) * hw];
        out.extend_from_slice(mask);
        for c in 0..channels {
            let plane = &x0[(i * channels + c) * hw..(i * channels + c + 1) * hw];
            out.extend(plane.iter().zip(mask).map(|(&x, &m)| x * (1.0 - m)));
        }
    }
    out
}
