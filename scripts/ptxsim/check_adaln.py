#!/usr/bin/env python3
"""Runs the kernels of a DiT block's adaLN -- kernels/layer_norm_modulate.ptx and kernels/gated_residual.ptx -- and
the tanh-GELU op codes of kernels/elementwise.ptx (unary 17, binary 7) in the PTX interpreter against Python
references in f64, on awkward shapes: batch 1, one token, one feature, dim not a multiple of the warp, dim beyond one
256-thread block, rows beyond one block of 8 warps. No GPU needed.

    python3 scripts/ptxsim/check_adaln.py
"""
import math, os, random, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import Module, Memory, launch, r32
from check_kernels import K, layout_bytes, close


def f32s(mem, vals):
    addr = mem.alloc(4 * max(1, len(vals)))
    mem.put_f32(addr, [r32(v) for v in vals])
    return addr


def rand(n, lo=-1.0, hi=1.0):
    return [r32(random.uniform(lo, hi)) for _ in range(n)]


def modulate_ref(B, T, D, x, scale, shift, eps):
    y, mean, rstd = [], [], []
    for r in range(B * T):
        n = r // T
        row = x[r * D:(r + 1) * D]
        mu = sum(row) / D
        var = sum((v - mu) ** 2 for v in row) / D
        rs = 1 / math.sqrt(var + eps)
        y += [(v - mu) * rs * (1 + scale[n * D + c]) + shift[n * D + c] for c, v in enumerate(row)]
        mean.append(mu); rstd.append(rs)
    return y, mean, rstd


def modulate_backward_ref(B, T, D, x, scale, dy, eps):
    _, mean, rstd = modulate_ref(B, T, D, x, scale, [0.0] * (B * D), eps)
    dx, dscale, dshift = [], [0.0] * (B * D), [0.0] * (B * D)
    for r in range(B * T):
        n = r // T
        xh = [(v - mean[r]) * rstd[r] for v in x[r * D:(r + 1) * D]]
        ag = [(1 + scale[n * D + c]) * dy[r * D + c] for c in range(D)]
        a, b = sum(ag) / D, sum(g * h for g, h in zip(ag, xh)) / D
        dx += [rstd[r] * (g - a - h * b) for g, h in zip(ag, xh)]
        for c in range(D):
            dscale[n * D + c] += dy[r * D + c] * xh[c]
            dshift[n * D + c] += dy[r * D + c]
    return dx, dscale, dshift


