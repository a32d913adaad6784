#!/usr/bin/env python3
"""Runs the kernels of kernels/index.ptx and kernels/select.ptx, and the element-wise op codes added for the tensor
backend (unary 13-16, binary 6), in the PTX interpreter against Python references. No GPU needed.

    python3 scripts/ptxsim/check_index_select.py
"""
import math, os, random, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import Module, Memory, launch, r32
from check_kernels import K, layout_bytes, close

NAN = float('nan')


def put_u64(mem, addr, vals):
    mem.write(addr, struct.pack(f'<{len(vals)}Q', *vals))


def f32s(mem, vals):
    addr = mem.alloc(4 * max(1, len(vals)))
    mem.put_f32(addr, [r32(v) for v in vals])
    return addr


def u64s(mem, vals):
    addr = mem.alloc(8 * max(1, len(vals)))
    put_u64(mem, addr, vals)
    return addr


def same(tag, got, want):
    ok = len(got) == len(want) and all(g == w or (g != g and w != w) for g, w in zip(got, want))
    assert ok, (tag, got, want)
    print(f'{tag}: exact')


def check_index():
    random.seed(5)
    mod = Module(open(K + 'index.ptx').read())
    # concat of three parts (one empty) along the middle of [outer, size_p, inner]
    for outer, inner, sizes in [(1, 1, [2, 0, 3]), (3, 2, [1, 4, 2]), (2, 5, [3, 1, 1])]:
        total = sum(sizes)
        parts = [[random.uniform(-1, 1) for _ in range(outer * s * inner)] for s in sizes]
        mem = Memory(); out = mem.alloc(4 * outer * total * inner)
        start = 0
        for part, size in zip(parts, sizes):
            n = outer * size * inner
            if n:
                p = f32s(mem, part)
                launch(mod, 'concat_part', (2, 1, 1), (8, 1, 1), [out, p, n, size * inner, total * inner, start * inner], mem)
            start += size
        want = []
        for o in range(outer):
            for part, size in zip(parts, sizes):
                want += [r32(v) for v in part[o * size * inner:(o + 1) * size * inner]]
        same(f'concat {outer, sizes, inner}', mem.get_f32(out, outer * total * inner), want)
    # index_select and its backward, with repeated and unused indices, k = 0
    for outer, dim, inner, idx in [(1, 1, 1, [0, 0, 0]), (2, 5, 3, [4, 0, 4, 2]), (3, 4, 1, [1]), (2, 3, 2, [])]:
        k = len(idx)
        src = [random.uniform(-2, 2) for _ in range(outer * dim * inner)]
        gout = [random.uniform(-2, 2) for _ in range(outer * k * inner)]
        mem = Memory(); ps = f32s(mem, src); pi = u64s(mem, idx); pg = f32s(mem, gout)
        out = mem.alloc(4 * max(1, outer * k * inner)); gsrc = mem.alloc(4 * outer * dim * inner)
        mem.put_f32(gsrc, [7.0] * (outer * dim * inner))        # overwritten, never accumulated into
        if outer * k * inner:
            launch(mod, 'index_select', (1, 1, 1), (16, 1, 1), [out, ps, pi, outer * k * inner, k, dim, inner], mem)
            want = [r32(src[(o * dim + idx[j]) * inner + c]) for o in range(outer) for j in range(k) for c in range(inner)]
            same(f'index_select {outer, dim, inner, idx}', mem.get_f32(out, outer * k * inner), want)
        launch(mod, 'index_select_backward', (1, 1, 1), (16, 1, 1), [gsrc, pg, pi, outer * dim * inner, k, dim, inner], mem)
        want = [0.0] * (outer * dim * inner)
        for o in range(outer):
            for j in range(k):
                for c in range(inner):
                    at = (o * dim + idx[j]) * inner + c
                    want[at] = r32(want[at] + r32(gout[(o * k + j) * inner + c]))
        same(f'index_select_backward {outer, dim, inner, idx}', mem.get_f32(gsrc, outer * dim * inner), want)
    # gather and its backward: an index per output element
    for outer, dim, inner, k in [(1, 1, 1, 3), (2, 4, 3, 5), (3, 2, 1, 1)]:
        n = outer * k * inner
        idx = [random.randrange(dim) for _ in range(n)]
        src = [random.uniform(-2, 2) for _ in range(outer * dim * inner)]
        gout = [random.uniform(-2, 2) for _ in range(n)]
        mem = Memory(); ps = f32s(mem, src); pi = u64s(mem, idx); pg = f32s(mem, gout)
        out = mem.alloc(4 * n); gsrc = mem.alloc(4 * outer * dim * inner)
        launch(mod, 'gather', (1, 1, 1), (16, 1, 1), [out, ps, pi, n, k, dim, inner], mem)
        want = [r32(src[((p // (k * inner)) * dim + idx[p]) * inner + p % inner]) for p in range(n)]
        same(f'gather {outer, dim, inner, k}', mem.get_f32(out, n), want)
        launch(mod, 'gather_backward', (1, 1, 1), (16, 1, 1), [gsrc, pg, pi, outer * dim * inner, k, dim, inner], mem)
        want = [0.0] * (outer * dim * inner)
        for p in range(n):
            o, c = p // (k * inner), p % inner
            at = (o * dim + idx[p]) * inner + c
            want[at] = r32(want[at] + r32(gout[p]))
        same(f'gather_backward {outer, dim, inner, k}', mem.get_f32(gsrc, outer * dim * inner), want)
    # an index out of range reads nothing: NaN forward, no term backward
    mem = Memory(); ps = f32s(mem, [1.0, 2.0]); pi = u64s(mem, [1, 9]); out = mem.alloc(8)
    launch(mod, 'index_select', (1, 1, 1), (4, 1, 1), [out, ps, pi, 2, 2, 2, 1], mem)
    got = mem.get_f32(out, 2)
    assert got[0] == 2.0 and got[1] != got[1], got
    print('index_select: an out-of-range index gives NaN')
    # nearest 2x upsampling and its backward
    for planes, h, w in [(1, 1, 1), (2, 3, 5), (3, 2, 1)]:
        src = [random.uniform(-2, 2) for _ in range(planes * h * w)]
        g = [random.uniform(-2, 2) for _ in range(planes * 4 * h * w)]
        mem = Memory(); ps = f32s(mem, src); pg = f32s(mem, g)
        out = mem.alloc(4 * planes * 4 * h * w); gsrc = mem.alloc(4 * planes * h * w)
        launch(mod, 'upsample_nearest2x', (2, 1, 1), (8, 1, 1), [out, ps, planes * 4 * h * w, h, w], mem)
        want = [r32(src[(p * h + y // 2) * w + x // 2]) for p in range(planes) for y in range(2 * h) for x in range(2 * w)]
        same(f'upsample_nearest2x {planes, h, w}', mem.get_f32(out, planes * 4 * h * w), want)
        launch(mod, 'upsample_nearest2x_backward', (2, 1, 1), (8, 1, 1), [gsrc, pg, planes * h * w, h, w], mem)
        G = [r32(v) for v in g]
        want = []
        for p in range(planes):
            for y in range(h):
                for x in range(w):
                    top = (p * 2 * h + 2 * y) * 2 * w + 2 * x
                    bottom = top + 2 * w
                    want.append(r32(r32(r32(G[top] + G[top + 1]) + G[bottom]) + G[bottom + 1]))
        same(f'upsample_nearest2x_backward {planes, h, w}', mem.get_f32(gsrc, planes * h * w), want)


def check_select():
    random.seed(6)
    mod = Module(open(K + 'select.ptx').read())
    n = 37
    cond = [random.choice([0.0, -0.0, 1.0, -2.5, NAN]) for _ in range(n)]
    a = [random.uniform(-1, 1) for _ in range(n)]
    b = [random.uniform(-1, 1) for _ in range(n)]
    mem = Memory(); pc = f32s(mem, cond); pa = f32s(mem, a); pb = f32s(mem, b); out = mem.alloc(4 * n)
    launch(mod, 'where_select', (2, 1, 1), (8, 1, 1), [out, pc, pa, pb, n], mem)
    same('where_select', mem.get_f32(out, n), [r32(x) if c != 0.0 or c != c else r32(y) for c, x, y in zip(cond, a, b)])
    rows = [[3.0], [1.0, 5.0, 5.0, 2.0], [-1.0, NAN, 4.0, NAN], [NAN, 9.0], [-3.0, -2.0, -2.5],
            [random.uniform(-1, 1) for _ in range(13)]]
    for row in rows:
        mem = Memory(); px = f32s(mem, row * 3); out = mem.alloc(12)
        launch(mod, 'row_argmax', (1, 1, 1), (2, 1, 1), [out, px, 3, len(row)], mem)
        best = 0
        for j, x in enumerate(row):
            if x > row[best] or (x != x and row[best] == row[best]):
                best = j
        same(f'row_argmax {row[:4]}', mem.get_f32(out, 3), [float(best)] * 3)


def check_elementwise_additions():
    random.seed(7)
    mod = Module(open(K + 'elementwise.ptx').read())
    xs = [random.uniform(-8, 8) for _ in range(20)] + [0.5, -0.25, NAN]
    refs = {13: lambda x, a, b: r32(x * x), 14: lambda x, a, b: r32(1 / x), 15: lambda x, a, b: 0.0 if x != x else max(x, 0.0),
            16: lambda x, a, b: r32(r32(x * a) + b)}
    for op, (alpha, beta) in [(13, (0, 0)), (14, (0, 0)), (15, (0, 0)), (16, (-1.5, 0.25))]:
        n = len(xs)
        mem = Memory(); px = f32s(mem, xs); out = mem.alloc(4 * n)
        launch(mod, 'unary_strided', (1, 1, 1), (32, 1, 1), [out, px, n, op, alpha, beta, layout_bytes([n], [1], [1])], mem)
        same(f'unary op {op}', mem.get_f32(out, n), [refs[op](r32(x), r32(alpha), r32(beta)) for x in xs])
    # silu_backward on a broadcast gradient: g s (1 + x (1 - s))
    shape = [3, 4]; sa = [4, 1]; sb = [1, 0]
    x = [random.uniform(-6, 6) for _ in range(12)]; g = [random.uniform(-2, 2) for _ in range(3)]
    mem = Memory(); px = f32s(mem, x); pg = f32s(mem, g); out = mem.alloc(48)
    launch(mod, 'binary_strided', (1, 1, 1), (32, 1, 1), [out, px, pg, 12, 6, layout_bytes(shape, sa, sb)], mem)
    want = []
    for i in range(12):
        xv, gv = r32(x[i]), r32(g[i // 4])
        s = 1 / (1 + math.exp(-xv))
        want.append(gv * s * (1 + xv * (1 - s)))
    close('binary silu_backward', mem.get_f32(out, 12), want)


if __name__ == '__main__':
    for check in (check_index, check_select, check_elementwise_additions):
        print(f'== {check.__name__}')
        check()
    print('index.ptx, select.ptx and the new element-wise ops match their references')
