#!/usr/bin/env python3
"""Simulated sanitizers: runs every kernel entry point of kernels/*.ptx on the small cases of cases.py in the PTX
interpreter under racecheck, memcheck, aligncheck and initcheck, in three thread interleavings, and requires that no
check finds anything and that the three runs leave identical memory. No GPU needed.

    python3 scripts/ptxsim/sanitize.py                   # every case (CI runs this)
    python3 scripts/ptxsim/sanitize.py gemm_bf16 reduce  # the cases of some files (kernels/NAME.ptx)
    python3 scripts/ptxsim/sanitize.py --list            # the cases and the entries each covers

The schedules (ptxsim.py): in order (blocks and threads in launch order, each thread running until it must wait),
reversed, and shuffled (a seeded random block order, and a random ready thread after every shared or global memory
access). Each schedule also fills fresh memory with different garbage. A kernel whose shared-memory accesses are
ordered by its barriers, that reads only memory it wrote, and whose blocks do not depend on each other gives the same
bytes in all three; the comparison covers every byte that some run wrote, and which bytes were written.
Exit status 1 when anything is found, when an entry point has no case, or when a case fails to launch what it names.
"""
import multiprocessing, os, random, struct, sys, time, traceback
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ptxsim import InOrder, Memory, Module, Reversed, Shuffled, launch
from checks import KernelFault
from aligncheck import Aligncheck
from initcheck import Initcheck
from memcheck import Memcheck
from racecheck import Racecheck
from cases import CASES

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'kernels')
DETECTORS = (Racecheck, Memcheck, Aligncheck, Initcheck)


def schedules():
    return [InOrder(), Reversed(), Shuffled(seed=1)]


class Run:
    """One case under one schedule: its memory, its checks, and helpers that allocate and launch."""

    def __init__(self, case, schedule, checks, edit=None):
        self.case, self.schedule, self.checks, self.edit = case, schedule, checks, edit
        self.mem = Memory(schedule.garbage)
        self.rng = random.Random(case.name)      # the same inputs under every schedule
        self.modules, self.launched = {}, []

    def module(self, ptx):
        if ptx not in self.modules:
            with open(os.path.join(KERNELS, ptx)) as f:
                text = f.read()
            if self.edit is not None and ptx == self.case.ptx:
                text = self.edit(text)
            self.modules[ptx] = Module(text, ptx)
        return self.modules[ptx]

    def rng_values(self, n, lo=-1.0, hi=1.0):
        return [self.rng.uniform(lo, hi) for _ in range(n)]

    def f32(self, n_or_values, lo=-1.0, hi=1.0):
        """a buffer the host filled: n uniform values in [lo, hi), or the values given"""
        vals = self.rng_values(n_or_values, lo, hi) if isinstance(n_or_values, int) else n_or_values
        addr = self.mem.alloc(4 * len(vals))
        self.mem.put_f32(addr, vals)
        return addr

    def bf16(self, n):
        bits = [struct.unpack('<I', struct.pack('<f', x))[0] >> 16 for x in self.rng_values(n)]
        addr = self.mem.alloc(2 * n)
        self.mem.write(addr, struct.pack(f'<{n}H', *bits))
        return addr

    def u64(self, values):
        addr = self.mem.alloc(8 * len(values))
        self.mem.write(addr, struct.pack(f'<{len(values)}Q', *values))
        return addr

    def out(self, nbytes):
        """a buffer the host did not fill (garbage until a kernel writes it)"""
        return self.mem.alloc(nbytes)

    def launch(self, entry, grid, args, block=256, ptx=None):
        ptx = ptx or self.case.ptx
        self.launched.append((ptx, entry))
        launch(self.module(ptx), entry, grid, (block, 1, 1), args, self.mem, self.schedule, self.checks)


class Outcome:
    """What one case did under all schedules: findings (deduplicated over schedules), disagreements between
    schedules, errors (a launch the interpreter could not run), and what it launched."""

    def __init__(self, case):
        self.case, self.findings, self.disagreements, self.errors, self.launched, self.seconds = case, {}, [], [], [], 0.0

    def clean(self):
        return not (self.findings or self.disagreements or self.errors)


def snapshot(mem):
    """each allocation's bytes with the never-written ones zeroed, and which were written"""
    return [(bytes(d if w else 0 for d, w in zip(data, written)), bytes(written))
            for data, written in zip(mem.data, mem.written)]


