#!/usr/bin/env python3
"""Runs kernels/conv2d_bf16.ptx in the PTX interpreter, alone and in the three bf16 convolution products of the CUDA
backend (crates/cuda-kernels/src/conv_bf16.rs), against Python references. No GPU needed.

    python3 scripts/ptxsim/check_conv_bf16.py

- im2col_bf16 bit for bit against a gather + round-to-nearest-even reference, in both layouts (col [K8, Q8] and
  col^T [Q8, K8]) and as the 1x1 gather that lays out dy as dY [OC, Q8]; padding rows and columns zero.
- col2im bit for bit against the same fold in f32, in the kernel's order (kh outer, kw inner).
- The forward (pack W, im2col, gemm_bf16), the input gradient (pack W^T, dY, gemm_bf16, col2im) and the weight
  gradient (dY, col^T, gemm_bf16 over two chunks of samples, the second accumulating with beta = 1) against the f64
  products of the unrounded f32 operands, each element within
      (2^-8 + (R + 2) 2^-24) sum |terms|
  where R is the number of f32 additions on the longest path to that element: rounding both factors of a term to bf16
  costs at most (1 + 2^-9)^2 - 1 < 2^-8 + 2^-18 of it, and each f32 addition 2^-24 of the running magnitude. R is
  K = C KH KW for the forward, OC + KH KW for the input gradient (the product, then the fold) and Q + chunks for the
  weight gradient (the product over each chunk's pixels, then adding the chunks). The GPU tests use the same bounds.
"""
import os, random, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import Module, Memory, launch, f2b, b2f, r32
from check_kernels import K
from check_bf16 import bf16_reference, pack, round8

CONV = Module(open(K + 'conv2d_bf16.ptx').read())
GEMM = Module(open(K + 'gemm_bf16.ptx').read())

# (batch, C, H, W, OC, KH, KW, stride, padding, dilation): a 'same' 3x3; stride 2 without padding on one channel and
# batch 1; stride 2, padding 2, dilation 2 (taps reaching outside on both sides); a 1x1 with more output channels
# than a k step of 8 has; a 3x3 over 4 channels (K = 36, two 16-deep k steps of gemm_bf16 and a ragged 8)
SHAPES = [(2, 3, 5, 4, 5, 3, 3, 1, 1, 1), (1, 1, 7, 6, 2, 3, 3, 2, 0, 1), (2, 2, 6, 6, 3, 3, 3, 2, 2, 2),
          (1, 4, 3, 3, 9, 1, 1, 1, 0, 1), (1, 4, 4, 5, 3, 3, 3, 1, 1, 1)]


def out_hw(H, W, KH, KW, s, p, d):
    return (H + 2 * p - d * (KH - 1) - 1) // s + 1, (W + 2 * p - d * (KW - 1) - 1) // s + 1


def im2col(mem, x, rows_out, cols_out, transposed, geo, grid=None):
    """Launches im2col_bf16 (by default a grid smaller than the matrix, so both loops turn) -> (bits, address)."""
    dst = mem.alloc(2 * rows_out * cols_out)
    launch(CONV, 'im2col_bf16', grid or (1, 3, 1), (32, 1, 1), [dst, x, rows_out, cols_out, int(transposed)] + geo, mem)
    return list(struct.unpack(f'<{rows_out * cols_out}H', mem.read(dst, 2 * rows_out * cols_out))), dst


def col_value(X, geo, r, q):
    """col[r, q] of the convolution `geo` on X (f32 values), or None past K or Q."""
    N, C, H, W, KH, KW, s, p, d, OH, OW = geo
    if r >= C * KH * KW or q >= N * OH * OW:
        return None
    c, kh, kw = r // (KH * KW), r // KW % KH, r % KW
    n, oh, ow = q // (OH * OW), q // OW % OH, q % OW
    ih, iw = oh * s + kh * d - p, ow * s + kw * d - p
    return X[((n * C + c) * H + ih) * W + iw] if 0 <= ih < H and 0 <= iw < W else 0.0


