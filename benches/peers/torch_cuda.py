#!/usr/bin/env python3
"""PyTorch (CUDA) on the shapes of crates/cuda-kernels/benches/cuda_bench.rs, timed the same way: CUDA events,
3 warm-up runs, median of 20, bandwidth from the ideal DRAM traffic, and the fraction of a measured device-to-device
copy. Run on the machine the Rust benchmark ran on:  python3 benches/peers/torch_cuda.py
"""
import statistics

import torch
import torch.nn.functional as F

WARMUP, RUNS = 3, 20


def median_ms(work):
    for _ in range(WARMUP):
        work()
    times = []
    for _ in range(RUNS):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def report(name, shape, ms, nbytes, copy_gbs):
    gbs = nbytes / ms / 1e6
    print(f"{name:<22} {shape:<26} {ms:>9.3} ms {gbs:>9.1} GB/s  {100 * gbs / copy_gbs:>5.1f}% of copy")


def main():
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"{props.name}, sm_{props.major}{props.minor}, torch {torch.__version__}")
    n = 1 << 26
    x = torch.randn(n, device=dev)
    y = torch.empty_like(x)
    z = torch.empty_like(x)
    w = torch.empty_like(x)

    copy_ms = median_ms(lambda: y.copy_(x))
    copy_gbs = 8 * n / copy_ms / 1e6
    print(f"device-to-device copy of 256 MiB: {copy_ms:.3f} ms, {copy_gbs:.1f} GB/s (read + write)")

    gen = torch.Generator(device=dev).manual_seed(7)
    report("fill_normal", "[64Mi]", median_ms(lambda: y.normal_(generator=gen)), 4 * n, copy_gbs)
    report("unary gelu", "[64Mi]", median_ms(lambda: F.gelu(x)), 8 * n, copy_gbs)

    x3 = x.view(16, 256, 16384)
    bias = torch.randn(1, 256, 1, device=dev)
    y3 = y.view(16, 256, 16384)
    report("binary add broadcast", "[16,256,16384]+[256]", median_ms(lambda: torch.add(x3, bias, out=y3)), 8 * n, copy_gbs)

    x2 = x.view(8192, 8192)
    y2 = y.view(8192, 8192)
    report("copy_strided transpose", "[8192,8192]^T", median_ms(lambda: y2.copy_(x2.t())), 8 * n, copy_gbs)

    # q_sample: x_t = sqrt_ab x0 + sqrt_1mab eps with fresh eps (PyTorch: two kernels plus the RNG)
    xb = x.view(16, -1)
    sa = torch.rand(16, 1, device=dev)
    sb = torch.rand(16, 1, device=dev)

    def q_sample():
        eps = z.view(16, -1).normal_(generator=gen)
        torch.addcmul(sa * xb, sb, eps, out=y.view(16, -1))

    report("q_sample", "[16,4Mi]", median_ms(q_sample), 12 * n, copy_gbs)

    def sampler_step():
        x0 = (1.1 * xb - 0.7 * z.view(16, -1)).clamp_(-1, 1)
        w.view(16, -1).copy_(x0)
        noise = torch.randn_like(xb)
        y.view(16, -1).copy_(0.3 * x0 + 0.6 * xb + 0.1 * noise)

    report("sampler_step", "[16,4Mi]", median_ms(sampler_step), 16 * n, copy_gbs)

    p = torch.nn.Parameter(torch.randn(n, device=dev))
    p.grad = torch.randn(n, device=dev)
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, fused=True)
    report("adamw_step (fused)", "[64Mi]", median_ms(opt.step), 28 * n, copy_gbs)

    rows, cols = 16384, 4096
    xm = x.view(rows, cols)
    sums = torch.empty(rows, device=dev)
    report("row_sum", "[16384,4096]", median_ms(lambda: torch.sum(xm, dim=1, out=sums)), 4 * n, copy_gbs)
    report("softmax", "[16384,4096]", median_ms(lambda: torch.softmax(xm, dim=1)), 8 * n, copy_gbs)

    gamma = torch.randn(256, device=dev)
    beta = torch.randn(256, device=dev)
    report("group_norm_forward", "[16,256,16384] g=32",
           median_ms(lambda: F.group_norm(x3, 32, gamma, beta, 1e-5)), 8 * n, copy_gbs)

    s = 4096
    a = torch.randn(s, s, device=dev)
    b = torch.randn(s, s, device=dev)
    c = torch.empty(s, s, device=dev)
    torch.backends.cuda.matmul.allow_tf32 = False  # true FP32, like sgemm
    ms = median_ms(lambda: torch.matmul(a, b, out=c))
    print(f"{'sgemm (fp32, no tf32)':<22} {'4096^3':<26} {ms:>9.3} ms {2 * s**3 / ms / 1e9:>9.2f} TFLOP/s")

    a16, b16 = a.bfloat16(), b.bfloat16()
    ms = median_ms(lambda: torch.matmul(a16, b16))
    print(f"{'matmul bf16':<22} {'4096^3':<26} {ms:>9.3} ms {2 * s**3 / ms / 1e9:>9.2f} TFLOP/s")
    # rounding an f32 operand to bf16 (diffuse's pack_bf16): read 4 bytes, write 2 per element
    report("pack_bf16", "[4096,4096]", median_ms(lambda: a.to(torch.bfloat16)), 6 * s * s, copy_gbs)

    xc = torch.randn(8, 256, 64, 64, device=dev)
    wc = torch.randn(256, 256, 3, 3, device=dev)
    bc = torch.randn(256, device=dev)
    torch.backends.cudnn.allow_tf32 = False
    ms = median_ms(lambda: F.conv2d(xc, wc, bc, padding=1))
    flops = 2 * 8 * 256 * 64 * 64 * 256 * 9
    print(f"{'conv2d 3x3 (cuDNN fp32)':<22} {'[8,256,64,64]':<26} {ms:>9.3} ms {flops / ms / 1e9:>9.2f} TFLOP/s")

    qa = torch.randn(8, 8, 1024, 64, device=dev)
    ka = torch.randn(8, 8, 1024, 64, device=dev)
    va = torch.randn(8, 8, 1024, 64, device=dev)
    ms = median_ms(lambda: F.scaled_dot_product_attention(qa, ka, va))
    flops = 4 * 64 * 1024 * 1024 * 64
    print(f"{'sdpa fp32':<22} {'[64,1024,1024,64]':<26} {ms:>9.3} ms {flops / ms / 1e9:>9.2f} TFLOP/s")

    backward_kernels(dev)


