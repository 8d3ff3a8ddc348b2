//! Interpretability checks that cannot pass by accident: Grad-CAM points at the evidence on a
//! task where the evidence has a known place, and activation maximization really raises the
//! activation it maximizes.

use convnet::data::{Augment, DataSplit, Dataset};
use convnet::inspect::{
    self, CamMethod, MaximizeConfig, Parameterization, explain, last_conv_layer, maximize,
};
use convnet::layers::{
    Conv2dConfig, FlattenConfig, GlobalPoolConfig, LinearConfig, MaxPool2dConfig, PoolKind,
};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{LossKind, NoHooks, TrainConfig, Trainer};
use convnet::{Model, ModelSpec};
use convnet_core::{Activation, Padding, Tensor};

mod common;
use common::reference::reference_model;

const SIDE: usize = 16;

/// 16x16 images with a bright 4x4 square in the left half (class 0) or the right half
/// (class 1), at a random position, on a noisy dark background.
fn squares(n: usize, seed: u64) -> (Dataset, Vec<[usize; 2]>) {
    let mut rng = convnet::rng::Rng::new(seed);
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    let mut corners = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 2;
        let y0 = rng.below((SIDE - 4 + 1) as u64) as usize;
        let x0 = rng.below((SIDE / 2 - 4 + 1) as u64) as usize + class * SIDE / 2;
        for y in 0..SIDE {
            for x in 0..SIDE {
                let inside = (y0..y0 + 4).contains(&y) && (x0..x0 + 4).contains(&x);
                let v = if inside {
                    rng.uniform_range(200.0, 255.0)
                } else {
                    rng.uniform_range(0.0, 60.0)
                };
                pixels.push(v as u8);
            }
        }
        labels.push(class);
        corners.push([y0, x0]);
    }
    let set = Dataset {
        channels: 1,
        height: SIDE,
        width: SIDE,
        pixels,
        labels,
        classes: vec!["left".into(), "right".into()],
        source: "squares".into(),
    };
    (set, corners)
}

/// A 3x3 convolution keeping the size.
fn conv(out: usize) -> Conv2dConfig {
    Conv2dConfig::lazy(out, [3, 3]).with_padding(Padding::Same)
}

fn spec() -> ModelSpec {
    ModelSpec::new([1, SIDE, SIDE])
        .layer("conv1", conv(8))
        .layer("relu1", Activation::Relu)
        .layer("pool", MaxPool2dConfig::new([2, 2]))
        .layer("conv2", conv(16))
        .layer("relu2", Activation::Relu)
        .layer("gap", GlobalPoolConfig::new(PoolKind::Avg))
        .layer("flat", FlattenConfig {})
        .layer("fc", LinearConfig::lazy(2))
}

/// The model trained on 400 images, with the test images and their squares.
fn trained() -> (
    Model,
    Dataset,
    Vec<[usize; 2]>,
    convnet::data::Normalization,
) {
    let (train, _) = squares(400, 1);
    let (test, corners) = squares(10, 2);
    let data = DataSplit { train, test };
    let config = TrainConfig {
        epochs: 6,
        batch_size: 32,
        optimizer: OptimizerConfig::adamw(1e-2),
        schedule: ScheduleConfig::one_cycle(1e-2),
        loss: LossKind::CrossEntropy {
            label_smoothing: 0.0,
        },
        augment: Augment {
            hflip: false,
            crop_padding: 0,
        },
        seed: 7,
    };
    let model = Model::from_spec(&spec(), 7).unwrap();
    let mut trainer = Trainer::new(model, config, &data).unwrap();
    trainer.run(&data, &mut NoHooks).unwrap();
    let acc = trainer.state.history.last().unwrap().test_accuracy;
    assert!(
        acc >= 0.9,
        "the model did not learn the task: test accuracy {acc}"
    );
    let norm = trainer.normalization.clone();
    (trainer.model, data.test, corners, norm)
}

fn input(set: &Dataset, i: usize, norm: &convnet::data::Normalization) -> Tensor {
    let mut x = vec![0.0; SIDE * SIDE];
    norm.apply(set.image(i), &mut x);
    Tensor::new([1, 1, SIDE, SIDE], x).unwrap()
}

