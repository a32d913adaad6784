#!/usr/bin/env python3
"""Each simulated sanitizer catches a deliberately broken copy of a real kernel. The broken copies are text edits of
kernels/*.ptx made here, at test time, so they follow the kernels as they change; an edit whose anchor text has
disappeared fails the test with a message saying so.

    python3 -m unittest discover -s scripts/ptxsim -p 'test_*.py'
"""
import os, sys, unittest
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aligncheck import Aligncheck
from cases import CASES, Case
from initcheck import Initcheck
from memcheck import Memcheck
from ptxsim import InOrder, Reversed
from racecheck import Racecheck
from sanitize import DETECTORS, check_case


def real_case(ptx):
    return next(c for c in CASES if c.ptx == ptx)


def edit(old, new, occurrence=1):
    """a text edit of a kernel: the `occurrence`-th `old` becomes `new`"""
    def apply(text):
        at = -1
        for _ in range(occurrence):
            at = text.find(old, at + 1)
            if at < 0:
                raise AssertionError(f'the kernel no longer contains {old!r} (occurrence {occurrence}): update this edit')
        return text[:at] + new + text[at + len(old):]
    return apply


def kinds(outcome, check):
    return {f.kind for f in outcome.findings.values() if f.check == check}


# Smaller launches than the CI cases where a test needs only one block.
def one_warp_softmax(k):
    """softmax_rows launched with a single warp (the kernel takes any multiple of 32 threads)"""
    k.launch('softmax_rows', (1, 1, 1), [k.f32(70), k.out(4 * 70), 70, 0], block=32)


def one_tile_gemm_bf16(k):
    """one 128 x 128 tile, two 32-deep k tiles (both stages), beta = 0 on an unfilled C"""
    m, n, kk = 20, 24, 40
    k.launch('gemm_bf16', (1, 1, 1), [k.bf16(m * kk), k.bf16(kk * n), k.out(4 * m * n), m, n, kk, 1.0, 0.0])


def one_tile_sgemm(k):
    m, n, kk = 9, 9, 8
    k.launch('sgemm', (1, 1, 1), [k.f32(m * kk), k.f32(kk * n), k.out(4 * m * n), m, n, kk, kk, 1, n, 1, 1.0, 0.0])


def two_tile_attention(k):
    """8 query rows (one block), 40 keys (two K/V tiles), head_dim 8"""
    ql, kl, d = 8, 40, 8
    k.launch('attention_forward', (1, 1, 1), [k.f32(ql * d), k.f32(kl * d), k.f32(kl * d), 0, k.out(4 * ql * d),
                                              k.out(4 * ql), 0, ql, kl, d, d, d, 0.25])


BF16 = Case(one_tile_gemm_bf16, 'gemm_bf16.ptx', ('gemm_bf16',))


