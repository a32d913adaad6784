//! Naive references the GPU kernels are held against, for operations whose CPU twin is not yet in
//! `diffuse-cpu-kernels`. Plain loops, f64 arithmetic where it matters.

#![allow(dead_code)] // each test binary uses its own subset

pub mod philox {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;

    /// Philox4x32-10 of `counter` under `key`.
    pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
        let [mut c0, mut c1, mut c2, mut c3] = counter;
        let [mut k0, mut k1] = key;
        for round in 0..10 {
            if round > 0 {
                k0 = k0.wrapping_add(W0);
                k1 = k1.wrapping_add(W1);
            }
            let p0 = u64::from(M0) * u64::from(c0);
            let p1 = u64::from(M1) * u64::from(c2);
            (c0, c1, c2, c3) = (
                (p1 >> 32) as u32 ^ c1 ^ k0,
                p1 as u32,
                (p0 >> 32) as u32 ^ c3 ^ k1,
                p0 as u32,
            );
        }
        [c0, c1, c2, c3]
    }

    /// The 4 words of block `n` of the stream of `seed`.
    pub fn block(seed: u64, n: u64) -> [u32; 4] {
        philox4x32_10(
            [n as u32, (n >> 32) as u32, 0, 0],
            [seed as u32, (seed >> 32) as u32],
        )
    }

    /// u = ((w >> 8) + 0.5) * 2^-24, in f32 arithmetic.
    pub fn uniform(w: u32) -> f32 {
        ((w >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
    }

    /// Stream elements offset..offset+len of the uniform stream.
    pub fn uniforms(seed: u64, offset: u64, len: usize) -> Vec<f32> {
        (offset..offset + len as u64)
            .map(|j| uniform(block(seed, j / 4)[(j % 4) as usize]))
            .collect()
    }

    /// Stream elements offset..offset+len of the normal stream (Box-Muller evaluated in f64 from the f32 uniforms).
    pub fn normals(seed: u64, offset: u64, len: usize) -> Vec<f32> {
        (offset..offset + len as u64)
            .map(|j| {
                let w = block(seed, j / 4);
                let pair = ((j % 4) / 2) as usize;
                let ua = f64::from(uniform(w[2 * pair]));
                let ub = f64::from(uniform(w[2 * pair + 1]));
                let r = (-2.0 * ua.ln()).sqrt();
                let theta = std::f64::consts::TAU * ub;
                (if j % 2 == 0 {
                    r * theta.cos()
                } else {
                    r * theta.sin()
                }) as f32
            })
            .collect()
    }
}

/// erf in f64 to ~1e-15: the Maclaurin series below |x| = 3 (terms peak near 1e3 there, so f64 rounding stays
/// ~1e-13 relative at worst), and 1 - erfc from Laplace's continued fraction at and above 3.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    if a >= 6.0 {
        return x.signum();
    }
    if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        for n in 1..200 {
            term *= -a * a / n as f64;
            let contribution = term / (2 * n + 1) as f64;
            sum += contribution;
            if contribution.abs() < 1e-18 {
                break;
            }
        }
        return x.signum() * sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // erfc a = e^{-a^2}/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...))))), evaluated bottom-up
    let mut fraction = a;
    for k in (1..60).rev() {
        fraction = a + (k as f64 / 2.0) / fraction;
    }
    let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / fraction;
    x.signum() * (1.0 - erfc)
}
