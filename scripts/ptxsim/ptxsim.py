"""A functional interpreter for the subset of PTX that kernels/*.ptx use, so the kernels can be checked on a machine
without a GPU: scripts/ptxsim/check_kernels.py runs them against Python references, scripts/ptxsim/sanitize.py runs
them under the simulated sanitizers (racecheck.py, memcheck.py, aligncheck.py, initcheck.py).

What it models: per-thread registers (raw bit patterns), predicates, calls to .func (register and .param returns),
kernel .param space (including addresses taken with mov), global memory as separate allocations, per-block shared
memory as separate arrays, bar.sync, bar.warp.sync, the warp collectives shfl.sync.bfly, ldmatrix(.trans) and
mma.sync m16n8k16 bf16 (fragment layouts of the PTX ISA), and cp.async as a real asynchronous copy: the source is read
when the copy is issued, the destination written when cp.async.wait_group retires its group.
What it does not: timing, .approx errors (ex2/lg2/sin/cos/rsqrt are computed exactly and rounded to f32), atomics.

Address spaces. Every global allocation lives alone in its own 2^40-byte window, 256-byte aligned (cudaMalloc's
promise) but never 512-byte aligned; every .shared array likewise in its own 2^24-byte window, aligned exactly as
declared. So an address always says which allocation or array it is based on, however far an index has strayed (the
rest of the window is a red zone), and no access can silently land in a neighbouring buffer. Fresh memory holds
garbage, not zeros (the schedule chooses which), and each space remembers which bytes were ever written.

Schedules. Blocks run one after another, in the order the schedule gives. Within a block every thread is a Python
generator that runs until it must wait (a barrier, a warp collective) or, under a preempting schedule, until its next
shared or global memory access; the schedule picks which ready thread runs next, and a warp collective completes as
soon as its warp's last lane arrives. InOrder is the fastest and the default; Reversed and Shuffled exist so that
scripts/ptxsim/sanitize.py can check that a kernel's result does not depend on the interleaving.

Checks. `launch(..., checks=[...])` calls hooks on each check (see checks.py) at every shared and global access,
barrier, warp barrier, cp.async issue and completion, and block and launch boundary; the sanitizers are such checks.
"""
import bisect, math, operator, random, re, struct

F32MAX = 3.4028234663852886e38
F32 = struct.Struct('<f'); U32 = struct.Struct('<I')
def f2b(x):
    if x != x: return 0x7FFFFFFF
    try:
        return U32.unpack(F32.pack(x))[0]
    except OverflowError:
        # round to nearest: values beyond max+half-ulp become inf
        if abs(x) >= 3.4028235677973366e38: return 0x7F800000 | (0x80000000 if x < 0 else 0)
        return 0x7F7FFFFF | (0x80000000 if x < 0 else 0)
def b2f(b): return F32.unpack(U32.pack(b & 0xFFFFFFFF))[0]
def r32(x): return b2f(f2b(x))
def bf16_to_f(h): return b2f((h & 0xFFFF) << 16)

def strip_comments(s): return re.sub(r'//[^\n]*', '', s)   # newlines stay, so line numbers survive

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
        """body: (statement, where) pairs; where = 'file:line: statement' names the statement in reports"""
        self.name, self.rets, self.params, self.is_entry = name, rets, params, is_entry
        self.instrs, self.labels, self.local_params = [], {}, {}
        for stmt, where in body:
            while True:
                m = re.match(r'^(\$?\w+):\s*(.*)$', stmt, re.S)
                if not m: break
                self.labels[m.group(1)] = len(self.instrs); stmt = m.group(2).strip()
            if not stmt: continue
            if stmt.startswith('.reg'): continue
            if stmt.startswith('.param'):
                m = re.match(r'\.param\s+\.align\s+\d+\s+\.b8\s+(%?\w+)\[(\d+)\]', stmt)
                self.local_params[m.group(1)] = int(m.group(2)); continue
            self.instrs.append(parse_instr(stmt, where))

def parse_decl(d):
    d = d.strip()
    m = re.match(r'\.(reg|param)\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+(%?\w+)(?:\[(\d+)\])?', d)
    space, align, ty, name, count = m.groups()
    return dict(space=space, align=int(align) if align else None, ty=ty, name=name, count=int(count) if count else None)

