"""A functional interpreter for the subset of PTX that kernels/*.ptx use, so the kernels can be checked on a machine
without a GPU (scripts/ptxsim/check_kernels.py runs them against Python references).

What it models: per-thread registers (raw bit patterns), predicates, calls to .func (register and .param returns),
kernel .param space (including addresses taken with mov), global memory (one flat buffer), per-block shared memory,
bar.sync, and the warp collectives shfl.sync.bfly, ldmatrix(.trans) and mma.sync m16n8k16 bf16 (fragment layouts of
the PTX ISA). cp.async is performed synchronously (a legal schedule of the real asynchronous copy).
What it does not: timing, memory-model races, .approx errors (ex2/lg2/sin/cos/rsqrt are computed exactly and rounded
to f32). Blocks run one after another; threads of a block interleave only at barriers and warp collectives, so a
missing bar.sync is not detected.
"""
import re, struct, math

F32MAX = 3.4028234663852886e38
def f2b(x):
    if x != x: return 0x7FFFFFFF
    try:
        return struct.unpack('<I', struct.pack('<f', x))[0]
    except OverflowError:
        # round to nearest: values beyond max+half-ulp become inf
        if abs(x) >= 3.4028235677973366e38: return 0x7F800000 | (0x80000000 if x < 0 else 0)
        return 0x7F7FFFFF | (0x80000000 if x < 0 else 0)
def b2f(b): return struct.unpack('<f', struct.pack('<I', b & 0xFFFFFFFF))[0]
def r32(x): return b2f(f2b(x))
def bf16_to_f(h): return b2f((h & 0xFFFF) << 16)

def strip_comments(s): return re.sub(r'//[^\n]*', '', s)

def split_top(s, sep=','):
    out, depth, cur = [], 0, ''
    for ch in s:
        if ch in '{[(': depth += 1
        if ch in '}])': depth -= 1
        if ch == sep and depth == 0:
            out.append(cur.strip()); cur = ''
        else: cur += ch
    if cur.strip(): out.append(cur.strip())
    return out

class Func:
    def __init__(self, name, rets, params, body, is_entry):
        self.name, self.rets, self.params, self.is_entry = name, rets, params, is_entry
        self.instrs, self.labels, self.local_params = [], {}, {}
        for stmt in body:
            while True:
                m = re.match(r'^(\$?\w+):\s*(.*)$', stmt, re.S)
                if not m: break
                self.labels[m.group(1)] = len(self.instrs); stmt = m.group(2).strip()
            if not stmt: continue
            if stmt.startswith('.reg'): continue
            if stmt.startswith('.param'):
                m = re.match(r'\.param\s+\.align\s+\d+\s+\.b8\s+(%?\w+)\[(\d+)\]', stmt)
                self.local_params[m.group(1)] = int(m.group(2)); continue
            self.instrs.append(parse_instr(stmt))

def parse_decl(d):
    d = d.strip()
    m = re.match(r'\.(reg|param)\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+(%?\w+)(?:\[(\d+)\])?', d)
    space, align, ty, name, count = m.groups()
    return dict(space=space, align=int(align) if align else None, ty=ty, name=name, count=int(count) if count else None)

def parse_instr(stmt):
    guard = None
    m = re.match(r'^@(!?)(%\w+)\s+(.*)$', stmt, re.S)
    if m: guard = (m.group(1) == '!', m.group(2)); stmt = m.group(3)
    m = re.match(r'^(\S+)\s*(.*)$', stmt, re.S)
    op, rest = m.group(1), m.group(2).strip()
    ops = split_top(rest) if rest else []
    return (guard, op, ops)

