//! The crate's error: a tensor operation refused, or a model could not be built, loaded or saved.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    Tensor(diffuse_tensor::Error),
    /// A model could not be built, loaded or saved: `what` names the file or option, `message` the problem.
    Model {
        what: String,
        message: String,
    },
}

impl Error {
    pub fn model(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            what: what.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Tensor(e) => e.fmt(f),
            Error::Model { what, message } => write!(f, "{what}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<diffuse_tensor::Error> for Error {
    fn from(e: diffuse_tensor::Error) -> Self {
        Error::Tensor(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
