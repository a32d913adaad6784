//! The prompts of a text-conditioned run, encoded once. The text encoder is frozen, so a caption's states
//! `last_hidden_state` (L, D) never change during training: each distinct caption is encoded a single time, and a step
//! gathers its batch's rows from the table. Caption dropout (classifier-free guidance training) replaces a sample's
//! caption by the empty prompt, the table's last row, which is also the unconditional context of guided sampling.

use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// The encoded captions of a dataset: one row per distinct caption, then the empty prompt's, and each image's row.
#[derive(Clone, Debug)]
pub struct CaptionContexts {
    /// (K + 1, L, D): the K distinct captions' states, then the empty prompt's.
    states: Tensor,
    /// For each dataset image, its caption's row in `states` (below K).
    caption_of: Vec<usize>,
}

fn bad(message: String) -> Error {
    Error::train("captions", message)
}

impl CaptionContexts {
    /// `states` (K + 1, L, D) with the empty prompt's last, and each image's row among the first K.
    pub fn new(states: Tensor, caption_of: Vec<usize>) -> Result<CaptionContexts> {
        let &[rows, len, dim] = states.shape() else {
            return Err(bad(format!(
                "the encoded captions must be (captions + 1, L, D), got {:?}",
                states.shape()
            )));
        };
        if rows < 2 || len == 0 || dim == 0 {
            return Err(bad(format!(
                "the encoded captions {:?} need at least one caption beside the empty prompt, and tokens of at least \
                 one feature",
                states.shape()
            )));
        }
        if let Some((image, &row)) = caption_of.iter().enumerate().find(|(_, &r)| r + 1 >= rows) {
            return Err(bad(format!(
                "image {image} has caption row {row}, but there are {} captions (row {} is the empty prompt)",
                rows - 1,
                rows - 1
            )));
        }
        Ok(CaptionContexts { states, caption_of })
    }

    /// Number of images captioned.
    pub fn len(&self) -> usize {
        self.caption_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.caption_of.is_empty()
    }

    /// Number of distinct captions (the empty prompt not counted).
    pub fn distinct(&self) -> usize {
        self.states.shape()[0] - 1
    }

    /// The empty prompt's states, (1, L, D): the unconditional context.
    pub fn empty_prompt(&self) -> Result<Tensor> {
        let rows = self.states.shape()[0];
        Ok(self.states.narrow(0, rows - 1, 1)?.contiguous()?)
    }

    /// The contexts (B, L, D) of the dataset images `indices`, the empty prompt's where `dropped`.
    pub fn batch(&self, indices: &[usize], dropped: &[bool]) -> Result<Tensor> {
        let empty = self.states.shape()[0] - 1;
        let rows = indices
            .iter()
            .zip(dropped)
            .map(|(&i, &drop)| match self.caption_of.get(i) {
                _ if drop => Ok(empty),
                Some(&row) => Ok(row),
                None => Err(bad(format!(
                    "image {i} has no caption ({} captioned)",
                    self.caption_of.len()
                ))),
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(self.states.index_select(0, &rows)?)
    }
}