def first_difference(a, b):
    for index, ((da, wa), (db, wb)) in enumerate(zip(a, b)):
        if wa != wb:
            off = next(i for i, (x, y) in enumerate(zip(wa, wb)) if x != y)
            return f'allocation #{index}: byte {off} written in one run and not in the other'
        if da != db:
            off = next(i for i, (x, y) in enumerate(zip(da, db)) if x != y) // 4 * 4
            fa, fb = struct.unpack('<f', da[off:off + 4])[0], struct.unpack('<f', db[off:off + 4])[0]
            return f'allocation #{index}: bytes {off}..{off + 3} differ (as f32: {fa!r} and {fb!r})'
    return None if len(a) == len(b) else 'different numbers of allocations'


def check_case(case, edit=None, detectors=DETECTORS, runs=None):
    """Runs `case` under every schedule (or those given) with fresh `detectors`; `edit` rewrites the text of the case's
    own .ptx file first (the tests break kernels that way)."""
    outcome = Outcome(case)
    start = time.process_time()
    reference = None
    for schedule in runs or schedules():
        checks = [d() for d in detectors]
        run = Run(case, schedule, checks, edit)
        faulted = False
        try:
            case.fn(run)
        except KernelFault:
            faulted = True
        except Exception:
            outcome.errors.append(f'{schedule.name}: {traceback.format_exc()}')
            faulted = True
        for c in checks:
            for key, finding in c.findings.items():
                if key in outcome.findings:
                    outcome.findings[key].count += finding.count
                else:
                    outcome.findings[key] = finding
        if not outcome.launched:
            outcome.launched = run.launched
        if faulted:
            continue
        state = snapshot(run.mem)
        if reference is None:
            reference = (schedule.name, state)
        else:
            diff = first_difference(reference[1], state)
            if diff:
                outcome.disagreements.append(f'{reference[0]} and {schedule.name} disagree: {diff}')
    outcome.seconds = time.process_time() - start
    return outcome


def entry_points():
    """(file, entry) for every .visible .entry of kernels/*.ptx"""
    found = []
    for ptx in sorted(os.listdir(KERNELS)):
        if ptx.endswith('.ptx'):
            with open(os.path.join(KERNELS, ptx)) as f:
                found += [(ptx, e) for e in Module(f.read(), ptx).entries()]
    return found


def coverage_problems(outcomes):
    problems = []
    declared = {(c.ptx, e) for c in CASES for e in c.entries}
    for ptx, entry in entry_points():
        if (ptx, entry) not in declared:
            problems.append(f'kernels/{ptx}: entry {entry} has no sanitizer case: add one to scripts/ptxsim/cases.py')
    for o in outcomes:
        missing = [e for e in o.case.entries if (o.case.ptx, e) not in o.launched]
        if missing and not o.errors:
            problems.append(f'{o.case.name} names {", ".join(missing)} but never launches it')
    return problems


def main(argv):
    if '--list' in argv:
        for c in CASES:
            print(f'{c.name}: {", ".join(c.entries)}')
        return 0
    chosen = [c for c in CASES if not argv or c.ptx[:-len('.ptx')] in argv]
    unknown = set(argv) - {c.ptx[:-len('.ptx')] for c in CASES}
    if unknown:
        print(f'no cases for {", ".join(sorted(unknown))} (try --list)')
        return 1
    names = ', '.join(s.name for s in schedules())
    print(f'== {len(chosen)} cases, {len(DETECTORS)} checks ({", ".join(d.name for d in DETECTORS)}), '
          f'schedules: {names}')
    start = time.time()
    with multiprocessing.Pool(min(len(chosen), os.cpu_count() or 1)) as pool:
        outcomes = []
        for o in pool.imap_unordered(check_case, chosen):
            outcomes.append(o)
            status = 'ok' if o.clean() else 'FOUND'
            print(f'{status:5} {o.case.name} ({", ".join(o.case.entries)}) {o.seconds:.1f} s of CPU', flush=True)
            for finding in o.findings.values():
                print(f'  {finding}')
            for line in o.disagreements + o.errors:
                print(f'  {line}')
    problems = coverage_problems(outcomes) if not argv else []
    for p in problems:
        print(p)
    bad = [o for o in outcomes if not o.clean()]
    cpu = sum(o.seconds for o in outcomes)
    print(f'== {len(outcomes) - len(bad)} of {len(outcomes)} cases clean ({cpu:.0f} s of CPU, {time.time() - start:.0f} s)'
          + (f'; {len(problems)} coverage problems' if problems else ''))
    return 1 if bad or problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
