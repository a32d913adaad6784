//! Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
//! generator, so element `j` of a stream is a pure function of `(seed, j)` and any thread can produce any element.
//!
//! One round maps the counter `(c0, c1, c2, c3)` under key `(k0, k1)` to
//! `(hi(M1·c2) ^ c1 ^ k0, lo(M1·c2), hi(M0·c0) ^ c3 ^ k1, lo(M0·c0))` with `M0 = 0xD2511F53`, `M1 = 0xCD9E8D57`
//! (32×32→64-bit products); between rounds the key is bumped by the Weyl constants `(0x9E3779B9, 0xBB67AE85)`.
//! Ten rounds.
//!
//! The project's stream definition (the PTX kernels implement the same; `docs/random.md` is the contract):
//!
//! - key = `(seed as u32, (seed >> 32) as u32)`;
//! - block `n` (u64) uses counter `(n as u32, (n >> 32) as u32, 0, 0)` and yields 4 u32 words;
//! - element `j` of the stream uses block `j / 4`, word `j % 4`;
//! - uniform: `u = ((w >> 8) as f32 + 0.5) * 2^-24`, in (0, 1);
//! - normals by Box–Muller on the word pairs of a block: `(w0, w1) → (z0, z1)`, `(w2, w3) → (z2, z3)`:
//!   `r = sqrt(-2 ln u_a)`, `θ = 2π u_b`, `z_even = r·cos θ`, `z_odd = r·sin θ` (computed in f32);
//! - `fill(seed, offset, out)` writes stream elements `offset..offset + out.len()`.
//!
//! `ln`, `sin` and `cos` are the vectorisable f32 functions of [`crate::math`] (within 2 ulp of the exact values;
//! the angle is reduced exactly as a fraction of a turn, so `θ = 2π u_b` is never rounded).
//!
//! Parallel fills split `out` into fixed chunks; each chunk generates its own blocks, so the result does not depend on
//! the number of threads. Within a chunk, eight blocks are computed side by side so the rounds vectorise.

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::math;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Elements per parallel task of the fills: large enough to amortise scheduling, a multiple of 4 words.
pub(crate) const FILL_CHUNK: usize = 1 << 14;

