//! Checkpoints and run folders against faults and bad files. A process killed at any point of
//! a save leaves a run that, opened again, repairs and continues to exactly the run an
//! uninterrupted process makes. Weights, normalizations, class names, training states and
//! optimizer states that cannot be right are refused on load, naming the file and the tensor
//! or value; safetensors errors name the tensor. Runs are locked, never overwritten, and
//! trained only on finite weights and checked settings.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

mod common;
use common::test_dir::TestDir;
use common::tiny::{config, data, diverge, model, temp_dir};

use convnet::Model;
use convnet::checkpoint::{
    self, CheckpointMeta, DataOrigin, RunFolder, holds_run, read_safetensors,
};
use convnet::data::{DataSplit, Normalization};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{
    self, Control, EpochRecord, LossKind, StepProgress, TrainConfig, TrainHooks, Trainer,
};

fn origin() -> DataOrigin {
    DataOrigin {
        folder: None,
        source: "quadrants".into(),
        resize: None,
    }
}

/// Saves as `convnet train` does: `last` every `save_every` steps, and each epoch's end.
struct Saves<'a> {
    run: &'a RunFolder,
    save_every: usize,
}

impl TrainHooks for Saves<'_> {
    fn on_step(&mut self, t: &Trainer, _: &StepProgress) -> convnet::Result<Control> {
        if t.state.global_step.is_multiple_of(self.save_every) {
            self.run.save_last(t, &origin())?;
        }
        Ok(Control::Continue)
    }
    fn on_epoch(&mut self, t: &Trainer, _: &EpochRecord) -> convnet::Result<()> {
        self.run.end_epoch(t, &origin()).map(|_| ())
    }
}

/// Two epochs of six steps, `last` saved every four steps (mid-epoch and at an epoch's last
/// step too).
fn short_config() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        ..config()
    }
}

/// What a user does after a kill: continue the run in `dir` if it holds one (repaired
/// first), else start it anew; either way train to the end.
fn train_or_resume(dir: &Path) {
    let data = data();
    let (run, mut trainer) = if holds_run(dir) {
        let run = RunFolder::open(dir).unwrap();
        run.repair().unwrap();
        let saved = run.load_last().unwrap();
        if saved.is_finished() {
            return;
        }
        (run, saved.into_trainer(&data).unwrap())
    } else {
        let run = RunFolder::create(dir, "").unwrap();
        let trainer = Trainer::new(model(42), short_config(), &data).unwrap();
        (run, trainer)
    };
    let mut saves = Saves {
        run: &run,
        save_every: 4,
    };
    trainer.run(&data, &mut saves).unwrap();
}

/// Held while a child process is started, and by tests that close a run folder's lock and
/// take it again: a child started in between would hold a copy of the closed lock's file
/// descriptor (and so the lock) until it runs its program.
fn no_lock_changes() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const KILL_AT: &str = "CONVNET_TEST_KILL_AT";
const KILL_DIR: &str = "CONVNET_TEST_KILL_DIR";