def parse_instr(stmt, where=''):
    """-> (guard, opcode, operands, opcode parts, where)"""
    guard = None
    m = re.match(r'^@(!?)(%\w+)\s+(.*)$', stmt, re.S)
    if m: guard = (m.group(1) == '!', m.group(2)); stmt = m.group(3)
    m = re.match(r'^(\S+)\s*(.*)$', stmt, re.S)
    op, rest = m.group(1), m.group(2).strip()
    ops = split_top(rest) if rest else []
    return (guard, op, ops, op.split('.'), where)

SHARED_WINDOW = 1 << 24      # each .shared array alone in a window this big (shared addresses are 32-bit)
GLOBAL_WINDOW = 1 << 40      # each global allocation alone in a window this big
GLOBAL_ALIGN = 256           # what cudaMalloc promises, and all it promises

class Module:
    def __init__(self, text, name='module.ptx'):
        self.name = name
        text = strip_comments(text)
        newlines = [i for i, ch in enumerate(text) if ch == '\n']
        # .shared arrays: array i occupies [base, base + size) of window i + 1, base = window start + align (a
        # multiple of the declared alignment and of nothing larger)
        self.shared, self.shared_arrays, self.funcs = {}, [], {}
        for m in re.finditer(r'^\.shared\s+\.align\s+(\d+)\s+\.(\w+)\s+(\w+)\[(\d+)\];', text, re.M):
            align, ty, name, count = int(m.group(1)), m.group(2), m.group(3), int(m.group(4))
            base = (len(self.shared_arrays) + 1) * SHARED_WINDOW + align
            self.shared[name] = base
            self.shared_arrays.append((name, base, {'f32': 4, 'b8': 1, 'b32': 4}[ty] * count))
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
            rets = [parse_decl(d) for d in split_top(m.group(2)[1:-1])] if m.group(2) else []
            params = [parse_decl(d) for d in split_top(m.group(4))] if m.group(4).strip() else []
            stmts, at = [], m.end()
            for piece in text[m.end():i - 1].split(';'):
                lead = re.match(r'\s*(?:\$?\w+:\s*)*', piece).end()    # whitespace and labels before the instruction
                line = bisect.bisect_left(newlines, at + lead) + 1
                stmts.append((piece.strip(), f'{name}:{line}: {" ".join(piece[lead:].split())}'))
                at += len(piece) + 1
            self.funcs[m.group(3)] = Func(m.group(3), rets, params, stmts, 'entry' in m.group(1))
            pos = i

    def entries(self):
        return [f.name for f in self.funcs.values() if f.is_entry]

SIZES = {'u8':1,'b8':1,'u16':2,'b16':2,'u32':4,'s32':4,'b32':4,'f32':4,'u64':8,'s64':8,'b64':8,'f64':8,'pred':1}

def fill_ff(n): return b'\xff' * n          # fresh memory of the default schedule: every f32 a NaN

class Memory:
    """Global memory: allocation i at base(i) = (i + 1.5) 2^40 + 256, alone in the window base(i) +- 2^39.
    `alloc` gives garbage (never-written bytes); host writes (`write`, `put_f32`) and kernel stores mark bytes written."""
    def __init__(self, garbage=fill_ff):
        self.garbage, self.data, self.written = garbage, [], []
    def alloc(self, nbytes):
        self.data.append(bytearray(self.garbage(nbytes))); self.written.append(bytearray(nbytes))
        return self.base(len(self.data) - 1)
    @staticmethod
    def base(index): return (index + 1) * GLOBAL_WINDOW + GLOBAL_WINDOW // 2 + GLOBAL_ALIGN
    def locate(self, addr):
        """-> (allocation index, offset from its base) of the window `addr` falls in, or None"""
        index = (addr - GLOBAL_WINDOW - GLOBAL_ALIGN) // GLOBAL_WINDOW
        return (index, addr - self.base(index)) if 0 <= index < len(self.data) else None
    def describe(self, addr):
        at = self.locate(addr)
        if at is None: return f'{hex(addr)} (in no allocation)'
        index, off = at
        return f'allocation #{index} ({len(self.data[index])} bytes) + {off}'
    def in_bounds(self, addr, n):
        at = self.locate(addr)
        return at is not None and 0 <= at[1] and at[1] + n <= len(self.data[at[0]])
    def unwritten(self, addr, n):
        """offsets (from addr) of the bytes in [addr, addr + n) never written"""
        index, off = self.locate(addr)
        return [i for i, w in enumerate(self.written[index][off:off + n]) if not w]
    def read(self, addr, n):
        if not self.in_bounds(addr, n): raise RuntimeError(f'global read of {n} bytes out of bounds: {self.describe(addr)}')
        index, off = self.locate(addr)
        return bytes(self.data[index][off:off + n])
    def write(self, addr, data):
        if not self.in_bounds(addr, len(data)):
            raise RuntimeError(f'global write of {len(data)} bytes out of bounds: {self.describe(addr)}')
        index, off = self.locate(addr)
        self.data[index][off:off + len(data)] = data
        self.written[index][off:off + len(data)] = b'\x01' * len(data)
    def put_f32(self, addr, vals): self.write(addr, struct.pack(f'<{len(vals)}f', *vals))
    def get_f32(self, addr, n): return list(struct.unpack(f'<{n}f', self.read(addr, 4*n)))

