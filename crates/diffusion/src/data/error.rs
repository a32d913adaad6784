//! The one error type of the data module: what went wrong, and with which file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A dataset could not be read or used. `path` names the offending file or folder when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl DataError {
    /// An error about the file or folder at `path`.
    pub fn at(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: Some(path.to_path_buf()),
            message: message.into(),
        }
    }

    /// An error that concerns no particular file (e.g. a batch index out of range).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DataError {}

pub type Result<T> = std::result::Result<T, DataError>;
