//! The operations of a convolutional layer, one family per module, and what they share.

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod elementwise;
pub mod linear;
pub mod loss;
pub mod pool;

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
