//! Times a 3×3, padding-1 convolution (forward, backward-input, backward-weight with the bias gradient, or all three)
//! at one shape in a plain loop and prints wall time and process CPU time per call, for `perf stat` / `perf record`
//! to attach to. On a shared machine the CPU time (read from `/proc/self/stat`, 10 ms ticks) is the steadier figure.
//!
//! Run: `RAYON_NUM_THREADS=1 taskset -c 1 perf stat -e task-clock target/release/examples/conv_time N C SIDE ITERS
//! fwd|bwd-input|bwd-weight|all [im2col|winograd|winograd4]` after `cargo build --release -p diffuse-cpu-kernels --example conv_time`
//! (e.g. `64 32 28 20 fwd` is the `fashion-vae` encoder's first level at batch 64, `32 128 14 10 all` the bench's
//! forward + backward case).

use diffuse_cpu_kernels::conv2d::{
    conv2d_backward_input_with, conv2d_backward_weight_with, conv2d_forward_with, Conv2dAlgorithm,
};
use std::time::Instant;

#[path = "../benches/shared/conv_layer.rs"]
mod conv_layer;
use conv_layer::layer;
#[path = "../benches/shared/conv_operands.rs"]
mod conv_operands;
#[path = "../benches/shared/inputs.rs"]
mod inputs;
use conv_operands::ConvOperands;

mod process_time;
use process_time::cpu_seconds;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: conv_time BATCH CHANNELS SIDE ITERS fwd|bwd-input|bwd-weight|all \
                 [im2col|winograd|winograd4]";
    let number = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{usage}"))
    };
    let (batch, channels, side, iters) = (number(0), number(1), number(2), number(3).max(1));
    let pass = args
        .get(4)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{usage}"));
    let (forward, input, weight) = match pass {
        "fwd" => (true, false, false),
        "bwd-input" => (false, true, false),
        "bwd-weight" => (false, false, true),
        "all" => (true, true, true),
        _ => panic!("{usage}"),
    };
    let algorithm = match args.get(5).map(String::as_str) {
        None => Conv2dAlgorithm::Auto,
        Some("im2col") => Conv2dAlgorithm::Im2col,
        Some("winograd") => Conv2dAlgorithm::Winograd,
        Some("winograd4") => Conv2dAlgorithm::Winograd4,
        Some(_) => panic!("{usage}"),
    };
    let s = layer(batch, channels, side);
    let ConvOperands {
        x,
        w,
        b,
        dy,
        mut y,
        mut dx,
        mut dw,
        mut db,
    } = ConvOperands::new(&s);
    let mut run = || {
        if forward {
            conv2d_forward_with(algorithm, &s, &x, &w, Some(&b), &mut y).expect("forward");
        }
        if input {
            conv2d_backward_input_with(algorithm, &s, &dy, &w, &mut dx).expect("backward input");
        }
        if weight {
            conv2d_backward_weight_with(algorithm, &s, &x, &dy, &mut dw, Some(&mut db))
                .expect("backward weight");
        }
    };
    run(); // warm-up
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    for _ in 0..iters {
        run();
    }
    let wall = start.elapsed().as_secs_f64() / iters as f64;
    print!(
        "conv 3×3 N{batch} C{channels} {side}² {pass}: wall {:.2} ms",
        wall * 1e3
    );
    match cpu_start.zip(cpu_seconds()) {
        Some((a, b)) => println!(", CPU {:.2} ms", (b - a) / iters as f64 * 1e3),
        None => println!(),
    }
}
