"""racecheck: two accesses to the same shared-memory byte by different threads, at least one of them a write, must be
ordered by a barrier.

Rule. Within a block, access X of thread s happens before access Y of thread t (s != t) only if
    - a bar.sync completed between them (every thread of the block passes it together), or
    - s and t are lanes of the same warp and a bar.warp.sync (__syncwarp) completed between them.
Nothing else orders memory: shfl.sync, ldmatrix and mma.sync exchange registers, not memory, and under independent
thread scheduling (sm_70 and later) the lanes of a warp are not in lockstep, so the warp-level "it runs in lockstep"
idiom is a race too, as compute-sanitizer's racecheck reports it. Two accesses to one byte that are not ordered and of
which at least one writes are a hazard: read-after-write (RAW), write-after-read (WAR) or write-after-write (WAW),
named by which came first in this run. A hazard is reported whichever order the threads happened to run in: the rule
is about what the hardware may do, not about what this schedule did.

cp.async. A copy writes its shared destination when its group retires (cp.async.wait_group in the issuing thread), so
that is when its write enters the rule above; until then the destination is in flight, and any access to it by any
thread, the issuing one included, is reported (the copy may land before or after it).

How. A shadow entry per shared byte holds the last writer and the readers since, each with the warp-barrier generation
of its warp at the time; a bar.sync orders everything before it, so it simply clears the shadow. Global memory is not
raced-checked here (neither does compute-sanitizer's racecheck); sanitize.py's schedules, which reorder blocks as well
as threads, catch a result that depends on an unordered global access.
"""
from checks import Check


class Racecheck(Check):
    name = 'racecheck'

    def block_start(self, block):
        self.shadow = {}                                # byte address -> [(writer, its warp generation, where), {reader: (generation, where)}]
        self.generation = [0] * ((block.nthreads + 31) // 32)   # bar.warp.sync completions per warp
        self.in_flight = {}                             # byte address -> (issuing thread, where) of a cp.async not yet retired

    def barrier(self, block):
        self.shadow = {}

    def warp_barrier(self, block, warp):
        self.generation[warp] += 1

    def async_issue(self, thread, dst, nbytes, where):
        for a in range(dst, dst + nbytes):
            self.in_flight[a] = (thread.tid, where)

    def async_complete(self, thread, dst, nbytes):
        for a in range(dst, dst + nbytes):
            self.in_flight.pop(a, None)

    def access(self, thread, space, addr, nbytes, write, align, where):
        if space != 'shared':
            return
        t, warp = thread.tid, thread.warp
        gen = self.generation[warp]
        hazards = {}                                    # (kind, other tid's warp relation, other where) -> (other tid, address)
        for a in range(addr, addr + nbytes):
            if a in self.in_flight:
                issuer, issued = self.in_flight[a]
                hazards.setdefault(('access to an in-flight cp.async destination', issued), (issuer, a))
            entry = self.shadow.get(a)
            if entry is None:
                entry = self.shadow[a] = [None, {}]
            writer, readers = entry
            if writer is not None and writer[0] != t and (writer[0] // 32 != warp or writer[1] == gen):
                hazards.setdefault(('WAW' if write else 'RAW', writer[2]), (writer[0], a))
            if write:
                for r, (rgen, rwhere) in readers.items():
                    if r != t and (r // 32 != warp or rgen == gen):
                        hazards.setdefault(('WAR', rwhere), (r, a))
                entry[0] = (t, gen, where)
                entry[1] = {}
            else:
                readers[t] = (gen, where)
        shared = thread.block.shared
        for (kind, other_where), (other, a) in hazards.items():
            if kind.startswith('access'):
                self.report(kind, where, thread, f'{"writes" if write else "reads"} {shared.describe(a)}, the destination '
                            f'of a cp.async thread {other} issued and has not yet retired with cp.async.wait_group',
                            other_where)
                continue
            scope = f'within warp {warp}, no bar.warp.sync or bar.sync between' if other // 32 == warp \
                else f'between warps {other // 32} and {warp}, no bar.sync between'
            first = {'RAW': 'wrote', 'WAR': 'read', 'WAW': 'wrote'}[kind]
            self.report(f'{kind} hazard ({"warp" if other // 32 == warp else "block"} level)', where, thread,
                        f'{"writes" if write else "reads"} {shared.describe(a)}, which thread {other} {first} at '
                        f'{other_where} ({scope})', other_where)
