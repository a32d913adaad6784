#!/usr/bin/env python3
"""Runs every kernel of kernels/*.ptx in the PTX interpreter (ptxsim.py) on small, awkward shapes (ragged tiles,
batch 1, odd sizes, strides, broadcast, masking) and compares with Python references in f64. No GPU needed.

    python3 scripts/ptxsim/check_kernels.py            # everything (a few minutes: the interpreter is slow)
    python3 scripts/ptxsim/check_kernels.py philox gemm_bf16
"""
import math, os, random, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import *

K = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'kernels') + os.sep


def close(tag, got, want, tol=1e-5):
    """|got - want| <= tol max(1, |want|) elementwise."""
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if not abs(g - w) <= tol * max(1, abs(w))]
    err = max((abs(g - w) / max(1, abs(w)) for g, w in zip(got, want)), default=0)
    print(f'{tag}: max rel err {err:.2e}')
    assert not bad and len(got) == len(want), bad[:3]


def check_sum(tag, got, want, mags, k):
    """A k-term f32 sum: |got - want| <= (k + 2) 2^-24 (1.5 sum|terms| + 1)."""
    bad = [(i, g, w) for i, (g, w, mg) in enumerate(zip(got, want, mags)) if not abs(g - w) <= (k + 2) * 2**-24 * (1.5 * mg + 1)]
    print(f'{tag}: {len(got)} outputs within the k-term bound')
    assert not bad and len(got) == len(want), bad[:3]


M0,M1,W0,W1=0xD2511F53,0xCD9E8D57,0x9E3779B9,0xBB67AE85
def philox(c, k):
    c0,c1,c2,c3=c; k0,k1=k
    for r in range(10):
        if r: k0=(k0+W0)&0xFFFFFFFF; k1=(k1+W1)&0xFFFFFFFF
        p0=M0*c0; p1=M1*c2
        c0,c1,c2,c3=((p1>>32)^c1^k0)&0xFFFFFFFF, p1&0xFFFFFFFF, ((p0>>32)^c3^k1)&0xFFFFFFFF, p0&0xFFFFFFFF
    return [c0,c1,c2,c3]
