//! JSON as Python's `json` module writes it. For non-finite floats it emits the bare tokens `NaN`, `Infinity` and
//! `-Infinity`, which JSON does not allow and serde_json refuses; diffusers configs contain them (every
//! `DPMSolverMultistepScheduler` config has `"lambda_min_clipped": -Infinity`).
//!
//! [`parse`] replaces each such token outside strings by a string that starts with [`NON_FINITE`] (a private-use
//! character) before serde_json reads the text; [`number`] reads a number or such a string back as `f64`, and
//! [`to_string_pretty`] writes the tokens again, so a config survives a round trip.

use serde_json::Value;

/// The first character of a string standing for a non-finite float.
pub const NON_FINITE: char = '\u{E000}';

/// The Python tokens and their values.
const TOKENS: [(&str, f64); 3] = [
    ("-Infinity", f64::NEG_INFINITY),
    ("Infinity", f64::INFINITY),
    ("NaN", f64::NAN),
];

/// Parses `text`, accepting Python's non-finite float tokens.
pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(&(token, _)) = TOKENS.iter().find(|(token, _)| rest.starts_with(token)) {
            out.push('"');
            out.push(NON_FINITE);
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out)
}

/// The value of a non-finite-float string made by [`parse`].
pub fn non_finite(value: &Value) -> Option<f64> {
    let text = value.as_str()?.strip_prefix(NON_FINITE)?;
    TOKENS
        .iter()
        .find(|(token, _)| *token == text)
        .map(|&(_, x)| x)
}

/// A JSON number or a non-finite float, as `f64`.
pub fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| non_finite(value))
}

/// A float as a value: a JSON number, or for NaN and ±∞ the string [`parse`] makes of Python's token.
pub fn float_value(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None => {
            let token = if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            Value::String(format!("{NON_FINITE}{token}"))
        }
    }
}

/// `value` as pretty-printed JSON (two-space indent), with non-finite floats written as Python writes them.
pub fn to_string_pretty(value: &Value) -> String {
    let mut text = format!("{value:#}");
    for (token, _) in TOKENS {
        text = text.replace(&format!("\"{NON_FINITE}{token}\""), token);
    }
    text
}
