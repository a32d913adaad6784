//! Times attention forward or backward at one shape in a plain loop and prints wall time and process CPU time per
//! call. On a shared machine the CPU time (read from `/proc/self/stat`, 10 ms ticks) is the steadier figure; with
//! `RAYON_NUM_THREADS=1` it compares directly with PyTorch's `time.process_time()` at `torch.set_num_threads(1)`.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo run --release -p diffuse-cpu-kernels --example attention_time -- BH L D ITERS fwd|bwd`
//! (e.g. `128 196 32 40 fwd` is the bench's B32 H4 L196 d32).

use diffuse_cpu_kernels::attention::{attention_backward, attention_forward, AttentionShape};
use std::time::Instant;

#[path = "../benches/shared/inputs.rs"]
mod inputs;
use inputs::filled;

mod process_time;
use process_time::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: attention_time BATCH_HEADS LEN HEAD_DIM ITERS fwd|bwd";
    let number = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{usage}"))
    };
    let (batch_heads, len, d, iters) = (number(0), number(1), number(2), number(3).max(1));
    let backward = match args.get(4).map(String::as_str) {
        Some("fwd") => false,
        Some("bwd") => true,
        _ => panic!("{usage}"),
    };
    let s = AttentionShape::dense(batch_heads, 1, len, len, d, 1.0 / (d as f32).sqrt());
    let n = batch_heads * len * d;
    let (q, k, v, grad_out) = (filled(n, 1), filled(n, 2), filled(n, 3), filled(n, 4));
    let (mut out, mut lse) = (vec![0.0; n], vec![0.0; batch_heads * len]);
    let (mut gq, mut gk, mut gv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    attention_forward(&s, &q, &k, &v, None, &mut out, &mut lse).expect("forward");
    let run = |out: &mut [f32], lse: &mut [f32], gq: &mut [f32], gk: &mut [f32], gv: &mut [f32]| {
        if backward {
            attention_backward(&s, &q, &k, &v, None, out, lse, &grad_out, gq, gk, gv)
                .expect("backward");
        } else {
            attention_forward(&s, &q, &k, &v, None, out, lse).expect("forward");
        }
    };
    run(&mut out, &mut lse, &mut gq, &mut gk, &mut gv); // warm-up
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    for _ in 0..iters {
        run(&mut out, &mut lse, &mut gq, &mut gk, &mut gv);
    }
    let wall = start.elapsed().as_secs_f64() / iters as f64;
    // Forward: two L²·d products; backward: the five of the textbook backward (as the criterion bench counts).
    let flops = (if backward { 10 } else { 4 } * batch_heads * len * len * d) as f64;
    let pass = if backward { "backward" } else { "forward" };
    print!(
        "attention BH{batch_heads} L{len} d{d} {pass}: wall {:.2} ms ({:.1} GFLOP/s)",
        wall * 1e3,
        flops / wall / 1e9
    );
    match cpu_start.zip(cpu_seconds()) {
        Some((a, b)) => {
            let cpu = (b - a) / iters as f64;
            println!(
                ", CPU {:.2} ms ({:.1} GFLOP/s per CPU-second)",
                cpu * 1e3,
                flops / cpu / 1e9
            )
        }
        None => println!(),
    }
}
