//! Copies of a few floats whose count is known only at run time (the edge of a packed panel, the last output row
//! piece of a Winograd tile row). `copy_from_slice` of an unknown length compiles to a call to `memcpy`, which for
//! 1–31 floats costs more than the copy; here the length is split into pieces of 16, 8, 4, 2 and 1 floats, each a
//! copy of constant length that compiles to vector (or scalar) moves.

/// `dst.copy_from_slice(src)` by constant-length pieces. Panics if the lengths differ.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    let mut at = 0;
    while dst.len() - at >= 16 {
        at = piece::<16>(dst, src, at);
    }
    at = piece::<8>(dst, src, at);
    at = piece::<4>(dst, src, at);
    at = piece::<2>(dst, src, at);
    piece::<1>(dst, src, at);
}

/// Copies floats `at .. at + N` if they exist and returns where the next piece starts.
#[inline(always)]
fn piece<const N: usize>(dst: &mut [f32], src: &[f32], at: usize) -> usize {
    if dst.len() - at < N {
        return at;
    }
    let (dst, src): (&mut [f32; N], &[f32; N]) = (
        (&mut dst[at..at + N]).try_into().unwrap(),
        (&src[at..at + N]).try_into().unwrap(),
    );
    *dst = *src;
    at + N
}

#[cfg(test)]
mod tests {
    use super::copy_short;

    #[test]
    fn copies_every_length_exactly() {
        for len in 0..70 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 + 0.5).collect();
            let mut dst = vec![f32::NAN; len + 1];
            copy_short(&mut dst[..len], &src);
            assert_eq!(&dst[..len], &src[..], "length {len}");
            assert!(dst[len].is_nan(), "length {len}: wrote past the end");
        }
    }
}
