//! The operations of a convolutional layer, one family per module.

pub mod activation;
pub mod batch_norm;
pub mod conv2d;
pub mod linear;
pub mod loss;
pub mod pool;
