//! Random translation of training images ("pad and crop"), drawn from a seed so that a step replays exactly.
//!
//! ```text
//! for image n (in batch order):   dy = below(2p + 1) − p,  dx = below(2p + 1) − p     (one SplitMix64 per batch)
//!     out[c, y, x] = in[c, reflect(y + dy, H), reflect(x + dx, W)]
//! reflect(i, n) = −i for i < 0,  2(n − 1) − i for i ≥ n,  i otherwise                 (needs p < n)
//! ```
//!
//! This is padding each image by `p` pixels on every side and cutting a random H×W window out of it, with the
//! padding filled by reflecting the image at its edges. A generative model learns whatever the training images
//! hold, so the usual zero fill of classifier training would teach it to draw black bars; the reflection keeps the
//! borders looking like image content.

use super::error::{DataError, Result};
use crate::rng::SplitMix64;

/// Index `i` (within `−(n−1)..2n−1`) reflected into `0..n`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    r as usize
}

/// Translates each of the `images.len() / (C·H·W)` images of `channels × height × width` by its own random offset in
/// `[−pad, pad]²` (see the module documentation), in place. `pad` must be below both sides.
pub fn random_translate(
    images: &mut [f32],
    (channels, height, width): (usize, usize, usize),
    pad: usize,
    seed: u64,
) -> Result<()> {
    if pad >= height.min(width) {
        return Err(DataError::new(format!(
            "a random crop with padding {pad} needs images larger than {pad} pixels on each side; these are \
             {height}×{width} (pass a smaller --crop-pad)"
        )));
    }
    let image_len = channels * height * width;
    if image_len == 0 || !images.len().is_multiple_of(image_len) {
        return Err(DataError::new(format!(
            "{} values do not make whole {channels}×{height}×{width} images",
            images.len()
        )));
    }
    if pad == 0 {
        return Ok(());
    }
    let mut rng = SplitMix64::new(seed);
    let span = 2 * pad as u64 + 1;
    let mut source = vec![0.0; image_len];
    for image in images.chunks_exact_mut(image_len) {
        let dy = rng.below(span) as isize - pad as isize;
        let dx = rng.below(span) as isize - pad as isize;
        source.copy_from_slice(image);
        for c in 0..channels {
            let plane = &source[c * height * width..(c + 1) * height * width];
            for y in 0..height {
                let row = reflect(y as isize + dy, height) * width;
                let out = &mut image[(c * height + y) * width..(c * height + y + 1) * width];
                for (x, value) in out.iter_mut().enumerate() {
                    *value = plane[row + reflect(x as isize + dx, width)];
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive definition: pad by reflection into a (H+2p)×(W+2p) canvas, cut the window at (p+dy, p+dx).
    fn padded_crop(
        image: &[f32],
        (c, h, w): (usize, usize, usize),
        p: usize,
        dy: isize,
        dx: isize,
    ) -> Vec<f32> {
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        let mut canvas = vec![0.0; c * ph * pw];
        for ch in 0..c {
            for y in 0..ph {
                for x in 0..pw {
                    let sy = reflect(y as isize - p as isize, h);
                    let sx = reflect(x as isize - p as isize, w);
                    canvas[(ch * ph + y) * pw + x] = image[(ch * h + sy) * w + sx];
                }
            }
        }
        let (top, left) = ((p as isize + dy) as usize, (p as isize + dx) as usize);
        let mut out = Vec::new();
        for ch in 0..c {
            for y in 0..h {
                let start = (ch * ph + top + y) * pw + left;
                out.extend_from_slice(&canvas[start..start + w]);
            }
        }
        out
    }

    #[test]
    fn each_image_is_a_window_of_its_reflection_padded_self_at_the_drawn_offset() {
        // Batch 3, off-square sizes (one channel and three), padding 1 and 2.
        for (shape, pad) in [((1, 5, 7), 2), ((3, 4, 3), 1), ((2, 3, 6), 2)] {
            let (c, h, w) = shape;
            let n = 3;
            let original: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
            let mut moved = original.clone();
            random_translate(&mut moved, shape, pad, 42).unwrap();
            let mut rng = SplitMix64::new(42);
            let span = 2 * pad as u64 + 1;
            let mut shifted = 0;
            for k in 0..n {
                let dy = rng.below(span) as isize - pad as isize;
                let dx = rng.below(span) as isize - pad as isize;
                shifted += usize::from((dy, dx) != (0, 0));
                let len = c * h * w;
                let want = padded_crop(&original[k * len..(k + 1) * len], shape, pad, dy, dx);
                assert_eq!(
                    &moved[k * len..(k + 1) * len],
                    want.as_slice(),
                    "{shape:?} image {k}"
                );
            }
            assert!(shifted > 0, "some image moved");
            // The same seed moves the same way.
            let mut again = original.clone();
            random_translate(&mut again, shape, pad, 42).unwrap();
            assert_eq!(again, moved);
        }
    }

    #[test]
    fn padding_as_large_as_a_side_is_refused_and_zero_is_the_identity() {
        let mut images = vec![0.5; 2 * 4 * 4];
        let message = random_translate(&mut images, (2, 4, 4), 4, 0)
            .unwrap_err()
            .to_string();
        assert!(message.contains("--crop-pad"), "{message}");
        let before = images.clone();
        random_translate(&mut images, (2, 4, 4), 0, 7).unwrap();
        assert_eq!(images, before);
    }
}
