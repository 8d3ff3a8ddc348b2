//! An ONNX file as a convnet checkpoint: what `--checkpoint model.onnx` and
//! `convnet import` use.

use std::path::Path;

use convnet::Model;
use convnet::checkpoint::{Checkpoint, CheckpointMeta};
use convnet::data::Normalization;

use crate::error::{Error, ErrorKind, Result};
use crate::import::{ImportOptions, Imported, import};
use crate::model::OnnxModel;

/// The ImageNet class names, in the order of torchvision's (and most ONNX zoo) classifiers.
pub const IMAGENET_CLASSES: &str = include_str!("../../../data/imagenet_classes.txt");

/// ImageNet's per-channel mean and standard deviation (RGB), as torchvision normalizes.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Whether `path` names an ONNX file (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads and converts the ONNX model at `path`.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported> {
    import(OnnxModel::load(path)?, options)
}

/// The ONNX model at `path` as a checkpoint (in memory), with [`default_meta`].
pub fn open_checkpoint(path: &Path, options: &ImportOptions) -> Result<Checkpoint> {
    let model = import_file(path, options)?
        .into_model()
        .map_err(|e| Error::new(path, ErrorKind::Layer(e.to_string())))?;
    let meta = default_meta(&model);
    Ok(Checkpoint {
        dir: path.to_path_buf(),
        model,
        meta,
        optimizer_state: Default::default(),
    })
}

/// What an imported model is taken to expect and mean: a classifier of 1000 classes on RGB
/// images is an ImageNet classifier (ImageNet's class names and normalization); otherwise the
/// classes are numbered and pixels scaled to `[0, 1]`.
pub fn default_meta(model: &Model) -> CheckpointMeta {
    let channels = model.input_shape()[0];
    let (classes, normalization) = match model.output_shape() {
        [1000] if channels == 3 => (
            IMAGENET_CLASSES.lines().map(str::to_string).collect(),
            Normalization {
                mean: IMAGENET_MEAN.to_vec(),
                std: IMAGENET_STD.to_vec(),
            },
        ),
        [n] => (
            (0..*n).map(|i| i.to_string()).collect(),
            Normalization::identity(channels),
        ),
        _ => (Vec::new(), Normalization::identity(channels)),
    };
    CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes,
        normalization,
        training: None,
        config: None,
        data: None,
    }
}
