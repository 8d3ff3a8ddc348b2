//! A classification problem and a model small enough to train in milliseconds: four classes
//! of 8x8 images, a bright square in one of the four quadrants, plus noise.

use super::test_dir::TestDir;
use convnet::data::{Augment, DataSplit, Dataset};
use convnet::layers::{
    BatchNormConfig, Conv2dConfig, DropoutConfig, FlattenConfig, LinearConfig, MaxPool2dConfig,
    ReluConfig,
};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{LossKind, TrainConfig, Trainer};
use convnet::{Model, ModelSpec};

/// A fresh, empty folder for one test, removed when it passes.
pub fn temp_dir(name: &str) -> TestDir {
    TestDir::new(name)
}

/// `n` images, classes in turn.
pub fn quadrants(n: usize, seed: u64) -> Dataset {
    let mut rng = convnet::rng::Rng::new(seed);
    let mut pixels = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 4;
        let (r0, c0) = ((class / 2) * 4, (class % 2) * 4);
        for y in 0..8 {
            for x in 0..8 {
                let inside = (r0..r0 + 4).contains(&y) && (c0..c0 + 4).contains(&x);
                let base = if inside { 180.0 } else { 40.0 };
                pixels.push((base + rng.uniform_range(-30.0, 30.0)) as u8);
            }
        }
        labels.push(class);
    }
    Dataset {
        channels: 1,
        height: 8,
        width: 8,
        pixels,
        labels,
        classes: ["top-left", "top-right", "bottom-left", "bottom-right"]
            .map(String::from)
            .to_vec(),
        source: "quadrants".into(),
    }
}

/// 96 training and 32 test images (6 steps per epoch at batch 16).
pub fn data() -> DataSplit {
    DataSplit {
        train: quadrants(96, 1),
        test: quadrants(32, 2),
    }
}

/// Convolution, batch norm (so buffers are saved too), pooling, dropout, a linear head.
pub fn spec() -> ModelSpec {
    ModelSpec::new([1, 8, 8])
        .layer("conv", Conv2dConfig::lazy(4, [3, 3]))
        .layer("bn", BatchNormConfig::lazy_2d())
        .layer("act", ReluConfig {})
        .layer("pool", MaxPool2dConfig::new([2, 2]))
        .layer("flat", FlattenConfig {})
        .layer("drop", DropoutConfig::new(0.2))
        .layer("fc", LinearConfig::lazy(4))
}

/// [`spec`] built, its weights drawn with `seed`.
pub fn model(seed: u64) -> Model {
    Model::from_spec(&spec(), seed).unwrap()
}

/// Four epochs of AdamW with one-cycle, label smoothing and random crops.
pub fn config() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 16,
        optimizer: OptimizerConfig::adamw(1e-2).with_weight_decay(1e-3),
        schedule: ScheduleConfig::one_cycle(1e-2),
        loss: LossKind::CrossEntropy {
            label_smoothing: 0.1,
        },
        // (No flips: they would swap the left and right classes.)
        augment: Augment {
            hflip: false,
            crop_padding: 1,
        },
        seed: 42,
    }
}

/// A run of the tiny model with `optimizer` at a constant rate, which must diverge: the
/// trainer where it stopped, and the error.
pub fn diverge(optimizer: OptimizerConfig) -> (Trainer, convnet::Error) {
    let data = data();
    let config = TrainConfig {
        optimizer,
        schedule: ScheduleConfig::Constant,
        ..config()
    };
    let mut trainer = Trainer::new(model(0), config, &data).unwrap();
    let err = trainer
        .run(&data, &mut convnet::train::NoHooks)
        .unwrap_err();
    assert!(matches!(err, convnet::Error::Diverged(_)), "{err}");
    (trainer, err)
}