class SharedMemory:
    """One block's shared memory: the module's .shared arrays, each in its own window (Module), garbage until written."""
    def __init__(self, mod, garbage=fill_ff):
        self.arrays = mod.shared_arrays
        self.data = [bytearray(garbage(size)) for _, _, size in self.arrays]
        self.written = [bytearray(size) for _, _, size in self.arrays]
    def locate(self, addr):
        index = addr // SHARED_WINDOW - 1
        return (index, addr - self.arrays[index][1]) if 0 <= index < len(self.arrays) else None
    def describe(self, addr):
        at = self.locate(addr)
        if at is None: return f'{hex(addr)} (in no .shared array)'
        name, _, size = self.arrays[at[0]]
        return f'{name} ({size} bytes) + {at[1]}'
    def in_bounds(self, addr, n):
        at = self.locate(addr)
        return at is not None and 0 <= at[1] and at[1] + n <= self.arrays[at[0]][2]
    def unwritten(self, addr, n):
        index, off = self.locate(addr)
        return [i for i, w in enumerate(self.written[index][off:off + n]) if not w]
    def read(self, addr, n):
        if not self.in_bounds(addr, n): raise RuntimeError(f'shared read of {n} bytes out of bounds: {self.describe(addr)}')
        index, off = self.locate(addr)
        return bytes(self.data[index][off:off + n])
    def write(self, addr, data):
        if not self.in_bounds(addr, len(data)):
            raise RuntimeError(f'shared write of {len(data)} bytes out of bounds: {self.describe(addr)}')
        index, off = self.locate(addr)
        self.data[index][off:off + len(data)] = data
        self.written[index][off:off + len(data)] = b'\x01' * len(data)

PARAM_BASE = 0x7000_0000

INT_COMPARE = {'lt': operator.lt, 'le': operator.le, 'gt': operator.gt, 'ge': operator.ge, 'eq': operator.eq,
               'ne': operator.ne}
F32_COMPARE = dict(INT_COMPARE, ne=lambda a, b: a == a and b == b and a != b, neu=operator.ne,
                   nan=lambda a, b: a != a or b != b, num=lambda a, b: a == a and b == b)

MASKS = {ty: (1 << (8*size)) - 1 for ty, size in SIZES.items()}

def mask(ty):
    return MASKS.get(ty, 0xFFFFFFFF)

LITERALS = {}

def literal(op):
    """'0f3F800000' -> (True, its bits); '-3', '0x1f' -> (False, the integer); anything else -> None (cached)"""
    if op not in LITERALS:
        if re.match(r'^0[fF][0-9a-fA-F]{8}$', op): LITERALS[op] = (True, int(op[2:], 16))
        elif re.match(r'^-?(0x[0-9a-fA-F]+|\d+)$', op): LITERALS[op] = (False, int(op, 0))
        else: LITERALS[op] = None
    return LITERALS[op]

def signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v

class InOrder:
    """Blocks in launch order; in a block, the lowest ready thread runs until it must wait. A warp whose lanes have all
    reached a collective goes on at once, so warp 0 runs ahead to the next barrier before warp 1 starts."""
    name, preempt = 'in order', False
    garbage = staticmethod(fill_ff)
    def blocks(self, grid): return [(x, y, z) for z in range(grid[2]) for y in range(grid[1]) for x in range(grid[0])]
    def add(self, ready, threads):
        for t in threads: bisect.insort(ready, t)          # ready stays sorted: the lowest first
    def pick(self, ready): return 0

