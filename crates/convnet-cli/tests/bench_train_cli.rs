//! `convnet bench --train`: whole training steps of a model file, timed and reported; its
//! bounds and its comparison's errors.

mod common;

use std::time::Duration;

use common::*;

/// An error is said well before any training step could run.
const PROMPTLY: Duration = Duration::from_secs(20);

#[test]
fn bench_train_reports_images_per_second_and_peak_rss() {
    let out = ok(run_within(
        convnet()
            .args(["--threads", "2", "bench", "--train"])
            .arg(repo("models/fashion_cnn.toml"))
            .args(["--batch", "4", "--steps", "2"]),
        Duration::from_secs(60),
    ));
    assert!(out.contains("batch 4, 2 step(s)"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("convnet:"))
        .unwrap_or_else(|| panic!("no result line: {out}"));
    let rate: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no images/s in {line}"));
    assert!(rate > 0.0 && rate.is_finite(), "{line}");
    assert!(line.contains("images/s  peak RSS "), "{line}");
    assert!(line.ends_with(" MB"), "{line}");
}

#[test]
fn bench_train_batch_beyond_the_memory_bound_is_refused_before_allocating() {
    let err = error(run_within(
        convnet()
            .args(["bench", "--train"])
            .arg(repo("models/resnet18.toml"))
            .args(["--batch", "65536"]),
        PROMPTLY,
    ));
    let line = said_once(&err);
    assert!(line.contains("--batch 65536 with "), "{line}");
    assert!(line.contains("give a smaller --batch"), "{line}");
}

#[test]
fn bench_train_sizes_are_bounded_and_need_train() {
    let err = fails(run_within(
        convnet().args(["bench", "--train", "m.toml", "--steps", "0"]),
        PROMPTLY,
    ));
    assert!(err.contains("--steps"), "{err}");
    let err = fails(run_within(
        convnet().args(["bench", "--batch", "8"]),
        PROMPTLY,
    ));
    assert!(err.contains("--train"), "{err}");
}

#[test]
fn bench_train_with_a_missing_python_names_it() {
    let err = error(run_within(
        convnet()
            .current_dir(repo(""))
            .args(["bench", "--train"])
            .arg(repo("models/fashion_cnn.toml"))
            .args(["--batch", "2", "--steps", "1", "--compare-torch"])
            .arg("/nonexistent/python"),
        Duration::from_secs(60),
    ));
    let line = said_once(&err);
    assert!(
        line.contains("--compare-torch: cannot run /nonexistent/python"),
        "{line}"
    );
}