def uni(w): return r32(r32(float(w>>8)+0.5)*2**-24)
def ref_u(seed, off, n):
    return [uni(philox([ (j//4)&0xFFFFFFFF, (j//4)>>32,0,0],[seed&0xFFFFFFFF, seed>>32])[j%4]) for j in range(off, off+n)]
def ref_n(seed, off, n):
    out=[]
    for j in range(off, off+n):
        w=philox([(j//4)&0xFFFFFFFF,(j//4)>>32,0,0],[seed&0xFFFFFFFF,seed>>32]); p=(j%4)//2
        ua,ub=uni(w[2*p]),uni(w[2*p+1]); r=math.sqrt(-2*math.log(ua)); th=2*math.pi*ub
        out.append(r*math.cos(th) if j%2==0 else r*math.sin(th))
    return out
def layout_bytes(shape, sa, sb):
    # innermost first
    r = len(shape)
    b = struct.pack('<Q', r)
    sh = [shape[r-1-i] for i in range(r)] + [0]*(6-r)
    A = [sa[r-1-i] for i in range(r)] + [0]*(6-r)
    B = [sb[r-1-i] for i in range(r)] + [0]*(6-r)
    return b + struct.pack('<6Q', *sh) + struct.pack('<6q', *A) + struct.pack('<6q', *B)
def gather(vals, shape, strides, off):
    n = 1
    for s in shape: n *= s
    out = []
    for i in range(n):
        at = off; rest = i
        for d in range(len(shape)-1, -1, -1):
            at += (rest % shape[d]) * strides[d]; rest //= shape[d]
        out.append(vals[at])
    return out
def erf(x): return math.erf(x)
REF = {0: lambda x,a,b: -x, 1: lambda x,a,b: math.exp(x), 2: lambda x,a,b: math.log(x), 3: lambda x,a,b: math.sqrt(x),
       4: lambda x,a,b: 1/math.sqrt(x), 5: lambda x,a,b: abs(x), 6: lambda x,a,b: x/(1+math.exp(-x)),
       7: lambda x,a,b: 0.5*x*(1+erf(x/math.sqrt(2))), 8: lambda x,a,b: math.tanh(x), 9: lambda x,a,b: 1/(1+math.exp(-x)),
       10: lambda x,a,b: x**a, 11: lambda x,a,b: min(max(x,a),b), 12: lambda x,a,b: x}
def group_norm_ref(B, C, S, G, x, gamma, beta, eps=1e-5):
    cpg = C//G; L = cpg*S; y=[0]*len(x); mean=[]; rstd=[]
    for grp in range(B*G):
        ch = x[grp*L:(grp+1)*L]; mu = sum(ch)/L; var = sum((v-mu)**2 for v in ch)/L; r = 1/math.sqrt(var+eps)
        for e,v in enumerate(ch):
            c = (grp%G)*cpg + e//S; y[grp*L+e] = (v-mu)*r*gamma[c]+beta[c]
        mean.append(mu); rstd.append(r)
    return y, mean, rstd
def group_norm_silu_ref(B, C, S, G, x, gamma, beta, eps=1e-5):
    y, mean, rstd = group_norm_ref(B, C, S, G, x, gamma, beta, eps)
    return [z/(1+math.exp(-z)) for z in y], mean, rstd

def check_philox():
    random.seed(0)
    mod = Module(open(K+'philox.ptx').read())
    for seed, off, n in [(42, 0, 9), (0xDEADBEEF12345678, 3, 13), (7, (1<<34)+1, 6), (5, 1, 300)]:
        mem = Memory(); out = mem.alloc(4*n)
        blocks = ((off+n+3)//4 - off//4 + 63)//64
        launch(mod, 'fill_uniform', (blocks,1,1), (64,1,1), [out, n, seed, off], mem)
        got = mem.get_f32(out, n); want = ref_u(seed, off, n)
        assert got == want, (got, want)
        mem2 = Memory(); out = mem2.alloc(4*n)
        launch(mod, 'fill_normal', (1,1,1), (32,1,1), [out, n, seed, off], mem2)
        got = mem2.get_f32(out, n); want = ref_n(seed, off, n)
        err = max(abs(g-w)/(1+abs(w)) for g,w in zip(got,want))
        print('philox ok', seed, off, n, 'normal max rel err', err)
        assert err < 1e-5


def check_elementwise():
    random.seed(1)
    mod = Module(open(K+'elementwise.ptx').read())
    for op in range(13):
        shape = [3, 1, 5]; strides = [1, 0, 3]; off = 0   # transposed-ish
        n = 15
        pos = op in (2,3,4,10)
        vals = [random.uniform(0.01, 8) if pos else random.uniform(-8, 8) for _ in range(15)]
        vals += [1e-3, -0.05, 0.1, 1.0] if not pos else [0.02, 0.5, 1.0, 3.0]
        mem = Memory(); x = mem.alloc(4*len(vals)); mem.put_f32(x, [r32(v) for v in vals]); out = mem.alloc(4*n)
        a, b = (1.7, 0) if op == 10 else ((-0.5, 0.75) if op == 11 else (0, 0))
        launch(mod, 'unary_strided', (1,1,1), (32,1,1), [out, x, n, op, a, b, layout_bytes(shape, strides, strides)], mem)
        got = mem.get_f32(out, n)
        xs = gather([r32(v) for v in vals], shape, strides, off)
        want = [REF[op](v, r32(a), r32(b)) for v in xs]
        err = max(abs(g-w)/max(1,abs(w)) for g,w in zip(got,want))
        print('unary op', op, 'max err', err); assert err < 1e-5, (got, want)
    # tanh small values, exp extremes
    for op, vals in [(8, [1e-6, -1e-3, 0.124, 0.126, -3.0, 20.0, -100.0]), (1, [-100.0, -87.0, 0.0, 88.0, 89.0, -104.0]), (9, [-100.0, 100.0, 0.0]), (7, [-6.0, -3.0, 0.0, 5.0])]:
        n = len(vals); mem = Memory(); x = mem.alloc(4*n); mem.put_f32(x, vals); out = mem.alloc(4*n)
        launch(mod, 'unary_strided', (1,1,1), (32,1,1), [out, x, n, op, 0.0, 0.0, layout_bytes([n],[1],[1])], mem)
        got = mem.get_f32(out, n); want = []
        for v in vals:
            try: want.append(REF[op](v,0,0))
            except OverflowError: want.append(math.inf)
        print('edge op', op, got, want)
    # binary with broadcast and negative stride
    shape = [2, 3, 4]; sa = [12, 4, 1]; sb = [0, -1, 0]; offb = 2
    A = [random.uniform(-2,2) for _ in range(24)]; B = [random.uniform(0.5,1.5) for _ in range(3)]
    for op in range(6):
        mem = Memory(); a = mem.alloc(96); b = mem.alloc(12); out = mem.alloc(96)
        mem.put_f32(a, A); mem.put_f32(b, B)
        launch(mod, 'binary_strided', (1,1,1), (32,1,1), [out, a, b + 4*offb, 24, op, layout_bytes(shape, sa, sb)], mem)
        got = mem.get_f32(out, 24)
        ga = gather([r32(v) for v in A], shape, sa, 0); gb = gather([r32(v) for v in B], shape, sb, offb)
        f = [lambda x,y: r32(x+y), lambda x,y: r32(x-y), lambda x,y: r32(x*y), lambda x,y: r32(x/y), max, min][op]
        want = [f(x,y) for x,y in zip(ga,gb)]
        assert got == want, (op, got, want)
        print('binary op', op, 'exact')
    # copy_strided of a transposed [7, 9] with one 32-thread block: the grid-stride loop takes two passes and more
    vals = [random.uniform(-1, 1) for _ in range(63)]
    mem = Memory(); x = mem.alloc(4*63); out = mem.alloc(4*63); mem.put_f32(x, vals)
    launch(mod, 'unary_strided', (1,1,1), (32,1,1), [out, x, 63, 12, 0.0, 0.0, layout_bytes([7, 9], [1, 7], [1, 7])], mem)
    assert mem.get_f32(out, 63) == gather([r32(v) for v in vals], [7, 9], [1, 7], 0)
    print('copy_strided transpose exact')


def check_noise_adamw_reduce_softmax():
    random.seed(2)
    # noise
    mod = Module(open(K+'noise.ptx').read())
    batch, per, seed, off = 3, 7, 99, 5
    n = batch*per
    x0 = [random.uniform(-1,1) for _ in range(n)]; sa = [0.9, 0.5, 0.1]; sb = [math.sqrt(1-a*a) for a in sa]
    mem = Memory(); px0 = mem.alloc(4*n); psa = mem.alloc(12); psb = mem.alloc(12); pxt = mem.alloc(4*n); peps = mem.alloc(4*n)
    for p,v in [(px0,x0),(psa,sa),(psb,sb)]: mem.put_f32(p, v)
    launch(mod, 'q_sample', (1,1,1), (2*32,1,1), [px0, psa, psb, pxt, peps, n, per, seed, off], mem)
    z = ref_n(seed, off, n)
    close('q_sample eps', mem.get_f32(peps, n), z)
    close('q_sample x_t', mem.get_f32(pxt, n), [r32(sa[i//per])*r32(x0[i]) + r32(sb[i//per])*z[i] for i in range(n)])
    coef = [(1.2,-0.7,0.3,0.6,0.0),(1.1,-0.5,0.2,0.7,0.15),(0.9,0.4,0.5,0.5,0.3)]
    mt = [random.uniform(-2,2) for _ in range(n)]; xt = [random.uniform(-2,2) for _ in range(n)]
    for clip in (0, 1):
        mem = Memory(); pxt = mem.alloc(4*n); pm = mem.alloc(4*n); pc = mem.alloc(60); pprev = mem.alloc(4*n); px0h = mem.alloc(4*n)
        mem.put_f32(pxt, xt); mem.put_f32(pm, mt); mem.put_f32(pc, [c for row in coef for c in row])
        launch(mod, 'sampler_step', (1,1,1), (32,1,1), [pxt, pm, pc, pprev, px0h, n, per, clip, seed, off], mem)
        wx0 = []; wprev = []
        for i in range(n):
            c = [r32(v) for v in coef[i//per]]; a = c[0]*r32(xt[i]) + c[1]*r32(mt[i])
            if clip: a = min(max(a,-1),1)
            wx0.append(a); wprev.append(c[2]*a + c[3]*r32(xt[i]) + c[4]*z[i])
        close(f'sampler x0 clip={clip}', mem.get_f32(px0h, n), wx0); close('sampler prev', mem.get_f32(pprev, n), wprev)

    # adamw
    mod = Module(open(K+'adamw.ptx').read())
    n = 70; lr, b1, b2, eps, wd, step = 1e-2, 0.9, 0.999, 1e-8, 0.05, 3
    P = [random.uniform(-1,1) for _ in range(n)]; G = [random.choice([-1,1])*random.uniform(0.05,0.5) for _ in range(n)]
    Mv = [random.uniform(-.1,.1) for _ in range(n)]; V = [random.uniform(0,.01) for _ in range(n)]
    mem = Memory(); pp, pg, pm, pv = [mem.alloc(4*n) for _ in range(4)]
    for p, v in [(pp,P),(pg,G),(pm,Mv),(pv,V)]: mem.put_f32(p, v)
    launch(mod, 'adamw_step', (1,1,1), (32,1,1), [pp, pg, pm, pv, n, 1-lr*wd, b1, b2, lr/(1-b1**step), 1/math.sqrt(1-b2**step), eps], mem)
    wm = [b1*r32(Mv[i]) + (1-b1)*r32(G[i]) for i in range(n)]; wv = [b2*r32(V[i]) + (1-b2)*r32(G[i])**2 for i in range(n)]
    wp = [r32(P[i])*(1-lr*wd) - lr*(wm[i]/(1-b1**step))/(math.sqrt(wv[i]/(1-b2**step))+eps) for i in range(n)]
    close('adamw m', mem.get_f32(pm, n), wm); close('adamw v', mem.get_f32(pv, n), wv); close('adamw p', mem.get_f32(pp, n), wp)

    # reduce + softmax
    for rows, cols in [(3, 1), (2, 37), (2, 300)]:
        X = [random.uniform(-8, 8) for _ in range(rows*cols)]
        mod = Module(open(K+'reduce.ptx').read())
        for op in (0, 1):
            mem = Memory(); px = mem.alloc(4*rows*cols); po = mem.alloc(4*rows); mem.put_f32(px, X)
            launch(mod, 'row_reduce', (rows,1,1), (64,1,1), [px, po, cols, op], mem)
            Xr = [r32(v) for v in X]
            want = [(sum if op == 0 else max)(Xr[r*cols:(r+1)*cols]) for r in range(rows)]
            close(f'row_reduce op{op} {rows}x{cols}', mem.get_f32(po, rows), want, 1e-5)
        mod = Module(open(K+'softmax.ptx').read())
        for log in (0, 1):
            mem = Memory(); px = mem.alloc(4*rows*cols); po = mem.alloc(4*rows*cols); mem.put_f32(px, X)
            launch(mod, 'softmax_rows', (rows,1,1), (64,1,1), [px, po, cols, log], mem)
            want = []
            for r in range(rows):
                row = [r32(v) for v in X[r*cols:(r+1)*cols]]; m = max(row); s = sum(math.exp(v-m) for v in row)
                want += [(v - m - math.log(s)) if log else math.exp(v-m)/s for v in row]
            close(f'softmax log={log} {rows}x{cols}', mem.get_f32(po, rows*cols), want)


def check_sample_mse():
    # batch 1, one element, a sample shorter than a warp, a sample longer than the 64-thread block (the fold wraps),
    # and an empty sample (mse 0); the backward's grid-stride loop wraps on one 64-thread block
    random.seed(23)
    mod = Module(open(K+'sample_mse.ptx').read())
    for batch, n in [(1, 1), (3, 7), (2, 150), (2, 0)]:
        total = batch*n
        P = [r32(random.uniform(-2, 2)) for _ in range(total)]; T = [r32(random.uniform(-1, 1)) for _ in range(total)]
        G = [r32(random.uniform(-1, 1)) for _ in range(batch)]
        mem = Memory(); pp, pt, pdp = [mem.alloc(4*max(1, total)) for _ in range(3)]; pm, pg = mem.alloc(4*batch), mem.alloc(4*batch)
        mem.put_f32(pp, P); mem.put_f32(pt, T); mem.put_f32(pg, G)
        launch(mod, 'sample_mse_forward', (batch,1,1), (64,1,1), [pp, pt, pm, n], mem)
        want = [sum((P[b*n+i] - T[b*n+i])**2 for i in range(n)) / n if n else 0.0 for b in range(batch)]
        close(f'sample_mse_forward {batch}x{n}', mem.get_f32(pm, batch), want)
        if total:
            launch(mod, 'sample_mse_backward', (1,1,1), (64,1,1), [pp, pt, pg, pdp, total, n], mem)
            want = [2*G[i//n]/n*(P[i] - T[i]) for i in range(total)]
            close(f'sample_mse_backward {batch}x{n}', mem.get_f32(pdp, total), want)


def check_group_norm():
    random.seed(3)
    mod = Module(open(K+'group_norm.ptx').read())
    for (B, C, S, G, vec4) in [(2, 6, 5, 3, 0), (1, 4, 8, 2, 1), (2, 2, 3, 1, 0), (1, 8, 300, 4, 1)]:
        n = B*C*S
        x = [r32(random.uniform(-0.5, 1.5)) for _ in range(n)]; gamma = [r32(0.5+0.25*c) for c in range(C)]; beta = [r32(0.1*c-0.2) for c in range(C)]
        mem = Memory(); px = mem.alloc(4*n); pg = mem.alloc(4*C); pb = mem.alloc(4*C); py = mem.alloc(4*n); pm = mem.alloc(4*B*G); pr = mem.alloc(4*B*G)
        mem.put_f32(px, x); mem.put_f32(pg, gamma); mem.put_f32(pb, beta)
        launch(mod, 'group_norm_forward', (B*G,1,1), (64,1,1), [px, pg, pb, py, pm, pr, G, C//G, S, 1e-5, vec4, 0], mem)
        y, mean, rstd = group_norm_ref(B, C, S, G, x, gamma, beta)
        close(f'gn fwd {B,C,S,G,vec4} y', mem.get_f32(py, n), y); close('mean', mem.get_f32(pm, B*G), mean); close('rstd', mem.get_f32(pr, B*G), rstd)
        # backward vs finite differences of the f64 reference
        w = [random.uniform(-1,1) for _ in range(n)]
        pdy = mem.alloc(4*n); pdx = mem.alloc(4*n); pdg = mem.alloc(4*C); pdb = mem.alloc(4*C)
        mem.put_f32(pdy, w); w = [r32(v) for v in w]
        launch(mod, 'group_norm_backward_dx', (B*G,1,1), (64,1,1), [px, pg, pm, pr, pdy, pdx, G, C//G, S], mem)
        launch(mod, 'group_norm_backward_affine', (C,1,1), (64,1,1), [px, pm, pr, pdy, pdg, pdb, B, C, G, S], mem)
        loss = lambda x_, g_, b_: sum(a*b for a,b in zip(group_norm_ref(B,C,S,G,x_,g_,b_)[0], w))
        h = 1e-5
        def fd(vec, i, which):
            up = list(vec); dn = list(vec); up[i] += h; dn[i] -= h
            args = {'x': (lambda v: loss(v, gamma, beta)), 'g': (lambda v: loss(x, v, beta)), 'b': (lambda v: loss(x, gamma, v))}[which]
            return (args(up) - args(dn)) / (2*h)
        if n <= 200:
            close('gn dx', mem.get_f32(pdx, n), [fd(x, i, 'x') for i in range(n)], 1e-4)
        close('gn dgamma', mem.get_f32(pdg, C), [fd(gamma, c, 'g') for c in range(C)], 1e-4)
        close('gn dbeta', mem.get_f32(pdb, C), [fd(beta, c, 'b') for c in range(C)], 1e-4)


def check_geglu():
    # GEGLU on rows of 2 inner: out = h gelu(a); backward against central differences of the f64 reference. rows x
    # inner = 7 x 5 (35 outputs) on one 16-thread block: the grid-stride loop wraps, rows straddle the wrap
    random.seed(6)
    mod = Module(open(K+'elementwise.ptx').read())
    gelu = lambda v: 0.5*v*(1+erf(v/math.sqrt(2)))
    for rows, inner in [(7, 5), (1, 1), (2, 33)]:
        n = rows*inner
        x = [r32(random.uniform(-4, 4)) for _ in range(2*n)]
        g = [r32(random.uniform(-1, 1)) for _ in range(n)]
        ref = lambda x_: [x_[r*2*inner + j]*gelu(x_[r*2*inner + inner + j]) for r in range(rows) for j in range(inner)]
        mem = Memory(); px = mem.alloc(4*2*n); pg = mem.alloc(4*n); po = mem.alloc(4*n); pdx = mem.alloc(4*2*n)
        mem.put_f32(px, x); mem.put_f32(pg, g)
        launch(mod, 'geglu_forward', (1,1,1), (16,1,1), [po, px, n, inner], mem)
        close(f'geglu fwd {rows, inner}', mem.get_f32(po, n), ref(x))
        launch(mod, 'geglu_backward', (1,1,1), (16,1,1), [pdx, px, pg, n, inner], mem)
        h = 1e-5
        def fd(i):
            up = list(x); dn = list(x); up[i] += h; dn[i] -= h
            return (sum(a*b for a, b in zip(ref(up), g)) - sum(a*b for a, b in zip(ref(dn), g))) / (2*h)
        close(f'geglu dx {rows, inner}', mem.get_f32(pdx, 2*n), [fd(i) for i in range(2*n)], 1e-4)


def check_group_norm_silu():
    # silu(group_norm(x)): the forward kernel with silu = 1; backward = group_norm_silu_backward_dz, then the two
    # group norm backward kernels on dz, as crates/cuda-kernels/src/group_norm.rs launches them
    random.seed(4)
    mod = Module(open(K+'group_norm.ptx').read())
    for (B, C, S, G, vec4) in [(2, 6, 5, 3, 0), (1, 4, 8, 2, 1), (1, 8, 300, 4, 1)]:
        n = B*C*S
        x = [r32(random.uniform(-0.5, 1.5)) for _ in range(n)]; gamma = [r32(0.5+0.25*c) for c in range(C)]; beta = [r32(0.3*c-0.6) for c in range(C)]
        mem = Memory(); px = mem.alloc(4*n); pg = mem.alloc(4*C); pb = mem.alloc(4*C); py = mem.alloc(4*n); pm = mem.alloc(4*B*G); pr = mem.alloc(4*B*G)
        mem.put_f32(px, x); mem.put_f32(pg, gamma); mem.put_f32(pb, beta)
        launch(mod, 'group_norm_forward', (B*G,1,1), (64,1,1), [px, pg, pb, py, pm, pr, G, C//G, S, 1e-5, vec4, 1], mem)
        y, mean, rstd = group_norm_silu_ref(B, C, S, G, x, gamma, beta)
        close(f'gn+silu fwd {B,C,S,G,vec4} y', mem.get_f32(py, n), y); close('mean', mem.get_f32(pm, B*G), mean)
        w = [random.uniform(-1,1) for _ in range(n)]
        pdy = mem.alloc(4*n); pdz = mem.alloc(4*n); pdx = mem.alloc(4*n); pdg = mem.alloc(4*C); pdb = mem.alloc(4*C)
        mem.put_f32(pdy, w); w = [r32(v) for v in w]
        launch(mod, 'group_norm_silu_backward_dz', (B*G,1,1), (64,1,1), [px, pg, pb, pm, pr, pdy, pdz, G, C//G, S], mem)
        launch(mod, 'group_norm_backward_dx', (B*G,1,1), (64,1,1), [px, pg, pm, pr, pdz, pdx, G, C//G, S], mem)
        launch(mod, 'group_norm_backward_affine', (C,1,1), (64,1,1), [px, pm, pr, pdz, pdg, pdb, B, C, G, S], mem)
        loss = lambda x_, g_, b_: sum(a*b for a,b in zip(group_norm_silu_ref(B,C,S,G,x_,g_,b_)[0], w))
        h = 1e-5
        def fd(vec, i, which):
            up = list(vec); dn = list(vec); up[i] += h; dn[i] -= h
            args = {'x': (lambda v: loss(v, gamma, beta)), 'g': (lambda v: loss(x, v, beta)), 'b': (lambda v: loss(x, gamma, v))}[which]
            return (args(up) - args(dn)) / (2*h)
        if n <= 200:
            close('gn+silu dx', mem.get_f32(pdx, n), [fd(x, i, 'x') for i in range(n)], 1e-4)
        close('gn+silu dgamma', mem.get_f32(pdg, C), [fd(gamma, c, 'g') for c in range(C)], 1e-4)
        close('gn+silu dbeta', mem.get_f32(pdb, C), [fd(beta, c, 'b') for c in range(C)], 1e-4)


def check_gemm_f32():
    random.seed(5)
    mod = Module(open(K+'gemm_f32.ptx').read())
    for (m, n, k, at, bt, beta) in [(3, 5, 2, False, False, 0.0), (130, 9, 11, True, False, -0.5), (5, 131, 17, False, True, 0.5), (7, 3, 0, False, False, 0.5), (2, 3, 41, True, True, 0.0)]:
        A = [r32(random.uniform(-1,1)) for _ in range(m*k)]; B = [r32(random.uniform(-1,1)) for _ in range(k*n)]; C = [r32(random.uniform(-1,1)) for _ in range(m*n)]
        ars, acs = (1, m) if at else (k, 1); brs, bcs = (1, k) if bt else (n, 1)
        mem = Memory(); pa = mem.alloc(4*m*k); pb = mem.alloc(4*k*n); pc = mem.alloc(4*m*n)
        mem.put_f32(pa, A); mem.put_f32(pb, B); mem.put_f32(pc, C)
        launch(mod, 'sgemm', ((n+127)//128, (m+127)//128, 1), (256,1,1), [pa, pb, pc, m, n, k, ars, acs, brs, bcs, 1.5, beta], mem)
        want = []; mags = []
        for r in range(m):
            for c in range(n):
                ps = [A[r*ars + x*acs]*B[x*brs + c*bcs] for x in range(k)]
                want.append(1.5*sum(ps) + beta*C[r*n+c]); mags.append(sum(abs(p) for p in ps))
        check_sum(f'sgemm {m,n,k,at,bt,beta}', mem.get_f32(pc, m*n), want, mags, k)


def check_conv2d():
    random.seed(7)
    mod = Module(open(K+'conv2d.ptx').read())
    # the last two flags: the per-channel addend (batch x OC) and the residual (the output's shape) of the fused
    # epilogue, with and without bias, one of them with two images and a pointwise kernel
    for (Bn, C, H, W, OC, KH, KW, s, p, d, g, bias, chan, res) in [(1, 2, 5, 4, 3, 3, 3, 1, 1, 1, 1, True, False, False), (2, 4, 6, 5, 4, 3, 3, 2, 2, 2, 2, False, False, False),
                                                               (1, 3, 3, 3, 3, 1, 1, 1, 0, 1, 3, True, False, False), (2, 3, 5, 6, 5, 3, 3, 1, 0, 1, 1, True, True, True),
                                                               (3, 2, 4, 3, 2, 1, 1, 1, 0, 1, 1, False, True, False), (2, 2, 5, 5, 3, 3, 3, 2, 1, 1, 1, False, False, True)]:
        OH = (H + 2*p - d*(KH-1) - 1)//s + 1; OW = (W + 2*p - d*(KW-1) - 1)//s + 1
        cg = C//g; ocg = OC//g
        X = [r32(random.uniform(-1,1)) for _ in range(Bn*C*H*W)]; Wt = [r32(random.uniform(-1,1)) for _ in range(OC*cg*KH*KW)]; Bi = [r32(random.uniform(-1,1)) for _ in range(OC)]
        T = [r32(random.uniform(-1,1)) for _ in range(Bn*OC)]; R = [r32(random.uniform(-1,1)) for _ in range(Bn*OC*OH*OW)]
        mem = Memory(); px = mem.alloc(4*len(X)); pw = mem.alloc(4*len(Wt)); pb = mem.alloc(4*OC); py = mem.alloc(4*Bn*OC*OH*OW)
        pt = mem.alloc(4*len(T)); pr = mem.alloc(4*len(R))
        mem.put_f32(px, X); mem.put_f32(pw, Wt); mem.put_f32(pb, Bi); mem.put_f32(pt, T); mem.put_f32(pr, R)
        N = Bn*OH*OW
        launch(mod, 'conv2d_forward', ((N+127)//128, (ocg+127)//128, g), (256,1,1),
               [px, pw, pb if bias else 0, pt if chan else 0, pr if res else 0, py, int(bias), int(chan), int(res), Bn, C, H, W, OC, KH, KW, s, p, d, g, OH, OW], mem)
        want = []; mags = []
        for b in range(Bn):
            for oc in range(OC):
                gi = oc // ocg
                for i in range(OH):
                    for j in range(OW):
                        ps = []
                        for ic in range(cg):
                            for kh in range(KH):
                                for kw in range(KW):
                                    ih = i*s - p + kh*d; iw = j*s - p + kw*d
                                    if 0 <= ih < H and 0 <= iw < W:
                                        ps.append(X[((b*C + gi*cg + ic)*H + ih)*W + iw] * Wt[((oc*cg + ic)*KH + kh)*KW + kw])
                        adds = [Bi[oc]] * bias + [T[b*OC + oc]] * chan + [R[((b*OC + oc)*OH + i)*OW + j]] * res
                        want.append(sum(ps) + sum(adds)); mags.append(sum(abs(q) for q in ps + adds))
        # three more roundings than the products' sum: bias + channel, + the sum, + residual
        check_sum(f'conv {Bn,C,H,W,OC,KH,KW,s,p,d,g,bias,chan,res}', mem.get_f32(py, len(want)), want, mags, cg*KH*KW + 3)


def check_conv2d_backward():
    random.seed(13)
    mod = Module(open(K+'conv2d_backward.ptx').read())
    # (batch, C, H, W, OC, KH, KW, stride, padding, dilation, groups, splits): stride 2 without padding, dilation 2 with
    # groups, a pointwise kernel, one channel; splits > 1 exercises the partial slabs and their ordered sum
    # stride 3 with padding 1 (phases with 1 or 2 taps per axis), stride 2 with dilation 2 (phases without taps: those
    # pixels get dx = 0), and phases of 147 and 126 pixels (the second's block 1 leaves early)
    for (Bn, C, H, W, OC, KH, KW, s, p, d, g, splits) in [(1, 1, 5, 4, 1, 3, 3, 1, 1, 1, 1, 1), (2, 4, 7, 6, 4, 3, 3, 2, 0, 1, 2, 3),
                                                          (1, 2, 6, 5, 4, 3, 2, 1, 2, 2, 2, 2), (2, 3, 3, 3, 3, 1, 1, 2, 0, 1, 1, 1),
                                                          (1, 2, 8, 7, 2, 4, 3, 3, 1, 1, 1, 1), (1, 1, 7, 6, 2, 3, 3, 2, 2, 2, 1, 1),
                                                          (3, 1, 14, 13, 1, 3, 3, 2, 1, 1, 1, 1)]:
        OH = (H + 2*p - d*(KH-1) - 1)//s + 1; OW = (W + 2*p - d*(KW-1) - 1)//s + 1
        cg = C//g; ocg = OC//g; R = Bn*OH*OW; K_w = cg*KH*KW
        X = [r32(random.uniform(-1,1)) for _ in range(Bn*C*H*W)]; Wt = [r32(random.uniform(-1,1)) for _ in range(OC*K_w)]
        DY = [r32(random.uniform(-1,1)) for _ in range(Bn*OC*OH*OW)]
        chunk = ((R + splits - 1)//splits + 7)//8*8; splits = (R + chunk - 1)//chunk
        mem = Memory(); px = mem.alloc(4*len(X)); pw = mem.alloc(4*len(Wt)); pdy = mem.alloc(4*len(DY)); pdx = mem.alloc(4*len(X))
        ppart = mem.alloc(4*splits*len(Wt)); pdw = mem.alloc(4*len(Wt)); pdb = mem.alloc(4*OC)
        mem.put_f32(px, X); mem.put_f32(pw, Wt); mem.put_f32(pdy, DY)
        mem.put_f32(pdx, [float('nan')]*len(X)); mem.put_f32(ppart, [float('nan')]*(splits*len(Wt)))
        geo = [Bn, C, H, W, OC, KH, KW, s, p, d, g, OH, OW]
        launch(mod, 'conv2d_backward_input', ((Bn*-(-H//s)*-(-W//s)+127)//128, (cg+127)//128, g*s*s), (256,1,1), [pdy, pw, pdx] + geo, mem)
        launch(mod, 'conv2d_backward_weight', ((K_w+127)//128, (ocg+127)//128, g*splits), (256,1,1), [px, pdy, ppart] + geo + [splits, chunk], mem)
        launch(mod, 'conv2d_sum_splits', (2,1,1), (64,1,1), [ppart, pdw, len(Wt), splits], mem)
        launch(mod, 'conv2d_backward_bias', (OC,1,1), (256,1,1), [pdy, pdb, Bn, OC, OH*OW], mem)
        terms_dx = [[] for _ in X]; terms_dw = [[] for _ in Wt]
        for b in range(Bn):
            for oc in range(OC):
                gi = oc // ocg
                for i in range(OH):
                    for j in range(OW):
                        dy = DY[((b*OC + oc)*OH + i)*OW + j]
                        for ic in range(cg):
                            for kh in range(KH):
                                for kw in range(KW):
                                    ih = i*s - p + kh*d; iw = j*s - p + kw*d
                                    if 0 <= ih < H and 0 <= iw < W:
                                        xi = ((b*C + gi*cg + ic)*H + ih)*W + iw; wi = ((oc*cg + ic)*KH + kh)*KW + kw
                                        terms_dx[xi].append(Wt[wi]*dy); terms_dw[wi].append(X[xi]*dy)
        tag = (Bn, C, H, W, OC, KH, KW, s, p, d, g, splits)
        check_sum(f'conv dx {tag}', mem.get_f32(pdx, len(X)), [sum(t) for t in terms_dx], [sum(map(abs, t)) for t in terms_dx], ocg*KH*KW)
        check_sum(f'conv dw {tag}', mem.get_f32(pdw, len(Wt)), [sum(t) for t in terms_dw], [sum(map(abs, t)) for t in terms_dw], R)
        db = [sum(DY[(b*OC + oc)*OH*OW + e] for b in range(Bn) for e in range(OH*OW)) for oc in range(OC)]
        dbm = [sum(abs(DY[(b*OC + oc)*OH*OW + e]) for b in range(Bn) for e in range(OH*OW)) for oc in range(OC)]
        check_sum(f'conv db {tag}', mem.get_f32(pdb, OC), db, dbm, R)


def attention_index(L, stride, D, n, l, h, c):
    """where element (n, l, h, c) of a head-interleaved operand lies: rows of `stride` floats, head h at column h D"""
    return (n*L + l)*stride + h*D + c


def attention_reference(N, H, QL, KL, D, qs, kvs, scale, Q, Kt, V, bias):
    """f64 forward over head-interleaved operands (row strides qs, kvs): P (0 rows where fully masked), out and lse per
    (n, h, i) in lse order (N, H, QL); out rows are D floats of that head"""
    P, O, L = [], [], []
    for n in range(N):
        for h in range(H):
            for i in range(QL):
                q = lambda c: Q[attention_index(QL, qs, D, n, i, h, c)]
                sc = [sum(q(c)*Kt[attention_index(KL, kvs, D, n, j, h, c)] for c in range(D))*r32(scale) + bias[i*KL+j]
                      for j in range(KL)]
                m = max(sc)
                if m == -math.inf:
                    P.append([0.0]*KL); O.append([0.0]*D); L.append(-math.inf); continue
                e = [math.exp(x-m) for x in sc]; l = sum(e)
                P.append([x/l for x in e]); L.append(m + math.log(l))
                O.append([sum(P[-1][j]*V[attention_index(KL, kvs, D, n, j, h, c)] for j in range(KL)) for c in range(D)])
    return P, O, L


def attention_out(N, H, QL, D, O):
    """the reference's rows O (lse order) as the dense (N, QL, H D) output"""
    out = [0.0]*(N*QL*H*D)
    for n in range(N):
        for h in range(H):
            for i in range(QL):
                for c in range(D):
                    out[attention_index(QL, H*D, D, n, i, h, c)] = O[(n*H + h)*QL + i][c]
    return out


# (N, H, QL, KL, D, q_pad, kv_pad, mask): the row strides are H D + pad
def attention_inputs(N, H, QL, KL, D, q_pad, kv_pad, mask):
    rnd = lambda n: [r32(random.uniform(-1,1)) for _ in range(n)]
    qs, kvs = H*D + q_pad, H*D + kv_pad
    Q, Kt, V, G = rnd(N*QL*qs), rnd(N*KL*kvs), rnd(N*KL*kvs), rnd(N*QL*H*D)
    def vis(i, j):
        if mask == 'causal': return j + QL <= i + KL or j == 0
        if mask == 'row1': return i != 1
        return True
    bias = [0.0 if vis(e//KL, e%KL) else -math.inf for e in range(QL*KL)]   # [QL, KL], shared by all heads
    return qs, kvs, Q, Kt, V, G, bias


def check_attention():
    random.seed(9)
    mod = Module(open(K+'attention.ptx').read())
    # one dense head; two heads of D = 33 in rows wider than their heads (q); two sequences of one head of D = 128
    for (N, H, QL, KL, D, q_pad, kv_pad, mask) in [(1, 1, 3, 5, 8, 0, 0, 'none'), (1, 2, 9, 40, 33, 3, 0, 'causal'),
                                                   (2, 1, 2, 3, 128, 0, 5, 'causal')]:
        scale = 1/math.sqrt(D)
        qs, kvs, Q, Kt, V, _, bias = attention_inputs(N, H, QL, KL, D, q_pad, kv_pad, mask)
        has_bias = int(mask != 'none')
        mem = Memory(); pq = mem.alloc(4*len(Q)); pk = mem.alloc(4*len(Kt)); pv = mem.alloc(4*len(V)); pb = mem.alloc(4*len(bias))
        po = mem.alloc(4*N*QL*H*D); pl = mem.alloc(4*N*H*QL)
        mem.put_f32(pq, Q); mem.put_f32(pk, Kt); mem.put_f32(pv, V); mem.put_f32(pb, bias)
        launch(mod, 'attention_forward', ((QL+7)//8, H, N), (256,1,1), [pq, pk, pv, pb, po, pl, has_bias, QL, KL, D, qs, kvs, scale], mem)
        _, O, L = attention_reference(N, H, QL, KL, D, qs, kvs, scale, Q, Kt, V, bias)
        wo = attention_out(N, H, QL, D, O)
        got = mem.get_f32(po, len(wo)); gl = mem.get_f32(pl, len(L))
        bad = [(i,g,w) for i,(g,w) in enumerate(zip(got+gl, wo+L)) if not (g == w or abs(g-w) <= 1e-5*max(1,abs(w)))]
        print('attention', (N, H, QL, KL, D, q_pad, kv_pad, mask), 'bad', bad[:3]); assert not bad


def check_attention_backward():
    random.seed(15)
    mod = Module(open(K+'attention_backward.ptx').read())
    fwd = Module(open(K+'attention.ptx').read())
    # ragged tiles (kv_len 40, q_len 37 against 32-row tiles and 8-warp blocks), D = 33 and 128 (all four lane slots),
    # two heads in rows wider than their heads, two sequences, a causal mask, a fully masked query row (forward output
    # 0, no gradient)
    for (N, H, QL, KL, D, q_pad, kv_pad, mask) in [(1, 1, 3, 5, 8, 0, 0, 'none'), (1, 2, 37, 40, 33, 3, 2, 'causal'),
                                                   (2, 1, 4, 3, 128, 0, 5, 'row1')]:
        scale = 1/math.sqrt(D)
        qs, kvs, Q, Kt, V, G, bias = attention_inputs(N, H, QL, KL, D, q_pad, kv_pad, mask)
        has_bias = int(mask != 'none')
        mem = Memory(); al = lambda n: mem.alloc(4*n)
        pq, pk, pv, pb, pg = al(len(Q)), al(len(Kt)), al(len(V)), al(len(bias)), al(len(G))
        po, pl, pd = al(len(G)), al(N*H*QL), al(N*H*QL)
        pdq, pdk, pdv = al(len(Q)), al(len(Kt)), al(len(V))
        mem.put_f32(pq, Q); mem.put_f32(pk, Kt); mem.put_f32(pv, V); mem.put_f32(pb, bias); mem.put_f32(pg, G)
        for ptr, n in [(pdq, len(Q)), (pdk, len(Kt)), (pdv, len(V))]:
            mem.put_f32(ptr, [7.0]*n)                # the columns past the heads must keep this
        launch(fwd, 'attention_forward', ((QL+7)//8, H, N), (256,1,1), [pq, pk, pv, pb, po, pl, has_bias, QL, KL, D, qs, kvs, scale], mem)
        args = [has_bias, QL, KL, D, qs, kvs, scale]
        launch(mod, 'attention_backward_dq', ((QL+7)//8, H, N), (256,1,1), [pq, pk, pv, pb, po, pg, pl, pd, pdq] + args, mem)
        launch(mod, 'attention_backward_dkv', ((KL+7)//8, H, N), (256,1,1), [pq, pk, pv, pb, pg, pl, pd, pdk, pdv] + args, mem)
        P, O, L = attention_reference(N, H, QL, KL, D, qs, kvs, scale, Q, Kt, V, bias)
        close(f'attention forward out {N,H,QL,KL,D,mask}', mem.get_f32(po, len(G)), attention_out(N, H, QL, D, O))
        wdq, wdk, wdv = [7.0]*len(Q), [7.0]*len(Kt), [7.0]*len(V)
        for w, rows, stride in [(wdq, N*QL, qs), (wdk, N*KL, kvs), (wdv, N*KL, kvs)]:
            for r in range(rows):
                w[r*stride:r*stride + H*D] = [0.0]*(H*D)
        for n in range(N):
            for h in range(H):
                for i in range(QL):
                    r = (n*H + h)*QL + i
                    g = lambda c: G[attention_index(QL, H*D, D, n, i, h, c)]
                    qi = lambda c: attention_index(QL, qs, D, n, i, h, c)
                    Dv = sum(g(c)*O[r][c] for c in range(D))
                    for j in range(KL):
                        kj = lambda c: attention_index(KL, kvs, D, n, j, h, c)
                        dp = sum(g(c)*V[kj(c)] for c in range(D))
                        ds = P[r][j]*(dp - Dv)
                        for c in range(D):
                            wdq[qi(c)] += scale*ds*Kt[kj(c)]
                            wdk[kj(c)] += scale*ds*Q[qi(c)]
                            wdv[kj(c)] += P[r][j]*g(c)
        # f32 sums of up to max(QL, KL) terms of size <= 1 after exps good to ~2^-21: 5e-5 of max(1, |want|)
        tag = (N, H, QL, KL, D, q_pad, kv_pad, mask)
        close(f'attention dq {tag}', mem.get_f32(pdq, len(Q)), wdq, 5e-5)
        close(f'attention dk {tag}', mem.get_f32(pdk, len(Kt)), wdk, 5e-5)
        close(f'attention dv {tag}', mem.get_f32(pdv, len(V)), wdv, 5e-5)


def check_gemm_bf16():
    random.seed(11)
    mod = Module(open(K+'gemm_bf16.ptx').read())
    def to_bf16(x):
        b = f2b(x); return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF
    for (m, n, k, beta) in [(3, 8, 8, 0.0), (17, 24, 40, 2.0), (130, 8, 16, 0.0)]:
        A = [to_bf16(random.uniform(-1,1)) for _ in range(m*k)]; B = [to_bf16(random.uniform(-1,1)) for _ in range(k*n)]; C = [r32(random.uniform(-1,1)) for _ in range(m*n)]
        mem = Memory(); pa = mem.alloc(2*m*k); pb = mem.alloc(2*k*n); pc = mem.alloc(4*m*n)
        mem.write(pa, struct.pack(f'<{m*k}H', *A)); mem.write(pb, struct.pack(f'<{k*n}H', *B)); mem.put_f32(pc, C)
        launch(mod, 'gemm_bf16', ((n+127)//128, (m+127)//128, 1), (256,1,1), [pa, pb, pc, m, n, k, 0.75, beta], mem)
        want = []; mags = []
        for r in range(m):
            for c in range(n):
                ps = [bf16_to_f(A[r*k+x])*bf16_to_f(B[x*n+c]) for x in range(k)]
                want.append(0.75*sum(ps) + beta*C[r*n+c]); mags.append(sum(abs(q) for q in ps))
        check_sum(f'bf16 {m,n,k,beta}', mem.get_f32(pc, m*n), want, mags, k)


CHECKS = {name[len('check_'):]: f for name, f in sorted(globals().items()) if name.startswith('check_') and name != 'check_sum'}

if __name__ == '__main__':
    chosen = sys.argv[1:] or list(CHECKS)
    for name in chosen:
        print(f'== {name}')
        CHECKS[name]()
    print('all kernels match their references')
