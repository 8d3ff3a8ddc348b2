//! convnet: layers, models and training on top of the kernels of `convnet-core`.

pub use convnet_core as core;