class Module:
    def __init__(self, text):
        text = strip_comments(text)
        self.shared, self.shared_size, self.funcs = {}, 0, {}
        for m in re.finditer(r'^\.shared\s+\.align\s+(\d+)\s+\.(\w+)\s+(\w+)\[(\d+)\];', text, re.M):
            align, ty, name, count = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            size = {'f32': 4, 'b8': 1, 'b32': 4}[ty] * count
            self.shared_size = (self.shared_size + align - 1) // align * align
            self.shared[name] = self.shared_size; self.shared_size += size
        pos = 0
        hdr = re.compile(r'(\.visible\s+\.entry|\.func)\s*(\([^)]*\))?\s*(\w+)\s*\(([^)]*)\)\s*\{', re.S)
        while True:
            m = hdr.search(text, pos)
            if not m: break
            depth, i = 1, m.end()
            while depth:
                if text[i] == '{': depth += 1
                elif text[i] == '}': depth -= 1
                i += 1
            body = text[m.end():i - 1]
            rets = [parse_decl(d) for d in split_top(m.group(2)[1:-1])] if m.group(2) else []
            params = [parse_decl(d) for d in split_top(m.group(4))] if m.group(4).strip() else []
            stmts = [s.strip() for s in body.split(';')]
            self.funcs[m.group(3)] = Func(m.group(3), rets, params, stmts, 'entry' in m.group(1))
            pos = i

SIZES = {'u8':1,'b8':1,'u16':2,'b16':2,'u32':4,'s32':4,'b32':4,'f32':4,'u64':8,'s64':8,'b64':8,'f64':8,'pred':1}

class Memory:
    def __init__(self): self.buf = bytearray(16); self.base = 0x100000
    def alloc(self, nbytes):
        addr = self.base + len(self.buf)
        addr = (addr + 255) // 256 * 256
        self.buf.extend(bytearray(addr - self.base - len(self.buf) + nbytes))
        return addr
    def read(self, addr, n):
        o = addr - self.base
        if o < 0 or o + n > len(self.buf): raise RuntimeError(f'global read out of range {hex(addr)}')
        return bytes(self.buf[o:o+n])
    def write(self, addr, data):
        o = addr - self.base
        if o < 0 or o + len(data) > len(self.buf): raise RuntimeError(f'global write out of range {hex(addr)}')
        self.buf[o:o+len(data)] = data
    def put_f32(self, addr, vals): self.write(addr, struct.pack(f'<{len(vals)}f', *vals))
    def get_f32(self, addr, n): return list(struct.unpack(f'<{n}f', self.read(addr, 4*n)))

PARAM_BASE = 0x7000_0000

def mask(ty):
    return (1 << (8*SIZES[ty])) - 1 if ty in SIZES else 0xFFFFFFFF

def signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v

def run_block(mod, kname, params, grid, block_dim, ctaid, mem):
    func = mod.funcs[kname]
    # kernel param buffer
    pbytes = bytearray(); poff = {}
    for p, val in zip(func.params, params):
        size = SIZES[p['ty']] * (p['count'] or 1)
        align = p['align'] or SIZES[p['ty']]
        while len(pbytes) % align: pbytes.append(0)
        poff[p['name']] = len(pbytes)
        if p['count']: data = bytes(val)
        elif p['ty'] == 'f32': data = struct.pack('<f', val)
        else: data = (val & mask(p['ty'])).to_bytes(SIZES[p['ty']], 'little')
        assert len(data) == size, (p, len(data))
        pbytes.extend(data)
    shared = bytearray(mod.shared_size)
    nthreads = block_dim[0]
    gens = [exec_func(mod, func, {}, None, dict(tid=t, ntid=nthreads, ctaid=ctaid, nctaid=grid, kparams=(pbytes, poff)), mem, shared)
            for t in range(nthreads)]
    results = [None]*nthreads; waiting = {}; active = set(range(nthreads))
    while active:
        for t in sorted(active):
            if t in waiting: continue
            try:
                req = gens[t].send(results[t]); results[t] = None; waiting[t] = req
            except StopIteration:
                active.discard(t)
        if not active: break
        resolved = False
        for w in range(0, nthreads, 32):
            lanes = [t for t in range(w, min(w+32, nthreads)) if t in active]
            if lanes and all(t in waiting and waiting[t][0] == 'warp' for t in lanes):
                kinds = {waiting[t][1] for t in lanes}
                assert len(kinds) == 1, kinds
                assert len(lanes) == 32, 'partial warp in a collective'
                outs = warp_op(waiting[lanes[0]][1], [waiting[t][2] for t in lanes], shared)
                for i, t in enumerate(lanes):
                    results[t] = outs[i]; del waiting[t]
                resolved = True
        if resolved: continue
        if len(waiting) == len(active) and all(waiting[t][0] == 'bar' for t in active):
            for t in list(active): del waiting[t]
            continue
        if len(waiting) == len(active):
            raise RuntimeError(f'deadlock: {[(t, waiting[t][:2]) for t in sorted(active)][:8]}')

