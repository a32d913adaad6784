//! Mean and reciprocal standard deviation of a contiguous run of values, shared by the normalisation kernels.
//!
//! Stable two-pass form: `mean = Σx / n`, then `var = Σ(x − mean)² / n` (biased, as PyTorch normalises), each sum
//! accumulated in eight f64 lanes so LLVM vectorises it and the rounding error stays near `n·2^-53` rather than the
//! `n·2^-24` of a plain f32 sum. `rstd = 1 / sqrt(var + eps)`.

const LANES: usize = 8;

/// `Σ f(x_i)` accumulated in f64 lanes.
#[inline(always)]
pub(crate) fn sum_f64(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(f64::from(v));
        }
    }
    let tail_sum: f64 = tail.iter().map(|&v| f(f64::from(v))).sum();
    acc.iter().sum::<f64>() + tail_sum
}

/// `Σ f(a_i, b_i)` over two equally long runs, accumulated in f64 lanes.
#[inline(always)]
pub(crate) fn sum2_f64(a: &[f32], b: &[f32], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(f64::from(x), f64::from(y)))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((acc, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *acc += f(f64::from(x), f64::from(y));
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `Σ f(a_i, b_i, c_i)` over three equally long runs, accumulated in f64 lanes.
#[inline(always)]
pub(crate) fn sum3_f64(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f64, f64, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .zip(cc.remainder())
        .map(|((&x, &y), &z)| f(f64::from(x), f64::from(y), f64::from(z)))
        .sum();
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for (((acc, &x), &y), &z) in acc.iter_mut().zip(xa).zip(xb).zip(xc) {
            *acc += f(f64::from(x), f64::from(y), f64::from(z));
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// `(mean, rstd)` of a non-empty run, the biased variance regularised by `eps`.
#[inline(always)]
pub(crate) fn mean_rstd(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = sum_f64(x, |v| v) / n;
    let var = sum_f64(x, |v| (v - mean) * (v - mean)) / n;
    (mean as f32, (1.0 / (var + f64::from(eps)).sqrt()) as f32)
}
