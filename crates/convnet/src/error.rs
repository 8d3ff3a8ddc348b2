//! The error type of layers, models, training and checkpoints.

use std::path::PathBuf;

/// What went wrong, naming the layer, file or setting involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel refused its input (shapes, parameters).
    #[error(transparent)]
    Kernel(#[from] convnet_core::Error),
    /// A layer of a model failed; `source` says why.
    #[error("layer {name} ({kind}): {source}")]
    Layer {
        name: String,
        kind: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// A model description (Rust or model file) that cannot be built.
    #[error("{0}")]
    Model(String),
    /// A training setting out of its domain.
    #[error("invalid {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    /// Data that cannot be used.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose contents are not what was expected.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Training was interrupted (Ctrl-C) after saving what it had.
    #[error("interrupted")]
    Interrupted,
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn model(reason: impl Into<String>) -> Self {
        Error::Model(reason.into())
    }

    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            setting,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