class Racecheck_(unittest.TestCase):
    def test_a_removed_barrier_is_a_block_level_read_after_write(self):
        # row_reduce: lane 0 of every warp stores its partial, bar.sync, thread 0 reads all eight. Reversed runs thread
        # 0 last, so the result is even right: only the rule can tell
        outcome = check_case(real_case('reduce.ptx'), edit('bar.sync 0;', ''), (Racecheck,), [Reversed()])
        self.assertIn('RAW hazard (block level)', kinds(outcome, 'racecheck'))
        finding = next(f for f in outcome.findings.values() if f.kind == 'RAW hazard (block level)')
        self.assertIn('ld.shared.f32 %other, [%slot]', finding.where)
        self.assertIn('st.shared.f32 [%slot], %acc', finding.other)

    def test_a_warp_that_shares_memory_without_a_warp_barrier_races(self):
        # with one warp, softmax's block reduction without its first bar.sync: lane 0 stores, lanes 1..31 read
        one_warp = Case(one_warp_softmax, 'softmax.ptx', ('softmax_rows',))
        outcome = check_case(one_warp, edit('bar.sync 0;', ''), (Racecheck,), [InOrder()])
        self.assertEqual(kinds(outcome, 'racecheck'), {'RAW hazard (warp level)'})
        self.assertFalse(outcome.disagreements)

    def test_a_warp_barrier_orders_a_warp_but_not_a_block(self):
        warp_barrier = edit('bar.sync 0;', 'bar.warp.sync 0xffffffff;')
        one_warp = Case(one_warp_softmax, 'softmax.ptx', ('softmax_rows',))
        self.assertTrue(check_case(one_warp, warp_barrier, (Racecheck,), [InOrder()]).clean())
        outcome = check_case(real_case('softmax.ptx'), warp_barrier, (Racecheck,), [InOrder()])
        self.assertIn('RAW hazard (block level)', kinds(outcome, 'racecheck'))
        self.assertNotIn('RAW hazard (warp level)', kinds(outcome, 'racecheck'))

    def test_the_second_barrier_keeps_the_next_reduction_from_overwriting_partials_still_being_read(self):
        outcome = check_case(real_case('softmax.ptx'), edit('bar.sync 0;', '', occurrence=2), (Racecheck,), [InOrder()])
        self.assertIn('WAR hazard (block level)', kinds(outcome, 'racecheck'))

    def test_reading_a_tile_before_its_cp_async_group_retires_is_reported(self):
        # gemm_bf16 waiting for all but the newest two groups: tile kt may still be in flight when it is read
        outcome = check_case(BF16, edit('cp.async.wait_group 1;', 'cp.async.wait_group 2;'),
                             (Racecheck,), [InOrder()])
        self.assertIn('access to an in-flight cp.async destination', kinds(outcome, 'racecheck'))

    def test_the_schedules_disagree_on_a_kernel_with_a_removed_barrier(self):
        # attention_forward without the barrier that keeps tile j + 1 from overwriting tile j while warps still read
        # it: no detector on, the three interleavings alone see different results
        anchor = '$tile_done:\n    bar.sync 0;'
        attention = Case(two_tile_attention, 'attention.ptx', ('attention_forward',))
        outcome = check_case(attention, edit(anchor, '$tile_done:'), detectors=())
        self.assertTrue(outcome.disagreements, 'the schedules agreed')
        self.assertFalse(outcome.findings)


class Memcheck_(unittest.TestCase):
    def test_an_off_by_one_loop_bound_reads_past_the_end_of_its_allocation(self):
        # adamw_step's grid-stride loop running to i = n: params[n] is the first byte of the next allocation in a
        # flat memory; here it is the red zone of params
        outcome = check_case(real_case('adamw.ptx'), edit('setp.ge.u64 %done, %i, %n;', 'setp.gt.u64 %done, %i, %n;'),
                             (Memcheck,), [InOrder()])
        finding = next(iter(outcome.findings.values()))
        self.assertEqual(finding.kind, 'out-of-bounds global read')
        self.assertIn('(1200 bytes) + 1200: 4 bytes past its end', finding.message)

    def test_an_index_one_row_too_far_is_caught_in_its_own_allocation_not_the_next(self):
        # index_select with its range check off by one, asked for row `dim`: reads one whole row past src
        def select_row_dim(k):
            outer, dim, inner = 1, 5, 3
            k.launch('index_select', (1, 1, 1), [k.out(4 * inner), k.f32(outer * dim * inner), k.u64([dim]), inner, 1, dim, inner])
        case = Case(select_row_dim, 'index.ptx', ('index_select',))
        self.assertTrue(check_case(case, detectors=(Memcheck,), runs=[InOrder()]).clean())
        outcome = check_case(case, edit('setp.ge.u64 %outside, %ix, %dim;', 'setp.gt.u64 %outside, %ix, %dim;'),
                             (Memcheck,), [InOrder()])
        finding = next(iter(outcome.findings.values()))
        self.assertIn('allocation #1 (60 bytes) + 60', finding.message)

    def test_reading_an_optional_argument_that_is_absent_dereferences_null(self):
        # attention_forward reading the bias although has_bias = 0 and the host passed no buffer
        def no_bias(k):
            bh, ql, kl, d = 1, 2, 3, 8
            k.launch('attention_forward', (1, bh, 1), [k.f32(bh * ql * d), k.f32(bh * kl * d), k.f32(bh * kl * d), 0,
                                                      k.out(4 * bh * ql * d), k.out(4 * bh * ql), 0, ql, kl, d, d, d, 0.5])
        case = Case(no_bias, 'attention.ptx', ('attention_forward',))
        self.assertTrue(check_case(case, detectors=(Memcheck,), runs=[InOrder()]).clean())
        outcome = check_case(case, edit('@%with_bias ld.global.nc.f32', 'ld.global.nc.f32'), (Memcheck,), [InOrder()])
        finding = next(iter(outcome.findings.values()))
        self.assertEqual(finding.kind, 'out-of-bounds global read')
        self.assertIn('not based on any allocation', finding.message)


