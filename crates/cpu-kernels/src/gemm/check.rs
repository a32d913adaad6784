//! Argument checks for the GEMM entry points, done before any element is touched.
//!
//! An operand is a stack of `batch` matrices, element `(b, i, j)` at `b·batch_stride + i·row_stride + j·col_stride`.
//! It is valid when its largest such offset (computed with checked arithmetic) is inside its slice. The output must
//! in addition be *injective*: no two elements may share a slot, because tiles of C are written from several threads.

use crate::error::{KernelError, Result};

/// One axis of a strided operand: how many indices it has and how far apart they lie in the slice.
#[derive(Clone, Copy)]
pub(super) struct Axis {
    pub name: &'static str,
    pub extent: usize,
    pub stride: usize,
}

/// Checks that every element addressed by `axes` lies inside a slice of `len` floats. An operand with an empty axis
/// addresses nothing and always passes.
pub(super) fn in_bounds(op: &'static str, operand: &str, axes: &[Axis], len: usize) -> Result<()> {
    if axes.iter().any(|axis| axis.extent == 0) {
        return Ok(());
    }
    let mut last = 0usize;
    for axis in axes {
        last = (axis.extent - 1)
            .checked_mul(axis.stride)
            .and_then(|reach| last.checked_add(reach))
            .ok_or_else(|| {
                KernelError::new(
                    op,
                    format!("{operand}: offset of the last element overflows usize"),
                )
            })?;
    }
    if last < len {
        Ok(())
    } else {
        let shape: Vec<String> = axes
            .iter()
            .map(|axis| format!("{} {} × stride {}", axis.name, axis.extent, axis.stride))
            .collect();
        Err(KernelError::new(
            op,
            format!(
                "{operand} addresses element {last} ({}) but its slice has {len} elements",
                shape.join(", ")
            ),
        ))
    }
}

/// Checks that distinct indices of `axes` address distinct slots. Sorted by stride, each axis must step past
/// everything the smaller axes can reach (`stride_i > Σ_{j<i} stride_j·(extent_j − 1)`); axes of extent 1 never
/// move and are skipped; an operand with an empty axis has no elements to collide. This is sufficient for injectivity
/// and covers every layout a caller writes on purpose.
pub(super) fn injective(op: &'static str, operand: &str, axes: &[Axis]) -> Result<()> {
    if axes.iter().any(|axis| axis.extent == 0) {
        return Ok(());
    }
    let mut moving: Vec<Axis> = axes
        .iter()
        .copied()
        .filter(|axis| axis.extent > 1)
        .collect();
    moving.sort_by_key(|axis| axis.stride);
    let mut reach = 0usize;
    for axis in &moving {
        if axis.stride <= reach {
            return Err(KernelError::new(
                op,
                format!(
                    "{operand} would write one slot twice: its {} stride {} does not step past the {reach} slots the \
                     smaller strides already cover",
                    axis.name, axis.stride
                ),
            ));
        }
        // Cannot overflow: `in_bounds` already bounded the full reach by the slice length.
        reach += axis.stride * (axis.extent - 1);
    }
    Ok(())
}
