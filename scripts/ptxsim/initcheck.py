"""initcheck: no thread may read memory that was never written.

Rule. Shared memory starts each block holding whatever the previous block on the SM left there: every byte a thread
reads must first have been stored by some thread of the same block (a st.shared, or a cp.async whose group has
retired; a zero-filled cp.async counts as a write). Global memory from the allocator holds garbage: every byte a kernel
reads must have been written by the host or by an earlier store (of this launch or an earlier one). A read of a
byte that was never written is reported at the reading instruction, whether or not the value is later used, as
compute-sanitizer's initcheck does for global memory.

The memory models (ptxsim.Memory, ptxsim.SharedMemory) remember which bytes were ever written; this check asks them
before each read. Fresh memory also holds schedule-dependent garbage, so a read that initcheck would report also tends
to make sanitize.py's schedules disagree.
"""
from checks import Check


class Initcheck(Check):
    name = 'initcheck'

    def launch_start(self, launch):
        self.mem = launch.mem

    def access(self, thread, space, addr, nbytes, write, align, where):
        if write or nbytes == 0:
            return
        model = thread.block.shared if space == 'shared' else self.mem
        if not model.in_bounds(addr, nbytes):
            return      # memcheck's to report
        unwritten = model.unwritten(addr, nbytes)
        if unwritten:
            what = 'shared memory no thread of this block has' if space == 'shared' else 'global memory nobody has'
            self.report(f'uninitialised {space} read', where, thread,
                        f'{nbytes}-byte read of {model.describe(addr)}: {len(unwritten)} of its bytes are {what} '
                        f'written (first: +{unwritten[0]})')