class Aligncheck_(unittest.TestCase):
    def test_a_mispadded_tile_makes_vector_shared_loads_misaligned(self):
        # sgemm stepping its A-tile pointer by 130 floats instead of the padded row's 132
        outcome = check_case(Case(one_tile_sgemm, 'gemm_f32.ptx', ('sgemm',)), edit('add.u32 %row, %row, 528;', 'add.u32 %row, %row, 520;'),
                             (Aligncheck,), [InOrder()])
        self.assertEqual(kinds(outcome, 'aligncheck'), {'misaligned shared read'})
        self.assertTrue(all('ld.shared.v4.f32' in f.where for f in outcome.findings.values()))

    def test_a_mispadded_tile_makes_ldmatrix_rows_misaligned(self):
        # gemm_bf16's A fragment rows computed with a 36-element stride instead of 40 (72-byte rows)
        outcome = check_case(BF16, edit('mad.lo.u32 %x, %row, 40, %col;', 'mad.lo.u32 %x, %row, 36, %col;'),
                             (Aligncheck,), [InOrder()])
        self.assertEqual(kinds(outcome, 'aligncheck'), {'misaligned shared read'})
        self.assertTrue(all(f.where.split(': ')[1].startswith('ldmatrix') for f in outcome.findings.values()))

    def test_a_mispadded_cp_async_destination_is_misaligned(self):
        outcome = check_case(BF16, edit('mad.lo.u32 %dst, %row, 40, %col;', 'mad.lo.u32 %dst, %row, 36, %col;'),
                             (Aligncheck,), [InOrder()])
        self.assertEqual(kinds(outcome, 'aligncheck'), {'misaligned shared write'})
        self.assertTrue(all('cp.async.cg.shared.global' in f.where for f in outcome.findings.values()))


class Initcheck_(unittest.TestCase):
    def test_an_off_by_one_loop_bound_reads_a_partial_no_warp_wrote(self):
        # row_reduce's thread 0 folding partials[0 .. warps] inclusive: slot 8 of 32 was never written
        bound = edit('setp.lt.u32 %more, %k, %warps;', 'setp.le.u32 %more, %k, %warps;')
        outcome = check_case(real_case('reduce.ptx'), bound, (Initcheck,), [InOrder()])
        finding = next(iter(outcome.findings.values()))
        self.assertEqual(finding.kind, 'uninitialised shared read')
        self.assertIn('partials (128 bytes) + 32', finding.message)

    def test_an_unfilled_output_read_as_input_is_reported(self):
        # gemm_bf16 reading C although beta = 0 (the kernel's guard removed): C came from the allocator unfilled
        outcome = check_case(BF16, edit('and.pred %load, %in, %read_c;', 'mov.pred %load, %in;'),
                             (Initcheck,), [InOrder()])
        self.assertEqual(kinds(outcome, 'initcheck'), {'uninitialised global read'})


class Clean(unittest.TestCase):
    def test_the_real_reduction_is_clean_under_every_check_and_schedule(self):
        outcome = check_case(real_case('reduce.ptx'), detectors=DETECTORS)
        self.assertTrue(outcome.clean(), [str(f) for f in outcome.findings.values()] + outcome.disagreements + outcome.errors)


if __name__ == '__main__':
    unittest.main()
