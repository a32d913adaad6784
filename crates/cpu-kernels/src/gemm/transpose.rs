//! The transposing copy behind packing a row-major A or a column-major B:
//!
//! ```text
//! out[p·W + r] = lines[r][p]        r < lines.len() ≤ W, p < len;   out[p·W + r] = 0 for lines.len() ≤ r < W
//! ```
//!
//! (`lines` are the MR rows of an A panel, or the NR columns of a B panel; `W` is the panel width.) Element by element
//! this is one load and one store per float, with the stores W floats apart. With `VECTOR` set (only from a kernel
//! compiled with AVX, see `microkernel/`), blocks of 8 lines × 8 positions go through an 8×8 register transpose
//! (8 vector loads, 24 shuffles, 8 vector stores for 64 floats) and blocks of 4 lines × 8 positions through a 4×8 one;
//! what is left (lines past the last multiple of 4, positions past the last multiple of 8) is copied element by
//! element. It is a permutation, so every build gives the same bits.

/// `out[p·W + r] = lines[r][p]` for `p < len` (each line holds at least `len` floats), zeros in the rows past
/// `lines.len()`. `VECTOR` may be set only when the CPU supports AVX; the register transposes are inlined where the
/// caller is compiled with AVX (the packing routines, the Winograd weight gradient's AVX builds) and called
/// otherwise. (Also the Winograd weight gradient's channel-last staging, `conv2d/winograd/transform.rs`.)
#[inline(always)]
pub(crate) fn transpose_into<const W: usize, const VECTOR: bool>(
    lines: &[&[f32]],
    len: usize,
    out: &mut [f32],
) {
    let valid = lines.len();
    assert!(valid <= W && out.len() >= len * W);
    assert!(lines.iter().all(|line| line.len() >= len));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if VECTOR {
        while done + 8 <= len {
            let mut r = 0;
            // SAFETY: the asserts above put floats `done .. done + 8` of every line and floats `(done + q)·W + r ..
            // + 8` (q < 8, r + 8 ≤ valid ≤ W, or + 4 for the 4-line block) inside their slices; the CPU supports
            // AVX (`VECTOR`'s contract).
            unsafe {
                while r + 8 <= valid {
                    avx::transpose_8x8(
                        &lines[r..r + 8],
                        done,
                        out.as_mut_ptr().add(done * W + r),
                        W,
                    );
                    r += 8;
                }
                if r + 4 <= valid {
                    avx::transpose_4x8(
                        &lines[r..r + 4],
                        done,
                        out.as_mut_ptr().add(done * W + r),
                        W,
                    );
                    r += 4;
                }
            }
            // A full panel (every line taken by the register blocks) has nothing left to copy or zero: skipping the
            // loop spares eight empty copies and zero-length fills per block, which showed in the profile of
            // 12-wide A panels (the weight gradient's transposing packs).
            if r < W {
                for q in done..done + 8 {
                    let row = &mut out[q * W..][..W];
                    for (dst, line) in row[r..valid].iter_mut().zip(&lines[r..]) {
                        *dst = line[q];
                    }
                    row[valid..].fill(0.0);
                }
            }
            done += 8;
        }
    }
    for q in done..len {
        let row = &mut out[q * W..][..W];
        for (dst, line) in row.iter_mut().zip(lines) {
            *dst = line[q];
        }
        row[valid..].fill(0.0);
    }
}

/// Register transposes with AVX (256-bit) shuffles.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Writes position `p + q` of the 8 lines as 8 floats at `out + q·stride` (q < 8).
    ///
    /// # Safety
    /// The CPU supports AVX; floats `p .. p + 8` of every line exist and the 8
    /// destinations of 8 floats are writable.
    #[inline(always)]
    pub(super) unsafe fn transpose_8x8(lines: &[&[f32]], p: usize, out: *mut f32, stride: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let row = |r: usize| _mm256_loadu_ps(lines[r].as_ptr().add(p));
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            // t: pairs of lines interleaved, [a0 b0 a1 b1 | a4 b4 a5 b5] and [a2 b2 a3 b3 | a6 b6 a7 b7].
            let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
            let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
            let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
            // s: positions (q, q + 4) of four lines each: s0 = [lines 0-3 at 0 | at 4], s1 at 1 | 5, s2 2 | 6, s3 3 | 7.
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let columns = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (q, column) in columns.into_iter().enumerate() {
                _mm256_storeu_ps(out.add(q * stride), column);
            }
        }
    }

    /// Writes position `p + q` of the 4 lines as 4 floats at `out + q·stride` (q < 8).
    ///
    /// # Safety
    /// As for [`transpose_8x8`], with 4 lines and destinations of 4 floats.
    #[inline(always)]
    pub(super) unsafe fn transpose_4x8(lines: &[&[f32]], p: usize, out: *mut f32, stride: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let row = |r: usize| _mm256_loadu_ps(lines[r].as_ptr().add(p));
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
            let s = [
                _mm256_shuffle_ps::<0x44>(t0, t2),
                _mm256_shuffle_ps::<0xEE>(t0, t2),
                _mm256_shuffle_ps::<0x44>(t1, t3),
                _mm256_shuffle_ps::<0xEE>(t1, t3),
            ];
            for (q, &s_q) in s.iter().enumerate() {
                _mm_storeu_ps(out.add(q * stride), _mm256_castps256_ps128(s_q));
                _mm_storeu_ps(out.add((q + 4) * stride), _mm256_extractf128_ps::<1>(s_q));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_into;

    /// Every line count 0..=W and length 0..20 (blocks of 8 and 4 lines, remainders of lines and positions), with
    /// and without the vector path, against the definition; the output starts as NaN so an unwritten slot shows.
    fn check<const W: usize>() {
        for valid in 0..=W {
            for len in 0..20 {
                let data: Vec<Vec<f32>> = (0..valid)
                    .map(|r| (0..len + 3).map(|p| (r * 100 + p) as f32).collect())
                    .collect();
                let lines: Vec<&[f32]> = data.iter().map(|line| &line[..]).collect();
                let expected: Vec<f32> = (0..len * W)
                    .map(|i| {
                        if i % W < valid {
                            lines[i % W][i / W]
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut scalar = vec![f32::NAN; len * W];
                transpose_into::<W, false>(&lines, len, &mut scalar);
                assert_eq!(scalar, expected, "scalar, {valid} lines of {len}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx") {
                    #[target_feature(enable = "avx")]
                    fn vector<const W: usize>(lines: &[&[f32]], len: usize, out: &mut [f32]) {
                        transpose_into::<W, true>(lines, len, out);
                    }
                    let mut vectorised = vec![f32::NAN; len * W];
                    // SAFETY: the CPU supports AVX (checked above).
                    unsafe { vector::<W>(&lines, len, &mut vectorised) };
                    assert_eq!(vectorised, expected, "AVX, {valid} lines of {len}");
                }
            }
        }
    }

    #[test]
    fn transpose_matches_its_definition_for_every_panel_width() {
        check::<6>();
        check::<8>();
        check::<12>();
        check::<16>();
        check::<32>();
    }
}