class Reversed(InOrder):
    """Blocks in reverse; in a block, the highest ready thread runs until it must wait. Fresh memory is 0x7f bytes."""
    name = 'reversed'
    garbage = staticmethod(lambda n: b'\x7f' * n)
    def blocks(self, grid): return InOrder.blocks(self, grid)[::-1]
    def add(self, ready, threads):
        for t in threads: bisect.insort(ready, t, key=lambda x: -x)

class Shuffled(InOrder):
    """Blocks in a seeded random order; in a block, a random ready thread runs until its next shared or global memory
    access (or until it must wait), then the choice is made again. Fresh memory is random bytes."""
    preempt = True
    def __init__(self, seed):
        self.name, self.rng = f'shuffled (seed {seed})', random.Random(seed)
    def garbage(self, n): return self.rng.randbytes(n)
    def blocks(self, grid):
        order = InOrder.blocks(self, grid); self.rng.shuffle(order); return order
    def add(self, ready, threads): ready.extend(threads)
    def pick(self, ready): return self.rng.randrange(len(ready))

class Block:
    def __init__(self, mod, kname, ctaid, nthreads, shared):
        self.mod, self.kname, self.ctaid, self.nthreads, self.shared = mod, kname, ctaid, nthreads, shared

class Thread:
    __slots__ = ('block', 'tid', 'warp')
    def __init__(self, block, tid): self.block, self.tid, self.warp = block, tid, tid // 32

class Launch:
    def __init__(self, mod, kname, grid, block_dim, mem):
        self.mod, self.kname, self.grid, self.block_dim, self.mem = mod, kname, grid, block_dim, mem

PREEMPT = ('preempt',)

