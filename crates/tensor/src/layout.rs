//! A tensor's layout: shape, strides (in elements) and the offset of element [0, 0, …] in its storage.
//!
//! Views (permute, narrow, broadcast, squeeze, reshape of contiguous data) are new layouts over the same storage; they
//! copy nothing. All size arithmetic is checked: a shape whose element count or extent overflows `usize` is an error.

use crate::error::{Error, Result};
use diffuse_cpu_kernels::strided::StridedRef;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

/// Number of elements of `shape`, or an error naming the shape if it overflows. A shape with a zero dimension has no
/// elements whatever its other sizes, in any order: `[usize::MAX, usize::MAX, 0]` is as empty as `[0, usize::MAX, 2]`.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::shape(
                op,
                format!("shape {shape:?} has more elements than fit in usize"),
            )
        })
}

/// The product of `dims`, some of the dimensions of a shape whose element count fits in `usize`: 0 if one of them is
/// 0, exact if the shape has elements, and saturated at `usize::MAX` only when another dimension of the shape is 0 (as
/// `[usize::MAX, usize::MAX]` in `[usize::MAX, usize::MAX, 0]`), where it sizes a loop that runs zero times.
pub fn dims_product(dims: &[usize]) -> usize {
    if dims.contains(&0) {
        return 0;
    }
    dims.iter().fold(1, |acc, &d| acc.saturating_mul(d))
}

/// Row-major strides of `shape` (the last dimension has stride 1). A shape without elements may have dimensions whose
/// product overflows (`[0, usize::MAX, 2]`); its strides saturate, harmlessly, since they never address an element.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].saturating_mul(shape[d + 1].max(1));
    }
    strides
}

/// The shape two operands broadcast to (NumPy rules: align at the right; each pair equal or one of them 1).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(Error::shape(op, format!("shapes {a:?} and {b:?} cannot be broadcast (dimension {i} of the result: {x} vs {y})")))
            }
        };
    }
    Ok(out)
}

