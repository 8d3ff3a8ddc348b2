//! Two training steps of a small model (conv, batch norm, PReLU, residual add, max pooling,
//! dropout off, linear) update every parameter and batch-norm statistic as PyTorch does, for
//! SGD with momentum and weight decay and for AdamW, within 1e-5 (relative above 1).
//! Fixture: tools/gen_train_fixtures.py.

use std::collections::BTreeMap;
use std::path::Path;

use convnet::checkpoint::read_safetensors;
use convnet::layers::{BufferMut, ForwardCtx};
use convnet::optim::{Optimizer, OptimizerConfig};
use convnet::{Model, ModelSpec};
use convnet_core::{Tensor, cross_entropy};
use safetensors::Dtype;

const TOL: f32 = 1e-5;

fn fixtures() -> (ModelSpec, BTreeMap<String, (Tensor, Dtype)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let spec = ModelSpec::load(&dir.join("train_step_model.toml")).unwrap();
    (
        spec,
        read_safetensors(&dir.join("train_step.safetensors")).unwrap(),
    )
}

fn set_state(model: &mut Model, file: &BTreeMap<String, (Tensor, Dtype)>, prefix: &str) {
    for (name, p) in model.params_mut() {
        p.value = file[&format!("{prefix}.{name}")].0.clone();
    }
    for (name, b) in model.buffers_mut() {
        let t = &file[&format!("{prefix}.{name}")].0;
        match b {
            BufferMut::Tensor(dst) => *dst = t.clone(),
            BufferMut::Count(c) => *c = t.data()[0] as u64,
        }
    }
}

/// Every parameter and buffer of `model` against the fixture's `prefix.*`; returns the worst
/// error and where.
fn worst_error(
    model: &Model,
    file: &BTreeMap<String, (Tensor, Dtype)>,
    prefix: &str,
) -> (f32, String) {
    let mut worst = (0.0f32, String::new());
    let mut compare = |name: String, got: &[f32]| {
        let want = &file[&format!("{prefix}.{name}")].0;
        assert_eq!(got.len(), want.numel(), "{name}");
        for (i, (g, w)) in got.iter().zip(want.data()).enumerate() {
            let err = (g - w).abs() / w.abs().max(1.0);
            if err > worst.0 || err.is_nan() {
                worst = (err, format!("{name}[{i}]: {g} vs PyTorch {w}"));
            }
        }
    };
    for (name, p) in model.params() {
        compare(name, p.value.data());
    }
    for (name, b) in model.buffers() {
        match b {
            convnet::layers::Buffer::Tensor(t) => compare(name, t.data()),
            convnet::layers::Buffer::Count(c) => compare(name, &[c as f32]),
        }
    }
    worst
}

fn check(optimizer: &str, config: OptimizerConfig) {
    let (spec, file) = fixtures();
    let mut model = Model::from_spec(&spec, 0).unwrap();
    set_state(&mut model, &file, "initial");
    let x = file["input"].0.clone();
    let labels: Vec<usize> = file["labels"]
        .0
        .data()
        .iter()
        .map(|&v| v as usize)
        .collect();
    let mut opt = Optimizer::new(config).unwrap();
    for step in 1..=2 {
        model.zero_grad();
        let logits = model.forward(&x, ForwardCtx::train(0, step)).unwrap();
        let loss = cross_entropy(&logits, &labels, 0.1).unwrap();
        model.backward(&loss.grad_input).unwrap();
        opt.step(&mut model, config.lr(), None);
        let (err, at) = worst_error(&model, &file, &format!("{optimizer}.{step}"));
        assert!(
            err <= TOL,
            "{optimizer} step {step}: worst error {err} at {at}"
        );
    }
}

#[test]
fn sgd_with_momentum_and_weight_decay_updates_as_pytorch() {
    check(
        "sgd",
        OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 1e-3,
            nesterov: false,
        },
    );
}

#[test]
fn adamw_updates_as_pytorch() {
    check(
        "adamw",
        OptimizerConfig::AdamW {
            lr: 1e-2,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.05,
        },
    );
}