#[test]
fn gradcam_peaks_in_the_half_with_the_square() {
    let (mut model, test, corners, norm) = trained();
    let layer = last_conv_layer(&model).unwrap();
    assert_eq!(model.nodes()[layer].name, "conv2");
    for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
        let mut right_half = 0;
        for (i, corner) in corners.iter().enumerate() {
            let x = input(&test, i, &norm);
            let scores = inspect::scores(&mut model, &x).unwrap();
            let predicted = inspect::top_k(&scores, 1)[0];
            let e = explain(&mut model, &x, predicted, method, None).unwrap();
            let peak = e
                .map
                .data()
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            let peak_x = peak % SIDE;
            let square_half = corner[1] / (SIDE / 2);
            if peak_x / (SIDE / 2) == square_half {
                right_half += 1;
            }
        }
        assert!(
            right_half >= 9,
            "{method:?}: the peak lies in the square's half for {right_half} of 10 images"
        );
    }
}

#[test]
fn activation_maximization_raises_the_channel_tenfold_and_stays_an_image() {
    let mut model = reference_model();
    let norm = convnet::data::Normalization {
        mean: vec![0.2860],
        std: vec![0.3530],
    };
    let layer = model.node_index("features.12").unwrap();
    let steps = 96;
    let quick = |param| MaximizeConfig {
        steps,
        parameterization: param,
        ..MaximizeConfig::default()
    };
    // The objective on the default start (mean pixel plus noise), without optimizing.
    let zero_steps = MaximizeConfig {
        lr: 1e-9,
        steps: 1,
        ..MaximizeConfig::default()
    };
    let channels = model.nodes()[layer].output_shape[0];
    let mut start = Vec::new();
    for c in 0..channels {
        start.push(
            maximize(&mut model, &norm, layer, c, &zero_steps)
                .unwrap()
                .start_activation,
        );
    }
    // A fixed rule picks the channels: the three weakest that the start activates at all, and
    // the first one it does not activate (a dead start, which the ascent must still revive).
    let mut alive: Vec<usize> = (0..channels).filter(|&c| start[c] > 1e-3).collect();
    alive.sort_by(|&a, &b| start[a].total_cmp(&start[b]));
    let dead = (0..channels).find(|&c| start[c] == 0.0);
    assert!(alive.len() >= 3, "start activations {start:?}");
    for param in [Parameterization::Pixel, Parameterization::Fourier] {
        for &channel in &alive[..3] {
            let r = maximize(&mut model, &norm, layer, channel, &quick(param)).unwrap();
            assert_eq!(r.start_activation, start[channel]);
            assert!(
                r.activation >= 10.0 * r.start_activation,
                "{param:?}: channel {channel} went from {} to {}",
                r.start_activation,
                r.activation
            );
            assert_eq!(r.image.dims(), [1, 28, 28]);
            assert!(
                r.image
                    .data()
                    .iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            );
            assert_eq!(r.history.len(), steps);
        }
    }
    if let Some(channel) = dead {
        let r = maximize(
            &mut model,
            &norm,
            layer,
            channel,
            &quick(Parameterization::Pixel),
        )
        .unwrap();
        assert!(
            r.activation > 0.1,
            "dead channel {channel} stayed at {}",
            r.activation
        );
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let mut model = Model::from_spec(&spec(), 0).unwrap();
    let x = Tensor::zeros([1, 1, SIDE, SIDE]).unwrap();
    let err = explain(&mut model, &x, 2, CamMethod::GradCam, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class 2 is out of range") && err.contains("2 classes"),
        "{err}"
    );
    let err = model.node_index("conv9").unwrap_err().to_string();
    assert!(
        err.contains("conv9") && err.contains("conv1, relu1, pool, conv2"),
        "{err}"
    );
    let fc = model.node_index("fc").unwrap();
    let err = explain(&mut model, &x, 0, CamMethod::GradCam, Some(fc))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no spatial axes"), "{err}");
    let wrong = Tensor::zeros([1, 1, 28, 28]).unwrap();
    let err = explain(&mut model, &wrong, 0, CamMethod::GradCam, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 16, 16]") || err.contains("1, 16, 16"),
        "{err}"
    );
    let norm = convnet::data::Normalization::identity(1);
    let conv2 = model.node_index("conv2").unwrap();
    let err = maximize(&mut model, &norm, conv2, 16, &MaximizeConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("channel 16 is out of range") && err.contains("16 channels"),
        "{err}"
    );
    let relu1 = model.node_index("relu1").unwrap();
    let err = inspect::kernels(&model, relu1).unwrap_err().to_string();
    assert!(err.contains("conv1, conv2"), "{err}");
    // Nothing is left behind by a failed request: a forward pass still works.
    assert!(
        model
            .forward(&x, convnet::layers::ForwardCtx::eval(false))
            .is_ok()
    );
}
