//! Data-parallel training under `mpirun` (built with `--features mpi`; CI installs Open MPI
//! and runs these): the real binary on the embedded Fashion-MNIST sample, 2 and 3 ranks
//! oversubscribed on one machine.
#![cfg(feature = "mpi")]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{TestDir, convnet, edit_meta, meta, ok, repo, run_within, temp_dir, wait_for};

/// A small model with batch norm (so the statistics' sharding matters).
const SMALL_MODEL: &str = r#"
[model]
input = [1, 28, 28]

[[layer]]
name = "conv"
type = "conv2d"
out_channels = 4
kernel = 3
padding = 1

[[layer]]
name = "bn"
type = "batchnorm2d"

[[layer]]
type = "relu"

[[layer]]
type = "max_pool2d"
kernel = 4

[[layer]]
type = "flatten"

[[layer]]
name = "fc"
type = "linear"
out_features = 10
"#;

/// The longest a test's run may take: a job that hangs fails the test.
const LIMIT: Duration = Duration::from_secs(120);

/// `convnet args...` started by `mpirun` as `ranks` processes.
fn mpirun(ranks: usize, args: &[OsString]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .arg(env!("CARGO_BIN_EXE_convnet"))
        .args(args);
    cmd
}

/// A folder for one test, holding the small model.
fn setup(name: &str) -> (TestDir, PathBuf) {
    let dir = temp_dir(name);
    let model = dir.join("small.toml");
    std::fs::write(&model, SMALL_MODEL).unwrap();
    (dir, model)
}

/// `train` of `model` (the reference model if `None`) into `out`: SGD on the sample, global
/// batches of 64 (32 steps an epoch), then `extra`.
fn train_args(model: Option<&Path>, out: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["train".into(), "--out".into(), out.into()];
    if let Some(model) = model {
        args.extend(["--model".into(), model.into()]);
    }
    args.extend(["--data".into(), repo("data/fashion-mnist-sample").into()]);
    let common = ["--batch-size", "64", "--optimizer", "sgd", "--lr", "0.05"];
    args.extend(common.iter().chain(extra).map(Into::into));
    args
}

/// Every tensor of a checkpoint's weights.
fn weights(ck: &Path) -> Vec<(String, Vec<f32>)> {
    let file = ck.join("weights.safetensors");
    convnet::checkpoint::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .map(|(name, (t, _))| (name, t.data().to_vec()))
        .collect()
}

#[test]
fn sync_bn_on_two_ranks_gives_the_single_process_weights() {
    let (dir, model) = setup("mpi-sync-bn");
    let alone = dir.join("alone");
    let args = |out: &Path, extra: &[&str]| train_args(Some(&model), out, extra);
    ok(run_within(
        convnet().args(args(&alone, &["--epochs", "1"])),
        LIMIT,
    ));
    // Gradients summed during backward on 2 ranks, after it on 3 (uneven shards).
    for (ranks, allreduce) in [(2, "overlap"), (3, "blocking")] {
        let out = dir.join(format!("ranks-{ranks}"));
        let extra = ["--epochs", "1", "--sync-bn", "--allreduce", allreduce];
        let stdout = ok(run_within(&mut mpirun(ranks, &args(&out, &extra)), LIMIT));
        // Rank 0 alone prints (and writes).
        assert_eq!(stdout.matches("epoch  1/1").count(), 1, "{stdout}");
        let parallel = &meta(&out.join("last"))["training"]["parallel"];
        assert_eq!(parallel["workers"], ranks, "{parallel}");
        assert_eq!(parallel["sync_batch_norm"], true, "{parallel}");
        let (a, b) = (weights(&alone.join("last")), weights(&out.join("last")));
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            // Equal up to the order of float additions (measured: below 1e-6).
            let worst = max_abs_diff(x, y);
            assert!(worst <= 1e-5, "{ranks} ranks: {name} differs by {worst}");
        }
    }
}

/// The largest difference between `a` and `b`, element by element.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max)
}

#[test]
fn resume_on_another_number_of_ranks_is_refused_without_sync_bn() {
    let (dir, model) = setup("mpi-resume");
    let out = dir.join("run");
    let first = train_args(Some(&model), &out, &["--epochs", "1"]);
    ok(run_within(&mut mpirun(2, &first), LIMIT));
    // One epoch of two done: the run can continue.
    edit_meta(&out.join("last"), |m| m["config"]["epochs"] = 2.into());
    let resume = |ranks: usize| {
        let args = train_args(None, &out, &["--resume"]);
        match ranks {
            1 => run_within(convnet().args(&args), LIMIT),
            n => run_within(&mut mpirun(n, &args), LIMIT),
        }
    };
    for ranks in [1, 3] {
        let out = resume(ranks);
        assert!(!out.status.success(), "{ranks} ranks: resumed");
        let err = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(said.len(), 1, "said once: {err}");
        for text in [
            "trained on 2 workers",
            "the global batch stays 64 images",
            "32 images per step there",
            "the same number of workers",
        ] {
            assert!(
                said[0].contains(text),
                "{ranks} ranks: no '{text}' in {err}"
            );
        }
    }
    let stdout = ok(resume(2));
    assert!(stdout.contains("epoch  2/2"), "{stdout}");
}

#[test]
fn a_killed_rank_ends_the_job_with_an_error_and_the_last_checkpoint_loads() {
    let (dir, _) = setup("mpi-kill");
    let out = dir.join("run");
    // Long enough to be killed midway: the reference model, saving every 4 steps.
    let args = train_args(None, &out, &["--epochs", "20", "--save-every", "4"]);
    let mut job = mpirun(2, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let last = out.join("last");
    wait_for(&mut job, LIMIT, || last.join("checkpoint.json").is_file());
    let rank1 = rank_pid(job.id(), 1).expect("rank 1 is running");
    Command::new("kill")
        .args(["-KILL", &rank1.to_string()])
        .status()
        .unwrap();
    let killed = Instant::now();
    let output = loop {
        if job.try_wait().unwrap().is_some() {
            break job.wait_with_output().unwrap();
        }
        assert!(killed.elapsed() < Duration::from_secs(30), "the job hangs");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("rank 1") && err.contains("Killed"), "{err}");
    let eval = ok(run_within(
        convnet().args(["eval", "--checkpoint"]).arg(&last).args([
            "--data",
            repo("data/fashion-mnist-sample").to_str().unwrap(),
        ]),
        LIMIT,
    ));
    assert!(eval.contains("accuracy"), "{eval}");
}

/// The pid of the process of rank `rank` that `mpirun` (pid `mpirun`) started, from the
/// rank Open MPI puts in its environment.
fn rank_pid(mpirun: u32, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let children = Command::new("pgrep")
        .args(["-P", &mpirun.to_string()])
        .output()
        .ok()?;
    String::from_utf8_lossy(&children.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == want.as_bytes()))
        })
}