def check_layer_norm_modulate():
    random.seed(19)
    mod = Module(open(K + 'layer_norm_modulate.ptx').read())
    eps = 1e-6
    for B, T, D in [(1, 1, 1), (2, 3, 5), (1, 9, 33), (3, 4, 70), (1, 2, 300)]:
        rows = B * T
        x = [r32(0.5 + 2 * random.uniform(-1, 1)) for _ in range(rows * D)]
        scale, shift, dy = rand(B * D), rand(B * D), rand(rows * D)
        mem = Memory()
        px, ps, pb = f32s(mem, x), f32s(mem, scale), f32s(mem, shift)
        py, pm, pr = mem.alloc(4 * rows * D), mem.alloc(4 * rows), mem.alloc(4 * rows)
        launch(mod, 'layer_norm_modulate_forward', ((rows + 7) // 8, 1, 1), (256, 1, 1),
               [px, ps, pb, py, pm, pr, rows, T, D, eps], mem)
        wy, wm, wr = modulate_ref(B, T, D, x, scale, shift, eps)
        # rows of one element have var 0 and rstd = 1/sqrt(eps) = 1000: the f32 mean's rounding is amplified by it
        tol = 1e-5 if D > 1 else 1e-3
        close(f'modulate y {B, T, D}', mem.get_f32(py, rows * D), wy, tol)
        close(f'modulate mean {B, T, D}', mem.get_f32(pm, rows), wm, 1e-6)
        close(f'modulate rstd {B, T, D}', mem.get_f32(pr, rows), wr, tol)
        pdy = f32s(mem, dy)
        pdx, pds, pdb = mem.alloc(4 * rows * D), mem.alloc(4 * B * D), mem.alloc(4 * B * D)
        launch(mod, 'layer_norm_modulate_backward_dx', ((rows + 7) // 8, 1, 1), (256, 1, 1),
               [px, ps, pm, pr, pdy, pdx, rows, T, D], mem)
        chunks = (D + 255) // 256
        launch(mod, 'layer_norm_modulate_backward_cond', (B * chunks, 1, 1), (256, 1, 1),
               [px, pm, pr, pdy, pds, pdb, B, T, D], mem)
        wdx, wds, wdb = modulate_backward_ref(B, T, D, x, scale, dy, eps)
        # dx of a one-element row is 0 up to rounding of size rstd * 2^-24 * |a dy| ~ 1e-4
        close(f'modulate dx {B, T, D}', mem.get_f32(pdx, rows * D), wdx, 1e-4 if D > 1 else 1e-3)
        close(f'modulate dscale {B, T, D}', mem.get_f32(pds, B * D), wds, 1e-5 if D > 1 else 1e-3)
        close(f'modulate dshift {B, T, D}', mem.get_f32(pdb, B * D), wdb, 1e-5)


def check_gated_residual():
    random.seed(20)
    mod = Module(open(K + 'gated_residual.ptx').read())
    for B, T, D in [(1, 1, 1), (2, 3, 5), (1, 9, 33), (3, 2, 260)]:
        n = B * T * D
        x, gate, y, dout = rand(n), rand(B * D), rand(n, -3, 3), rand(n)
        mem = Memory()
        px, pg, py, pd = f32s(mem, x), f32s(mem, gate), f32s(mem, y), f32s(mem, dout)
        pout, pdy, pdg = mem.alloc(4 * n), mem.alloc(4 * n), mem.alloc(4 * B * D)
        # two blocks of 32 threads: the grid-stride loop must cover every element whatever the grid
        launch(mod, 'gated_residual_forward', (2, 1, 1), (32, 1, 1), [px, pg, py, pout, n, T * D, D], mem)
        want = [x[i] + gate[(i // (T * D)) * D + i % D] * y[i] for i in range(n)]
        close(f'gated out {B, T, D}', mem.get_f32(pout, n), want, 1e-6)
        chunks = (D + 255) // 256
        launch(mod, 'gated_residual_backward', (B * chunks, 1, 1), (256, 1, 1), [pg, py, pd, pdy, pdg, B, T, D], mem)
        wdy = [gate[(i // (T * D)) * D + i % D] * dout[i] for i in range(n)]
        wdg = [sum(dout[(b * T + l) * D + c] * y[(b * T + l) * D + c] for l in range(T)) for b in range(B) for c in range(D)]
        close(f'gated dy {B, T, D}', mem.get_f32(pdy, n), wdy, 1e-6)
        close(f'gated dgate {B, T, D}', mem.get_f32(pdg, B * D), wdg, 1e-5)


def gelu_tanh(x):
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return x / (1 + math.exp(-2 * u)) if -2 * u < 700 else 0.0


def check_activation(name, f, unary_op, binary_op):
    # an activation's unary op code of kernels/elementwise.ptx against its Python definition, and its fused gradient
    # (binary op code) against central differences of that definition, over both tails and the bend
    mod = Module(open(K + 'elementwise.ptx').read())
    xs = [-12.0, -6.0, -3.0, -1.0, -0.3, -1e-3, 0.0, 1e-3, 0.5, 1.0, 2.5, 7.0, 15.0]
    n = len(xs)
    mem = Memory(); px = f32s(mem, xs); pout = mem.alloc(4 * n)
    launch(mod, 'unary_strided', (1, 1, 1), (32, 1, 1), [pout, px, n, unary_op, 0.0, 0.0, layout_bytes([n], [1], [1])],
           mem)
    close(name, mem.get_f32(pout, n), [f(x) for x in xs], 1e-5)
    g = [r32(random.uniform(-2, 2)) for _ in xs]
    pg = f32s(mem, g)
    launch(mod, 'binary_strided', (1, 1, 1), (32, 1, 1), [pout, px, pg, n, binary_op, layout_bytes([n], [1], [1])], mem)
    h = 1e-5
    want = [gi * (f(x + h) - f(x - h)) / (2 * h) for x, gi in zip(xs, g)]
    close(name + '_backward', mem.get_f32(pout, n), want, 1e-5)


def gelu(x):
    return x * 0.5 * math.erfc(-x / math.sqrt(2))


CHECKS = {'layer_norm_modulate': check_layer_norm_modulate, 'gated_residual': check_gated_residual,
          'gelu_tanh': lambda: check_activation('gelu_tanh', gelu_tanh, 17, 7),  # the tanh GELU
          'gelu': lambda: check_activation('gelu', gelu, 7, 8)}  # the exact GELU (erfc)

if __name__ == '__main__':
    for name in sys.argv[1:] or list(CHECKS):
        print(f'== {name}')
        CHECKS[name]()
    print('all adaLN kernels match their references')
