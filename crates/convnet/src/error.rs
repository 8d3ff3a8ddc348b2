//! The error type of layers, models, training and checkpoints.

use std::path::PathBuf;

/// What went wrong, naming the layer, file or setting involved.
///
/// Every message is whole on its own: a variant that prints the error it wraps does not also
/// expose it as [`std::error::Error::source`] (such fields are named `error`, not `source`,
/// which `thiserror` would treat as one), so printing the chain (`{:#}` in `anyhow`) never
/// repeats a text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel refused its input (shapes, parameters).
    #[error(transparent)]
    Kernel(#[from] convnet_core::Error),
    /// A layer of a model failed; `error` says why.
    #[error("layer {name} ({kind}): {error}")]
    Layer {
        name: String,
        kind: &'static str,
        error: Box<Error>,
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
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// An image file that cannot be read as asked.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// A file that cannot be written (or must not be: checked before any work).
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
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

    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Write {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain as `anyhow` prints it with `{:#}`: each error's text, then its sources'.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut next = err.source();
        while let Some(e) = next {
            text += &format!(": {e}");
            next = e.source();
        }
        text
    }

    #[test]
    fn wrapped_errors_are_printed_once_in_the_whole_chain() {
        let missing = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let io = Error::io("model.toml", missing());
        let layer = Error::Layer {
            name: "conv1".into(),
            kind: "conv2d",
            error: Box::new(Error::io("weights.safetensors", missing())),
        };
        let cause = missing().to_string();
        for err in [io, layer] {
            let text = chain(&err);
            assert_eq!(text.matches(&cause).count(), 1, "{text}");
        }
    }
}
