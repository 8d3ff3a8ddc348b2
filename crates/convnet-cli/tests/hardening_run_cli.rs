//! Training runs through the real binary, against faults and bad input: run folders are
//! locked and never overwritten (default folders are numbered), SIGTERM and SIGHUP save like
//! Ctrl-C, a resume repairs what a kill left and refuses what it cannot continue exactly,
//! every bad checkpoint or option is a clear error (exit 1, never a panic), and a diverged
//! run says truthfully what it kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::{TestDir, convnet, edit_meta, error, meta, ok, repo, run, signal, temp_dir, wait_for};

/// How long a run may take to reach the point a test waits for.
const MINUTE: Duration = Duration::from_secs(60);

/// A small model of the embedded sample's 28x28 images: one epoch takes a fraction of a
/// second.
const SMALL_MODEL: &str = r#"
layer = [
    { name = "conv", type = "conv2d", out_channels = 4, kernel = 3, stride = 2 },
    { type = "relu" },
    { type = "max_pool2d", kernel = 2 },
    { type = "flatten" },
    { name = "fc", type = "linear", out_features = 10 },
]

[model]
name = "small"
input = [1, 28, 28]
"#;

/// The embedded Fashion-MNIST sample as IDX files (2,000 / 500 images).
fn sample() -> PathBuf {
    repo("data/fashion-mnist-sample")
}

struct Setup {
    dir: TestDir,
    model: PathBuf,
}

fn setup(name: &str) -> Setup {
    let dir = temp_dir(name);
    let model = dir.join("small.toml");
    std::fs::write(&model, SMALL_MODEL).unwrap();
    Setup { dir, model }
}

impl Setup {
    /// `convnet train` of the small model on the sample, into `out`, plus `extra`.
    fn train(&self, out: &Path, extra: &[&str]) -> Command {
        let mut cmd = convnet();
        cmd.arg("train")
            .arg("--model")
            .arg(&self.model)
            .arg("--data")
            .arg(sample())
            .args(["--batch-size", "100", "--out"])
            .arg(out)
            .args(extra);
        cmd
    }

    /// A finished run of `epochs` epochs in `<dir>/<name>`.
    fn finished_run(&self, name: &str, epochs: &str) -> PathBuf {
        let out = self.dir.join(name);
        ok(run(&mut self.train(&out, &["--epochs", epochs])));
        out
    }
}

/// Start a long run (stdout discarded, stderr kept) and wait for its first saved `last`.
fn start_long_run(cmd: &mut Command, out: &Path) -> Child {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut child, MINUTE, || {
        out.join("last/checkpoint.json").exists()
    });
    child
}

/// Shorten a stopped run to one more epoch than it finished, so a resume ends soon (after
/// repairing what a kill left, as a resume does first).
fn one_more_epoch(out: &Path) -> u64 {
    convnet::checkpoint::RunFolder::open(out)
        .unwrap()
        .repair()
        .unwrap();
    let last = out.join("last");
    let done = meta(&last)["training"]["epoch"].as_u64().unwrap();
    edit_meta(&last, |v| v["config"]["epochs"] = (done + 1).into());
    done
}

