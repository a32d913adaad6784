//! The adaLN operations and the tanh GELU on `Device::Cuda(0)` held against the same operations on the CPU, through
//! the tensor layer's dispatch (inputs arrive by `.to_device()`; views included), forward and backward.
//!
//! Tolerances (|gpu − cpu| ≤ abs + rel·|cpu|): the statistics and per-sample sums are f64 on the CPU and f32 on the
//! GPU (see `diffuse-cuda-kernels/tests/gpu_vs_cpu_adaln.rs`), the tanh GELU's PTX exponential is within ~1e-6
//! relative: 1e-4 covers every output at these sizes (dims ≥ 2, so rstd stays far below 1/√eps).
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.

use diffuse_tensor::{Device, OpenError, Tensor};

const GPU: Device = Device::Cuda(0);

/// The device every test runs on, or why there is none (the harness reports the tests ignored, or failed when a
/// device is there but cannot run the kernels).
fn open_cuda0() -> Result<Device, OpenError> {
    GPU.open().map(|()| GPU)
}

/// The same values on the CPU and the GPU.
fn twins(shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    let cpu = Tensor::randn(shape, seed, 0, Device::Cpu).unwrap();
    let gpu = cpu.to_device(GPU).unwrap();
    (cpu, gpu)
}

fn close(what: &str, gpu: &Tensor, cpu: &Tensor) {
    assert_eq!(gpu.device(), GPU, "{what} left the GPU");
    assert_eq!(gpu.shape(), cpu.shape(), "{what}");
    for (i, (g, c)) in gpu
        .to_vec()
        .unwrap()
        .iter()
        .zip(cpu.to_vec().unwrap())
        .enumerate()
    {
        assert!(
            (g - c).abs() <= 1e-4 + 1e-4 * c.abs(),
            "{what}[{i}]: gpu {g} vs cpu {c}"
        );
    }
}

fn layer_norm_modulate_on_the_gpu_matches_the_cpu(_: &Device) {
    for (n, l, d) in [(1, 1, 2), (2, 49, 64), (3, 17, 300)] {
        let (x, gx) = twins(&[n, d, l], 1);
        let (x, gx) = (x.transpose(1, 2).unwrap(), gx.transpose(1, 2).unwrap());
        let (s, gs) = twins(&[n, d], 2);
        let (b, gb) = twins(&[n, d], 3);
        let (g, gg) = twins(&[n, l, d], 4);
        let (y, mean, rstd) = x.layer_norm_modulate(&s, &b, 1e-6).unwrap();
        let (gy, gmean, grstd) = gx.layer_norm_modulate(&gs, &gb, 1e-6).unwrap();
        close("y", &gy, &y);
        close("mean", &gmean, &mean);
        close("rstd", &grstd, &rstd);
        let (dx, ds, db) = g
            .layer_norm_modulate_backward(&x, &s, (&mean, &rstd))
            .unwrap();
        let (gdx, gds, gdb) = gg
            .layer_norm_modulate_backward(&gx, &gs, (&gmean, &grstd))
            .unwrap();
        close("dx", &gdx, &dx);
        close("dscale", &gds, &ds);
        close("dshift", &gdb, &db);
    }
}

fn gated_residual_on_the_gpu_matches_the_cpu(_: &Device) {
    for (n, l, d) in [(1, 1, 1), (2, 49, 64), (3, 17, 300)] {
        let (x, gx) = twins(&[n, l, d], 5);
        let (gate, ggate) = twins(&[n, d], 6);
        let (y, gy) = twins(&[n, l, d], 7);
        let (g, gg) = twins(&[n, l, d], 8);
        close(
            "out",
            &gx.gated_residual(&ggate, &gy).unwrap(),
            &x.gated_residual(&gate, &y).unwrap(),
        );
        let (dy, dgate) = g.gated_residual_backward(&gate, &y).unwrap();
        let (gdy, gdgate) = gg.gated_residual_backward(&ggate, &gy).unwrap();
        close("dy", &gdy, &dy);
        close("dgate", &gdgate, &dgate);
    }
}

fn gelu_tanh_on_the_gpu_matches_the_cpu(_: &Device) {
    let (x, gx) = twins(&[7, 300], 9);
    let (x, gx) = (x.mul_scalar(4.0).unwrap(), gx.mul_scalar(4.0).unwrap());
    let (g, gg) = twins(&[7, 300], 10);
    close(
        "gelu_tanh",
        &gx.gelu_tanh().unwrap(),
        &x.gelu_tanh().unwrap(),
    );
    close(
        "gelu_tanh_backward",
        &gx.gelu_tanh_backward(&gg).unwrap(),
        &x.gelu_tanh_backward(&g).unwrap(),
    );
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        layer_norm_modulate_on_the_gpu_matches_the_cpu,
        gated_residual_on_the_gpu_matches_the_cpu,
        gelu_tanh_on_the_gpu_matches_the_cpu,
    ];
    diffuse_gpu_test::run(open_cuda0, tests);
}
