//! The crate's error: whichever layer refused, with its own message.

use crate::data::DataError;
use crate::schedule::ScheduleError;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    Data(DataError),
    Schedule(ScheduleError),
    Tensor(diffuse_tensor::Error),
    /// A sampler could not run: `what` names the argument, `message` says what was wrong with it.
    Sampler {
        what: &'static str,
        message: String,
    },
    /// A model could not be built, loaded or saved: `what` names the file or option, `message` the problem.
    Model {
        what: String,
        message: String,
    },
    /// Training or a training checkpoint failed: `what` names the setting or file, `message` the problem.
    Train {
        what: String,
        message: String,
    },
}

impl Error {
    pub fn sampler(what: &'static str, message: impl Into<String>) -> Self {
        Error::Sampler {
            what,
            message: message.into(),
        }
    }
}

impl Error {
    pub fn model(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            what: what.into(),
            message: message.into(),
        }
    }

    pub fn train(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Train {
            what: what.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Data(e) => e.fmt(f),
            Error::Schedule(e) => e.fmt(f),
            Error::Tensor(e) => e.fmt(f),
            Error::Sampler { what, message } => write!(f, "{what}: {message}"),
            Error::Model { what, message } => write!(f, "{what}: {message}"),
            Error::Train { what, message } => write!(f, "{what}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<DataError> for Error {
    fn from(e: DataError) -> Self {
        Error::Data(e)
    }
}

impl From<ScheduleError> for Error {
    fn from(e: ScheduleError) -> Self {
        Error::Schedule(e)
    }
}

impl From<diffuse_models::Error> for Error {
    fn from(e: diffuse_models::Error) -> Self {
        match e {
            diffuse_models::Error::Tensor(e) => Error::Tensor(e),
            diffuse_models::Error::Model { what, message } => Error::Model { what, message },
        }
    }
}

impl From<diffuse_tensor::Error> for Error {
    fn from(e: diffuse_tensor::Error) -> Self {
        Error::Tensor(e)
    }
}

impl From<diffuse_cpu_kernels::KernelError> for Error {
    fn from(e: diffuse_cpu_kernels::KernelError) -> Self {
        Error::Tensor(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
