//! Walking strided operands in row-major order of a common shape.
//!
//! Every element-wise kernel (unary, binary, ternary, strided copy) has the same loop: the output is contiguous in
//! row-major order of `shape`, and each input is read through its own `strides` (a stride of 0 repeats an element:
//! broadcasting) from its own `offset`. This file owns that loop once.
//!
//! Loop structure:
//! 1. [`collapse`] drops dimensions of size 1 and merges neighbouring dimensions that are contiguous *for every
//!    operand* (`stride[i] == stride[i+1] * shape[i+1]`). A contiguous tensor becomes one long row; a transposed one
//!    keeps two dimensions.
//! 2. The collapsed shape is split into *rows*: all dimensions but the last are the row index, the last is the inner
//!    loop, walked with a fixed stride per operand.
//! 3. Rows are handed to rayon in chunks; a chunk computes the multi-index of its first row once and then steps an
//!    odometer, so no division happens inside the loops. A row longer than one task's share (a contiguous tensor is
//!    a single row) is cut into segments instead, so element-wise work on large tensors uses every thread.

use rayon::prelude::*;

/// A strided view of an operand: element `idx` (a multi-index into `shape`) lives at `offset + Σ idx[d]·strides[d]`.
#[derive(Clone, Copy, Debug)]
pub struct StridedRef<'a> {
    pub strides: &'a [usize],
    pub offset: usize,
}

/// Shape and per-operand strides after dropping size-1 dimensions and merging contiguous neighbours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collapsed<const K: usize> {
    pub shape: Vec<usize>,
    pub strides: [Vec<usize>; K],
}

/// Simplifies `shape` and the `K` operands' strides without changing which elements are visited, or in what order.
pub fn collapse<const K: usize>(shape: &[usize], strides: [&[usize]; K]) -> Collapsed<K> {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let mergeable = match out_shape.last() {
            Some(_) => (0..K).all(|o| {
                let prev = *out_strides[o].last().expect("same length as out_shape");
                prev == strides[o][d] * size
            }),
            None => false,
        };
        if mergeable {
            *out_shape.last_mut().expect("checked above") *= size;
            for o in 0..K {
                *out_strides[o].last_mut().expect("same length as out_shape") = strides[o][d];
            }
        } else {
            out_shape.push(size);
            for o in 0..K {
                out_strides[o].push(strides[o][d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for s in out_strides.iter_mut() {
            s.push(0);
        }
    }
    Collapsed {
        shape: out_shape,
        strides: out_strides,
    }
}

/// The largest offset any operand reaches, or `None` on overflow. Used by callers to check slice bounds up front.
pub fn max_offset(shape: &[usize], strides: &[usize], offset: usize) -> Option<usize> {
    if shape.contains(&0) {
        return Some(offset);
    }
    shape.iter().zip(strides).try_fold(offset, |acc, (&n, &s)| {
        acc.checked_add((n - 1).checked_mul(s)?)
    })
}

/// Rows below this many elements per rayon task are batched together, so tiny tensors stay on one thread; rows
/// longer than this (a contiguous tensor collapses to one row) are cut into segments of this many elements.
const MIN_ELEMENTS_PER_TASK: usize = 1 << 14;

/// Calls `row(out_row, base_offsets, inner_strides)` for every row of the collapsed shape, in parallel.
/// `out` is the contiguous output (length = product of `shape`); `out_row` is the slice of one row, or of one segment
/// of a long row (with the offsets of the segment's first element).
pub fn for_each_row<const K: usize, F>(
    out: &mut [f32],
    shape: &[usize],
    inputs: [StridedRef<'_>; K],
    row: F,
) where
    F: Fn(&mut [f32], [usize; K], [usize; K]) + Sync,
{
    // An empty shape may have other dimensions whose product overflows (`[usize::MAX, usize::MAX, 0]`): test for the
    // zero before multiplying.
    if shape.contains(&0) {
        debug_assert!(out.is_empty());
        return;
    }
    debug_assert_eq!(out.len(), shape.iter().product::<usize>());
    let col = collapse(shape, inputs.map(|r| r.strides));
    let rank = col.shape.len();
    let inner = col.shape[rank - 1];
    let inner_strides: [usize; K] = std::array::from_fn(|o| col.strides[o][rank - 1]);
    let outer_shape = &col.shape[..rank - 1];
    let bases: [usize; K] = inputs.map(|r| r.offset);
    // Offsets of the first element of row `r`.
    let row_offsets = |r: usize| -> [usize; K] {
        let mut rem = r;
        let mut offsets = bases;
        for d in (0..outer_shape.len()).rev() {
            let i = rem % outer_shape[d];
            rem /= outer_shape[d];
            for (off, strides) in offsets.iter_mut().zip(&col.strides) {
                *off += i * strides[d];
            }
        }
        offsets
    };

    if inner > MIN_ELEMENTS_PER_TASK {
        // Long rows: one task per segment, its offsets advanced along the row.
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(r, out_row)| {
                let offsets = row_offsets(r);
                out_row
                    .par_chunks_mut(MIN_ELEMENTS_PER_TASK)
                    .enumerate()
                    .for_each(|(segment, out_segment)| {
                        let start = segment * MIN_ELEMENTS_PER_TASK;
                        let offsets: [usize; K] =
                            std::array::from_fn(|o| offsets[o] + start * inner_strides[o]);
                        row(out_segment, offsets, inner_strides);
                    });
            });
        return;
    }

    let rows_per_task = MIN_ELEMENTS_PER_TASK / inner;
    out.par_chunks_mut(rows_per_task * inner)
        .enumerate()
        .for_each(|(task, chunk)| {
            // Multi-index of the first row, then odometer steps.
            let first_row = task * rows_per_task;
            let mut index = vec![0usize; outer_shape.len()];
            let mut rem = first_row;
            for d in (0..outer_shape.len()).rev() {
                index[d] = rem % outer_shape[d];
                rem /= outer_shape[d];
            }
            let mut offsets = row_offsets(first_row);
            for out_row in chunk.chunks_mut(inner) {
                row(out_row, offsets, inner_strides);
                for d in (0..outer_shape.len()).rev() {
                    index[d] += 1;
                    for (off, strides) in offsets.iter_mut().zip(&col.strides) {
                        *off += strides[d];
                    }
                    if index[d] < outer_shape[d] {
                        break;
                    }
                    for (off, strides) in offsets.iter_mut().zip(&col.strides) {
                        *off -= strides[d] * outer_shape[d];
                    }
                    index[d] = 0;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_contiguous_dimensions_and_drops_ones() {
        let c = collapse(
            [2, 1, 3, 4].as_slice(),
            [&[12, 12, 4, 1][..], &[0, 0, 0, 1][..]],
        );
        assert_eq!(c.shape, vec![6, 4]);
        assert_eq!(c.strides, [vec![4, 1], vec![0, 1]]);
        let t = collapse([3, 4].as_slice(), [&[1, 3][..]]);
        assert_eq!(t.shape, vec![3, 4]);
    }

    #[test]
    fn max_offset_detects_overflow() {
        assert_eq!(max_offset(&[2, 3], &[3, 1], 5), Some(10));
        assert_eq!(max_offset(&[2, 0], &[3, 1], 5), Some(5));
        assert_eq!(max_offset(&[usize::MAX, 2], &[2, 1], 0), None);
    }
}