#[test]
fn a_normalization_of_other_channels_is_refused_by_every_verb_instead_of_a_panic() {
    let s = setup("norm-channels");
    let out = s.finished_run("run", "1");
    for ck in ["best", "last"] {
        edit_meta(
            &out.join(ck),
            |v| {
                v["normalization"] =
                    serde_json::json!({"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]})
            },
        );
    }
    let png = s.dir.join("shoe.png");
    image::GrayImage::new(28, 28).save(&png).unwrap();
    let o = |name: &str| s.dir.join(name);
    let verbs: Vec<Vec<std::ffi::OsString>> = vec![
        vec![
            "eval".into(),
            "--checkpoint".into(),
            out.clone().into(),
            "--data".into(),
            sample().into(),
        ],
        vec![
            "predict".into(),
            "--checkpoint".into(),
            out.clone().into(),
            png.clone().into(),
        ],
        vec![
            "features".into(),
            "--checkpoint".into(),
            out.clone().into(),
            "sample:0".into(),
            "--layer".into(),
            "conv".into(),
            "-o".into(),
            o("f.png").into(),
        ],
        vec![
            "gradcam".into(),
            "--checkpoint".into(),
            out.clone().into(),
            "sample:0".into(),
            "-o".into(),
            o("g.png").into(),
        ],
        vec![
            "train".into(),
            "--resume".into(),
            "--out".into(),
            out.clone().into(),
        ],
    ];
    for args in verbs {
        let err = error(run(convnet().args(&args)));
        assert!(
            err.contains("checkpoint.json")
                && err.contains("mean [0.2, 0.2, 0.2] and std [0.3, 0.3, 0.3], one value per channel, but the images have 1 channel"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_second_train_into_a_running_run_is_refused_with_the_holders_pid_until_it_is_killed() {
    let s = setup("lock");
    let out = s.dir.join("run");
    let mut first = start_long_run(
        &mut s.train(&out, &["--epochs", "10000", "--save-every", "3"]),
        &out,
    );
    let pid = first.id().to_string();
    assert_eq!(
        std::fs::read_to_string(out.join(".lock")).unwrap().trim(),
        pid
    );
    for extra in [&["--epochs", "1"][..], &["--resume"][..]] {
        let mut cmd = if extra == ["--resume"] {
            let mut c = convnet();
            c.args(["train", "--resume", "--out"]).arg(&out);
            c
        } else {
            s.train(&out, extra)
        };
        let err = error(run(&mut cmd));
        assert!(
            err.contains(&format!("is in use: process {pid} is training this run")),
            "{extra:?}: {err}"
        );
    }
    // kill -9 ends the process and with it the lock: the run can be continued.
    signal(&first, "KILL");
    first.wait().unwrap();
    let done = one_more_epoch(&out);
    let stdout = ok(run(convnet()
        .args(["train", "--resume", "--out"])
        .arg(&out)));
    assert!(
        stdout.contains(&format!("epoch {:>2}/{}", done + 1, done + 1)),
        "{stdout}"
    );
}

#[test]
fn train_twice_into_the_same_out_is_refused_and_default_runs_are_numbered() {
    let s = setup("twice");
    let out = s.finished_run("run", "1");
    let metrics = std::fs::read(out.join("metrics.csv")).unwrap();
    let err = error(run(&mut s.train(&out, &["--epochs", "1"])));
    assert!(
        err.contains(&format!(
            "{}: holds a run already: continue it with `convnet train --out {} --resume`, or give another --out",
            out.display(),
            out.display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), metrics);
    // Without --out: runs/train, then runs/train-2, each said.
    let default_run = |cwd: &Path| {
        let mut cmd = convnet();
        cmd.current_dir(cwd)
            .arg("train")
            .arg("--model")
            .arg(&s.model)
            .arg("--data")
            .arg(sample())
            .args(["--epochs", "1", "--batch-size", "100"]);
        let out = run(&mut cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        ok(out);
        stderr
    };
    let first = default_run(&s.dir);
    assert!(!first.contains("another run"), "{first}");
    let second = default_run(&s.dir);
    assert!(
        second.contains("runs/train holds another run; writing this one to runs/train-2"),
        "{second}"
    );
    for run in ["runs/train", "runs/train-2"] {
        assert!(
            s.dir.join(run).join("best/weights.safetensors").is_file(),
            "{run}"
        );
    }
}

#[test]
fn the_readme_demo_run_again_writes_a_numbered_folder() {
    // An earlier demo's folder (a demo takes seconds; one is enough to show the numbering).
    let dir = temp_dir("demo-again");
    let earlier = dir.join("runs/demo");
    std::fs::create_dir_all(&earlier).unwrap();
    std::fs::write(earlier.join("metrics.csv"), "earlier").unwrap();
    let out = run(convnet().current_dir(&dir).args(["demo", "--epochs", "1"]));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = ok(out);
    assert!(
        stderr.contains("runs/demo holds another run; writing this one to runs/demo-2")
            && stdout.contains("checkpoints in runs/demo-2/best"),
        "{stderr}\n{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(earlier.join("metrics.csv")).unwrap(),
        "earlier"
    );
}

/// The epoch and step of "interrupted at epoch E, step S".
fn stopped_at(stderr: &str) -> (u64, u64) {
    let rest = stderr
        .split("interrupted at epoch ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<u64> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(2)
        .map(|t| t.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn sigterm_and_sighup_save_last_and_exit_with_128_plus_the_signal() {
    let s = setup("signals");
    let out = s.dir.join("run");
    let child = start_long_run(
        &mut s.train(&out, &["--epochs", "10000", "--save-every", "0"]),
        &out,
    );
    signal(&child, "TERM");
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("by SIGTERM: saved") && stderr.contains("--resume"),
        "{stderr}"
    );
    // The step the signal stopped at was saved (the epochs end at step 20).
    let (epoch, step) = stopped_at(&stderr);
    let state = &meta(&out.join("last"))["training"];
    assert_eq!(
        (state["epoch"].as_u64(), state["step_in_epoch"].as_u64()),
        (Some(epoch - 1), Some(step)),
        "{stderr}"
    );
    let saved = state["global_step"].as_u64().unwrap();
    // The resumed run is stopped by SIGHUP after it saved again.
    let mut resumed = convnet()
        .args(["train", "--resume", "--save-every", "2", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&mut resumed, MINUTE, || {
        std::fs::read_to_string(out.join("last/checkpoint.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["training"]["global_step"].as_u64())
            .is_some_and(|g| g > saved)
    });
    signal(&resumed, "HUP");
    let result = resumed.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(129), "{stderr}");
    assert!(stderr.contains("by SIGHUP: saved"), "{stderr}");
}

#[test]
fn a_resume_without_optimizer_state_or_data_origin_is_refused_naming_the_file() {
    let s = setup("resume-missing");
    let out = s.dir.join("run");
    let mut child = start_long_run(
        &mut s.train(&out, &["--epochs", "10000", "--save-every", "0"]),
        &out,
    );
    signal(&child, "INT");
    child.wait().unwrap();
    let last = out.join("last");
    let optimizer = last.join("optimizer.safetensors");
    let kept = std::fs::read(&optimizer).unwrap();
    std::fs::remove_file(&optimizer).unwrap();
    let resume = || run(convnet().args(["train", "--resume", "--out"]).arg(&out));
    let err = error(resume());
    assert!(
        err.contains(&format!("{}: is missing", optimizer.display())),
        "{err}"
    );
    std::fs::write(&optimizer, kept).unwrap();
    edit_meta(&last, |v| {
        v.as_object_mut().unwrap().remove("data");
    });
    let err = error(resume());
    assert!(
        err.contains("checkpoint.json: has no \"data\" field"),
        "{err}"
    );
}

#[test]
fn options_out_of_range_are_refused_before_any_data_is_read() {
    let s = setup("options");
    let out = s.dir.join("run");
    let cases: [(&[&str], &str); 12] = [
        (
            &["--schedule", "step", "--gamma", "nan"],
            "invalid gamma: must be finite and positive, got NaN",
        ),
        (
            &["--schedule", "step", "--gamma", "inf"],
            "invalid gamma: must be finite and positive, got inf",
        ),
        (&["--lr", "inf"], "invalid lr"),
        (&["--lr", "nan"], "invalid lr"),
        (
            &["--optimizer", "sgd", "--momentum", "1.5"],
            "invalid momentum: must be in [0, 1), got 1.5",
        ),
        (&["--weight-decay", "nan"], "invalid weight_decay"),
        (&["--label-smoothing", "nan"], "invalid label_smoothing"),
        (
            &["--epochs", "18446744073709551615"],
            "invalid epochs: must be from 1 to 10000",
        ),
        (&["--batch-size", "0"], "invalid batch_size"),
        (
            &["--batch-size", "18446744073709551615"],
            "invalid batch_size: must be from 1 to 1048576",
        ),
        (
            &["--save-every", "18446744073709551615"],
            "--save-every 18446744073709551615 is too large",
        ),
        (
            &["--crop-padding", "1000000"],
            "invalid augmentation: crop padding 1000000 is not smaller than the 28x28 (HxW) images: a crop could hold padding only; give a padding from 0 to 27",
        ),
    ];
    for (extra, expected) in cases {
        // (The data named does not exist: the options are refused first.)
        let err = error(run(convnet()
            .arg("train")
            .arg("--model")
            .arg(&s.model)
            .args(["--data", "/nowhere", "--out"])
            .arg(&out)
            .args(extra)));
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(!out.exists(), "{extra:?} made the run folder");
    }
}

#[test]
fn eval_takes_a_run_folder_as_its_best_checkpoint_and_explains_other_folders() {
    let s = setup("run-folder");
    let out = s.finished_run("run", "1");
    let text = ok(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&out)
        .arg("--data")
        .arg(sample())));
    assert!(text.contains("accuracy"), "{text}");
    let err = error(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&s.dir)
        .arg("--data")
        .arg(sample())));
    assert!(
        err.contains("not a checkpoint: a checkpoint folder holds model.toml, weights.safetensors and checkpoint.json, a run folder (what train writes) holds best/ and last/"),
        "{err}"
    );
}

#[test]
fn a_finished_run_that_lost_best_and_metrics_is_repaired_by_resume() {
    let s = setup("repair");
    let out = s.finished_run("run", "1");
    // What a kill right after the last epoch's `last` was saved leaves.
    let weights = std::fs::read(out.join("last/weights.safetensors")).unwrap();
    let metrics = std::fs::read(out.join("metrics.csv")).unwrap();
    std::fs::remove_dir_all(out.join("best")).unwrap();
    std::fs::remove_file(out.join("metrics.csv")).unwrap();
    std::fs::remove_file(out.join("curves.png")).unwrap();
    let result = run(convnet().args(["train", "--resume", "--out"]).arg(&out));
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    ok(result);
    assert!(
        stderr.contains("rewrote best/ and metrics.csv from last/")
            && stderr.contains("is finished (1 of 1 epochs): nothing to resume"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("best/weights.safetensors")).unwrap(),
        weights
    );
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), metrics);
    assert!(out.join("curves.png").is_file());
}

#[test]
fn a_run_diverging_before_its_first_save_says_no_checkpoint_was_kept() {
    let s = setup("diverge-early");
    let out = s.dir.join("run");
    // Weight decay makes the first update about lr * wd * weight: infinite.
    let err = error(run(&mut s.train(
        &out,
        &[
            "--epochs",
            "1",
            "--optimizer",
            "sgd",
            "--momentum",
            "0",
            "--schedule",
            "constant",
            "--save-every",
            "0",
            "--weight-decay",
            "1e30",
            "--lr",
            "1e30",
        ],
    )));
    assert!(
        err.contains("training diverged: after epoch 1, step 1,")
            && err.contains("no checkpoint was saved before it diverged"),
        "{err}"
    );
    assert!(!out.join("last").exists());
}

#[test]
fn weights_that_cannot_be_right_are_refused_naming_the_file_and_tensor() {
    let s = setup("bad-weights");
    let out = s.finished_run("run", "1");
    let path = out.join("best/weights.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let write = |header: &serde_json::Value, data: &[u8]| {
        let text = header.to_string();
        let mut file = (text.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(text.as_bytes());
        file.extend_from_slice(data);
        std::fs::write(&path, file).unwrap();
    };
    let eval = || {
        error(run(convnet()
            .args(["eval", "--checkpoint"])
            .arg(&out)
            .arg("--data")
            .arg(sample())))
    };
    // A NaN in fc.bias.
    let begin = header["fc.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut nan = data.to_vec();
    nan[begin..begin + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    write(&header, &nan);
    let err = eval();
    assert!(
        err.contains(&format!(
            "{}: fc.bias holds NaN (at index 0 of 10)",
            path.display()
        )),
        "{err}"
    );
    // Offsets that do not fit fc.bias's shape.
    header["fc.bias"]["data_offsets"][1] = (begin + 4).into();
    write(&header, data);
    let err = eval();
    assert!(
        err.contains("tensor fc.bias: data_offsets")
            && err.contains("do not fit its shape [10] of F32 (40 bytes)"),
        "{err}"
    );
}

#[test]
fn an_interrupted_demo_resumes_on_the_embedded_sample_whatever_data_is_installed() {
    // `demo` trains on the embedded sample even where the full Fashion-MNIST is installed
    // (the default data of `train`); its resume must not switch to the default data.
    let dir = temp_dir("demo-resume");
    let out = dir.join("demo");
    let mut child = start_long_run(
        convnet()
            .args(["demo", "--epochs", "10000", "--out"])
            .arg(&out),
        &out,
    );
    signal(&child, "INT");
    let stopped = child.wait().unwrap();
    assert_eq!(stopped.code(), Some(130));
    one_more_epoch(&out);
    let stderr = String::from_utf8_lossy(&ok_output(run(convnet()
        .args(["train", "--resume", "--out"])
        .arg(&out))))
    .to_string();
    assert!(
        stderr.contains("training on embedded Fashion-MNIST sample"),
        "{stderr}"
    );
}

/// The stderr of a command that succeeded.
fn ok_output(out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stderr
}
