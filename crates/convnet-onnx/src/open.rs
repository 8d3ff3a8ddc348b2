//! An ONNX file as a convnet checkpoint: what `--checkpoint model.onnx` and
//! `convnet import` use.

use std::path::Path;

use convnet::Model;
use convnet::checkpoint::{Checkpoint, CheckpointMeta};
use convnet::data::Normalization;
use convnet::preprocess::Preprocessing;

use crate::error::{Error, ErrorKind, Result};
use crate::import::{ImportOptions, Imported, import};
use crate::model::OnnxModel;

/// The ImageNet class names, in the order of torchvision's (and most ONNX zoo) classifiers.
pub const IMAGENET_CLASSES: &str = include_str!("../../../data/imagenet_classes.txt");

/// ImageNet's per-channel mean and standard deviation (RGB), as torchvision normalizes.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The shorter side ImageNet classifiers of 224x224 inputs are evaluated at, before the
/// center crop (torchvision's weights document `resize_size=256`, `crop_size=224`).
pub const IMAGENET_RESIZE: usize = 256;

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

/// What an imported model is taken to expect and mean. A classifier (one output `[K]`) of
/// 1000 classes on RGB images is an ImageNet classifier: ImageNet's class names and
/// normalization, and for a 224x224 input torchvision's evaluation preprocessing (the
/// shorter side resized to 256, a 224x224 center crop). Other classifiers get numbered
/// classes; models of several outputs or of other output shapes list no classes. Images are
/// otherwise resized to the input size, RGB, with pixels scaled to `[0, 1]`.
pub fn default_meta(model: &Model) -> CheckpointMeta {
    let [channels, h, w] = model.input_shape();
    let classifier = CheckpointMeta::is_classifier(model);
    let imagenet = classifier && model.output_shape() == [1000] && channels == 3;
    let classes = if imagenet {
        IMAGENET_CLASSES.lines().map(str::to_string).collect()
    } else if classifier {
        (0..model.output_shape()[0])
            .map(|i| i.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let normalization = if imagenet {
        Normalization {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    } else {
        Normalization::identity(channels)
    };
    let preprocessing = if imagenet && [h, w] == [224, 224] {
        Preprocessing::resize_and_crop(IMAGENET_RESIZE, 224)
    } else {
        Preprocessing::squash([h, w])
    };
    CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes,
        normalization,
        training: None,
        config: None,
        data: None,
        preprocessing: Some(preprocessing),
    }
}
