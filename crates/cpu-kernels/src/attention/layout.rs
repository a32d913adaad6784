//! The head-interleaved operand layout: the rows of one head of one sequence, for reading and for writing.
//!
//! An operand of `batch` sequences of `len` rows holds element `(n, l, h, c)` (sequence, row, head, channel) at
//! `(n·len + l)·row_stride + h·head_dim + c`: each row carries every head side by side, as a projection `(N, L,
//! heads·head_dim)` writes them (`row_stride = heads·head_dim`), or as a slice of a wider row (a fused projection's
//! output, `row_stride` its full width). One head of one sequence is then `len` rows of `head_dim` floats,
//! `row_stride` apart.

use std::marker::PhantomData;

use crate::error::{check_len, KernelError, Result};

/// Rows `0..` of one head of one sequence, for reading: row `i` is `width` floats at `start + i·stride`.
#[derive(Clone, Copy)]
pub(super) struct HeadRows<'a> {
    data: &'a [f32],
    start: usize,
    stride: usize,
    width: usize,
}

impl<'a> HeadRows<'a> {
    /// Head `head` (of `width` channels) of the rows `first_row..` of `data` (row stride `stride`).
    pub fn new(
        data: &'a [f32],
        stride: usize,
        first_row: usize,
        head: usize,
        width: usize,
    ) -> Self {
        Self {
            data,
            start: first_row * stride + head * width,
            stride,
            width,
        }
    }

    /// Row `i`.
    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[self.start + i * self.stride..][..self.width]
    }

    /// The rows from `i` on (row `i` becomes row 0).
    pub fn skip_rows(self, i: usize) -> Self {
        Self {
            start: self.start + i * self.stride,
            ..self
        }
    }
}

/// A buffer that parallel tasks write, each through the [`HeadRowsMut`] of rows and columns no other task writes.
pub(super) struct SharedRows<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: the buffer is only written through `HeadRowsMut`s, whose creators guarantee (`head_rows`' contract) that no
// two of them, on whatever threads, reach the same element.
unsafe impl Send for SharedRows<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedRows<'_> {}

impl<'a> SharedRows<'a> {
    pub fn new(buffer: &'a mut [f32]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }

    /// Rows `first_row..first_row + rows` of head `head` (of `width` channels), row stride `stride ≥ width`.
    ///
    /// # Safety
    /// While the result lives, no other `HeadRowsMut` of this buffer reaches any of its elements (the callers give
    /// every task its own (head, rows) pairs).
    ///
    /// # Panics
    /// If the rows run past the buffer or `stride < width` (a bug in the caller: the kernels check the lengths).
    pub unsafe fn head_rows(
        &self,
        stride: usize,
        first_row: usize,
        head: usize,
        width: usize,
        rows: usize,
    ) -> HeadRowsMut<'_> {
        let start = first_row * stride + head * width;
        assert!(width <= stride, "rows overlap");
        assert!(
            rows == 0 || start + (rows - 1) * stride + width <= self.len,
            "rows past the buffer"
        );
        HeadRowsMut {
            ptr: self.ptr,
            start,
            stride,
            width,
            rows,
            _buffer: PhantomData,
        }
    }
}

/// Rows `0..rows` of one head, for writing: row `i` is `width` floats at `start + i·stride` of the shared buffer.
pub(super) struct HeadRowsMut<'a> {
    ptr: *mut f32,
    start: usize,
    stride: usize,
    width: usize,
    rows: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

impl HeadRowsMut<'_> {
    /// Row `i < rows`.
    #[inline(always)]
    pub fn row(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        // SAFETY: `head_rows` checked that every row lies in the buffer; the rows are disjoint (stride ≥ width), no
        // other `HeadRowsMut` reaches them (its contract), and `&mut self` keeps this one row borrowed at a time.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(self.start + i * self.stride), self.width)
        }
    }
}

/// Checks an operand of `rows` rows of `row_stride` floats of which the first `inner` are its heads: exactly
/// `rows·inner` floats when the rows are dense (`row_stride = inner`); otherwise from the end of the last row's heads
/// (`(rows − 1)·row_stride + inner`) to the end of the last row (`rows·row_stride`), so that a slice of a wider
/// buffer starting at any of a row's columns fits.
pub(super) fn check_rows(
    op: &'static str,
    what: &str,
    len: usize,
    rows: usize,
    row_stride: usize,
    inner: usize,
) -> Result<()> {
    // The shape's own check has bounded rows·row_stride.
    if row_stride == inner {
        return check_len(op, what, len, rows * inner);
    }
    let (least, most) = match rows {
        0 => (0, 0),
        _ => ((rows - 1) * row_stride + inner, rows * row_stride),
    };
    if (least..=most).contains(&len) {
        Ok(())
    } else {
        Err(KernelError::new(
            op,
            format!(
                "{what} has {len} elements but {rows} rows of stride {row_stride} holding {inner} channels of \
                 heads need {least} to {most}"
            ),
        ))
    }
}
