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
        philox4x32_10([n as u32, (n >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])
    }

    /// u = ((w >> 8) + 0.5) * 2^-24, in f32 arithmetic.
    pub fn uniform(w: u32) -> f32 {
        ((w >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
    }

    /// Stream elements offset..offset+len of the uniform stream.
    pub fn uniforms(seed: u64, offset: u64, len: usize) -> Vec<f32> {
        (offset..offset + len as u64).map(|j| uniform(block(seed, j / 4)[(j % 4) as usize])).collect()
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
                (if j % 2 == 0 { r * theta.cos() } else { r * theta.sin() }) as f32
            })
            .collect()
    }
}
