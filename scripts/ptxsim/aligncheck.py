"""aligncheck: every memory access must be aligned to what its instruction requires.

Rule (PTX ISA, "Alignment of memory access"): a ld/st of a scalar needs an address that is a multiple of its size,
and a vector ld/st (.v2, .v4) a multiple of the whole vector's size (ld.shared.v4.f32: 16 bytes); cp.async of cp-size
bytes needs both its source and its destination aligned to cp-size (cp.async.cg: 16), even when its source size is 0;
ldmatrix needs each lane's row address aligned to 16 bytes. On the GPU a misaligned access is a "misaligned address"
fault, or silently wrong data for some vector loads; here it is a finding and the access still happens, so that one run
shows every misaligned instruction.

The interpreter places each allocation exactly as aligned as promised and no more (a global allocation at 256 bytes
past a 512-byte boundary, a .shared array at its declared .align past a larger boundary), so a kernel that relies on
alignment nobody promised it is reported too.
"""
from checks import Check


class Aligncheck(Check):
    name = 'aligncheck'

    def launch_start(self, launch):
        self.mem = launch.mem

    def access(self, thread, space, addr, nbytes, write, align, where):
        if addr % align == 0:
            return
        model = thread.block.shared if space == 'shared' else self.mem
        verb = 'write' if write else 'read'
        self.report(f'misaligned {space} {verb}', where, thread,
                    f'{model.describe(addr)} is not a multiple of {align} bytes (address % {align} = {addr % align})')
