"""memcheck: every global and shared access must lie wholly inside the allocation (or .shared array) it is based on.

Rule. An access of n bytes at address a is legal when [a, a + n) lies inside one global allocation or one .shared
array; the allocation it is *based on* is the one whose base the kernel added an offset to. The interpreter makes that
base recoverable from the address alone (ptxsim.Memory, ptxsim.SharedMemory): every allocation sits alone in a window
of 2^40 bytes (a .shared array in 2^24), and everything in the window but the allocation is a red zone. An index that
strays by one element, one row or a whole buffer length therefore lands in its own allocation's red zone, never in the
neighbouring buffer where a flat memory (or the real GPU) would let it pass. Only an offset beyond 2^39 bytes could
reach another allocation, and no kernel index here comes near that. A null pointer (an unused optional argument) is in
no window at all, so any access through it is reported.

Like compute-sanitizer's memcheck, the first invalid access ends the launch (KernelFault): the hardware would not
perform it, and nothing the kernel computes afterwards is meaningful. Zero-byte accesses (a cp.async whose source size
is 0) touch nothing and are not checked; aligncheck still checks their address.
"""
from checks import Check, KernelFault


class Memcheck(Check):
    name = 'memcheck'

    def launch_start(self, launch):
        self.mem = launch.mem

    def access(self, thread, space, addr, nbytes, write, align, where):
        if nbytes == 0:
            return
        model = thread.block.shared if space == 'shared' else self.mem
        if model.in_bounds(addr, nbytes):
            return
        at = model.locate(addr)
        if at is None:
            detail = f'{model.describe(addr)}: not based on any {"shared array" if space == "shared" else "allocation"}'
        else:
            size = len(model.data[at[0]])
            off = at[1]
            side = f'{-off} bytes before its start' if off < 0 else f'{off + nbytes - size} bytes past its end'
            detail = f'{model.describe(addr)}: {side}'
        verb = 'write' if write else 'read'
        finding = self.report(f'out-of-bounds {space} {verb}', where, thread, f'{nbytes}-byte {verb} of {detail}')
        raise KernelFault(finding)
