//! The bundled font: DejaVu Sans (Bitstream Vera licence, `fonts/LICENSE-DejaVu.txt`), registered with plotters'
//! ab_glyph text renderer once per process under the family name the charts ask for.

use crate::PlotError;
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// The family name every text style of this crate uses.
pub(crate) const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Registers the font (the first call does the work; later calls return its outcome).
pub(crate) fn register() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::new(
            "the bundled DejaVu Sans font does not parse",
        ))
    }
}
