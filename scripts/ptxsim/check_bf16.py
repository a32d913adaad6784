#!/usr/bin/env python3
"""Runs kernels/pack_bf16.ptx in the PTX interpreter, alone and as the first half of the CUDA backend's bf16 matmul
(pack A, pack B, kernels/gemm_bf16.ptx), against Python references. No GPU needed.

    python3 scripts/ptxsim/check_bf16.py

- pack_bf16 is held bit for bit against an independent rounding reference (round bit and sticky bits, the way
  half::bf16::from_f32 states it) on strided, transposed and broadcast sources, ragged padding, ties in both
  directions, overflow to infinity, infinities, NaNs, subnormals and signed zeros.
- The whole bf16 product of f32 operands is held against the f64 product of the unrounded operands within
  (2^-8 + (k + 2) 2^-24) sum_i |a_i b_i|: rounding each operand to bf16 costs at most 2^-9 relative (8 significant
  bits, round to nearest), so each product at most 2^-8 + 2^-18, and the f32 accumulation of k products
  (k + 2) 2^-24 of their magnitude sum. The GPU test of the tensor crate uses the same bound.
"""
import os, random, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import Module, Memory, launch, f2b, b2f, r32, bf16_to_f
from check_kernels import K

PACK = Module(open(K + 'pack_bf16.ptx').read())
GEMM = Module(open(K + 'gemm_bf16.ptx').read())


def bf16_reference(bits):
    """Round-to-nearest-even of the f32 with these bits, stated with a round bit and sticky bits."""
    if bits & 0x7FFFFFFF > 0x7F800000:
        return (bits >> 16) | 0x0040
    kept, round_bit, sticky = bits >> 16, (bits >> 15) & 1, bits & 0x7FFF
    if round_bit and (sticky or kept & 1):
        kept += 1
    return kept & 0xFFFF


def pack(mem, src, rows, cols, row_stride, col_stride, rows_out, cols_out):
    """Launches pack_bf16 (a small grid, so that the grid-stride loop turns) and returns the output's bf16 bits."""
    dst = mem.alloc(2 * rows_out * cols_out)
    launch(PACK, 'pack_bf16', (2, 1, 1), (32, 1, 1),
           [dst, src, rows, cols, row_stride, col_stride, rows_out, cols_out], mem)
    return list(struct.unpack(f'<{rows_out * cols_out}H', mem.read(dst, 2 * rows_out * cols_out))), dst


def put_bits(mem, bits):
    addr = mem.alloc(4 * len(bits))
    mem.write(addr, struct.pack(f'<{len(bits)}I', *bits))
    return addr


def check_rounding():
    special = [
        0x3F808000,  # 1 + 2^-8: a tie, the kept half is even -> stays
        0x3F818000,  # a tie with an odd kept half -> rounds up to even
        0x3F808001,  # just above a tie -> up
        0x3F807FFF,  # just below -> down
        0x7F7FFFFF,  # the largest f32: past the largest bf16 by more than half an ulp -> infinity
        0x7F7F7FFF,  # rounds down to the largest bf16
        0xFF7FFFFF,  # -> -infinity
        0x7F800000, 0xFF800000,  # infinities
        0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F80FFFF,  # NaNs, two of them signalling with low payloads
        0x00000001, 0x00008000, 0x00018000, 0x807FFFFF,  # subnormals: the same integer rounding applies
        0x00000000, 0x80000000,  # signed zeros
    ]
    rnd = random.Random(3)
    values = special + [f2b(rnd.uniform(-1e3, 1e3)) for _ in range(45)] + [rnd.getrandbits(32) for _ in range(64)]
    assert len(values) % 8 == 0  # one row of whole 16-byte chunks, as pack_bf16 requires
    mem = Memory()
    src = put_bits(mem, values)
    got, _ = pack(mem, src, 1, len(values), 0, 1, 1, len(values))
    want = [bf16_reference(b) for b in values]
    bad = [(hex(v), hex(g), hex(w)) for v, g, w in zip(values, got, want) if g != w]
    assert not bad, bad[:5]
    assert got[special.index(0x7F7FFFFF)] == 0x7F80 and got[special.index(0x7F800001)] & 0x7FC0 == 0x7FC0
    print(f'pack_bf16 rounding: {len(values)} values bit for bit (ties, overflow, infinities, NaNs, subnormals)')


