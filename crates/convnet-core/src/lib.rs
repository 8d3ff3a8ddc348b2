//! convnet-core: tensors and the kernels of a convolutional layer, forward and backward,
//! computing what PyTorch computes.
//!
//! - [`Tensor`]: owned `f32`, contiguous, NCHW.
//! - [`ops::conv2d`]: conv2d with stride, padding (explicit, valid, same; zeros, reflect,
//!   replicate, circular), dilation, groups and an optional flipped kernel, plus its three
//!   gradients. A literal reference implementation is kept as the oracle for the fast paths.
//! - [`geometry`]: output sizes, 'same' padding, receptive fields, parameter and FLOP counts.
//!
//! Every function that takes user input returns [`Result`]; none panics on bad shapes or
//! parameters.

pub mod error;
pub mod geometry;
mod linalg;
pub mod ops;
mod parallel;
mod scratch;
pub mod simd;
pub mod tensor;

pub use error::{Error, Result};
pub use ops::conv2d::{
    Conv2dAlgo, Conv2dGeometry, Conv2dGrads, Conv2dParams, ConvMode, GradRequest, Padding,
    PaddingMode, conv2d, conv2d_backward, conv2d_bias_grad, conv2d_input_grad, conv2d_weight_grad,
};
pub use tensor::{Shape, Tensor};
