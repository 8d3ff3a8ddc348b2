//! Bad data through the real binary: what once took gigabytes, hung, trained on nothing or
//! failed after an epoch is now refused where the data is opened, fast, naming the file; and
//! `--resize` (which the image-size error suggests) exists on train, eval and demo, recorded
//! with the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::{convnet, fails, ok, run, save_gray, temp_dir};

// The data tests' file makers, shared with the library's.
#[path = "../../convnet/tests/common/data_files.rs"]
mod data_files;
use data_files::{gzip_bomb, idx_images, idx_labels};

/// Errors found from a header come back this fast (the bugs took seconds to minutes).
const FAST: Duration = Duration::from_secs(2);

/// A one-layer model of 12x12 grayscale images into `{classes}` classes.
const TINY_MODEL: &str = r#"
[model]
input = [1, 12, 12]

[[layer]]
type = "flatten"

[[layer]]
name = "fc"
type = "linear"
out_features = {classes}
"#;

/// An IDX folder of 12x12 images: `train` and `test` labels.
fn idx_folder(dir: &Path, train: &[u8], test: &[u8]) -> PathBuf {
    let data = dir.join("idx");
    std::fs::create_dir_all(&data).unwrap();
    for (prefix, labels) in [("train", train), ("t10k", test)] {
        let n = labels.len();
        let pixels: Vec<u8> = (0..n * 144).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(
            data.join(format!("{prefix}-images-idx3-ubyte")),
            idx_images(n as u32, 12, 12, &pixels),
        )
        .unwrap();
        std::fs::write(
            data.join(format!("{prefix}-labels-idx1-ubyte")),
            idx_labels(labels),
        )
        .unwrap();
    }
    data
}

/// The tiny model for `classes` classes, written under `dir`.
fn model(dir: &Path, classes: usize) -> PathBuf {
    let path = dir.join(format!("tiny-{classes}.toml"));
    std::fs::write(&path, TINY_MODEL.replace("{classes}", &classes.to_string())).unwrap();
    path
}

/// `convnet train` on `data` with the tiny model for one epoch into `out`: 10 classes for
/// IDX folders, 2 for image folders.
fn train(dir: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let classes = if data.join("train").is_dir() { 2 } else { 10 };
    let mut cmd = convnet();
    cmd.arg("train")
        .arg("--model")
        .arg(model(dir, classes))
        .arg("--data")
        .arg(data)
        .args(["--epochs", "1", "--batch-size", "4", "--out"])
        .arg(out)
        .args(extra);
    run(&mut cmd)
}

#[test]
fn train_on_an_idx_gzip_bomb_fails_fast_naming_the_file() {
    let dir = temp_dir("bomb");
    let data = idx_folder(&dir, &[0, 1], &[0]);
    // The training images: their 2 images, then 1 GiB of zeros in concatenated gzip members.
    let bomb = gzip_bomb(
        &std::fs::read(data.join("train-images-idx3-ubyte")).unwrap(),
        1024,
    );
    std::fs::remove_file(data.join("train-images-idx3-ubyte")).unwrap();
    let images = data.join("train-images-idx3-ubyte.gz");
    std::fs::write(&images, bomb).unwrap();
    let started = Instant::now();
    let err = fails(train(&dir, &data, &dir.join("run"), &[]));
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(
        err.contains(&images.display().to_string()) && err.contains("holds more (after gunzip)"),
        "{err}"
    );
}

#[test]
fn train_and_eval_refuse_an_empty_test_set_naming_the_file() {
    let dir = temp_dir("empty-test");
    let data = idx_folder(&dir, &[0, 1, 0, 1], &[]);
    let err = fails(train(&dir, &data, &dir.join("run-empty"), &[]));
    let file = data.join("t10k-images-idx3-ubyte");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("test set is empty"),
        "{err}"
    );
    assert!(!dir.join("run-empty").join("best").exists());

    // eval on the same folder, with a checkpoint trained on good data.
    let good = idx_folder(&dir.join("good"), &[0, 1, 0, 1], &[0, 1]);
    ok(train(&dir, &good, &dir.join("run"), &[]));
    let err = fails(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(dir.join("run").join("best"))
        .arg("--data")
        .arg(&data)));
    assert!(err.contains("test set is empty"), "{err}");
    assert!(!err.contains("NaN") && !err.contains("0/0"), "{err}");
}

#[test]
fn train_with_test_labels_above_the_training_labels_fails_before_the_first_epoch() {
    let dir = temp_dir("label-range");
    let data = idx_folder(&dir, &[0, 1, 2, 3], &[0, 12]);
    let out = dir.join("run");
    let err = fails(train(&dir, &data, &out, &[]));
    assert!(
        err.contains(&data.join("t10k-labels-idx1-ubyte").display().to_string())
            && err.contains(&data.join("train-labels-idx1-ubyte").display().to_string())
            && err.contains("go up to 12")
            && err.contains("classes 0..=9"),
        "{err}"
    );
    // Refused when opened: no epoch ran, nothing was saved.
    assert!(!out.join("last").exists(), "an epoch ran");
}

