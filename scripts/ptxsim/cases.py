"""Small launches of every kernel entry point in kernels/*.ptx, for the simulated sanitizers (sanitize.py).

A case is a function of a Run, registered with @case(file, entries it covers): it allocates buffers and launches the
entries as the Rust wrappers in crates/cuda-kernels/src/ do (256-thread blocks, the same grids and arguments), on
shapes small enough for the interpreter and awkward enough to reach every edge: ragged tiles, more than one block,
grid-stride loops that wrap, batch 1, null optional pointers. Values matter to the sanitizers only where they steer
control flow (indices, masks), so inputs are seeded uniform random numbers. A buffer the host leaves unfilled (an
output) comes from `out`: it holds garbage, and a kernel that reads it before writing it is reported by initcheck.

To cover a new kernel, add a function here like the ones below; sanitize.py fails while any entry point of
kernels/*.ptx is launched by no case, and when a case does not launch every entry it names.
"""
import math

from check_kernels import layout_bytes

CASES = []


def case(ptx, *entries):
    def register(fn):
        CASES.append(Case(fn, ptx, entries))
        return fn
    return register


class Case:
    def __init__(self, fn, ptx, entries):
        self.fn, self.ptx, self.entries, self.name = fn, ptx, entries, f'{ptx}:{fn.__name__}'


NEG_INF = float('-inf')


@case('adamw.ptx', 'adamw_step')
def adamw(k):
    n = 300                                     # one 256-thread block: the grid-stride loop wraps once
    p, g, m = k.f32(n), k.f32(n), k.f32(n)
    v = k.f32(n, 0.0, 0.01)
    k.launch('adamw_step', (1, 1, 1), [p, g, m, v, n, 0.999, 0.9, 0.999, 1e-3, 1.5, 1e-8])


@case('philox.ptx', 'fill_uniform', 'fill_normal')
def philox(k):
    for entry in ('fill_uniform', 'fill_normal'):
        for n, offset in [(9, 0), (2070, 3)]:   # 2070 + 3 outputs: 519 Philox blocks over 2 x 256 threads
            k.launch(entry, (2, 1, 1), [k.out(4 * n), n, 0xDEADBEEF12345678, offset])


@case('noise.ptx', 'q_sample', 'sampler_step')
def noise(k):
    batch, per = 3, 101
    n = batch * per
    x0, sa, sb = k.f32(n), k.f32(batch, 0, 1), k.f32(batch, 0, 1)
    xt, eps = k.out(4 * n), k.out(4 * n)
    k.launch('q_sample', (1, 1, 1), [x0, sa, sb, xt, eps, n, per, 99, 5])
    coef = k.f32(5 * batch)
    for clip in (0, 1):
        k.launch('sampler_step', (1, 1, 1), [xt, eps, coef, k.out(4 * n), k.out(4 * n), n, per, clip, 99, 5])


@case('elementwise.ptx', 'unary_strided', 'binary_strided')
def elementwise(k):
    # every op code on a transposed [7, 9] view; exp on a broadcast [3, 1, 5]; the copy of a transposed [17, 19]
    # (323 elements: the grid-stride loop wraps)
    x = k.f32(17 * 19, 0.05, 4.0)
    for op in range(18):
        a, b = {10: (1.7, 0.0), 11: (-0.5, 0.75), 16: (-1.5, 0.25)}.get(op, (0.0, 0.0))
        k.launch('unary_strided', (1, 1, 1), [k.out(4 * 63), x, 63, op, a, b, layout_bytes([7, 9], [1, 7], [1, 7])])
    k.launch('unary_strided', (1, 1, 1), [k.out(4 * 15), x, 15, 1, 0.0, 0.0, layout_bytes([3, 1, 5], [1, 0, 3], [1, 0, 3])])
    k.launch('unary_strided', (1, 1, 1), [k.out(4 * 323), x, 323, 12, 0.0, 0.0, layout_bytes([17, 19], [1, 17], [1, 17])])
    # binary: a broadcast operand with a negative stride, passed as a pointer into the middle of its buffer
    a, b = k.f32(24), k.f32(3, 0.5, 1.5)
    for op in range(9):
        k.launch('binary_strided', (1, 1, 1), [k.out(96), a, b + 8, 24, op, layout_bytes([2, 3, 4], [12, 4, 1], [0, -1, 0])])