def run_block(mod, kname, params, grid, block_dim, ctaid, mem, schedule=InOrder(), checks=()):
    func = mod.funcs[kname]
    if len(params) != len(func.params):
        raise RuntimeError(f'{kname} takes {len(func.params)} parameters, {len(params)} given')
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
    nthreads = block_dim[0]
    block = Block(mod, kname, ctaid, nthreads, SharedMemory(mod, schedule.garbage))
    for c in checks: c.block_start(block)
    gens = [exec_func(mod, func, {}, None, dict(tid=t, ntid=nthreads, ctaid=ctaid, nctaid=grid, kparams=(pbytes, poff),
                                                 thread=Thread(block, t), checks=checks, preempt=schedule.preempt,
                                                 copies=AsyncCopies()), mem, block.shared)
            for t in range(nthreads)]
    results = [None]*nthreads; waiting = {}; done = set()

    def complete_collective(w):
        """when every live lane of warp w waits at a warp collective, perform it and make the lanes ready"""
        lanes = [t for t in range(32*w, min(32*w + 32, nthreads)) if t not in done]
        if not lanes or not all(t in waiting and waiting[t][0] == 'warp' for t in lanes): return
        kinds = {waiting[t][1] for t in lanes}
        assert len(kinds) == 1, kinds
        assert len(lanes) == 32, 'partial warp in a collective'
        if waiting[lanes[0]][1] == 'warpsync':
            for c in checks: c.warp_barrier(block, w)
            outs = [None] * 32
        else:
            outs = warp_op(waiting[lanes[0]][1], [waiting[t][2] for t in lanes], block.shared)
        for k, t in enumerate(lanes):
            results[t] = outs[k]; del waiting[t]
        schedule.add(ready, lanes)

    ready = []
    schedule.add(ready, range(nthreads))
    while True:
        while ready:
            i = schedule.pick(ready); t = ready[i]
            try:
                req = gens[t].send(results[t]); results[t] = None
            except StopIteration:
                done.add(t); ready.pop(i); continue
            if req is PREEMPT: continue
            waiting[t] = req; ready.pop(i)
            if req[0] == 'warp': complete_collective(t // 32)
        if not waiting: break
        # every live thread waits, none at a collective its warp completed: a barrier, or a deadlock
        if all(req[0] == 'bar' for req in waiting.values()):
            for c in checks: c.barrier(block)
            schedule.add(ready, list(waiting)); waiting = {}
            continue
        for w in range((nthreads + 31) // 32): complete_collective(w)   # refuses a collective some lanes exited before
        raise RuntimeError(f'deadlock: {[(t, waiting[t][:2]) for t in sorted(waiting)][:8]}')
    for c in checks: c.block_end(block)

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
                row = shared.read(addrs[8*mi + r], 16)
                rows.append([int.from_bytes(row[2*c:2*c+2], 'little') for c in range(8)])
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

class AsyncCopies:
    """One thread's cp.async state: the copies issued since its last commit_group, and its committed groups, oldest
    first. A copy is (shared destination, the bytes read from global memory at issue, where it was issued)."""
    def __init__(self): self.open, self.groups = [], []

def exec_func(mod, func, args, ret_buf, env, mem, shared):
    regs = {}
    th, checks, preempt, copies = env['thread'], env['checks'], env['preempt'], env['copies']
    for p, v in zip(func.params, args): regs[p['name']] = v
    lparams = {name: bytearray(size) for name, size in func.local_params.items()}
    if ret_buf is not None and func.rets and func.rets[0]['space'] == 'param':
        lparams[func.rets[0]['name']] = ret_buf
    pbytes, poff = env['kparams']

    # the special registers read like ordinary ones
    regs.update({'%tid.x': env['tid'], '%ntid.x': env['ntid'], '%ctaid.x': env['ctaid'][0], '%ctaid.y': env['ctaid'][1],
                 '%ctaid.z': env['ctaid'][2], '%nctaid.x': env['nctaid'][0], '%nctaid.y': env['nctaid'][1]})

    def val(op, ty):
        """operand -> bits (ints) for ty"""
        v = regs.get(op)
        if v is not None: return v
        if op.startswith('%'): raise RuntimeError(f'{func.name}: read of unset register {op}')
        lit = literal(op)
        if lit is not None:
            is_float, v = lit
            return v if is_float or ty not in SIZES else v & MASKS[ty]
        if op in mod.shared: return mod.shared[op]
        if op in poff: return PARAM_BASE + poff[op]
        raise RuntimeError(f'operand {op}')

    def fval(op): return b2f(val(op, 'f32'))
    def ival(op, ty):
        v = val(op, ty)
        bits = 8*SIZES[ty]
        return signed(v, bits) if ty[0] == 's' else v & ((1 << bits) - 1)
    def setr(name, v, ty):
        regs[name] = v & MASKS[ty] if ty in MASKS else v
    def addr(op):
        inner = op[1:-1].strip()
        m = re.match(r'^(%?[\w$]+)\s*(?:\+\s*(-?\d+))?$', inner)
        base, off = m.group(1), int(m.group(2) or 0)
        if base in lparams: return ('local', base, off)
        if base in poff: return ('kparam', poff[base] + off)
        if base in mod.shared: return ('reg', mod.shared[base] + off)
        return ('reg', (regs[base] + off) & 0xFFFFFFFFFFFFFFFF)
    def load(space, a, n):
        if a[0] == 'local': return bytes(lparams[a[1]][a[2]:a[2]+n])
        if a[0] == 'kparam': return bytes(pbytes[a[1]:a[1]+n])
        x = a[1]
        if space == 'param':
            if x >= PARAM_BASE: o = x - PARAM_BASE; return bytes(pbytes[o:o+n])
            raise RuntimeError('param load from non-param address')
        if space == 'shared': return shared.read(x, n)
        return mem.read(x, n)
    def store(space, a, data):
        if a[0] == 'local': lparams[a[1]][a[2]:a[2]+len(data)] = data; return
        x = a[1]
        if space == 'shared': shared.write(x, data); return
        if space == 'global': mem.write(x, data); return
        raise RuntimeError('store space ' + space)

    def complete(group):
        """the copies of a retired cp.async group land in shared memory (a write by this thread, now)"""
        for dst, data, where in group:
            for c in checks:
                c.async_complete(th, dst, len(data)); c.access(th, 'shared', dst, len(data), True, len(data), where)
            shared.write(dst, data)

    pc = 0
    instrs = func.instrs
    while True:
        guard, op, ops, parts, where = instrs[pc]; pc += 1
        if guard is not None:
            g = regs[guard[1]]
            if guard[0]: g = not g
            if not g: continue
        base = parts[0]
        ty = parts[-1]
        if base == 'ret' or op == 'ret':
            if func.is_entry:       # copies never waited for still land: the thread's last writes
                if copies.open or copies.groups:
                    if preempt: yield PREEMPT
                    for group in copies.groups + [copies.open]: complete(group)
                    copies.open, copies.groups = [], []
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
            a = addr(ops[1] if base == 'ld' else ops[0])
            if a[0] == 'reg' and space in ('shared', 'global'):
                if preempt: yield PREEMPT
                for c in checks: c.access(th, space, a[1], sz*vec, base == 'st', sz*vec, where)
            if base == 'ld':
                data = load(space, a, sz*vec)
                dsts = [x.strip() for x in ops[0][1:-1].split(',')] if vec > 1 else [ops[0]]
                for i, dreg in enumerate(dsts):
                    regs[dreg] = int.from_bytes(data[i*sz:(i+1)*sz], 'little')
            else:
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
            if parts[1] == 'warp':      # bar.warp.sync: all 32 lanes, and memory ordering among them
                if ival(ops[0], 'u32') != 0xFFFFFFFF: raise RuntimeError(f'{where}: only a full-warp mask is modelled')
                yield ('warp', 'warpsync', None); continue
            if len(ops) != 1: raise RuntimeError(f'{where}: only whole-block barriers are modelled')
            yield ('bar',); continue
        if base == 'shfl':
            v = val(ops[1], 'b32'); lanemask = ival(ops[2], 'u32')
            r = yield ('warp', 'shfl', (v, lanemask))
            regs[ops[0]] = r; continue
        if base == 'ldmatrix':
            if 'x4' not in parts: raise RuntimeError(f'{where}: only ldmatrix .x4 is modelled')
            a = addr(ops[1])[1]         # this lane's row: 8 b16 of matrix lane / 8, row lane % 8
            if preempt: yield PREEMPT
            for c in checks: c.access(th, 'shared', a, 16, False, 16, where)
            r = yield ('warp', 'ldmatrix' + ('.trans' if 'trans' in parts else ''), a)
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
            if parts[2] == 'commit_group':
                copies.groups.append(copies.open); copies.open = []; continue
            if parts[2] in ('wait_group', 'wait_all'):
                if parts[2] == 'wait_all': copies.groups.append(copies.open); copies.open = []
                keep = ival(ops[0], 'u32') if parts[2] == 'wait_group' else 0
                retired = copies.groups[:max(0, len(copies.groups) - keep)]
                copies.groups = copies.groups[len(retired):]
                if any(retired):
                    if preempt: yield PREEMPT
                    for group in retired: complete(group)
                continue
            # cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size}: reads src-size bytes now, the rest
            # of cp-size is zero-filled; the destination is written when the group retires
            dst = addr(ops[0])[1]; src = addr(ops[1])[1]; size = ival(ops[2], 'u32')
            nbytes = ival(ops[3], 'u32') if len(ops) > 3 else size
            if preempt: yield PREEMPT
            for c in checks:
                c.access(th, 'global', src, nbytes, False, size, where); c.async_issue(th, dst, size, where)
            data = (mem.read(src, nbytes) if nbytes else b'') + bytes(size - nbytes)
            copies.open.append((dst, data, where)); continue
        if base == 'setp':
            cmp = parts[1]; boolop = parts[2] if len(parts) == 4 else None
            if ty == 'f32':
                a, b = fval(ops[1]), fval(ops[2])
                res = F32_COMPARE[cmp](a, b)
            else:
                res = INT_COMPARE[cmp](ival(ops[1], ty), ival(ops[2], ty))
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
            # (f2b below rounds to f32)
            if fo == 'fma': r = x[0] * x[1] + x[2]
            elif fo == 'add': r = x[0] + x[1]
            elif fo == 'sub': r = x[0] - x[1]
            elif fo == 'mul': r = x[0] * x[1]
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

def launch(mod, kname, grid, block, params, mem, schedule=InOrder(), checks=()):
    """Runs kernel `kname` over the whole grid; `params` in declaration order (ints, floats, or bytes for .b8 arrays).
    `schedule` orders blocks and interleaves threads; `checks` observe every memory access and synchronisation."""
    for c in checks: c.launch_start(Launch(mod, kname, grid, block, mem))
    for ctaid in schedule.blocks(grid):
        run_block(mod, kname, params, grid, block, ctaid, mem, schedule, checks)
    for c in checks: c.launch_end()
