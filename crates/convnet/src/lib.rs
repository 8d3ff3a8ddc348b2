//! convnet: layers, models and training on top of the kernels of `convnet-core`.

pub use convnet_core as core;

/// The README's Rust examples, compiled and run as doc-tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
