//! The operations of a convolutional layer, one family per module.

pub mod activation;
pub mod conv2d;
pub mod pool;
