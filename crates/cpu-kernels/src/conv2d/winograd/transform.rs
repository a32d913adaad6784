//! The three transforms of Winograd's minimal filtering algorithm F(2×2, 3×3):
//!
//! ```text
//!       ⎡ 1   0   0 ⎤          ⎡ 1   0  −1   0 ⎤
//!   G = ⎢ ½   ½   ½ ⎥     Bᵀ = ⎢ 0   1   1   0 ⎥     Aᵀ = ⎡ 1   1   1   0 ⎤
//!       ⎢ ½  −½   ½ ⎥          ⎢ 0  −1   1   0 ⎥          ⎣ 0   1  −1  −1 ⎦
//!       ⎣ 0   0   1 ⎦          ⎣ 0   1   0  −1 ⎦
//!
//!   U = G·g·Gᵀ (4×4, from a 3×3 kernel g)     V = Bᵀ·d·B (4×4, from a 4×4 input tile d)     Y = Aᵀ·M·A (2×2)
//! ```
//!
//! so that `Y = Aᵀ·(U ⊙ V)·A` is the 2×2 block of the (cross-)correlation of `d` with `g`. Each 2-D transform is the
//! 1-D one along rows and then along columns. In 1-D (`y0 = Σ g_k d_k`, `y1 = Σ g_k d_{k+1}`):
//! `m0 = g0·(d0 − d2)`, `m1 = ½(g0 + g1 + g2)·(d1 + d2)`, `m2 = ½(g0 − g1 + g2)·(d2 − d1)`, `m3 = g2·(d1 − d3)`,
//! `y0 = m0 + m1 + m2`, `y1 = m1 − m2 − m3`.
//!
//! Layouts: transformed values of one row (an input channel of V, an output channel of M) are `[16][ld]`, element ξ of
//! tile t at `ξ·ld + t`, ξ = 4·a + b for row a, column b of the 4×4 matrix. Tiles of one image band are numbered row
//! by row, `t = i·tiles_w + j`. The loops are written along `j` (contiguous) so they vectorise: an input row is first
//! split into its even and odd padded columns, so tile `j` reads `even[j], odd[j], even[j+1], odd[j+1]`; an output
//! row is produced as its even and odd columns and then interleaved.

use super::Geometry;

/// `G·g·Gᵀ` of one 3×3 kernel `g` (row-major) as 16 values, ξ = 4·a + b.
pub(super) fn kernel(g: &[f32; 9]) -> [f32; 16] {
    let along = |g0: f32, g1: f32, g2: f32| [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2];
    // Columns of g first (t = G·g, 4×3), then the rows of t (t·Gᵀ, 4×4).
    let cols: [[f32; 4]; 3] = std::array::from_fn(|l| along(g[l], g[3 + l], g[6 + l]));
    let mut u = [0.0; 16];
    for a in 0..4 {
        u[4 * a..4 * a + 4].copy_from_slice(&along(cols[0][a], cols[1][a], cols[2][a]));
    }
    u
}

/// Work floats the two tile transforms need for one band of `bands` tile rows.
pub(super) fn work_len(geo: &Geometry, bands: usize) -> usize {
    let rows = 2 * bands + 2;
    (2 * rows * (geo.tiles_w + 1) + 4 * rows * geo.tiles_w).max(10 * geo.tiles_w)
}

