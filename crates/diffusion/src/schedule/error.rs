//! The error type of the schedule module.

use std::fmt;

/// A schedule could not be built or a config could not be read. `what` names the config key or the function whose input
/// was bad; `message` says what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    pub what: String,
    pub message: String,
}

impl ScheduleError {
    pub fn new(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.message)
    }
}

impl std::error::Error for ScheduleError {}

pub type Result<T> = std::result::Result<T, ScheduleError>;
