//! convnet: layers, models, training, data and checkpoints on top of the kernels of
//! `convnet-core`.

pub use convnet_core as core;

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod files;
pub mod filter;
pub mod image;
pub mod inspect;
pub mod layers;
pub mod model;
pub mod names;
pub mod npy;
pub mod optim;
pub mod preprocess;
pub mod render;
pub mod rng;
pub mod spec;
pub mod summary;
pub mod train;

pub use error::{Error, Result};
pub use layers::LayerKind;
pub use model::Model;
pub use spec::{LayerSpec, ModelSpec};

/// The README's Rust examples, compiled and run as doc-tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