# The shapes of backward_kernels in cuda_bench.rs: the U-Net's convolutions at batch 128, then attention.
UNET_CONVS = [("fashion 3x3", 128, 64, 28, 64, 1), ("fashion 3x3", 128, 128, 14, 128, 1),
              ("fashion down s2", 128, 64, 28, 64, 2), ("cifar 3x3", 128, 128, 32, 128, 1),
              ("cifar 3x3", 128, 256, 16, 256, 1)]
ATTENTION = [(512, 196, 32), (512, 256, 64), (64, 1024, 64), (8, 4096, 64)]


def backward_kernels(dev):
    torch.backends.cudnn.allow_tf32 = False
    for name, batch, channels, size, out_channels, stride in UNET_CONVS:
        x = torch.randn(batch, channels, size, size, device=dev)
        w = torch.randn(out_channels, channels, 3, 3, device=dev)
        b = torch.randn(out_channels, device=dev)
        y = F.conv2d(x, w, b, stride=stride, padding=1)
        dy = torch.randn_like(y)
        oh, ow = y.shape[2], y.shape[3]
        flop = 2 * batch * out_channels * oh * ow * channels * 9
        label = f"[{batch},{channels},{size},{size}]->{out_channels}"

        def backward(mask):
            return torch.ops.aten.convolution_backward(dy, x, w, [out_channels], [stride, stride], [1, 1], [1, 1],
                                                       False, [0, 0], 1, mask)

        # bf16: cuDNN on bf16 tensors (f32 accumulation; the casts are done beforehand and not timed, while diffuse's
        # bf16 passes round their f32 operands inside the timed call)
        x16, w16, b16, dy16 = x.bfloat16(), w.bfloat16(), b.bfloat16(), dy.bfloat16()

        def backward16(mask):
            return torch.ops.aten.convolution_backward(dy16, x16, w16, [out_channels], [stride, stride], [1, 1],
                                                       [1, 1], False, [0, 0], 1, mask)

        for pass_name, work in [("fwd", lambda: F.conv2d(x, w, b, stride=stride, padding=1)),
                                ("bwd-in", lambda: backward([True, False, False])),
                                ("bwd-w", lambda: backward([False, True, True])),
                                ("bf16 fwd", lambda: F.conv2d(x16, w16, b16, stride=stride, padding=1)),
                                ("bf16 bwd-in", lambda: backward16([True, False, False])),
                                ("bf16 bwd-w", lambda: backward16([False, True, True]))]:
            ms = median_ms(work)
            print(f"{'conv ' + pass_name + ' ' + name:<22} {label:<26} {ms:>9.3} ms {flop / ms / 1e9:>9.2f} TFLOP/s")

    for batch_heads, length, head_dim in ATTENTION:
        shape = (batch_heads, 1, length, head_dim)
        q, k, v = (torch.randn(shape, device=dev, requires_grad=True) for _ in range(3))
        out = F.scaled_dot_product_attention(q, k, v)
        g = torch.randn_like(out)
        pairs = batch_heads * length * length * head_dim
        label = f"[{batch_heads},{length},{length},{head_dim}]"
        with torch.no_grad():
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v))
        print(f"{'sdpa fp32 fwd':<22} {label:<26} {ms:>9.3} ms {4 * pairs / ms / 1e9:>9.2f} TFLOP/s")
        ms = median_ms(lambda: torch.autograd.grad(out, (q, k, v), g, retain_graph=True))
        print(f"{'sdpa fp32 bwd':<22} {label:<26} {ms:>9.3} ms {10 * pairs / ms / 1e9:>9.2f} TFLOP/s")


if __name__ == "__main__":
    main()
