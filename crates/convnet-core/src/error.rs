//! The one error type of the kernels crate.
//!
//! Every error names the operation, the parameter or tensor at fault and the reason, with the
//! shapes involved, so a caller can print it as it is. User input never panics.

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A hyper-parameter is outside its domain: stride 0, groups that do not divide the
    /// channels, 'same' padding with a stride, ...
    #[error("{op}: invalid {param}: {reason}")]
    InvalidParameter {
        op: &'static str,
        param: &'static str,
        reason: String,
    },
    /// Tensor shapes that do not fit the operation or each other.
    #[error("{op}: {reason}")]
    Shape { op: &'static str, reason: String },
    /// A size computation does not fit in `usize`.
    #[error("{op}: size overflow: {reason}")]
    Overflow { op: &'static str, reason: String },
    /// A tensor or workspace larger than [`MAX_TENSOR_ELEMENTS`](crate::tensor::MAX_TENSOR_ELEMENTS)
    /// values: `param` is the parameter (or tensor) whose value makes it so.
    #[error("{op}: {param} too large: {reason}")]
    TooLarge {
        op: &'static str,
        param: &'static str,
        reason: String,
    },
}

/// Result with the kernels crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn param(op: &'static str, param: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            op,
            param,
            reason: reason.into(),
        }
    }

    pub(crate) fn shape(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Shape {
            op,
            reason: reason.into(),
        }
    }

    /// `what` would hold `values` values, more than one tensor may hold.
    pub(crate) fn too_large(
        op: &'static str,
        param: &'static str,
        what: impl std::fmt::Display,
        values: usize,
    ) -> Self {
        Error::TooLarge {
            op,
            param,
            reason: format!(
                "{what} would hold {values} values, more than the {} one tensor may hold",
                crate::tensor::MAX_TENSOR_ELEMENTS
            ),
        }
    }

    pub(crate) fn overflow(op: &'static str, reason: impl Into<String>) -> Self {
        Error::Overflow {
            op,
            reason: reason.into(),
        }
    }
}