/// The Philox4x32 bijection with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The key of the stream `seed`.
fn key_of(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The four words of block `n` of stream `seed`.
fn block(seed: u64, n: u64) -> [u32; 4] {
    philox4x32_10([n as u32, (n >> 32) as u32, 0, 0], key_of(seed))
}

/// Blocks computed side by side: the rounds run over arrays of `LANES` counters, which LLVM maps onto SIMD lanes.
const LANES: usize = 8;
/// Blocks generated per batch of a serial fill (the words of a batch stay in L1).
const BATCH_BLOCKS: usize = 64;

/// Writes the words of blocks `first_block..` of stream `seed` into `words` (4 per block, `words.len()` a multiple of
/// 4·LANES), `LANES` blocks at a time: the same rounds as [`philox4x32_10`], in struct-of-arrays form.
#[inline(always)]
fn generate_blocks(seed: u64, first_block: u64, words: &mut [u32]) {
    let key = key_of(seed);
    for (group, words) in words.chunks_exact_mut(4 * LANES).enumerate() {
        let n0 = first_block.wrapping_add((group * LANES) as u64);
        let counters: [u64; LANES] = std::array::from_fn(|lane| n0.wrapping_add(lane as u64));
        let mut c: [[u32; LANES]; 4] = [
            counters.map(|n| n as u32),
            counters.map(|n| (n >> 32) as u32),
            [0; LANES],
            [0; LANES],
        ];
        let mut k = key;
        for round in 0..10 {
            if round > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            let mut next: [[u32; LANES]; 4] = [[0; LANES]; 4];
            for lane in 0..LANES {
                let p0 = u64::from(M0) * u64::from(c[0][lane]);
                let p1 = u64::from(M1) * u64::from(c[2][lane]);
                next[0][lane] = (p1 >> 32) as u32 ^ c[1][lane] ^ k[0];
                next[1][lane] = p1 as u32;
                next[2][lane] = (p0 >> 32) as u32 ^ c[3][lane] ^ k[1];
                next[3][lane] = p0 as u32;
            }
            c = next;
        }
        for (lane, block_words) in words.chunks_exact_mut(4).enumerate() {
            for (w, word) in block_words.iter_mut().enumerate() {
                *word = c[w][lane];
            }
        }
    }
}

/// The uniform in (0, 1) carried by one word: its top 24 bits, centred in their cell.
#[inline(always)]
fn uniform_of(w: u32) -> f32 {
    ((w >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// Box–Muller on one word pair: `(r cos θ, r sin θ)` with `r = sqrt(-2 ln u_a)`, `θ = 2π u_b`.
#[inline(always)]
fn box_muller(wa: u32, wb: u32) -> (f32, f32) {
    let r = (-2.0 * math::ln(uniform_of(wa))).sqrt();
    let (sin, cos) = math::sin_cos_turns(uniform_of(wb));
    (r * cos, r * sin)
}

/// How stream words become values.
#[derive(Clone, Copy)]
enum Distribution {
    Uniform,
    Normal,
}

/// Maps the words of whole blocks to values (`values.len() == words.len()`).
#[inline(always)]
fn map_words(distribution: Distribution, words: &[u32], values: &mut [f32]) {
    match distribution {
        Distribution::Uniform => {
            for (v, &w) in values.iter_mut().zip(words) {
                *v = uniform_of(w);
            }
        }
        Distribution::Normal => {
            for (v, w) in values.chunks_exact_mut(2).zip(words.chunks_exact(2)) {
                let (z_even, z_odd) = box_muller(w[0], w[1]);
                v[0] = z_even;
                v[1] = z_odd;
            }
        }
    }
}

/// Writes elements `first..first + out.len()` of the stream on the calling thread, a batch of blocks at a time.
#[inline(always)]
fn fill_serial_body(seed: u64, first: u64, out: &mut [f32], distribution: Distribution) {
    let mut words = [0u32; 4 * BATCH_BLOCKS];
    let mut values = [0.0f32; 4 * BATCH_BLOCKS];
    let mut j = first;
    let mut rest = out;
    while !rest.is_empty() {
        let skip = (j % 4) as usize;
        let take = (4 * BATCH_BLOCKS - skip).min(rest.len());
        // Whole groups of LANES blocks covering words skip..skip + take.
        let len = (skip + take).div_ceil(4 * LANES) * 4 * LANES;
        generate_blocks(seed, j / 4, &mut words[..len]);
        map_words(distribution, &words[..len], &mut values[..len]);
        let (head, tail) = rest.split_at_mut(take);
        head.copy_from_slice(&values[skip..skip + take]);
        rest = tail;
        j += take as u64;
    }
}

fn fill_serial(seed: u64, first: u64, out: &mut [f32], distribution: Distribution) {
    dispatch!(fill_serial_body(seed: u64, first: u64, out: &mut [f32], distribution: Distribution));
}

/// Writes standard normals, elements `first..first + out.len()` of stream `seed`, on the calling thread.
/// The fused kernels call this per chunk so the noise is produced where it is consumed.
pub(crate) fn fill_normal_serial(seed: u64, first: u64, out: &mut [f32]) {
    fill_serial(seed, first, out, Distribution::Normal);
}

fn fill_parallel(seed: u64, offset: u64, out: &mut [f32], distribution: Distribution) {
    out.par_chunks_mut(FILL_CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            fill_serial(
                seed,
                offset + (chunk * FILL_CHUNK) as u64,
                values,
                distribution,
            );
        });
}

/// Fills `out` with uniforms in (0, 1): element `i` is stream element `offset + i`.
pub fn fill_uniform(seed: u64, offset: u64, out: &mut [f32]) {
    fill_parallel(seed, offset, out, Distribution::Uniform);
}

/// Fills `out` with standard normals: element `i` is stream element `offset + i`.
pub fn fill_normal(seed: u64, offset: u64, out: &mut [f32]) {
    fill_parallel(seed, offset, out, Distribution::Normal);
}

/// Standard normal number `index` of stream `seed` (computes the whole Box–Muller pair and returns its half).
pub fn normal_at(seed: u64, index: u64) -> f32 {
    let w = block(seed, index / 4);
    let pair = (index % 4) as usize / 2;
    let (z_even, z_odd) = box_muller(w[2 * pair], w[2 * pair + 1]);
    if index.is_multiple_of(2) {
        z_even
    } else {
        z_odd
    }
}
