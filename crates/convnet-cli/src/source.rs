//! The one place the CLI opens "a model": a checkpoint folder (or a run folder), or an ONNX
//! file converted on the fly, so every verb that takes `--checkpoint` (or `--model`) takes a
//! `.onnx` file without code of its own.

use std::path::Path;

use anyhow::Result;
use convnet::ModelSpec;
use convnet::checkpoint::{self, Checkpoint};
use convnet_onnx::ImportOptions;

/// The checkpoint `path` names: an ONNX file (imported, with ImageNet's classes and
/// normalization for a 1000-class RGB classifier), or a checkpoint or run folder.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    if convnet_onnx::is_onnx(path) {
        Ok(convnet_onnx::open_checkpoint(
            path,
            &ImportOptions::default(),
        )?)
    } else {
        Ok(checkpoint::load(path)?)
    }
}

/// The model description `path` names: an ONNX file (converted) or a model file (TOML).
pub fn load_spec(path: &Path) -> Result<ModelSpec> {
    if convnet_onnx::is_onnx(path) {
        Ok(convnet_onnx::import_file(path, &ImportOptions::default())?.spec)
    } else {
        Ok(ModelSpec::load(path)?)
    }
}
