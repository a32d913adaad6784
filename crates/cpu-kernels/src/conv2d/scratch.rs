//! Scratch buffers recycled per thread, so a convolution called layer after layer (and the rayon tasks inside one
//! call) reuses warm memory instead of allocating and zero-filling megabytes every time.
//!
//! Each [`Role`] has one spare buffer per thread: [`Buffer::take`] takes it (empty if a caller up the stack holds it)
//! and dropping the [`Buffer`] puts it back. Buffers only grow, so a thread keeps the largest buffer of each role it
//! has needed (a few MiB per thread for the U-Net's layers); memory is zero-filled only when a buffer grows.

use std::cell::RefCell;

/// What a buffer holds; each role has its own spare per thread because one call holds several at once.
#[derive(Clone, Copy)]
pub(super) enum Role {
    /// im2col: the column matrix (or the column gradient).
    Columns,
    /// im2col: an output (or output-gradient) block of stacked images.
    Block,
    /// Winograd: the transformed weights `U`, written into the GEMM's packed panels once per call.
    PackedWeights,
    /// Winograd: the transformed input tiles `V`.
    Tiles,
    /// Winograd: the transformed output-gradient tiles of the weight gradient.
    GradientTiles,
    /// Winograd: the tile products `M`.
    Products,
    /// Winograd: the per-plane work rows of the input and output transforms.
    Rows,
}

const ROLES: usize = 7;

thread_local! {
    static SPARE: RefCell<[Vec<f32>; ROLES]> = const { RefCell::new([const { Vec::new() }; ROLES]) };
}

/// A scratch buffer of one role, returned to its thread's spare slot on drop.
pub(super) struct Buffer {
    floats: Vec<f32>,
    role: Role,
}

impl Buffer {
    /// Takes the calling thread's spare buffer for `role`.
    pub(super) fn take(role: Role) -> Self {
        let floats = SPARE
            .try_with(|spare| std::mem::take(&mut spare.borrow_mut()[role as usize]))
            .unwrap_or_default();
        Self { floats, role }
    }

    /// The first `len` floats, growing the buffer if needed. Their contents are unspecified (left over from the last
    /// use, zero where the buffer grew): callers write every float before they read it.
    pub(super) fn floats(&mut self, len: usize) -> &mut [f32] {
        if self.floats.len() < len {
            self.floats.resize(len, 0.0);
        }
        &mut self.floats[..len]
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let floats = std::mem::take(&mut self.floats);
        // `try_with` fails only while the thread is being torn down; the buffer is then simply freed. A spare that
        // is already back (a nested call returned it first) is kept if it is the larger one.
        let _ = SPARE.try_with(|spare| {
            let slot = &mut spare.borrow_mut()[self.role as usize];
            if floats.len() > slot.len() {
                *slot = floats;
            }
        });
    }
}
