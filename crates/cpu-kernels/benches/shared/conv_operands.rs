//! The operands of one convolution's three passes, for the examples that time them (`conv_time`, `vae_convs`; one
//! definition, included by `#[path]` from each, beside `inputs.rs`).

use super::inputs::filled;
use diffuse_cpu_kernels::conv2d::Conv2dShape;

/// The inputs `x`, `w`, `b`, `dy` filled with `inputs::filled` (seeds 1–4) and the outputs `y`, `dx`, `dw`, `db`
/// zeroed, each of the length `s` asks for.
pub struct ConvOperands {
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub dy: Vec<f32>,
    pub y: Vec<f32>,
    pub dx: Vec<f32>,
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
}

impl ConvOperands {
    pub fn new(s: &Conv2dShape) -> Self {
        ConvOperands {
            x: filled(s.input_len(), 1),
            w: filled(s.weight_len(), 2),
            b: filled(s.out_channels, 3),
            dy: filled(s.output_len(), 4),
            y: vec![0.0; s.output_len()],
            dx: vec![0.0; s.input_len()],
            dw: vec![0.0; s.weight_len()],
            db: vec![0.0; s.out_channels],
        }
    }
}
