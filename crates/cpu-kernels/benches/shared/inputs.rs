//! The benches' and timing examples' reproducible inputs (one definition, included by `#[path]` from each target).

/// `len` floats in [−0.5, 0.5) from a multiplicative hash of the index, `salt` telling operands apart.
pub fn filled(len: usize, salt: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 8) as f32 / 16_777_216.0
                - 0.5
        })
        .collect()
}
