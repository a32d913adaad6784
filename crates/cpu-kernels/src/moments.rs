//! Mean and reciprocal standard deviation of a contiguous run of values, shared by the normalisation kernels.
//!
//! Every sum accumulates in f64 lanes, so LLVM vectorises it and the rounding error stays near `n·2^-53` rather
//! than the `n·2^-24` of a plain f32 sum. The moments take one pass over values shifted by the run's first
//! ([`mean_rstd`]); the backward passes' sums ([`sum_f64`], [`sum2_f64`], [`sum3_f64`]) eight lanes each.

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

/// The f64 lanes of [`mean_rstd`]'s two sums: four AVX-512 vectors each, enough independent additions to hide
/// their latency. (With 16 lanes LLVM pairs each lane's two sums into one vector and the loop runs 2.5× slower.)
const MOMENT_LANES: usize = 32;

/// `(mean, rstd)` of a non-empty run, the biased variance regularised by `eps`.
///
/// One pass over shifted values (Chan, Golub & LeVeque's "shifted data"): with `K = x[0]` and `d_i = x_i − K`,
/// `mean = K + Σd/n` and `var = Σd²/n − (Σd/n)²`. Shifting by a value of the run keeps `Σd²/n` within a factor
/// `1 + (mean − K)²/var` of the variance, so the subtraction cancels little unless `x[0]` lies many standard
/// deviations out, and then the f64 sums (relative error near `n·2^-53`) still leave the variance's error far below
/// f32's rounding. One pass instead of two reads the run once, while it streams in from memory.
#[inline(always)]
pub(crate) fn mean_rstd(x: &[f32], eps: f32) -> (f32, f32) {
    let shift = f64::from(x[0]);
    let (mut sum, mut sum_sq) = ([0.0f64; MOMENT_LANES], [0.0f64; MOMENT_LANES]);
    let (chunks, tail) = x.as_chunks::<MOMENT_LANES>();
    for chunk in chunks {
        for ((s, q), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(chunk) {
            let d = f64::from(v) - shift;
            *s += d;
            *q = d.mul_add(d, *q);
        }
    }
    let (mut sum, mut sum_sq) = (sum.iter().sum::<f64>(), sum_sq.iter().sum::<f64>());
    for &v in tail {
        let d = f64::from(v) - shift;
        sum += d;
        sum_sq = d.mul_add(d, sum_sq);
    }
    let n = x.len() as f64;
    let mean_d = sum / n;
    let var = (sum_sq / n - mean_d * mean_d).max(0.0);
    (
        (shift + mean_d) as f32,
        (1.0 / (var + f64::from(eps)).sqrt()) as f32,
    )
}
