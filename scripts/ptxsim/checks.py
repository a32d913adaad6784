"""What the simulated sanitizers share: the hooks the interpreter (ptxsim.py) calls, and the findings they report.

A check observes a launch through these hooks, all no-ops here:
    launch_start(launch) / launch_end()       launch.mod, .kname, .grid, .block_dim, .mem (ptxsim.Memory)
    block_start(block) / block_end(block)     block.ctaid, .nthreads, .shared (ptxsim.SharedMemory)
    access(thread, space, addr, nbytes, write, align, where)
        before every shared or global access: space 'shared' or 'global', the access's first byte and length, whether
        it stores, the alignment the instruction requires, and 'file:line: instruction'. thread.block, .tid, .warp.
        ldmatrix reports each lane's 16-byte row; cp.async reports its global read at issue and its shared write when
        its group retires (cp.async.wait_group), both with the issuing instruction's `where`.
    barrier(block)                            a bar.sync released every thread of the block
    warp_barrier(block, warp)                 a bar.warp.sync released the 32 lanes of warp `warp`
    async_issue(thread, dst, nbytes, where)   a cp.async will write shared [dst, dst + nbytes) when its group retires
    async_complete(thread, dst, nbytes)       ... and now it has
A check reports what it finds with `report`; identical findings (same check, kind and instructions) are counted once.
A check that finds an access the hardware could not perform (memcheck) raises KernelFault, which ends the launch.
"""


class Finding:
    def __init__(self, check, kind, where, thread, message, other=''):
        self.check, self.kind, self.where, self.other, self.message = check, kind, where, other, message
        self.block, self.tid = thread.block.ctaid, thread.tid
        self.kernel = thread.block.kname
        self.count = 1

    def key(self):
        return (self.check, self.kind, self.where, self.other)

    def __str__(self):
        times = f' ({self.count} times)' if self.count > 1 else ''
        return (f'{self.check} {self.kind} in {self.kernel}{times}\n    at {self.where}\n'
                f'    block {self.block} thread {self.tid}: {self.message}')


class KernelFault(Exception):
    """An access the hardware would refuse: the launch ends here (as the real memcheck ends it)."""
    def __init__(self, finding):
        super().__init__(str(finding))
        self.finding = finding


class Check:
    name = 'check'

    def __init__(self):
        self.findings = {}

    def report(self, kind, where, thread, message, other=''):
        finding = Finding(self.name, kind, where, thread, message, other)
        seen = self.findings.get(finding.key())
        if seen:
            seen.count += 1
            return seen
        self.findings[finding.key()] = finding
        return finding

    def launch_start(self, launch): pass
    def launch_end(self): pass
    def block_start(self, block): pass
    def block_end(self, block): pass
    def access(self, thread, space, addr, nbytes, write, align, where): pass
    def barrier(self, block): pass
    def warp_barrier(self, block, warp): pass
    def async_issue(self, thread, dst, nbytes, where): pass
    def async_complete(self, thread, dst, nbytes): pass