def warp_op(kind, payloads, shared):
    if kind == 'shfl':
        vals = [p[0] for p in payloads]
        return [vals[l ^ payloads[l][1]] for l in range(32)]
    if kind.startswith('ldmatrix'):
        trans = 'trans' in kind
        addrs = [p for p in payloads]
        mats = []
        for mi in range(4):
            rows = []
            for r in range(8):
                a = addrs[8*mi + r]
                rows.append([int.from_bytes(shared[a+2*c:a+2*c+2], 'little') for c in range(8)])
            mats.append(rows)
        outs = []
        for l in range(32):
            regs = []
            for mi in range(4):
                m = mats[mi]
                if not trans: e0, e1 = m[l//4][2*(l%4)], m[l//4][2*(l%4)+1]
                else: e0, e1 = m[2*(l%4)][l//4], m[2*(l%4)+1][l//4]
                regs.append(e0 | (e1 << 16))
            outs.append(regs)
        return outs
    if kind == 'mma':
        A = [[0.0]*16 for _ in range(16)]; B = [[0.0]*8 for _ in range(16)]; C = [[0.0]*8 for _ in range(16)]
        for l in range(32):
            a, b, c = payloads[l]
            g, t = l // 4, l % 4
            def lo(x): return bf16_to_f(x & 0xFFFF)
            def hi(x): return bf16_to_f(x >> 16)
            A[g][2*t], A[g][2*t+1] = lo(a[0]), hi(a[0])
            A[g+8][2*t], A[g+8][2*t+1] = lo(a[1]), hi(a[1])
            A[g][2*t+8], A[g][2*t+9] = lo(a[2]), hi(a[2])
            A[g+8][2*t+8], A[g+8][2*t+9] = lo(a[3]), hi(a[3])
            B[2*t][g], B[2*t+1][g] = lo(b[0]), hi(b[0])
            B[2*t+8][g], B[2*t+9][g] = lo(b[1]), hi(b[1])
            C[g][2*t], C[g][2*t+1], C[g+8][2*t], C[g+8][2*t+1] = [b2f(x) for x in c]
        D = [[r32(C[i][j] + sum(A[i][k]*B[k][j] for k in range(16))) for j in range(8)] for i in range(16)]
        outs = []
        for l in range(32):
            g, t = l // 4, l % 4
            outs.append([f2b(D[g][2*t]), f2b(D[g][2*t+1]), f2b(D[g+8][2*t]), f2b(D[g+8][2*t+1])])
        return outs
    raise RuntimeError(kind)

def exec_func(mod, func, args, ret_buf, env, mem, shared):
    regs = {}
    for p, v in zip(func.params, args): regs[p['name']] = v
    lparams = {name: bytearray(size) for name, size in func.local_params.items()}
    if ret_buf is not None and func.rets and func.rets[0]['space'] == 'param':
        lparams[func.rets[0]['name']] = ret_buf
    pbytes, poff = env['kparams']

    def special(name):
        t = env['tid']
        return {'%tid.x': t, '%ntid.x': env['ntid'], '%ctaid.x': env['ctaid'][0], '%ctaid.y': env['ctaid'][1],
                '%ctaid.z': env['ctaid'][2], '%nctaid.x': env['nctaid'][0]}[name]

    def val(op, ty):
        """operand -> bits (ints) for ty"""
        neg = False
        if op.startswith('%'):
            if op in ('%tid.x','%ntid.x','%ctaid.x','%ctaid.y','%ctaid.z','%nctaid.x'): return special(op)
            if op not in regs: raise RuntimeError(f'{func.name}: read of unset register {op}')
            return regs[op]
        if re.match(r'^0[fF][0-9a-fA-F]{8}$', op): return int(op[2:], 16)
        if re.match(r'^-?(0x[0-9a-fA-F]+|\d+)$', op):
            v = int(op, 0)
            return v & mask(ty) if ty in SIZES else v
        if op in mod.shared: return mod.shared[op]
        if op in poff: return PARAM_BASE + poff[op]
        raise RuntimeError(f'operand {op}')

    def fval(op): return b2f(val(op, 'f32'))
    def ival(op, ty):
        v = val(op, ty)
        bits = 8*SIZES[ty]
        return signed(v, bits) if ty[0] == 's' else v & ((1 << bits) - 1)
    def setr(name, v, ty):
        regs[name] = v & mask(ty) if ty in SIZES else v
    def addr(op):
        inner = op[1:-1].strip()
        m = re.match(r'^(%?[\w$]+)\s*(?:\+\s*(-?\d+))?$', inner)
        base, off = m.group(1), int(m.group(2) or 0)
        if base in lparams: return ('local', base, off)
        if base in poff: return ('kparam', poff[base] + off)
        if base in mod.shared: return ('shared', mod.shared[base] + off)
        return ('reg', (regs[base] + off) & 0xFFFFFFFFFFFFFFFF)
    def load(space, a, n):
        if a[0] == 'local': return bytes(lparams[a[1]][a[2]:a[2]+n])
        if a[0] == 'kparam': return bytes(pbytes[a[1]:a[1]+n])
        x = a[1]
        if space == 'param':
            if x >= PARAM_BASE: o = x - PARAM_BASE; return bytes(pbytes[o:o+n])
            raise RuntimeError('param load from non-param address')
        if space == 'shared':
            if x + n > len(shared): raise RuntimeError(f'shared read out of range {x}')
            return bytes(shared[x:x+n])
        return mem.read(x, n)
    def store(space, a, data):
        if a[0] == 'local': lparams[a[1]][a[2]:a[2]+len(data)] = data; return
        x = a[1]
        if space == 'shared':
            if x + len(data) > len(shared): raise RuntimeError(f'shared write out of range {x}')
            shared[x:x+len(data)] = data; return
        if space == 'global': mem.write(x, data); return
        raise RuntimeError('store space ' + space)

    pc = 0
    instrs = func.instrs
    while True:
        guard, op, ops = instrs[pc]; pc += 1
        if guard is not None:
            g = regs[guard[1]]
            if guard[0]: g = not g
            if not g: continue
        parts = op.split('.')
        base = parts[0]
        ty = parts[-1]
        if base == 'ret' or op == 'ret':
            if func.rets and func.rets[0]['space'] == 'reg':
                return regs[func.rets[0]['name']]
            return None
        if base in ('bra',):
            pc = func.labels[ops[0]]; continue
        if base == 'mov':
            d, s = ops
            if d.startswith('{'):
                lo, hi = [x.strip() for x in d[1:-1].split(',')]
                v = val(s, 'b64'); regs[lo] = v & 0xFFFFFFFF; regs[hi] = v >> 32; continue
            if s.startswith('{'):
                lo, hi = [x.strip() for x in s[1:-1].split(',')]
                regs[d] = (val(lo,'b32') & 0xFFFFFFFF) | ((val(hi,'b32') & 0xFFFFFFFF) << 32); continue
            setr(d, val(s, ty), ty); continue
        if base == 'cvta': setr(ops[0], val(ops[1], 'u64'), 'u64'); continue
        if base in ('ld', 'st'):
            space = parts[1]
            vec = 1
            if 'v2' in parts: vec = 2
            if 'v4' in parts: vec = 4
            sz = SIZES[ty]
            if base == 'ld':
                a = addr(ops[1]); data = load(space, a, sz*vec)
                dsts = [x.strip() for x in ops[0][1:-1].split(',')] if vec > 1 else [ops[0]]
                for i, dreg in enumerate(dsts):
                    regs[dreg] = int.from_bytes(data[i*sz:(i+1)*sz], 'little')
            else:
                a = addr(ops[0])
                srcs = [x.strip() for x in ops[1][1:-1].split(',')] if vec > 1 else [ops[1]]
                data = b''.join((val(s, ty) & mask(ty)).to_bytes(sz, 'little') for s in srcs)
                store(space, a, data)
            continue
        if base == 'call':
            # call (ret), fname, (args)   or   call fname, (args)
            if ops[0].startswith('('):
                retname = ops[0][1:-1].strip(); fname = ops[1]; argl = ops[2]
            else:
                retname = None; fname = ops[0]; argl = ops[1]
            callee = mod.funcs[fname]
            args = []
            for a, p in zip(split_top(argl[1:-1]), callee.params):
                args.append(val(a, p['ty']))
            if callee.rets and callee.rets[0]['space'] == 'param':
                yield from exec_func(mod, callee, args, lparams[retname], env, mem, shared)
            else:
                r = yield from exec_func(mod, callee, args, None, env, mem, shared)
                if retname: regs[retname] = r
            continue
        if base == 'bar':
            yield ('bar',); continue
        if base == 'shfl':
            v = val(ops[1], 'b32'); lanemask = ival(ops[2], 'u32')
            r = yield ('warp', 'shfl', (v, lanemask))
            regs[ops[0]] = r; continue
        if base == 'ldmatrix':
            a = addr(ops[1])
            r = yield ('warp', 'ldmatrix' + ('.trans' if 'trans' in parts else ''), a[1])
            dsts = [x.strip() for x in ops[0][1:-1].split(',')]
            for dreg, v in zip(dsts, r): regs[dreg] = v
            continue
        if base == 'mma':
            d = [x.strip() for x in ops[0][1:-1].split(',')]
            a = [val(x.strip(), 'b32') for x in ops[1][1:-1].split(',')]
            b = [val(x.strip(), 'b32') for x in ops[2][1:-1].split(',')]
            c = [val(x.strip(), 'b32') for x in ops[3][1:-1].split(',')]
            r = yield ('warp', 'mma', (a, b, c))
            for dreg, v in zip(d, r): regs[dreg] = v
            continue
        if base == 'cp':
            if parts[1] == 'async' and len(parts) > 2 and parts[2] in ('commit_group', 'wait_group'): continue
            dst = addr(ops[0]); src = addr(ops[1]); nbytes = ival(ops[3], 'u32')
            data = mem.read(src[1], nbytes) if nbytes else b''
            data = data + bytes(16 - nbytes)
            store('shared', dst, data); continue
        if base == 'setp':
            cmp = parts[1]; boolop = parts[2] if len(parts) == 4 else None
            if ty == 'f32':
                a, b = fval(ops[1]), fval(ops[2])
                nan = a != a or b != b
                res = {'lt': a < b, 'le': a <= b, 'gt': a > b, 'ge': a >= b, 'eq': a == b, 'ne': (a != b) and not nan,
                       'neu': (a != b) or nan, 'nan': nan, 'num': not nan}[cmp]
            else:
                a, b = ival(ops[1], ty), ival(ops[2], ty)
                res = {'lt': a < b, 'le': a <= b, 'gt': a > b, 'ge': a >= b, 'eq': a == b, 'ne': a != b}[cmp]
            if boolop:
                c = ops[3]; cv = (not regs[c[1:]]) if c.startswith('!') else regs[c]
                res = {'and': res and cv, 'or': res or cv}[boolop]
            regs[ops[0]] = res; continue
        if op == 'and.pred': regs[ops[0]] = regs[ops[1]] and regs[ops[2]]; continue
        if op == 'not.pred': regs[ops[0]] = not regs[ops[1]]; continue
        if base == 'selp':
            regs[ops[0]] = val(ops[1], ty) if regs[ops[3]] else val(ops[2], ty); continue
        if base == 'testp':
            x = fval(ops[1]); regs[ops[0]] = not (math.isinf(x) or x != x); continue
        if base == 'cvt':
            dt, st = [p for p in parts[1:] if p in SIZES]
            if dt == 'f32' and st == 'f32':  # rzi
                x = fval(ops[1]); setr(ops[0], f2b(float(math.trunc(x)) if math.isfinite(x) else x), 'f32'); continue
            if dt == 'f32':
                setr(ops[0], f2b(float(ival(ops[1], st))), 'f32'); continue
            setr(ops[0], ival(ops[1], st), dt); continue
        if ty == 'f32':
            fo = parts[0]
            x = [fval(o) for o in ops[1:]]
            if fo == 'add': r = r32(x[0] + x[1])
            elif fo == 'sub': r = r32(x[0] - x[1])
            elif fo == 'mul': r = r32(x[0] * x[1])
            elif fo == 'fma': r = r32(x[0] * x[1] + x[2])
            elif fo == 'div': r = r32(x[0] / x[1]) if x[1] != 0 else (math.copysign(math.inf, x[0]) * math.copysign(1, x[1]) if x[0] != 0 and x[0] == x[0] else math.nan)
            elif fo == 'rcp': r = r32(1.0 / x[0]) if x[0] != 0 else math.copysign(math.inf, x[0])
            elif fo == 'sqrt': r = r32(math.sqrt(x[0])) if x[0] >= 0 else (x[0] if x[0] != x[0] else math.nan)
            elif fo == 'rsqrt': r = r32(1 / math.sqrt(x[0])) if x[0] > 0 else (math.inf if x[0] == 0 else math.nan)
            elif fo == 'ex2':
                try: r = r32(2.0 ** x[0])
                except OverflowError: r = math.inf
            elif fo == 'lg2': r = r32(math.log2(x[0])) if x[0] > 0 else (-math.inf if x[0] == 0 else math.nan)
            elif fo == 'sin': r = r32(math.sin(x[0]))
            elif fo == 'cos': r = r32(math.cos(x[0]))
            elif fo == 'neg': r = -x[0]
            elif fo == 'abs': r = abs(x[0])
            elif fo == 'min': r = min(x[0], x[1]) if x[0] == x[0] and x[1] == x[1] else (x[1] if x[0] != x[0] else x[0])
            elif fo == 'max': r = max(x[0], x[1]) if x[0] == x[0] and x[1] == x[1] else (x[1] if x[0] != x[0] else x[0])
            elif fo == 'copysign': r = math.copysign(x[1], x[0])
            else: raise RuntimeError('f32 op ' + op)
            regs[ops[0]] = f2b(r); continue
        # integer ops
        io = parts[0]
        bits = 8*SIZES[ty]
        if io == 'mul' and parts[1] == 'wide':
            st = ty; wide = {'u32': 'u64', 's32': 's64'}[st]
            setr(ops[0], ival(ops[1], st) * ival(ops[2], st), wide); continue
        if io == 'mul' and parts[1] == 'hi':
            setr(ops[0], (ival(ops[1], ty) * ival(ops[2], ty)) >> bits, ty); continue
        if io == 'mad':
            setr(ops[0], ival(ops[1], ty) * ival(ops[2], ty) + ival(ops[3], ty), ty); continue
        a = ival(ops[1], ty)
        b = ival(ops[2], ty) if len(ops) > 2 else None
        if io == 'add': r = a + b
        elif io == 'sub': r = a - b
        elif io == 'mul': r = a * b
        elif io == 'div': r = int(a / b) if ty[0] == 's' else a // b
        elif io == 'rem': r = a - b * (a // b)
        elif io == 'and': r = a & b
        elif io == 'or': r = a | b
        elif io == 'xor': r = a ^ b
        elif io == 'shl': r = a << ival(ops[2], 'u32')
        elif io == 'shr': r = a >> ival(ops[2], 'u32')
        elif io == 'min': r = min(a, b)
        elif io == 'max': r = max(a, b)
        else: raise RuntimeError('int op ' + op)
        setr(ops[0], r, ty)

def launch(mod, kname, grid, block, params, mem):
    """Runs kernel `kname` over the whole grid; `params` in declaration order (ints, floats, or bytes for .b8 arrays)."""
    for z in range(grid[2]):
        for y in range(grid[1]):
            for x in range(grid[0]):
                run_block(mod, kname, params, grid, block, (x, y, z), mem)
