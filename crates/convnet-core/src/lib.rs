//! convnet-core: tensors and the kernels of a convolutional layer, forward and backward,
//! computing what PyTorch computes.
//!
//! - [`Tensor`]: owned `f32`, contiguous, NCHW.
//! - [`ops::conv2d`]: conv2d with stride, padding (explicit, valid, same; zeros, reflect,
//!   replicate, circular), dilation, groups and an optional flipped kernel, plus its three
//!   gradients. A literal reference implementation is kept as the oracle for the fast paths.
//! - [`ops::pool`]: max, average, adaptive and global pooling (with PyTorch's `ceil_mode`,
//!   `count_include_pad`, `divisor_override` and max-pool indices), forward and backward.
//! - [`ops::activation`]: ReLU, LeakyReLU, ELU, tanh, sigmoid and PReLU, forward and backward.
//! - [`ops::linear`]: fully connected layer (GEMM), forward and its three gradients.
//! - [`ops::batch_norm`]: batch normalization (1-D and 2-D), training and evaluation modes,
//!   forward and backward.
//! - [`ops::loss`]: cross-entropy (with label smoothing) and MSE with their gradients,
//!   softmax and log-softmax.
//! - [`ops::elementwise`]: `a += b` on tensors of one shape (residual joins, gradient sums).
//! - [`geometry`]: output sizes, 'same' padding, receptive fields, parameter and FLOP counts.
//! - [`cpu`]: what the kernels need from the machine (SIMD, threads, scratch buffers, GEMM);
//!   the boundary a second backend would replace.
//!
//! Every function that takes user input returns [`Result`]; none panics on bad shapes or
//! parameters. One API style throughout: operands first and parameters last
//! (`conv2d(input, weight, bias, &params)`), parameters built as
//! `Params::builder(required).with_*(..).build()?` and checked there, gradients named
//! `grad_input`, `grad_weight`, `grad_bias`, and every op re-exported here.

pub mod cpu;
pub mod error;
pub mod geometry;
pub mod ops;
pub mod tensor;
#[cfg(test)]
mod testing;

pub use error::{Error, Result};
pub use ops::GradRequest;
pub use ops::activation::{
    Activation, PreluGrads, activation, activation_backward, activation_backward_in_place,
    activation_backward_into, activation_in_place, activation_into, gradient_from_output, prelu,
    prelu_backward,
};
pub use ops::batch_norm::{
    BatchNormGrads, BatchNormTrainOutput, batch_norm_backward, batch_norm_eval,
    batch_norm_eval_backward, batch_norm_relu_backward, batch_norm_relu_max_pool2d_backward,
    batch_norm_train, batch_norm_train_output, batch_norm_train_relu,
    batch_norm_train_relu_max_pool2d,
};
pub use ops::broadcast::{BinaryOp, binary, binary_backward, broadcast_dims, sum_to};
pub use ops::conv2d::{
    Conv2dAlgo, Conv2dGeometry, Conv2dGrads, Conv2dParams, Conv2dParamsBuilder, ConvMode, Padding,
    PaddingMode, Tap, conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
    conv2d_grad_weight,
};
pub use ops::elementwise::add_in_place;
pub use ops::linear::{LinearGrads, linear, linear_backward};
pub use ops::loss::{LossOutput, cross_entropy, log_softmax, mse_loss, softmax};
pub use ops::pad::{pad2d, pad2d_backward, padded_dims};
pub use ops::pool::{
    MaxPool2dOutput, Pool2dParams, Pool2dParamsBuilder, adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward, adaptive_max_pool2d, avg_pool2d, avg_pool2d_backward,
    global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d, max_pool2d,
    max_pool2d_backward, max_pool2d_backward_from_input, max_pool2d_output,
};
pub use ops::resize::{Resize2dParams, ResizeMode, resize2d, resize2d_backward};
pub use ops::softmax::{softmax_axis, softmax_axis_backward};
pub use tensor::{Shape, Tensor};
