//! The one place the CLI opens "a model": a checkpoint folder (or a run folder), or an ONNX
//! file converted on the fly, so every verb that takes `--checkpoint` (or `--model`) takes a
//! `.onnx` file without code of its own.

use std::path::Path;

use anyhow::{Result, bail};
use convnet::ModelSpec;
use convnet::checkpoint::{self, Checkpoint};
use convnet_onnx::ImportOptions;

/// The checkpoint `path` names: an ONNX file (imported, with `convnet_onnx::default_meta`:
/// ImageNet's classes, normalization and preprocessing for a 1000-class RGB classifier), or
/// a checkpoint or run folder.
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

/// Refuses a model that is not a classifier (one output of class scores) for `verb`, which
/// ranks classes.
pub fn require_classifier(ck: &Checkpoint, verb: &str) -> Result<()> {
    if !checkpoint::CheckpointMeta::is_classifier(&ck.model) {
        bail!(
            "{}: {verb} needs a classifier (one output of class scores [K]); this model has {} \
             output(s), the first {:?} per image (convnet run computes every output)",
            ck.dir.display(),
            ck.model.outputs().len(),
            ck.model.output_shape()
        );
    }
    Ok(())
}