def check_im2col():
    rnd = random.Random(11)
    for N, C, H, W, OC, KH, KW, s, p, d in SHAPES:
        OH, OW = out_hw(H, W, KH, KW, s, p, d)
        geo = [N, C, H, W, KH, KW, s, p, d, OH, OW]
        k8, q8 = round8(C * KH * KW), round8(N * OH * OW)
        X = [r32(rnd.uniform(-3, 3)) for _ in range(N * C * H * W)]
        mem = Memory()
        x = mem.alloc(4 * len(X))
        mem.put_f32(x, X)
        for transposed, rows_out, cols_out in [(False, k8, q8), (True, q8, k8)]:
            got, _ = im2col(mem, x, rows_out, cols_out, transposed, geo)
            want = []
            for i in range(rows_out):
                for j in range(cols_out):
                    v = col_value(X, geo, j if transposed else i, i if transposed else j)
                    want.append(0 if v is None else bf16_reference(f2b(v)))
            assert got == want, ('im2col_bf16', transposed, (N, C, H, W, KH, KW, s, p, d))
        # dy as dY [OC, Q8]: the 1x1 gather over OC channels of OH x OW
        DY = [r32(rnd.uniform(-3, 3)) for _ in range(N * OC * OH * OW)]
        dy = mem.alloc(4 * len(DY))
        mem.put_f32(dy, DY)
        got, _ = im2col(mem, dy, OC, q8, False, [N, OC, OH, OW, 1, 1, 1, 0, 1, OH, OW])
        want = [bf16_reference(f2b(DY[((q // (OH * OW)) * OC + oc) * OH * OW + q % (OH * OW)])) if q < N * OH * OW else 0
                for oc in range(OC) for q in range(q8)]
        assert got == want, ('im2col_bf16 1x1 of dy', (N, OC, OH, OW))
    print(f'im2col_bf16: {len(SHAPES)} shapes, col, col^T and dY bit for bit, padding zero')


def fold(DCOL, ld, geo):
    """col2im in f32, in the kernel's order."""
    N, C, H, W, KH, KW, s, p, d, OH, OW = geo
    out = []
    for n in range(N):
        for c in range(C):
            for ih in range(H):
                for iw in range(W):
                    acc = 0.0
                    for kh in range(KH):
                        th = ih + p - kh * d
                        if th < 0 or th % s or th // s >= OH:
                            continue
                        for kw in range(KW):
                            tw = iw + p - kw * d
                            if tw < 0 or tw % s or tw // s >= OW:
                                continue
                            r, q = (c * KH + kh) * KW + kw, (n * OH + th // s) * OW + tw // s
                            acc = r32(acc + DCOL[r * ld + q])
                    out.append(acc)
    return out


def check_col2im():
    rnd = random.Random(12)
    for N, C, H, W, OC, KH, KW, s, p, d in SHAPES:
        OH, OW = out_hw(H, W, KH, KW, s, p, d)
        geo = [N, C, H, W, KH, KW, s, p, d, OH, OW]
        k, ld = C * KH * KW, round8(N * OH * OW) + 8      # a row stride past the padded width
        DCOL = [r32(rnd.uniform(-1, 1)) for _ in range(k * ld)]
        mem = Memory()
        dcol, dx = mem.alloc(4 * len(DCOL)), mem.alloc(4 * N * C * H * W)
        mem.put_f32(dcol, DCOL)
        launch(CONV, 'col2im', (2, 1, 1), (32, 1, 1), [dx, dcol, ld] + geo, mem)
        got, want = mem.get_f32(dx, N * C * H * W), fold(DCOL, ld, geo)
        assert [f2b(v) for v in got] == [f2b(v) for v in want], ('col2im', geo)
    print(f'col2im: {len(SHAPES)} shapes bit for bit (the f32 fold in the same order)')


def gemm(mem, a, b, c, m, n, k, beta):
    launch(GEMM, 'gemm_bf16', ((n + 127) // 128, (m + 127) // 128, 1), (256, 1, 1), [a, b, c, m, n, k, 1.0, beta], mem)


def within(tag, got, terms, additions):
    worst = 0.0
    for i, (g, ts) in enumerate(zip(got, terms)):
        bound = (2 ** -8 + (additions + 2) * 2 ** -24) * sum(abs(t) for t in ts)
        error = abs(g - sum(ts))
        assert error <= bound, (tag, i, g, sum(ts), bound)
        worst = max(worst, error / bound if bound else 0.0)
    return worst


def check_products():
    rnd = random.Random(13)
    for N, C, H, W, OC, KH, KW, s, p, d in SHAPES:
        OH, OW = out_hw(H, W, KH, KW, s, p, d)
        geo = [N, C, H, W, KH, KW, s, p, d, OH, OW]
        k, q = C * KH * KW, N * OH * OW
        k8, q8, oc8 = round8(k), round8(q), round8(OC)
        X = [r32(rnd.uniform(-1, 1)) for _ in range(N * C * H * W)]
        Wt = [r32(rnd.uniform(-1, 1)) for _ in range(OC * k)]
        DY = [r32(rnd.uniform(-1, 1)) for _ in range(N * OC * OH * OW)]
        mem = Memory()
        x, w, dy = mem.alloc(4 * len(X)), mem.alloc(4 * len(Wt)), mem.alloc(4 * len(DY))
        mem.put_f32(x, X)
        mem.put_f32(w, Wt)
        mem.put_f32(dy, DY)
        # the terms of each output of the three products, from the f32 values
        terms_y = [[] for _ in range(OC * q)]
        terms_dx = [[] for _ in X]
        terms_dw = [[] for _ in Wt]
        for n in range(N):
            for oc in range(OC):
                for oh in range(OH):
                    for ow in range(OW):
                        qi = (n * OH + oh) * OW + ow
                        g = DY[((n * OC + oc) * OH + oh) * OW + ow]
                        for c in range(C):
                            for kh in range(KH):
                                for kw in range(KW):
                                    ih, iw = oh * s + kh * d - p, ow * s + kw * d - p
                                    if 0 <= ih < H and 0 <= iw < W:
                                        xi, wi = ((n * C + c) * H + ih) * W + iw, ((oc * C + c) * KH + kh) * KW + kw
                                        terms_y[oc * q + qi].append(Wt[wi] * X[xi])
                                        terms_dx[xi].append(Wt[wi] * g)
                                        terms_dw[wi].append(X[xi] * g)
        # forward: Y [OC, Q8] = W [OC, K8] . col [K8, Q8]
        _, pw = pack(mem, w, OC, k, k, 1, OC, k8)
        _, col = im2col(mem, x, k8, q8, False, geo)
        y = mem.alloc(4 * OC * q8)
        gemm(mem, pw, col, y, OC, q8, k8, 0.0)
        got = mem.get_f32(y, OC * q8)
        assert all(got[oc * q8 + j] == 0.0 for oc in range(OC) for j in range(q, q8)), 'padded columns of Y'
        worst_y = within('forward', [got[oc * q8 + j] for oc in range(OC) for j in range(q)], terms_y, k)
        # input gradient: dcol [K, Q8] = W^T [K, OC8] . dY [OC8, Q8], then the fold
        _, pwt = pack(mem, w, k, OC, 1, k, k, oc8)
        _, dyc = im2col(mem, dy, oc8, q8, False, [N, OC, OH, OW, 1, 1, 1, 0, 1, OH, OW])
        dcol, dx = mem.alloc(4 * k * q8), mem.alloc(4 * len(X))
        gemm(mem, pwt, dyc, dcol, k, q8, oc8, 0.0)
        launch(CONV, 'col2im', (1, 1, 1), (256, 1, 1), [dx, dcol, q8] + geo, mem)
        worst_dx = within('input gradient', mem.get_f32(dx, len(X)), terms_dx, OC + KH * KW)
        # weight gradient over two chunks of samples (all of them in one when N = 1): dW [OC, K8] = dY . col^T
        dw = mem.alloc(4 * OC * k8)
        chunks = [(0, 1), (1, N)] if N > 1 else [(0, 1)]
        for index, (n0, n1) in enumerate(chunks):
            qc = (n1 - n0) * OH * OW
            qc8 = round8(qc)
            _, dyc = im2col(mem, dy + 4 * n0 * OC * OH * OW, OC, qc8, False,
                            [n1 - n0, OC, OH, OW, 1, 1, 1, 0, 1, OH, OW])
            _, colt = im2col(mem, x + 4 * n0 * C * H * W, qc8, k8, True, [n1 - n0] + geo[1:])
            gemm(mem, dyc, colt, dw, OC, k8, qc8, 1.0 if index else 0.0)
        got = mem.get_f32(dw, OC * k8)
        worst_dw = within('weight gradient', [got[oc * k8 + j] for oc in range(OC) for j in range(k)], terms_dw,
                          q + len(chunks))
        print(f'bf16 convolution {(N, C, H, W, OC, KH, KW, s, p, d)}: forward, input and weight gradients within the '
              f'bf16 bound (at most {max(worst_y, worst_dx, worst_dw):.2f} of it)')


if __name__ == '__main__':
    check_im2col()
    check_col2im()
    check_products()
