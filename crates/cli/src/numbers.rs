//! Parsers of the numeric options: a float option takes finite numbers only, so `--guidance nan` or `--lr inf` is
//! refused when the command line is read, before it can turn every sample or weight into NaN.

/// A finite `f64`.
pub fn finite_f64(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{text:?} is not a finite number"))
    }
}

/// A finite `f32` (a number beyond f32's range, which would round to infinity, is refused too).
pub fn finite_f32(text: &str) -> Result<f32, String> {
    let value: f32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!(
            "{text:?} is not a finite number (f32 reaches ±{:e})",
            f32::MAX
        ))
    }
}
