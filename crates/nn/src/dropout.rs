//! Dropout as a layer: a train/eval switch and the position in its Philox stream.
//!
//! In training mode each call draws its mask from stream `seed` at the layer's offset and advances the offset by the
//! number of elements it used, so consecutive calls see fresh masks and a run that restores the offset
//! ([`Dropout::set_offset`]) repeats them exactly. In evaluation mode, and for `p = 0`, the layer is the identity.

use crate::layers::Module;
use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result};
use std::cell::Cell;

/// Inverted dropout (`torch.nn.Dropout`): zeroes each element with probability `p` and scales the rest by
/// `1/(1 − p)`; see [`Var::dropout`] for the mask.
pub struct Dropout {
    p: f32,
    seed: u64,
    offset: Cell<u64>,
    training: Cell<bool>,
}

impl Dropout {
    /// A layer in training mode dropping with probability `p` ∈ [0, 1), its masks drawn from Philox stream `seed`
    /// from element 0.
    pub fn new(p: f32, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::argument(
                "Dropout",
                format!("the drop probability p must lie in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            seed,
            offset: Cell::new(0),
            training: Cell::new(true),
        })
    }

    pub fn p(&self) -> f32 {
        self.p
    }

    /// Switches between training (masks drawn) and evaluation (identity).
    pub fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    pub fn is_training(&self) -> bool {
        self.training.get()
    }

    /// The first stream element the next training-mode call will use.
    pub fn offset(&self) -> u64 {
        self.offset.get()
    }

    /// Moves the stream position, to repeat or resume a run's masks.
    pub fn set_offset(&self, offset: u64) {
        self.offset.set(offset);
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Var) -> Result<Var> {
        if !self.is_training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        let offset = self.offset.get();
        let y = x.dropout(self.p, self.seed, offset)?;
        self.offset.set(offset + x.tensor().numel() as u64);
        Ok(y)
    }
}