/// An image folder of 12x12 and 16x16 grayscale images, two classes.
fn mixed_size_folder(dir: &Path) -> PathBuf {
    let data = dir.join("images");
    for (split, n) in [("train", 4), ("test", 2)] {
        for class in ["a", "b"] {
            for i in 0..n {
                let side = if i % 2 == 0 { 12 } else { 16 };
                let value: u8 = if class == "a" { 40 } else { 200 };
                save_gray(
                    &data.join(split).join(class).join(format!("{i}.png")),
                    [side, side],
                    |x, y| value.wrapping_add((x * y) as u8),
                );
            }
        }
    }
    data
}

#[test]
fn image_size_error_suggests_resize_and_the_flag_trains_evaluates_and_resumes() {
    let dir = temp_dir("resize");
    let data = mixed_size_folder(&dir);
    let out = dir.join("run");

    // Without --resize: the error names the flag that exists, with the size to give.
    let err = fails(train(&dir, &data, &dir.join("run-unsized"), &[]));
    assert!(
        err.contains("wrong size") && err.contains("--resize 12x12"),
        "{err}"
    );

    // With it: trained, and the size recorded with the run.
    ok(train(&dir, &data, &out, &["--resize", "12x12"]));
    let meta_path = out.join("last").join("checkpoint.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(
        meta["data"]["resize"],
        serde_json::json!([12, 12]),
        "{meta}"
    );

    // eval reads the data as the run did, without being told.
    let report = ok(run(convnet()
        .args(["eval", "--json", "--checkpoint"])
        .arg(out.join("best"))
        .arg("--data")
        .arg(&data)));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["confusion"].as_array().unwrap().len(), 2, "{report}");
    // ... and an explicit other size is honoured (and then refused by the model).
    let err = fails(run(convnet()
        .args(["eval", "--resize", "14x14", "--checkpoint"])
        .arg(out.join("best"))
        .arg("--data")
        .arg(&data)));
    assert!(err.contains("14"), "{err}");

    // Resume reopens the data resized: one more epoch on the recorded settings.
    meta["config"]["epochs"] = serde_json::json!(2);
    std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    let err = fails(run(convnet()
        .args(["train", "--resume", "--resize", "16x16", "--out"])
        .arg(&out)));
    assert!(err.contains("--resize"), "{err}");
    ok(run(convnet()
        .args(["train", "--resume", "--out"])
        .arg(&out)));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["training"]["epoch"], 2, "{meta}");
    assert_eq!(
        meta["data"]["resize"],
        serde_json::json!([12, 12]),
        "{meta}"
    );

    // A malformed or out-of-range size is refused before anything is read.
    let err = fails(train(
        &dir,
        &data,
        &dir.join("run2"),
        &["--resize", "12by12"],
    ));
    assert!(err.contains("HxW"), "{err}");
    let err = fails(train(&dir, &data, &dir.join("run3"), &["--resize", "0x12"]));
    assert!(err.contains("cannot resize images to 0x12"), "{err}");
}

#[test]
fn demo_takes_resize_too() {
    let dir = temp_dir("demo-resize");
    // The reference model takes 28x28: a demo resized to 32x32 is refused by the model,
    // which shows the flag reached the data.
    let err = fails(run(convnet()
        .args(["demo", "--epochs", "1", "--resize", "32x32", "--out"])
        .arg(dir.join("run"))));
    assert!(err.contains("32"), "{err}");
}

#[cfg(unix)]
#[test]
fn train_on_an_image_folder_with_symlink_loops_reads_each_image_once() {
    let dir = temp_dir("loops");
    let data = mixed_size_folder(&dir);
    for class in ["a", "b"] {
        let folder = data.join("train").join(class);
        std::os::unix::fs::symlink(".", folder.join("self1")).unwrap();
        std::os::unix::fs::symlink(".", folder.join("self2")).unwrap();
        std::fs::create_dir(folder.join("sub")).unwrap();
        std::os::unix::fs::symlink("..", folder.join("sub").join("up")).unwrap();
    }
    let started = Instant::now();
    let out = train(&dir, &data, &dir.join("run"), &["--resize", "12x12"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    ok(out.clone());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(8 train / 4 test images"), "{stderr}");
}

#[test]
fn unreadable_image_error_says_the_os_reason_once() {
    let dir = temp_dir("dangling");
    let data = mixed_size_folder(&dir);
    let link = data.join("train").join("a").join("9.png");
    #[cfg(unix)]
    std::os::unix::fs::symlink("nowhere.png", &link).unwrap();
    let err = fails(train(&dir, &data, &dir.join("run"), &["--resize", "12x12"]));
    assert!(err.contains(&link.display().to_string()), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn long_class_name_in_batches_meta_is_refused_naming_the_file_and_line() {
    let dir = temp_dir("meta");
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    let record = [vec![1u8], vec![0; 3072]].concat();
    for i in 1..=5 {
        std::fs::write(data.join(format!("data_batch_{i}.bin")), &record).unwrap();
    }
    std::fs::write(data.join("test_batch.bin"), &record).unwrap();
    let meta = data.join("batches.meta.txt");
    std::fs::write(&meta, format!("a\n{}\n", "x".repeat(70_000))).unwrap();
    let err = fails(train(&dir, &data, &dir.join("run"), &[]));
    assert!(
        err.contains(&format!("{}, line 2", meta.display())) && err.contains("70000 characters"),
        "{err}"
    );
}
