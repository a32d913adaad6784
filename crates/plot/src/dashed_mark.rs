//! The legend mark of a dashed series: a horizontal segment drawn as dashes with gaps between them, so the legend
//! shows the same pattern as the line it names.
//!
//! plotters' legend takes one element per series; a [`PathElement`](plotters::element::PathElement) is always
//! solid, so this element keeps its two end points (owned, in backend pixels) and draws each dash as its own path.

use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

/// Dashes of `dash` pixels separated by `gap` pixels from `ends[0]` rightwards to `ends[1]`.
pub struct DashedMark {
    ends: [BackendCoord; 2],
    dash: i32,
    gap: i32,
    style: ShapeStyle,
}

impl DashedMark {
    /// A mark `length` pixels long starting at `start`.
    pub fn new(start: BackendCoord, length: i32, dash: i32, gap: i32, style: ShapeStyle) -> Self {
        DashedMark {
            ends: [start, (start.0 + length, start.1)],
            dash: dash.max(1),
            gap: gap.max(0),
            style,
        }
    }
}

impl<'a> PointCollection<'a, BackendCoord> for &'a DashedMark {
    type Point = &'a BackendCoord;
    type IntoIter = &'a [BackendCoord];
    fn point_iter(self) -> Self::IntoIter {
        &self.ends
    }
}

impl<DB: DrawingBackend> Drawable<DB> for DashedMark {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        let (Some(start), Some(end)) = (points.next(), points.next()) else {
            return Ok(());
        };
        let mut x = start.0;
        while x < end.0 {
            let stop = (x + self.dash).min(end.0);
            backend.draw_path([(x, start.1), (stop, start.1)], &self.style)?;
            x = stop + self.gap;
        }
        Ok(())
    }
}