@case('elementwise.ptx', 'geglu_forward', 'geglu_backward')
def geglu(k):
    # rows x inner = 7 x 50: 350 outputs on one 256-thread block (the grid-stride loop wraps mid-row); one row of one
    for rows, inner in [(7, 50), (1, 1)]:
        n = rows * inner
        x = k.f32(2 * n, -4, 4)
        k.launch('geglu_forward', (1, 1, 1), [k.out(4 * n), x, n, inner])
        k.launch('geglu_backward', (1, 1, 1), [k.out(8 * n), x, k.f32(n), n, inner])


@case('reduce.ptx', 'row_reduce')
def reduce(k):
    for rows, cols in [(1, 1), (2, 300)]:
        x = k.f32(rows * cols)
        for op in (0, 1):
            k.launch('row_reduce', (rows, 1, 1), [x, k.out(4 * rows), cols, op])
    k.launch('row_reduce', (2, 1, 1), [0, k.out(8), 0, 0])    # the sums of two empty rows (x is empty: a null pointer)


@case('softmax.ptx', 'softmax_rows')
def softmax(k):
    for rows, cols in [(1, 1), (2, 300)]:
        x = k.f32(rows * cols, -8, 8)
        for log in (0, 1):
            k.launch('softmax_rows', (rows, 1, 1), [x, k.out(4 * rows * cols), cols, log])


@case('select.ptx', 'where_select', 'row_argmax')
def select(k):
    n = 300
    cond = k.f32([[0.0, -0.0, 1.0, float('nan')][i % 4] for i in range(n)])
    k.launch('where_select', (1, 1, 1), [k.out(4 * n), cond, k.f32(n), k.f32(n), n])
    rows, cols = 300, 3
    k.launch('row_argmax', (1, 1, 1), [k.out(4 * rows), k.f32(rows * cols), rows, cols])


@case('group_norm.ptx', 'group_norm_forward', 'group_norm_backward_dx', 'group_norm_backward_affine',
      'group_norm_silu_backward_dz')
def group_norm(k):
    # (batch, channels, spatial, groups, vec4, silu): scalar path with 300 > 256 elements per group, float4 path,
    # each with and without the fused SiLU (whose backward first turns dy into dz)
    for batch, channels, spatial, groups, vec4, silu in [(2, 6, 100, 3, 0, 0), (1, 4, 12, 2, 1, 0),
                                                         (2, 6, 100, 3, 0, 1), (1, 4, 12, 2, 1, 1)]:
        n, cpg = batch * channels * spatial, channels // groups
        x, gamma, beta = k.f32(n), k.f32(channels), k.f32(channels)
        y, mean, rstd = k.out(4 * n), k.out(4 * batch * groups), k.out(4 * batch * groups)
        k.launch('group_norm_forward', (batch * groups, 1, 1),
                 [x, gamma, beta, y, mean, rstd, groups, cpg, spatial, 1e-5, vec4, silu])
        dy = k.f32(n)
        if silu:
            dz = k.out(4 * n)
            k.launch('group_norm_silu_backward_dz', (batch * groups, 1, 1),
                     [x, gamma, beta, mean, rstd, dy, dz, groups, cpg, spatial])
            dy = dz
        k.launch('group_norm_backward_dx', (batch * groups, 1, 1), [x, gamma, mean, rstd, dy, k.out(4 * n), groups, cpg, spatial])
        k.launch('group_norm_backward_affine', (channels, 1, 1),
                 [x, mean, rstd, dy, k.out(4 * channels), k.out(4 * channels), batch, channels, groups, spatial])


@case('gemm_f32.ptx', 'sgemm')
def sgemm(k):
    # m = 130: two block rows, the second ragged; A transposed; k = 11: a full and a ragged k step
    m, n, kk = 130, 9, 11
    a, b, c = k.f32(m * kk), k.f32(kk * n), k.f32(m * n)
    k.launch('sgemm', (1, 2, 1), [a, b, c, m, n, kk, 1, m, n, 1, 1.5, -0.5])
    # B transposed, beta = 0 on an unfilled C (C must not be read), n = 131: two block columns
    m, n, kk = 5, 131, 3
    k.launch('sgemm', (2, 1, 1), [k.f32(m * kk), k.f32(kk * n), k.out(4 * m * n), m, n, kk, kk, 1, 1, kk, 1.0, 0.0])
    # k = 0: C = beta C, A and B empty (null pointers)
    m, n = 7, 3
    k.launch('sgemm', (1, 1, 1), [0, 0, k.f32(m * n), m, n, 0, 0, 1, n, 1, 1.5, 0.5])


