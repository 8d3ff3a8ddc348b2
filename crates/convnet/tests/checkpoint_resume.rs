//! Checkpoints hold everything a run needs: a run stopped mid-epoch and resumed from its
//! checkpoint ends with exactly the weights of the uninterrupted run. Weight files that do
//! not fit the model are refused with the reasons.

use std::path::PathBuf;

mod common;
use common::tiny::{config, data, diverge, model, temp_dir};

use convnet::checkpoint::{self, CheckpointMeta};
use convnet::layers::{BatchNormConfig, Conv2dConfig, FlattenConfig, LinearConfig};
use convnet::optim::OptimizerConfig;
use convnet::train::{Control, StepProgress, TrainHooks, Trainer};
use convnet::{Error, Model, ModelSpec};

fn meta(trainer: &Trainer) -> CheckpointMeta {
    CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes: trainer.classes.clone(),
        normalization: trainer.normalization.clone(),
        training: Some(trainer.state.clone()),
        config: Some(trainer.config().clone()),
        data: None,
        preprocessing: None,
    }
}

/// Stops at a given global step and saves a checkpoint there, as Ctrl-C does.
struct StopAt {
    step: usize,
    dir: PathBuf,
}

impl TrainHooks for StopAt {
    fn on_step(&mut self, trainer: &Trainer, _p: &StepProgress) -> convnet::Result<Control> {
        Ok(if trainer.state.global_step == self.step {
            Control::Stop
        } else {
            Control::Continue
        })
    }
    fn on_stop(&mut self, trainer: &Trainer) -> convnet::Result<()> {
        checkpoint::save(
            &self.dir,
            &trainer.model,
            &meta(trainer),
            &trainer.optimizer().state_tensors(),
        )
    }
}

fn weights(trainer: &Trainer) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = trainer
        .model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.data().to_vec()))
        .collect();
    for (name, b) in trainer.model.buffers() {
        if let convnet::layers::Buffer::Tensor(t) = b {
            out.push((name, t.data().to_vec()));
        }
    }
    out
}

#[test]
fn a_run_resumed_mid_epoch_ends_exactly_like_the_uninterrupted_run() {
    let data = data();
    let mut whole = Trainer::new(model(42), config(), &data).unwrap();
    whole.run(&data, &mut convnet::train::NoHooks).unwrap();
    assert_eq!(whole.state.history.len(), 4);
    // It learned something (4 classes: chance is 25%).
    assert!(
        whole.state.history[3].test_accuracy > 0.8,
        "{:?}",
        whole.state.history
    );

    let root = temp_dir("resume");
    let dir = root.join("last");
    // 6 steps per epoch: stop in the middle of the second epoch.
    let mut first = Trainer::new(model(42), config(), &data).unwrap();
    let err = first
        .run(
            &data,
            &mut StopAt {
                step: 9,
                dir: dir.clone(),
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert_eq!((first.state.epoch, first.state.step_in_epoch), (1, 3));

    let ck = checkpoint::load(&dir).unwrap();
    let mut resumed = Trainer::resume(
        ck.model,
        ck.meta.config.clone().unwrap(),
        &data,
        ck.meta.normalization.clone(),
        ck.meta.training.clone().unwrap(),
        &ck.optimizer_state,
    )
    .unwrap();
    resumed.run(&data, &mut convnet::train::NoHooks).unwrap();
    assert_eq!(resumed.state.global_step, whole.state.global_step);
    assert_eq!(weights(&resumed), weights(&whole));
    assert_eq!(resumed.state.history, {
        // Timing differs; everything else must not.
        let mut h = whole.state.history.clone();
        for (a, b) in h.iter_mut().zip(&resumed.state.history) {
            a.seconds = b.seconds;
            a.images_per_second = b.images_per_second;
        }
        h
    });
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn checkpoints_round_trip_weights_buffers_and_optimizer_state() {
    let data = data();
    let mut trainer = Trainer::new(model(1), config(), &data).unwrap();
    let root = temp_dir("roundtrip");
    let dir = root.join("ck");
    trainer
        .run(
            &data,
            &mut StopAt {
                step: 4,
                dir: dir.clone(),
            },
        )
        .unwrap_err();
    let ck = checkpoint::load(&dir).unwrap();
    let saved: Vec<_> = ck
        .model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect();
    let live: Vec<_> = trainer
        .model
        .params()
        .into_iter()
        .map(|(n, p)| (n, p.value.clone()))
        .collect();
    assert_eq!(saved, live);
    let bn = |m: &convnet::Model| {
        m.buffers()
            .into_iter()
            .map(|(n, b)| format!("{n}={b:?}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(bn(&ck.model), bn(&trainer.model));
    assert!(
        bn(&ck.model)
            .iter()
            .any(|s| s.contains("num_batches_tracked=Count(4)"))
    );
    let opt: Vec<_> = trainer.optimizer().state_tensors();
    assert_eq!(opt.len(), ck.optimizer_state.len());
    for (name, t) in &opt {
        assert_eq!(&ck.optimizer_state[name], t, "{name}");
    }
    assert_eq!(ck.meta.training.unwrap().global_step, 4);
    // Saving again replaces the folder whole.
    checkpoint::save(&dir, &trainer.model, &meta(&trainer), &[]).unwrap();
    assert!(checkpoint::load(&dir).unwrap().optimizer_state.is_empty());
    let _ = std::fs::remove_dir_all(dir.parent().unwrap());
}

#[test]
fn weights_that_do_not_fit_the_model_are_refused_with_the_reasons() {
    let dir = temp_dir("mismatch");
    let model = model(0);
    let path = dir.join("weights.safetensors");
    std::fs::write(&path, checkpoint::weights_bytes(&model).unwrap()).unwrap();
    // A model with a wider conv: the shapes differ and bn has other sizes.
    let wider = ModelSpec::new([1, 8, 8])
        .layer("conv", Conv2dConfig::lazy(6, [3, 3]))
        .layer("bn", BatchNormConfig::lazy_2d())
        .layer("flat", FlattenConfig {})
        .layer("head", LinearConfig::lazy(4));
    let mut other = Model::from_spec(&wider, 0).unwrap();
    let err = checkpoint::load_weights(&mut other, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weights.safetensors: does not fit the model"),
        "{err}"
    );
    assert!(
        err.contains(
            "conv.weight has shape [4, 1, 3, 3] in the file but [6, 1, 3, 3] in the model"
        ),
        "{err}"
    );
    assert!(err.contains("missing head.weight"), "{err}");
    assert!(err.contains("unexpected fc.weight"), "{err}");
    // Not a safetensors file at all.
    std::fs::write(&path, b"garbage").unwrap();
    let err = checkpoint::load_weights(&mut other, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    // A checkpoint folder that is not there.
    let err = checkpoint::load(&dir.join("nope")).unwrap_err().to_string();
    assert!(err.contains("no such checkpoint folder"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_message() {
    let (_, err) = diverge(OptimizerConfig::sgd(1e30, 0.0));
    assert!(
        err.to_string().contains("try a lower learning rate"),
        "{err}"
    );
}
