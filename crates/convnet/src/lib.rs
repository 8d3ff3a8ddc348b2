//! convnet: layers, models, training, data and checkpoints on top of the kernels of
//! `convnet-core`.

pub use convnet_core as core;

pub mod data;
pub mod rng;

/// The README's Rust examples, compiled and run as doc-tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