/// In a child process: train a new run in `dir` and SIGKILL this process at the `k`-th
/// point of a save where a kill leaves the files in a distinct state.
fn train_and_kill_at(k: usize, dir: &Path) {
    let seen = Cell::new(0usize);
    checkpoint::set_crash_hook(Some(Box::new(move |_| {
        if seen.get() == k {
            // SAFETY: kill with this process's own pid; SIGKILL ends it at once.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        seen.set(seen.get() + 1);
    })));
    train_or_resume(dir);
}

/// A checkpoint's description with what timing changes (seconds, speeds) set to zero.
fn untimed_meta(dir: &Path) -> CheckpointMeta {
    let text = std::fs::read_to_string(dir.join("checkpoint.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut meta: CheckpointMeta = serde_json::from_str(&text).unwrap();
    if let Some(state) = &mut meta.training {
        state.epoch_seconds = 0.0;
        untime(&mut state.history);
    }
    meta
}

fn untime(history: &mut [EpochRecord]) {
    for r in history {
        r.seconds = 0.0;
        r.images_per_second = 0.0;
    }
}

/// `dir` holds the same run as `reference`: checkpoints equal byte for byte (their
/// descriptions up to timing), the same metrics, a picture of them, nothing left over.
fn assert_same_run(reference: &Path, dir: &Path, context: &str) {
    for ck in ["last", "best"] {
        for file in ["model.toml", "weights.safetensors", "optimizer.safetensors"] {
            let read = |d: &Path| {
                std::fs::read(d.join(ck).join(file))
                    .unwrap_or_else(|e| panic!("{context}: {ck}/{file}: {e}"))
            };
            assert!(
                read(reference) == read(dir),
                "{context}: {ck}/{file} differs"
            );
        }
        assert_eq!(
            untimed_meta(&reference.join(ck)),
            untimed_meta(&dir.join(ck)),
            "{context}: {ck}/checkpoint.json"
        );
    }
    let metrics = |d: &Path| {
        let path = d.join("metrics.csv");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{context}: metrics.csv: {e}"));
        let mut rows = train::parse_metrics_csv(&text, &path).unwrap();
        untime(&mut rows);
        rows
    };
    assert_eq!(metrics(reference), metrics(dir), "{context}: metrics.csv");
    assert!(dir.join("curves.png").is_file(), "{context}: curves.png");
    let hidden: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    assert!(hidden.is_empty(), "{context}: left over: {hidden:?}");
}

#[test]
fn a_kill_at_any_point_of_a_save_resumes_to_the_uninterrupted_run() {
    if let (Ok(k), Ok(dir)) = (std::env::var(KILL_AT), std::env::var(KILL_DIR)) {
        train_and_kill_at(k.parse().unwrap(), Path::new(&dir));
        panic!("the process was to be killed at point {k}");
    }
    // The uninterrupted run, and every point of its saves where a kill would leave the
    // files in a distinct state.
    let root = temp_dir("kill");
    let reference = root.join("reference");
    let points = Rc::new(RefCell::new(Vec::<String>::new()));
    let record = points.clone();
    checkpoint::set_crash_hook(Some(Box::new(move |p| {
        record.borrow_mut().push(p.to_string())
    })));
    train_or_resume(&reference);
    checkpoint::set_crash_hook(None);
    let points = points.borrow().clone();
    eprintln!("{} points where a kill leaves distinct files", points.len());
    // Saves at steps 4, 8 and 12 and two epoch ends (last, best, metrics.csv, curves.png).
    assert!(points.len() >= 20, "{points:?}");
    assert!(points.contains(&"best: previous moved aside".to_string()));
    assert!(points.contains(&"metrics.csv: temporary written".to_string()));

    for (k, point) in points.iter().enumerate() {
        let dir = root.join(format!("killed-{k}"));
        let child = {
            let _spawning = no_lock_changes();
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_kill_at_any_point_of_a_save_resumes_to_the_uninterrupted_run",
                ])
                .env(KILL_AT, k.to_string())
                .env(KILL_DIR, &dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let status = child.wait_with_output().unwrap().status;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "killed at {point}: {status}"
        );
        train_or_resume(&dir);
        assert_same_run(&reference, &dir, &format!("killed at {k} ({point})"));
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_finished_run_whose_best_and_metrics_were_not_written_is_repaired() {
    let _reopening = no_lock_changes();
    let dir = temp_dir("repair-finished");
    train_or_resume(&dir);
    // A kill right after the last epoch's `last` was saved leaves the previous epoch's
    // metrics and (when the last epoch is the best) the previous best.
    let last = checkpoint::load(&dir.join("last")).unwrap();
    let state = last.meta.training.clone().unwrap();
    std::fs::remove_dir_all(dir.join("best")).unwrap();
    std::fs::write(dir.join("metrics.csv"), "epoch\n").unwrap();
    let run = RunFolder::open(&dir).unwrap();
    let repair = run.repair().unwrap();
    assert!(repair.metrics, "{repair:?}");
    assert_eq!(repair.best, state.best_epoch() == Some(2), "{repair:?}");
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv, train::metrics_csv(&state.history));
    assert!(run.load_last().unwrap().is_finished());
}

/// A checkpoint of a few training steps of the tiny model, as a run saves it.
fn saved_checkpoint(name: &str) -> (TestDir, RunFolder) {
    let dir = temp_dir(name);
    let run = RunFolder::create(&dir.join("run"), "").unwrap();
    let data = data();
    let mut trainer = Trainer::new(model(7), short_config(), &data).unwrap();
    let mut saves = Saves {
        run: &run,
        save_every: 3,
    };
    trainer.run(&data, &mut saves).unwrap();
    (dir, run)
}

/// Rewrite a checkpoint's `checkpoint.json` through its JSON.
fn edit_meta(ck: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = ck.join("checkpoint.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

fn load_error(ck: &Path) -> String {
    checkpoint::load(ck).unwrap_err().to_string()
}

#[test]
fn a_normalization_that_does_not_fit_the_model_is_refused_on_load() {
    let (_dir, run) = saved_checkpoint("bad-normalization");
    let ck = run.path().join("best");
    let original = std::fs::read(ck.join("checkpoint.json")).unwrap();
    let cases: [(serde_json::Value, &str); 4] = [
        (
            serde_json::json!({"mean": [0.1, 0.2, 0.3], "std": [1.0, 1.0, 1.0]}),
            "mean [0.1, 0.2, 0.3] and std [1.0, 1.0, 1.0], one value per channel, but the images have 1 channel",
        ),
        (
            serde_json::json!({"mean": [0.5], "std": [0.0]}),
            "std of channel 0 is 0; it divides, so it must be positive",
        ),
        (
            serde_json::json!({"mean": [0.5], "std": [-2.0]}),
            "std of channel 0 is -2",
        ),
        (
            serde_json::json!({"mean": [1e39], "std": [1.0]}),
            "mean of channel 0 is inf",
        ),
    ];
    for (norm, expected) in cases {
        edit_meta(&ck, |v| v["normalization"] = norm);
        let err = load_error(&ck);
        assert!(
            err.contains("best/checkpoint.json") && err.contains(expected),
            "{err}"
        );
        std::fs::write(ck.join("checkpoint.json"), &original).unwrap();
    }
    checkpoint::load(&ck).unwrap();
    // A library caller that builds its own normalization is refused too, not panicked at.
    let data = data();
    let bad = Normalization {
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
    };
    let err = Trainer::resume(
        model(0),
        config(),
        &data,
        bad.clone(),
        Default::default(),
        &Default::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("the images have 1 channel"),
        "{err}"
    );
    let mut model = model(0);
    let err = train::evaluate(&mut model, &data.test, &bad, 16, LossKind::Mse).unwrap_err();
    assert!(
        err.to_string().contains("the images have 1 channel"),
        "{err}"
    );
}

/// Write `model`'s weights as they are (unchecked) into the checkpoint `ck`.
fn write_weights(ck: &Path, model: &Model) {
    std::fs::write(
        ck.join("weights.safetensors"),
        checkpoint::weights_bytes(model).unwrap(),
    )
    .unwrap();
}

#[test]
fn nan_weights_and_negative_running_variances_are_refused_on_load_naming_the_tensor() {
    let (dir, run) = saved_checkpoint("bad-weights");
    let ck = run.path().join("last");
    let good = checkpoint::load(&ck).unwrap().model;

    let mut model = good.clone();
    for (name, p) in model.params_mut() {
        if name == "fc.weight" {
            p.value.data_mut()[5] = f32::NAN;
        }
    }
    write_weights(&ck, &model);
    let err = load_error(&ck);
    assert!(
        err.contains("last/weights.safetensors: fc.weight holds NaN (at index 5 of 144)"),
        "{err}"
    );

    let mut model = good.clone();
    for (name, b) in model.buffers_mut() {
        if let (true, convnet::layers::BufferMut::Tensor(t)) = (name == "bn.running_var", b) {
            t.data_mut()[2] = -0.5;
        }
    }
    write_weights(&ck, &model);
    let err = load_error(&ck);
    assert!(
        err.contains("bn.running_var holds a negative variance (-0.5 at index 2)"),
        "{err}"
    );
    let mut model = good.clone();
    for (name, b) in model.buffers_mut() {
        if let (true, convnet::layers::BufferMut::Tensor(t)) = (name == "bn.running_mean", b) {
            t.data_mut()[0] = f32::INFINITY;
        }
    }
    write_weights(&ck, &model);
    assert!(load_error(&ck).contains("bn.running_mean holds inf"));

    // Nor are such weights ever saved.
    let err = checkpoint::save(&dir.join("nan"), &model, &meta_of(&good), &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("not saved: bn.running_mean holds inf"),
        "{err}"
    );
    assert!(!dir.join("nan").exists());
}

fn meta_of(model: &Model) -> CheckpointMeta {
    CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes: (0..model.output_shape()[0])
            .map(|i| i.to_string())
            .collect(),
        normalization: Normalization::identity(1),
        training: None,
        config: None,
        data: None,
        preprocessing: None,
    }
}

#[test]
fn a_step_that_makes_the_weights_non_finite_is_a_divergence_and_is_not_counted() {
    // Weight decay makes the update about lr * wd * weight: infinite after one step.
    let (trainer, err) = diverge(OptimizerConfig::sgd(1e30, 0.0).with_weight_decay(1e30));
    let text = err.to_string();
    assert!(
        text.contains("after epoch 1, step 1,") && text.contains("holds"),
        "{text}"
    );
    assert_eq!(trainer.state.global_step, 0);
}

#[test]
fn a_run_folder_is_locked_by_the_process_training_it() {
    let _reopening = no_lock_changes();
    let dir = temp_dir("lock");
    let run = RunFolder::create(&dir.join("run"), "").unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(
        std::fs::read_to_string(dir.join("run/.lock"))
            .unwrap()
            .trim(),
        pid
    );
    let err = RunFolder::create(&dir.join("run"), "")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("is in use: process {pid} is training this run")),
        "{err}"
    );
    // A resume of a run whose first save is still to come names the holder too, not a
    // missing run.
    let err = RunFolder::open(&dir.join("run")).unwrap_err().to_string();
    assert!(
        err.contains(&format!("is in use: process {pid} is training this run")),
        "{err}"
    );
    // Numbered runs pass over a folder in use, even an empty one.
    let numbered = RunFolder::create_numbered(&dir.join("run")).unwrap();
    assert_eq!(numbered.path(), dir.join("run-2"));
    drop(run);
    let again = RunFolder::create(&dir.join("run"), "").unwrap();
    drop(again);
}

#[test]
fn a_new_run_never_replaces_a_run_and_numbered_runs_count_up() {
    let _reopening = no_lock_changes();
    let (dir, run) = saved_checkpoint("existing");
    let path = run.path().to_path_buf();
    drop(run);
    let err = RunFolder::create(&path, "continue it, or choose another folder")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds a run already: continue it, or choose another folder"),
        "{err}"
    );
    let second = RunFolder::create_numbered(&path).unwrap();
    assert_eq!(second.path(), dir.join("run-2"));
    // Once run-2 holds a run, the next is run-3.
    std::fs::write(second.path().join("metrics.csv"), "").unwrap();
    drop(second);
    assert_eq!(
        RunFolder::create_numbered(&path).unwrap().path(),
        dir.join("run-3")
    );
    let err = RunFolder::open(&dir.join("run-4")).unwrap_err().to_string();
    assert!(err.contains("holds no run to continue"), "{err}");
}

#[test]
fn a_resume_without_optimizer_state_or_data_origin_is_refused_naming_the_file() {
    let (_dir, run) = saved_checkpoint("resume-missing");
    let last = run.path().join("last");
    let optimizer = std::fs::read(last.join("optimizer.safetensors")).unwrap();
    std::fs::remove_file(last.join("optimizer.safetensors")).unwrap();
    let err = run.load_last().unwrap_err().to_string();
    assert!(
        err.contains("last/optimizer.safetensors: is missing") && err.contains("optimizer's state"),
        "{err}"
    );
    // An optimizer file without the state of every parameter.
    let saved = {
        std::fs::write(last.join("optimizer.safetensors"), &optimizer).unwrap();
        run.load_last().unwrap()
    };
    let mut partial = saved.optimizer_state.clone();
    partial.retain(|k, _| !k.starts_with("fc.weight"));
    let data = data();
    let resume = |state: &std::collections::BTreeMap<String, convnet::core::Tensor>| {
        Trainer::resume(
            saved.model.clone(),
            saved.config.clone(),
            &data,
            saved.meta.normalization.clone(),
            saved.state.clone(),
            state,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let err = resume(&partial);
    assert!(
        err.contains("nothing for fc.weight after 12 steps"),
        "{err}"
    );
    let mut wrong_step = saved.optimizer_state.clone();
    wrong_step.insert(
        "conv.weight.step".into(),
        convnet::core::Tensor::new([1], vec![3.0]).unwrap(),
    );
    let err = resume(&wrong_step);
    assert!(
        err.contains("conv.weight.step is 3, but the run has taken 12 steps"),
        "{err}"
    );
    // A description without its data's origin.
    edit_meta(&last, |v| {
        v.as_object_mut().unwrap().remove("data");
    });
    let err = run.load_last().unwrap_err().to_string();
    assert!(
        err.contains("last/checkpoint.json: has no \"data\" field"),
        "{err}"
    );
}

#[test]
fn a_training_state_that_does_not_fit_its_run_is_refused() {
    let (dir, run) = saved_checkpoint("bad-state");
    let last = run.path().join("last");
    edit_meta(&last, |v| {
        v["training"]["history"].as_array_mut().unwrap().pop();
    });
    let err = load_error(&last);
    assert!(
        err.contains("last/checkpoint.json")
            && err.contains("has finished 2 epochs but holds 1 records"),
        "{err}"
    );
    // A position that is not one of the data's (saved on other data, or edited).
    let saved = checkpoint::load(&dir.join("run/best")).unwrap();
    let mut state = saved.meta.training.clone().unwrap();
    state.global_step += 1;
    let data = data();
    let err = Trainer::resume(
        saved.model,
        saved.meta.config.unwrap(),
        &data,
        saved.meta.normalization,
        state,
        &saved.optimizer_state,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("is not a position in a run of 6 steps per epoch"),
        "{err}"
    );
}

#[test]
fn class_names_over_the_bound_and_oversized_descriptions_are_refused_on_load() {
    let (_dir, run) = saved_checkpoint("bad-classes");
    let ck = run.path().join("best");
    let original = std::fs::read(ck.join("checkpoint.json")).unwrap();
    edit_meta(&ck, |v| v["classes"][1] = "x".repeat(100_000).into());
    let err = load_error(&ck);
    assert!(
        err.contains("best/checkpoint.json: class 1: a name of 100000 characters"),
        "{err}"
    );
    edit_meta(&ck, |v| {
        v["classes"] = serde_json::Value::Array(vec!["a".into(); checkpoint::MAX_CLASSES + 1])
    });
    let err = load_error(&ck);
    assert!(err.contains("more than 131072 classes"), "{err}");
    std::fs::write(ck.join("checkpoint.json"), &original).unwrap();
    edit_meta(&ck, |v| {
        v["classes"].as_array_mut().unwrap().pop();
    });
    let err = load_error(&ck);
    assert!(
        err.contains("3 classes are listed, but the model outputs [4] per image"),
        "{err}"
    );
    // A description far larger than a run can write is not read whole.
    let mut huge = original.clone();
    huge.resize(checkpoint::MAX_META_BYTES as usize + 10, b' ');
    std::fs::write(ck.join("checkpoint.json"), huge).unwrap();
    let err = load_error(&ck);
    assert!(err.contains("larger than the"), "{err}");
}

#[test]
fn empty_splits_are_refused_by_training_and_evaluation() {
    let mut split = data();
    split.test.labels.clear();
    split.test.pixels.clear();
    let err = Trainer::new(model(0), config(), &split)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("quadrants has no images to test on"), "{err}");
    let mut model = model(0);
    let norm = Normalization::identity(1);
    let err = train::evaluate(&mut model, &split.test, &norm, 16, LossKind::Mse).unwrap_err();
    assert!(
        err.to_string().contains("has no images to evaluate on"),
        "{err}"
    );
    let empty_train = DataSplit {
        train: split.test.clone(),
        test: data().test,
    };
    let err = Trainer::new(common::tiny::model(0), config(), &empty_train)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("has no images to train on"), "{err}");
}

#[test]
fn settings_that_are_not_finite_or_out_of_range_are_refused_by_name() {
    let with = |edit: &dyn Fn(&mut TrainConfig)| {
        let mut c = config();
        edit(&mut c);
        c.check_for_images([1, 8, 8])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    fn step(gamma: f32) -> ScheduleConfig {
        ScheduleConfig::Step {
            step_epochs: 1,
            gamma,
        }
    }
    type Edit = fn(&mut TrainConfig);
    let cases: [(Edit, &str); 10] = [
        (
            (|c| c.schedule = step(f32::NAN)),
            "invalid gamma: must be finite and positive, got NaN",
        ),
        (
            (|c| c.schedule = step(f32::INFINITY)),
            "invalid gamma: must be finite and positive, got inf",
        ),
        (
            (|c| c.optimizer = OptimizerConfig::adamw(f32::INFINITY)),
            "invalid lr",
        ),
        (
            (|c| c.optimizer = OptimizerConfig::sgd(0.1, 1.5)),
            "invalid momentum: must be in [0, 1), got 1.5",
        ),
        (
            (|c| c.optimizer = OptimizerConfig::sgd(0.1, f32::NAN)),
            "invalid momentum",
        ),
        (
            (|c| c.optimizer = c.optimizer.with_weight_decay(f32::NEG_INFINITY)),
            "invalid weight_decay",
        ),
        (
            (|c| {
                c.loss = LossKind::CrossEntropy {
                    label_smoothing: f32::NAN,
                }
            }),
            "invalid label_smoothing",
        ),
        (
            (|c| c.epochs = usize::MAX),
            "invalid epochs: must be from 1 to 10000",
        ),
        (
            (|c| c.batch_size = usize::MAX),
            "invalid batch_size: must be from 1 to 1048576",
        ),
        (
            (|c| c.augment.crop_padding = 1_000_000),
            "invalid augmentation: crop padding 1000000 is not smaller than the 8x8 (HxW) images: a crop could hold padding only; give a padding from 0 to 7",
        ),
    ];
    for (edit, expected) in cases {
        let err = with(&edit);
        assert!(err.contains(expected), "{expected}: {err}");
    }
    assert_eq!(with(&|_| {}), "");
}

#[test]
fn stale_temporary_metrics_of_dead_processes_are_removed() {
    let dir = temp_dir("stale-metrics");
    let run = RunFolder::create(&dir.join("run"), "").unwrap();
    // Left by a process that no longer runs (pids are below 2^22 on Linux), and by one that
    // runs (this one's parent), which may be in the middle of its write.
    let dead = run.path().join(".metrics.csv.tmp4194304");
    let alive = run.path().join(format!(
        ".metrics.csv.tmp{}",
        std::os::unix::process::parent_id()
    ));
    for f in [&dead, &alive] {
        std::fs::write(f, "partial").unwrap();
    }
    let data = data();
    let mut trainer = Trainer::new(
        model(0),
        TrainConfig {
            epochs: 1,
            ..config()
        },
        &data,
    )
    .unwrap();
    trainer
        .run(
            &data,
            &mut Saves {
                run: &run,
                save_every: 100,
            },
        )
        .unwrap();
    assert!(!dead.exists());
    assert!(alive.exists());
}

/// A safetensors file: the header's length, the header, `data` bytes.
fn safetensors_file(dir: &Path, header: &str, data: usize) -> PathBuf {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data, 0);
    let path = dir.join("w.safetensors");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn safetensors_header_and_offset_errors_name_the_tensor() {
    let dir = temp_dir("safetensors-errors");
    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
            4,
            "tensor a: data_offsets [0, 4] do not fit its shape [2] of F32 (8 bytes)",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            12,
            "tensor b starts at byte 8 of the data, but tensor a ends at byte 4",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            "tensor b starts at byte 4 of the data, inside tensor a",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            4,
            "tensor a ends at byte 8 of the data, but the file holds only 4 bytes",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
            8,
            "holds 8 bytes of data but its tensors end at byte 4 (after tensor a)",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
            4,
            "tensor a: shape [4294967296, 4294967296] is too large",
        ),
        (
            r#"{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#,
            2,
            "tensor a has dtype BF16; float32, float64 or int64 expected",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}}"#,
            4,
            "tensor a: a shape of more than 8 dimensions",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
            "tensor a is listed twice",
        ),
    ];
    for (header, data, expected) in cases {
        let path = safetensors_file(&dir, header, data);
        let err = read_safetensors(&path).unwrap_err().to_string();
        assert!(
            err.contains("w.safetensors") && err.contains(expected),
            "{header}: {err}"
        );
    }
    // A header length beyond the file is refused before anything is allocated from it.
    let path = dir.join("w.safetensors");
    let mut bytes = 1_000_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&path, bytes).unwrap();
    let err = read_safetensors(&path).unwrap_err().to_string();
    assert!(
        err.contains("the header is said to be 1000000000 bytes long, but the file has 2"),
        "{err}"
    );
}

#[test]
fn a_run_folder_loads_as_its_best_checkpoint() {
    let (dir, run) = saved_checkpoint("run-as-checkpoint");
    let ck = checkpoint::load(run.path()).unwrap();
    assert_eq!(ck.dir, run.path().join("best"));
    // A run with no finished epoch has no best: the error says where its checkpoint is.
    std::fs::remove_dir_all(run.path().join("best")).unwrap();
    let err = load_error(run.path());
    assert!(
        err.contains("a run folder with no best/ yet") && err.contains("run/last"),
        "{err}"
    );
    // Neither a checkpoint nor a run: the error says what each holds.
    let err = load_error(&dir);
    assert!(
        err.contains("not a checkpoint: a checkpoint folder holds model.toml, weights.safetensors and checkpoint.json, a run folder (what train writes) holds best/ and last/"),
        "{err}"
    );
}