def check_layouts():
    rnd = random.Random(4)
    # (rows, cols, how the source is laid out, rows_out, cols_out)
    for rows, cols, layout, rows_out, cols_out in [
        (3, 5, 'row-major', 3, 8),      # ragged columns padded
        (5, 3, 'transposed', 8, 8),     # ragged rows and columns padded, source read down its columns
        (4, 16, 'row-major', 4, 16),    # no padding
        (2, 7, 'broadcast rows', 8, 8), # a stride-0 row dimension
        (1, 1, 'row-major', 1, 8),      # one element
    ]:
        base = [r32(rnd.uniform(-4, 4)) for _ in range(rows * cols)]
        mem = Memory()
        if layout == 'row-major':
            src, rs, cs, at = base, cols, 1, lambda r, c: base[r * cols + c]
        elif layout == 'transposed':
            src = [base[r * cols + c] for c in range(cols) for r in range(rows)]  # stored [cols, rows]
            rs, cs, at = 1, rows, lambda r, c: base[r * cols + c]
        else:
            src, rs, cs, at = base[:cols], 0, 1, lambda r, c: base[c]
        addr = mem.alloc(4 * len(src))
        mem.put_f32(addr, src)
        got, _ = pack(mem, addr, rows, cols, rs, cs, rows_out, cols_out)
        want = [bf16_reference(f2b(at(r, c))) if r < rows and c < cols else 0
                for r in range(rows_out) for c in range(cols_out)]
        assert got == want, (layout, got, want)
        print(f'pack_bf16 {layout} [{rows}, {cols}] -> [{rows_out}, {cols_out}]: exact, padding zero')


def round8(x):
    return (x + 7) // 8 * 8


def check_matmul():
    """C = A B of f32 operands through pack, pack, gemm_bf16, as the CUDA backend runs it; A is a transposed view."""
    rnd = random.Random(5)
    for m, n, k in [(3, 5, 7), (9, 16, 8), (1, 3, 20), (33, 10, 13)]:
        a = [r32(rnd.uniform(-2, 2)) for _ in range(m * k)]
        b = [r32(rnd.uniform(-2, 2)) for _ in range(k * n)]
        kp, np_ = round8(k), round8(n)
        mem = Memory()
        at = mem.alloc(4 * m * k)
        mem.put_f32(at, [a[r * k + x] for x in range(k) for r in range(m)])  # A stored transposed: [k, m]
        bp = mem.alloc(4 * k * n)
        mem.put_f32(bp, b)
        _, pa = pack(mem, at, m, k, 1, m, m, kp)
        _, pb = pack(mem, bp, k, n, n, 1, kp, np_)
        c = mem.alloc(4 * m * np_)
        launch(GEMM, 'gemm_bf16', ((np_ + 127) // 128, (m + 127) // 128, 1), (256, 1, 1),
               [pa, pb, c, m, np_, kp, 1.0, 0.0], mem)
        got = mem.get_f32(c, m * np_)
        worst = 0.0
        for r in range(m):
            for col in range(n):
                terms = [a[r * k + x] * b[x * n + col] for x in range(k)]
                bound = (2 ** -8 + (k + 2) * 2 ** -24) * sum(abs(t) for t in terms)
                error = abs(got[r * np_ + col] - sum(terms))
                assert error <= bound, (m, n, k, r, col, error, bound)
                worst = max(worst, error / bound if bound else 0.0)
            assert all(v == 0.0 for v in got[r * np_ + n:(r + 1) * np_]), 'the padded columns of C are not zero'
        print(f'bf16 matmul [{m}, {k}] x [{k}, {n}]: within the bf16 bound (at most {worst:.2f} of it)')


if __name__ == '__main__':
    check_rounding()
    check_layouts()
    check_matmul()