/// `V = Bᵀ·d·B` for every tile of tile rows `first..first + bands` of one input `plane` (`in_h × in_w`), into `v`
/// (`[16][ld]`, tile `t` of the band at `v[ξ·ld + t]`).
#[inline(always)]
pub(super) fn input_band(
    geo: &Geometry,
    plane: &[f32],
    first: usize,
    bands: usize,
    work: &mut [f32],
    v: &mut [f32],
    ld: usize,
) {
    let tw = geo.tiles_w;
    let (rows, half) = (2 * bands + 2, tw + 1);
    let (even, rest) = work.split_at_mut(rows * half);
    let (odd, rest) = rest.split_at_mut(rows * half);
    let h = &mut rest[..4 * rows * tw];

    // Padded input rows 2·first − pad_h .. +rows, columns −pad_w .. 2·tw + 2 − pad_w, split by column parity.
    // Every padded row holds all in_w input columns, since 2·tw ≥ out_w = in_w + 2·pad_w − 2.
    let (pad, ew, ow) = (
        geo.pad_w,
        even.chunks_exact_mut(half),
        odd.chunks_exact_mut(half),
    );
    for (r, (e, o)) in ew.zip(ow).enumerate() {
        e.fill(0.0);
        o.fill(0.0);
        let Some(ih) = (2 * first + r)
            .checked_sub(geo.pad_h)
            .filter(|&ih| ih < geo.in_h)
        else {
            continue;
        };
        let src = &plane[ih * geo.in_w..][..geo.in_w];
        // Input column k is padded column k + pad: even ones go to column (k + pad) / 2 of `e` or `o`.
        let (to_even, to_odd) = if pad % 2 == 0 { (e, o) } else { (o, e) };
        for (d, &x) in to_even[pad / 2..].iter_mut().zip(src.iter().step_by(2)) {
            *d = x;
        }
        for (d, &x) in to_odd[(pad + 1) / 2..]
            .iter_mut()
            .zip(src.iter().skip(1).step_by(2))
        {
            *d = x;
        }
    }

    // Along each padded row: h[r][b][j] = (d·B)[b] of the 4 columns 2j..2j+4 (p0..p3 = e[j], o[j], e[j+1], o[j+1]).
    for ((e, o), h) in even
        .chunks_exact(half)
        .zip(odd.chunks_exact(half))
        .zip(h.chunks_exact_mut(4 * tw))
    {
        let (h0, rest) = h.split_at_mut(tw);
        let (h1, rest) = rest.split_at_mut(tw);
        let (h2, h3) = rest.split_at_mut(tw);
        for j in 0..tw {
            let (p0, p1, p2, p3) = (e[j], o[j], e[j + 1], o[j + 1]);
            h0[j] = p0 - p2;
            h1[j] = p1 + p2;
            h2[j] = p2 - p1;
            h3[j] = p1 - p3;
        }
    }

    // Down each column of a tile: V[a][b] = (Bᵀ·h)[a] over the 4 padded rows 2i..2i+4.
    for i in 0..bands {
        for b in 0..4 {
            let c = |k: usize| &h[(2 * i + k) * 4 * tw + b * tw..][..tw];
            let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
            let at = |a: usize| (4 * a + b) * ld + i * tw;
            for j in 0..tw {
                v[at(0) + j] = c0[j] - c2[j];
            }
            for j in 0..tw {
                v[at(1) + j] = c1[j] + c2[j];
            }
            for j in 0..tw {
                v[at(2) + j] = c2[j] - c1[j];
            }
            for j in 0..tw {
                v[at(3) + j] = c1[j] - c3[j];
            }
        }
    }
}

/// `Y = Aᵀ·M·A + bias` for every tile of tile rows `first..first + bands`, from `m` (`[16][ld]`, as `v` above) into
/// the output `plane` (`out_h × out_w`); tiles at the bottom and right edges keep only their rows and columns inside.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn output_band(
    geo: &Geometry,
    m: &[f32],
    ld: usize,
    first: usize,
    bands: usize,
    bias: f32,
    work: &mut [f32],
    plane: &mut [f32],
) {
    let tw = geo.tiles_w;
    let (s, rest) = work.split_at_mut(8 * tw);
    let (even, rest) = rest.split_at_mut(tw);
    let odd = &mut rest[..tw];
    for i in 0..bands {
        // Down each column: s[r][b] = (Aᵀ·M)[r][b].
        let (s0, s1) = s.split_at_mut(4 * tw);
        for b in 0..4 {
            let m = |a: usize| &m[(4 * a + b) * ld + i * tw..][..tw];
            let (m0, m1, m2, m3) = (m(0), m(1), m(2), m(3));
            let (s0, s1) = (&mut s0[b * tw..][..tw], &mut s1[b * tw..][..tw]);
            for j in 0..tw {
                s0[j] = m0[j] + m1[j] + m2[j];
                s1[j] = m1[j] - m2[j] - m3[j];
            }
        }
        // Along each row: Y[r] = (s[r]·A), then interleaved into output columns 2j, 2j+1.
        for (r, s_r) in s.chunks_exact(4 * tw).enumerate() {
            let oh = 2 * (first + i) + r;
            if oh >= geo.out_h {
                break;
            }
            let (q0, q1, q2, q3) = (
                &s_r[..tw],
                &s_r[tw..2 * tw],
                &s_r[2 * tw..3 * tw],
                &s_r[3 * tw..],
            );
            for j in 0..tw {
                even[j] = q0[j] + q1[j] + q2[j] + bias;
                odd[j] = q1[j] - q2[j] - q3[j] + bias;
            }
            let row = &mut plane[oh * geo.out_w..][..geo.out_w];
            for (pair, (&e, &o)) in row.chunks_mut(2).zip(even.iter().zip(odd.iter())) {
                pair[0] = e;
                if let Some(second) = pair.get_mut(1) {
                    *second = o;
                }
            }
        }
    }
}
