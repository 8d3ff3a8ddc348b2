//! The operations of a convolutional layer, one family per module, and what they share
//! ([`GradRequest`]).
//!
//! A family is a file (`linear.rs`, `loss.rs`, ...) or, once it has several parts, a folder
//! like `conv2d/`: `mod.rs` with the public functions, their checks and the choice of
//! kernel; a `params.rs` when it has hyper-parameters; one file per kernel or part; unit
//! tests beside them. A new op goes in its own module here, with its kernels generic over the
//! float type (so f64 finite-difference tests can run them, with `crate::testing`'s checker),
//! its CPU helpers taken from [`crate::cpu`], and its public functions re-exported from the
//! crate root.

pub mod activation;
pub mod batch_norm;
pub mod broadcast;
pub mod conv2d;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod pad;
pub mod pool;
pub mod resize;
pub mod softmax;

/// Which gradients a backward pass computes (of an op with a weight and a bias: conv2d,
/// linear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradRequest {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

impl GradRequest {
    /// All three gradients.
    pub const ALL: GradRequest = GradRequest {
        input: true,
        weight: true,
        bias: true,
    };
}