impl Layout {
    /// A contiguous row-major layout of `shape`, starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Result<Self> {
        checked_numel("layout", shape)?;
        Ok(Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        })
    }

    /// A layout from raw parts. The caller (the tensor) checks it against its storage length.
    pub fn from_parts(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Result<Self> {
        if shape.len() != strides.len() {
            return Err(Error::shape(
                "layout",
                format!("{} dimensions but {} strides", shape.len(), strides.len()),
            ));
        }
        checked_numel("layout", &shape)?;
        let layout = Layout {
            shape,
            strides,
            offset,
        };
        layout.extent()?;
        Ok(layout)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        dims_product(&self.shape)
    }

    /// One past the largest storage index this layout touches (its offset if it has no elements).
    pub fn extent(&self) -> Result<usize> {
        if self.shape.contains(&0) {
            return Ok(self.offset);
        }
        diffuse_cpu_kernels::strided::max_offset(&self.shape, &self.strides, self.offset)
            .and_then(|m| m.checked_add(1))
            .ok_or_else(|| {
                Error::shape(
                    "layout",
                    format!(
                        "shape {:?} with strides {:?} overflows usize",
                        self.shape, self.strides
                    ),
                )
            })
    }

    /// True when the elements are stored row-major without gaps (size-1 dimensions may have any stride; a tensor without
    /// elements is trivially contiguous).
    pub fn is_contiguous(&self) -> bool {
        if self.shape.contains(&0) {
            return true;
        }
        let mut expected = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }

    pub fn strided_ref(&self) -> StridedRef<'_> {
        StridedRef {
            strides: &self.strides,
            offset: self.offset,
        }
    }

    /// An error naming `op` unless `dim` indexes a dimension of this layout.
    pub fn check_dim(&self, op: &'static str, dim: usize) -> Result<()> {
        if dim < self.rank() {
            Ok(())
        } else {
            Err(Error::argument(
                op,
                format!(
                    "dimension {dim} is out of range for a rank-{} tensor of shape {:?}",
                    self.rank(),
                    self.shape
                ),
            ))
        }
    }

    /// Reorders dimensions: dimension i of the result is dimension `dims[i]` of `self`.
    pub fn permute(&self, dims: &[usize]) -> Result<Self> {
        let mut seen = vec![false; self.rank()];
        if dims.len() != self.rank()
            || dims
                .iter()
                .any(|&d| d >= self.rank() || std::mem::replace(&mut seen[d], true))
        {
            return Err(Error::argument(
                "permute",
                format!(
                    "{dims:?} is not a permutation of the {} dimensions of {:?}",
                    self.rank(),
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Self> {
        self.check_dim("transpose", d0)?;
        self.check_dim("transpose", d1)?;
        let mut out = self.clone();
        out.shape.swap(d0, d1);
        out.strides.swap(d0, d1);
        Ok(out)
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        self.check_dim("narrow", dim)?;
        match start.checked_add(len) {
            Some(end) if end <= self.shape[dim] => {}
            _ => {
                return Err(Error::argument(
                    "narrow",
                    format!(
                    "range {start}..{start}+{len} exceeds dimension {dim} of size {} (shape {:?})",
                    self.shape[dim], self.shape
                ),
                ))
            }
        }
        let mut out = self.clone();
        // Element `start` of `dim` exists in a non-empty view, so its offset lies within `extent` and cannot overflow.
        // An empty view addresses nothing and keeps its offset.
        if len > 0 && !self.shape.contains(&0) {
            out.offset += start * self.strides[dim];
        }
        out.shape[dim] = len;
        Ok(out)
    }

    /// A view of `shape` that repeats this tensor along new leading dimensions and along its size-1 dimensions.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        if shape.len() < self.rank() {
            return Err(Error::shape(
                "broadcast_to",
                format!(
                    "cannot broadcast {:?} to the lower-rank shape {shape:?}",
                    self.shape
                ),
            ));
        }
        checked_numel("broadcast_to", shape)?;
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &target) in shape.iter().enumerate().skip(lead) {
            let (n, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if n == target {
                s
            } else if n == 1 {
                0
            } else {
                return Err(Error::shape(
                    "broadcast_to",
                    format!(
                        "cannot broadcast {:?} to {shape:?} (dimension {i}: {n} vs {target})",
                        self.shape
                    ),
                ));
            };
        }
        Ok(Layout {
            shape: shape.to_vec(),
            strides,
            offset: self.offset,
        })
    }

    pub fn unsqueeze(&self, dim: usize) -> Result<Self> {
        if dim > self.rank() {
            return Err(Error::argument(
                "unsqueeze",
                format!(
                    "dimension {dim} is out of range for inserting into rank {}",
                    self.rank()
                ),
            ));
        }
        let mut out = self.clone();
        // A size-1 dimension never moves through storage; its stride only matters for telling contiguity, and can only
        // overflow in a view without elements.
        let stride = if dim < self.rank() {
            self.strides[dim].saturating_mul(self.shape[dim])
        } else {
            1
        };
        out.shape.insert(dim, 1);
        out.strides.insert(dim, stride);
        Ok(out)
    }

    pub fn squeeze(&self, dim: usize) -> Result<Self> {
        self.check_dim("squeeze", dim)?;
        if self.shape[dim] != 1 {
            return Err(Error::argument(
                "squeeze",
                format!(
                    "dimension {dim} has size {}, not 1 (shape {:?})",
                    self.shape[dim], self.shape
                ),
            ));
        }
        let mut out = self.clone();
        out.shape.remove(dim);
        out.strides.remove(dim);
        Ok(out)
    }

    /// A view with a new shape of the same element count, if the data is contiguous; `Ok(None)` means the caller must
    /// copy to a contiguous buffer first.
    pub fn reshape(&self, shape: &[usize]) -> Result<Option<Self>> {
        let n = checked_numel("reshape", shape)?;
        if n != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({n} elements)",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        if !self.is_contiguous() {
            return Ok(None);
        }
        Ok(Some(Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: self.offset,
        }))
    }
}
