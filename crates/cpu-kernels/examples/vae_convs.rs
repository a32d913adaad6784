//! Times each convolution of `fashion-vae` at batch 64 that does not run on Winograd (the stride-2 downsampling
//! convolutions, the 1×1 shortcuts and quant convolutions, and the 3×3 convolutions with fewer than 16 channels on a
//! side), forward, backward-input and backward-weight (with the bias gradient) separately, for comparison with
//! PyTorch's one-thread times of the same shapes (`benches/peers/torch_vae_convs.py`).
//!
//! Run: `RAYON_NUM_THREADS=1 taskset -c 1 target/release/examples/vae_convs [ITERS] [NAME-FILTER]` after
//! `cargo build --release -p diffuse-cpu-kernels --example vae_convs`.

use diffuse_cpu_kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dShape,
};
use std::time::Instant;

#[path = "../benches/shared/conv_operands.rs"]
mod conv_operands;
#[path = "../benches/shared/inputs.rs"]
mod inputs;
use conv_operands::ConvOperands;

/// `(name, in channels, side, out channels, kernel, stride, padding)`; the downsampling convolutions see the
/// image already padded on the bottom and right (diffusers' `Downsample2D` with `padding = 0`).
const LAYERS: [(&str, usize, usize, usize, usize, usize, usize); 9] = [
    ("encoder.conv_in", 1, 28, 32, 3, 1, 1),
    ("down0.downsample", 32, 29, 32, 3, 2, 0),
    ("down1.shortcut", 32, 14, 64, 1, 1, 0),
    ("down1.downsample", 64, 15, 64, 3, 2, 0),
    ("encoder.conv_out", 64, 7, 8, 3, 1, 1),
    ("quant_conv", 8, 7, 8, 1, 1, 0),
    ("decoder.conv_in", 4, 7, 64, 3, 1, 1),
    ("up2.shortcut", 64, 28, 32, 1, 1, 0),
    ("decoder.conv_out", 32, 28, 1, 3, 1, 1),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iters: usize = args
        .first()
        .map_or(5, |a| a.parse().expect("ITERS is a number"));
    let filter = args.get(1).map_or("", String::as_str);
    for (name, cin, side, cout, kernel, stride, pad) in LAYERS {
        if !name.contains(filter) {
            continue;
        }
        let s = Conv2dShape {
            batch: 64,
            in_channels: cin,
            in_h: side,
            in_w: side,
            out_channels: cout,
            kernel_h: kernel,
            kernel_w: kernel,
            stride: (stride, stride),
            padding: (pad, pad),
            dilation: (1, 1),
            groups: 1,
        };
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
        let time = |f: &mut dyn FnMut()| {
            f();
            let mut best = f64::INFINITY;
            for _ in 0..iters {
                let start = Instant::now();
                f();
                best = best.min(start.elapsed().as_secs_f64() * 1e3);
            }
            best
        };
        let fwd = time(&mut || conv2d_forward(&s, &x, &w, Some(&b), &mut y).expect("forward"));
        let bwd_in = time(&mut || conv2d_backward_input(&s, &dy, &w, &mut dx).expect("input"));
        let bwd_w = time(&mut || {
            conv2d_backward_weight(&s, &x, &dy, &mut dw, Some(&mut db)).expect("weight")
        });
        println!("{name:<18} fwd {fwd:7.2}  bwd-input {bwd_in:7.2}  bwd-weight {bwd_w:7.2} ms (best of {iters})");
    }
}
