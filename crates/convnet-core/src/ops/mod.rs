//! The operations of a convolutional layer, one family per module.

pub mod conv2d;
