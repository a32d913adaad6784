//! The crate's one error type: what could not be drawn or written, in words.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct PlotError(String);

impl PlotError {
    pub fn new(message: impl Into<String>) -> PlotError {
        PlotError(message.into())
    }

    /// An error of the plotters backend (out-of-range drawing, a font that cannot lay out text).
    pub(crate) fn drawing(e: impl fmt::Display) -> PlotError {
        PlotError(format!("drawing failed: {e}"))
    }
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

impl From<PlotError> for String {
    fn from(e: PlotError) -> String {
        e.0
    }
}