@case('gemm_bf16.ptx', 'gemm_bf16')
def gemm_bf16(k):
    # m = 20 and n = 24 ragged against the 128 x 128 tile, k = 40: a full and a ragged 32-deep k tile (two stages)
    m, n, kk = 20, 24, 40
    a, b = k.bf16(m * kk), k.bf16(kk * n)
    k.launch('gemm_bf16', (1, 1, 1), [a, b, k.f32(m * n), m, n, kk, 0.75, 2.0])
    k.launch('gemm_bf16', (1, 1, 1), [a, b, k.out(4 * m * n), m, n, kk, 0.75, 0.0])     # beta = 0: C is not read
    # m = 130: two block rows, the second with 2 of its 128 rows
    m, n, kk = 130, 8, 16
    k.launch('gemm_bf16', (1, 2, 1), [k.bf16(m * kk), k.bf16(kk * n), k.out(4 * m * n), m, n, kk, 1.0, 0.0])


@case('layer_norm_modulate.ptx', 'layer_norm_modulate_forward', 'layer_norm_modulate_backward_dx',
      'layer_norm_modulate_backward_cond')
def layer_norm_modulate(k):
    # (batch, tokens, dim): 9 rows (a second block with one busy warp of 8), lanes walking 2 or 3 of 70 features;
    # dim 300: two 256-feature chunks of the conditioning gradient, the second ragged
    for batch, tokens, dim in [(3, 3, 70), (1, 2, 300)]:
        rows, chunks = batch * tokens, (dim + 255) // 256
        x, scale, shift, dy = k.f32(rows * dim), k.f32(batch * dim), k.f32(batch * dim), k.f32(rows * dim)
        mean, rstd = k.out(4 * rows), k.out(4 * rows)
        k.launch('layer_norm_modulate_forward', ((rows + 7) // 8, 1, 1),
                 [x, scale, shift, k.out(4 * rows * dim), mean, rstd, rows, tokens, dim, 1e-6])
        k.launch('layer_norm_modulate_backward_dx', ((rows + 7) // 8, 1, 1),
                 [x, scale, mean, rstd, dy, k.out(4 * rows * dim), rows, tokens, dim])
        k.launch('layer_norm_modulate_backward_cond', (batch * chunks, 1, 1),
                 [x, mean, rstd, dy, k.out(4 * batch * dim), k.out(4 * batch * dim), batch, tokens, dim])


@case('gated_residual.ptx', 'gated_residual_forward', 'gated_residual_backward')
def gated_residual(k):
    # (batch, tokens, dim): 300 and 520 elements on one 256-thread block (the grid-stride loop wraps); dim 260: two
    # 256-feature chunks of the gate gradient, the second ragged
    for batch, tokens, dim in [(2, 3, 50), (1, 2, 260)]:
        n, chunks = batch * tokens * dim, (dim + 255) // 256
        x, gate, y = k.f32(n), k.f32(batch * dim), k.f32(n, -3, 3)
        k.launch('gated_residual_forward', (1, 1, 1), [x, gate, y, k.out(4 * n), n, tokens * dim, dim])
        k.launch('gated_residual_backward', (batch * chunks, 1, 1),
                 [gate, y, k.f32(n), k.out(4 * n), k.out(4 * batch * dim), batch, tokens, dim])


@case('sample_mse.ptx', 'sample_mse_forward', 'sample_mse_backward')
def sample_mse(k):
    # (batch, len): 300 and 2 x 260 elements per sample fold past one 256-thread block; the backward's 600 and 520
    # elements wrap its grid-stride loop on one block; an empty sample writes 0 without reading
    for batch, n in [(2, 300), (1, 520), (3, 0)]:
        p, t = k.f32(max(1, batch * n)), k.f32(max(1, batch * n))
        k.launch('sample_mse_forward', (batch, 1, 1), [p, t, k.out(4 * batch), n])
        if n:
            k.launch('sample_mse_backward', (1, 1, 1), [p, t, k.f32(batch), k.out(4 * batch * n), batch * n, n])


@case('pack_bf16.ptx', 'pack_bf16')
def pack_bf16(k):
    # the bf16 matrix product as the CUDA backend runs it: A [37, 11] stored transposed and B [11, 6] a broadcast
    # column (column stride 0), each rounded into a zero-padded row-major bf16 matrix (k to 16, n to 8), then gemm_bf16;
    # A's 37 x 16 / 2 = 296 pairs make the grid-stride loop wrap
    m, kk, n = 37, 11, 6
    kp, np_ = (kk + 7) // 8 * 8, (n + 7) // 8 * 8
    pa, pb = k.out(2 * m * kp), k.out(2 * kp * np_)
    k.launch('pack_bf16', (1, 1, 1), [pa, k.f32(kk * m), m, kk, 1, m, m, kp])
    k.launch('pack_bf16', (1, 1, 1), [pb, k.f32(kk), kk, n, 1, 0, kp, np_])
    k.launch('gemm_bf16', (1, 1, 1), [pa, pb, k.out(4 * m * np_), m, np_, kp, 1.0, 0.0], ptx='gemm_bf16.ptx')


def conv_out(h, w, kh, kw, s, p, d):
    return (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1


@case('conv2d_bf16.ptx', 'im2col_bf16', 'col2im')
def conv2d_bf16(k):
    # the bf16 convolution's gathers as conv_bf16.rs launches them, on a stride-2, padding-2, dilation-2 3x3 over
    # 2 x 3 x 9 x 8 (taps reaching outside on both sides, Q = 2 x 4 x 4 = 32, K = 27 padded to 32): col [32, 32] on
    # a grid of 3 block rows (the row loop wraps), col^T [32, 32] on 5, and dY [3, 32] (the 1x1 gather of dy); a
    # [1, 1200] matrix whose 600 pairs take two 256-thread blocks and wrap; then col2im folding a [27, 32 + 8] column
    # gradient (a row stride past the width) over 432 elements on one block (the grid-stride loop wraps)
    bn, c, h, w, kh, kw, s, p, d = 2, 3, 9, 8, 3, 3, 2, 2, 2
    oh, ow = conv_out(h, w, kh, kw, s, p, d)
    geo = [bn, c, h, w, kh, kw, s, p, d, oh, ow]
    kk, q = c * kh * kw, bn * oh * ow
    k8, q8 = (kk + 7) // 8 * 8, (q + 7) // 8 * 8
    x = k.f32(bn * c * h * w)
    k.launch('im2col_bf16', (1, 3, 1), [k.out(2 * k8 * q8), x, k8, q8, 0] + geo)
    k.launch('im2col_bf16', (1, 5, 1), [k.out(2 * q8 * k8), x, q8, k8, 1] + geo)
    oc = 3
    k.launch('im2col_bf16', (1, 2, 1), [k.out(2 * oc * q8), k.f32(bn * oc * oh * ow), oc, q8, 0,
                                        bn, oc, oh, ow, 1, 1, 1, 0, 1, oh, ow])
    k.launch('im2col_bf16', (2, 1, 1), [k.out(2 * 1200), k.f32(1200), 1, 1200, 0, 1, 1, 30, 40, 1, 1, 1, 0, 1, 30, 40])
    ld = q8 + 8
    k.launch('col2im', (1, 1, 1), [k.out(4 * bn * c * h * w), k.f32(kk * ld), ld] + geo)


@case('conv2d.ptx', 'conv2d_forward')
def conv2d(k):
    # (batch, C, H, W, OC, KH, KW, stride, pad, dil, groups, addends): stride 2 with dilation 2 and groups, no addends
    # (null pointers); a 3x3 'same' convolution with bias; two images of a 3x3 convolution without padding with bias,
    # per-channel addend and residual (the fused residual-block epilogue)
    for bn, c, h, w, oc, kh, kw, s, p, d, g, (bias, channel, residual) in [
            (2, 4, 6, 5, 4, 3, 3, 2, 2, 2, 2, (False, False, False)),
            (1, 3, 5, 4, 3, 3, 3, 1, 1, 1, 1, (True, False, False)),
            (2, 3, 5, 6, 5, 3, 3, 1, 0, 1, 1, (True, True, True))]:
        oh, ow = conv_out(h, w, kh, kw, s, p, d)
        x, wt = k.f32(bn * c * h * w), k.f32(oc * c // g * kh * kw)
        b = k.f32(oc) if bias else 0
        t = k.f32(bn * oc) if channel else 0
        r = k.f32(bn * oc * oh * ow) if residual else 0
        k.launch('conv2d_forward', ((bn * oh * ow + 127) // 128, (oc // g + 127) // 128, g),
                 [x, wt, b, t, r, k.out(4 * bn * oc * oh * ow), int(bias), int(channel), int(residual),
                  bn, c, h, w, oc, kh, kw, s, p, d, g, oh, ow])


@case('conv2d_backward.ptx', 'conv2d_backward_input', 'conv2d_backward_weight', 'conv2d_sum_splits', 'conv2d_backward_bias')
def conv2d_backward(k):
    # stride 2 without padding and two groups (4 stride phases, with 2 or 1 taps per axis), the weight gradient's
    # reduction over 2 x 3 x 2 = 12 rows split in two chunks of 8 (the second ragged)
    bn, c, h, w, oc, kh, kw, s, p, d, g = 2, 4, 7, 6, 4, 3, 3, 2, 0, 1, 2
    oh, ow = conv_out(h, w, kh, kw, s, p, d)
    cg, ocg = c // g, oc // g
    rows, kw_len = bn * oh * ow, cg * kh * kw
    chunk = 8
    splits = (rows + chunk - 1) // chunk
    x, wt, dy = k.f32(bn * c * h * w), k.f32(oc * kw_len), k.f32(bn * oc * oh * ow)
    geo = [bn, c, h, w, oc, kh, kw, s, p, d, g, oh, ow]
    grid_in = ((bn * -(-h // s) * -(-w // s) + 127) // 128, (cg + 127) // 128, g * s * s)
    k.launch('conv2d_backward_input', grid_in, [dy, wt, k.out(4 * bn * c * h * w)] + geo)
    partial, dw = k.out(4 * splits * oc * kw_len), k.out(4 * oc * kw_len)
    k.launch('conv2d_backward_weight', ((kw_len + 127) // 128, (ocg + 127) // 128, g * splits), [x, dy, partial] + geo + [splits, chunk])
    k.launch('conv2d_sum_splits', (1, 1, 1), [partial, dw, oc * kw_len, splits])
    k.launch('conv2d_backward_bias', (oc, 1, 1), [dy, k.out(4 * oc), bn, oc, oh * ow])


def causal_bias(q_len, kv_len, masked_row=None):
    """the CPU's [q_len, kv_len] additive mask: key j visible to query i when j + q_len <= i + kv_len (and key 0)"""
    return [0.0 if (j + q_len <= i + kv_len or j == 0) and i != masked_row else NEG_INF
            for i in range(q_len) for j in range(kv_len)]


@case('attention.ptx', 'attention_forward')
def attention(k):
    # 9 query rows (two 8-row blocks), 40 keys (a full and a ragged 32-key tile), head_dim 33 (a lane owns 1 or 2
    # dims), two heads in rows 3 floats wider than their heads (q), without a bias (a null pointer) and with a causal
    # one that masks a whole row; then two sequences of one head of head_dim 128 (every lane owns 4 dims), k and v
    # rows 5 floats wider
    for n, h, ql, kl, d, q_pad, kv_pad, biases in [(1, 2, 9, 40, 33, 3, 0, (False, True)),
                                                    (2, 1, 2, 3, 128, 0, 5, (True,))]:
        qs, kvs = h * d + q_pad, h * d + kv_pad
        q, kt, v = k.f32(n * ql * qs), k.f32(n * kl * kvs), k.f32(n * kl * kvs)
        for has_bias in biases:
            bias = k.f32(causal_bias(ql, kl, masked_row=ql // 3)) if has_bias else 0
            k.launch('attention_forward', ((ql + 7) // 8, h, n), [q, kt, v, bias, k.out(4 * n * ql * h * d),
                     k.out(4 * n * h * ql), int(has_bias), ql, kl, d, qs, kvs, 1 / math.sqrt(d)])


@case('attention_backward.ptx', 'attention_backward_dq', 'attention_backward_dkv')
def attention_backward(k):
    # the forward first (its output and lse are the backward's inputs). A causal mask with a fully masked row, 9
    # queries (two 8-row blocks in dq) and 36 keys (a ragged second 32-key tile in dq, five 8-key blocks in dkv),
    # head_dim 33, two heads in rows wider than their heads; then two sequences of one head of head_dim 128 without a
    # bias (a null pointer)
    for n, h, ql, kl, d, q_pad, kv_pad, has_bias in [(1, 2, 9, 36, 33, 3, 2, True), (2, 1, 4, 3, 128, 0, 0, False)]:
        qs, kvs = h * d + q_pad, h * d + kv_pad
        q, kt, v = k.f32(n * ql * qs), k.f32(n * kl * kvs), k.f32(n * kl * kvs)
        g = k.f32(n * ql * h * d)
        bias = k.f32(causal_bias(ql, kl, masked_row=ql // 3)) if has_bias else 0
        out, lse = k.out(4 * n * ql * h * d), k.out(4 * n * h * ql)
        shape = [int(has_bias), ql, kl, d, qs, kvs, 1 / math.sqrt(d)]
        k.launch('attention_forward', ((ql + 7) // 8, h, n), [q, kt, v, bias, out, lse] + shape, ptx='attention.ptx')
        delta, dq = k.out(4 * n * h * ql), k.out(4 * n * ql * qs)
        dk, dv = k.out(4 * n * kl * kvs), k.out(4 * n * kl * kvs)
        k.launch('attention_backward_dq', ((ql + 7) // 8, h, n), [q, kt, v, bias, out, g, lse, delta, dq] + shape)
        k.launch('attention_backward_dkv', ((kl + 7) // 8, h, n), [q, kt, v, bias, g, lse, delta, dk, dv] + shape)


@case('index.ptx', 'concat_part', 'index_select', 'index_select_backward', 'gather', 'gather_backward',
      'upsample_nearest2x', 'upsample_nearest2x_backward')
def index(k):
    # concat of [2, 30, 5] and [2, 1, 5] along the middle (300 elements: the grid-stride loop wraps)
    outer, inner, sizes = 2, 5, [30, 1]
    total = sum(sizes)
    out, start = k.out(4 * outer * total * inner), 0
    for size in sizes:
        k.launch('concat_part', (1, 1, 1), [out, k.f32(outer * size * inner), outer * size * inner, size * inner,
                                             total * inner, start * inner])
        start += size
    # index_select and its backward with repeated, unused and one out-of-range index (the kernel's own check)
    outer, dim, inner, idx = 2, 5, 3, [4, 0, 4, 2, 9]
    kk = len(idx)
    src, ix, gout = k.f32(outer * dim * inner), k.u64(idx), k.f32(outer * kk * inner)
    k.launch('index_select', (1, 1, 1), [k.out(4 * outer * kk * inner), src, ix, outer * kk * inner, kk, dim, inner])
    k.launch('index_select_backward', (1, 1, 1), [k.out(4 * outer * dim * inner), gout, ix, outer * dim * inner, kk, dim, inner])
    # an empty index list: an empty tensor has no device buffer, so idx and gout are null pointers
    k.launch('index_select_backward', (1, 1, 1), [k.out(4 * outer * dim * inner), 0, 0, outer * dim * inner, 0, dim, inner])
    # gather and its backward: an index per output element
    outer, dim, inner, kk = 2, 4, 3, 5
    n = outer * kk * inner
    ix = k.u64([(7 * i) % dim for i in range(n)])
    k.launch('gather', (1, 1, 1), [k.out(4 * n), k.f32(outer * dim * inner), ix, n, kk, dim, inner])
    k.launch('gather_backward', (1, 1, 1), [k.out(4 * outer * dim * inner), k.f32(n), ix, outer * dim * inner, kk, dim, inner])
    # nearest 2x upsampling of 2 planes of 5 x 7 (280 outputs) and its backward
    planes, h, w = 2, 5, 7
    k.launch('upsample_nearest2x', (1, 1, 1), [k.out(4 * planes * 4 * h * w), k.f32(planes * h * w), planes * 4 * h * w, h, w])
    k.launch('upsample_nearest2x_backward', (1, 1, 1), [k.out(4 * planes * h * w), k.f32(planes * 4 * h * w), planes * h * w, h, w])
