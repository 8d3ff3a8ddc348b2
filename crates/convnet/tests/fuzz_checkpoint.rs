//! Fuzz targets: the files of a checkpoint folder as a resume reads them. Seeds are the
//! files of a checkpoint that a short training run saves here; each input is written in place
//! of its file, and the whole folder is loaded, checked and handed to `Trainer::resume` (which
//! checks the state and the optimizer's). See `common/fuzz.rs` for the knobs.

mod common;

use std::path::Path;

use common::{fuzz, tiny};
use convnet::checkpoint::{DataOrigin, RunFolder};
use convnet::data::DataSplit;
use convnet::train::{TrainConfig, Trainer};

/// A run folder whose `last` checkpoint is at the end of a one-epoch run; in memory where
/// the system offers it (thousands of rewrites of a file on disk wait on the disk).
fn saved_run(name: &str) -> (RunFolder, DataSplit) {
    let shm = Path::new("/dev/shm");
    let base = match shm.is_dir() {
        true => shm.to_path_buf(),
        false => std::env::temp_dir(),
    };
    // Removed by the test at its end.
    let dir = base.join(format!("convnet-fuzz-{name}-{}", std::process::id()));
    let run = RunFolder::create(&dir.join("run"), "").unwrap();
    let data = tiny::data();
    let config = TrainConfig {
        epochs: 1,
        ..tiny::config()
    };
    let mut trainer = Trainer::new(tiny::model(3), config, &data).unwrap();
    trainer.run(&data, &mut convnet::train::NoHooks).unwrap();
    let origin = DataOrigin {
        folder: None,
        source: data.train.source.clone(),
        resize: None,
    };
    run.end_epoch(&trainer, &origin).unwrap();
    (run, data)
}

/// Write `bytes` as `file` of the run's `last`, then load it as a resume does; whether it
/// was accepted.
fn resume_with(run: &RunFolder, data: &DataSplit, file: &str, bytes: &[u8]) -> bool {
    std::fs::write(run.path().join("last").join(file), bytes).unwrap();
    run.load_last()
        .and_then(|saved| saved.into_trainer(data))
        .is_ok()
}

/// Fuzz `file` of a saved checkpoint, seeded with it and `others` (for splices).
fn fuzz_file(target: &str, file: &str, others: &[&str], iters: u64) {
    let (run, data) = saved_run(target);
    let last = run.path().join("last");
    let read = |f: &str| std::fs::read(last.join(f)).unwrap();
    let original = read(file);
    let mut seeds = vec![original.clone()];
    seeds.extend(others.iter().map(|f| read(f)));
    let stats = fuzz::run(target, iters, &seeds, |bytes| {
        resume_with(&run, &data, file, bytes)
    });
    assert!(
        stats.accepted > 0,
        "no input was accepted: the seeds are not valid files"
    );
    // The real file still loads (the target did not pass by refusing everything).
    assert!(resume_with(&run, &data, file, &original));
    let root = run.path().parent().map(Path::to_path_buf);
    drop(run);
    if let Some(root) = root {
        let _ = std::fs::remove_dir_all(root);
    }
}

#[test]
fn weights_files_never_panic_when_mutated() {
    fuzz_file(
        "weights_safetensors",
        "weights.safetensors",
        &["optimizer.safetensors"],
        8_000,
    );
}

#[test]
fn optimizer_files_never_panic_when_mutated() {
    fuzz_file(
        "optimizer_safetensors",
        "optimizer.safetensors",
        &["weights.safetensors"],
        8_000,
    );
}

#[test]
fn checkpoint_descriptions_never_panic_when_mutated() {
    fuzz_file("checkpoint_json", "checkpoint.json", &[], 8_000);
}
