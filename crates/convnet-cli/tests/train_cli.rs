//! End-to-end tests of `convnet demo | train | eval | predict | run` on real files: a small
//! IDX dataset written here, the real binary, its outputs read back.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::{TestDir, convnet, edit_meta, fails, meta, ok, run, signal, temp_dir, wait_for};

/// An IDX image file and label file of `n` 12x12 images: a bright bar, vertical (label 0),
/// horizontal (1) or diagonal (2), with noise. (An IDX folder has the 10 digit classes; only
/// three are used.)
fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 58) as u8
    };
    let mut images = vec![0, 0, 8, 3];
    images.extend((n as u32).to_be_bytes());
    images.extend(12u32.to_be_bytes());
    images.extend(12u32.to_be_bytes());
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = i % 3;
        let offset = (i / 3) % 6 + 3;
        for y in 0..12 {
            for x in 0..12 {
                let on = match class {
                    0 => x == offset,
                    1 => y == offset,
                    _ => x == y,
                };
                images.push(if on { 200 } else { 20 } + noise());
            }
        }
        labels.push(class as u8);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
}

const TINY_MODEL: &str = r#"
[model]
input = [1, 12, 12]

[[layer]]
name = "conv"
type = "conv2d"
out_channels = 6
kernel = 3
padding = 1

[[layer]]
name = "bn"
type = "batchnorm2d"

[[layer]]
type = "relu"

[[layer]]
type = "max_pool2d"
kernel = 2

[[layer]]
type = "flatten"

[[layer]]
name = "fc"
type = "linear"
out_features = 10
"#;

struct Setup {
    dir: TestDir,
    data: PathBuf,
    model: PathBuf,
}

fn setup(name: &str) -> Setup {
    let dir = temp_dir(name);
    let data = dir.join("bars");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", 96, 1);
    write_idx(&data, "t10k", 30, 2);
    let model = dir.join("tiny.toml");
    std::fs::write(&model, TINY_MODEL).unwrap();
    Setup { dir, data, model }
}

fn train_args<'a>(s: &'a Setup, out: &'a Path, extra: &[&'a str]) -> Vec<std::ffi::OsString> {
    train_args_with(s, &s.model, out, extra)
}

fn train_args_with<'a>(
    s: &'a Setup,
    model: &Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "train".into(),
        "--model".into(),
        model.into(),
        "--data".into(),
        s.data.clone().into(),
        "--batch-size".into(),
        "16".into(),
        "--lr".into(),
        "0.01".into(),
        "--no-hflip".into(),
        "--out".into(),
        out.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    args
}

/// The share of pixels that are not white.
fn non_white_fraction(img: &image::RgbImage) -> f64 {
    let n = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    n as f64 / (img.width() * img.height()) as f64
}

#[test]
fn train_then_eval_predict_and_run_on_real_files() {
    let s = setup("train");
    let out = s.dir.join("run");
    let stdout = ok(run(convnet().args(train_args(
        &s,
        &out,
        &["--epochs", "3", "--seed", "5"],
    ))));
    assert!(stdout.contains("epoch  3/3"), "{stdout}");
    assert!(stdout.contains("best test accuracy"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second"
    );
    assert_eq!(lines.len(), 4, "{csv}");
    let last_acc: f64 = lines[3].split(',').nth(4).unwrap().parse().unwrap();
    assert!(last_acc > 0.9, "bars are easy: {csv}");
    // The curves are redrawn next to the CSV after every epoch.
    let curves = image::open(out.join("curves.png")).unwrap().to_rgb8();
    assert_eq!(curves.dimensions(), (1100, 440));
    assert!(non_white_fraction(&curves) > 0.02, "curves.png is blank");
    for ck in ["best", "last"] {
        for f in [
            "model.toml",
            "weights.safetensors",
            "optimizer.safetensors",
            "checkpoint.json",
        ] {
            assert!(out.join(ck).join(f).is_file(), "{ck}/{f}");
        }
    }

    // eval: text and JSON.
    let best = out.join("best");
    let text = ok(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(&s.data)));
    assert!(
        text.contains("accuracy") && text.contains("confusion matrix"),
        "{text}"
    );
    let json = ok(run(convnet()
        .args(["eval", "--json", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(&s.data)));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["confusion"].as_array().unwrap().len(), 10);
    assert!(v["accuracy"].as_f64().unwrap() > 0.9);
    // eval --confusion draws the matrix too.
    let picture = s.dir.join("confusion.png");
    ok(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&best)
        .arg("--data")
        .arg(&s.data)
        .arg("--confusion")
        .arg(&picture)));
    let confusion = image::open(&picture).unwrap().to_rgb8();
    assert!(confusion.width() >= 400 && confusion.height() >= 400);
    assert!(
        non_white_fraction(&confusion) > 0.1,
        "confusion.png is blank"
    );

    // predict: a PNG of a vertical bar.
    let png = s.dir.join("bar.png");
    let img =
        image::GrayImage::from_fn(12, 12, |x, _| image::Luma([if x == 5 { 220 } else { 15 }]));
    img.save(&png).unwrap();
    let text = ok(run(convnet()
        .args(["predict", "--top", "2", "--checkpoint"])
        .arg(&best)
        .arg(&png)));
    assert!(
        text.starts_with(&format!("{}: 1. 0 ", png.display())),
        "{text}"
    );
    let json = ok(run(convnet()
        .args(["predict", "--json", "--checkpoint"])
        .arg(&best)
        .arg(&png)));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["top"].as_array().unwrap().len(), 3);

    // run: .npy in, .npy out.
    let x = convnet_core::Tensor::from_fn([4, 1, 12, 12], |i| (i % 7) as f32 * 0.3 - 1.0).unwrap();
    let input = s.dir.join("x.npy");
    std::fs::write(&input, convnet::npy::to_bytes(&x)).unwrap();
    let output = s.dir.join("y.npy");
    ok(run(convnet()
        .args(["run", "--model"])
        .arg(&s.model)
        .arg("--weights")
        .arg(best.join("weights.safetensors"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)));
    let y = convnet::npy::read(&output).unwrap();
    assert_eq!(y.dims(), &[4, 10]);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_finishes_the_run() {
    let s = setup("interrupt");
    let out = s.dir.join("run");
    // Many short epochs, so the run is still going when the signal comes.
    // Started with a relative --data, from the test's folder: resume must find it from
    // anywhere.
    let args: Vec<std::ffi::OsString> =
        train_args(&s, &out, &["--epochs", "400", "--save-every", "0"])
            .into_iter()
            .map(|a| {
                if a == s.data.as_os_str() {
                    "bars".into()
                } else {
                    a
                }
            })
            .collect();
    let mut child = convnet()
        .current_dir(&s.dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch to finish, then interrupt.
    let last = out.join("last");
    wait_for(&mut child, Duration::from_secs(120), || {
        last.join("checkpoint.json").exists()
    });
    signal(&child, "INT");
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted at epoch") && stderr.contains("--resume"),
        "{stderr}"
    );
    let done = meta(&last)["training"]["epoch"].as_u64().unwrap();
    assert!((1..400).contains(&done), "{}", meta(&last));
    // Shorten what is left by resuming a copy whose config asks for one more epoch.
    edit_meta(&last, |meta| meta["config"]["epochs"] = (done + 1).into());
    // Settings that --resume would change are refused, naming them and both values.
    let err = fails(run(convnet()
        .args(["train", "--resume", "--lr", "0.5", "--seed", "3", "--out"])
        .arg(&out)));
    assert!(
        err.contains("optimizer.lr from 0.01 to 0.5")
            && err.contains("seed from 0 to 3")
            && err.contains("checkpoint.json"),
        "{err}"
    );
    // Other data is refused, naming the run's own.
    let other = s.dir.join("other-bars");
    std::fs::create_dir_all(&other).unwrap();
    write_idx(&other, "train", 96, 7);
    write_idx(&other, "t10k", 30, 8);
    let err = fails(run(convnet()
        .args(["train", "--resume", "--data"])
        .arg(&other)
        .arg("--out")
        .arg(&out)));
    assert!(
        err.contains("was trained on") && err.contains("give --data") && err.contains("bars"),
        "{err}"
    );
    // A process killed while saving leaves the previous checkpoint as .last.old<pid> (between
    // two renames) or a stale .last.tmp<pid>: both are dealt with.
    std::fs::rename(out.join("last"), out.join(".last.old99999")).unwrap();
    std::fs::create_dir(out.join(".last.tmp88888")).unwrap();
    // Without --data, the run's own data is used.
    let stdout = ok(run(convnet()
        .args(["train", "--resume", "--out"])
        .arg(&out)));
    assert!(
        stdout.contains(&format!("epoch {:>2}/{}", done + 1, done + 1)),
        "{stdout}"
    );
    assert!(out.join("last").is_dir());
    assert!(!out.join(".last.old99999").exists() && !out.join(".last.tmp88888").exists());
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let s = setup("diverge");
    let out = s.dir.join("run");
    let mut args = train_args(
        &s,
        &out,
        &[
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--schedule",
            "constant",
            "--save-every",
            "1",
        ],
    );
    let lr = args.iter().position(|a| a == "--lr").unwrap();
    args[lr + 1] = "1e30".into();
    let stderr = fails(run(convnet().args(args)));
    assert!(
        stderr.contains("training diverged: the loss became"),
        "{stderr}"
    );
    // It says which checkpoint it kept, and that one is finite (it loads).
    assert!(
        stderr.contains("last holds the last saved state, at epoch 1, step 1"),
        "{stderr}"
    );
    let kept = convnet::checkpoint::load(&out.join("last")).unwrap();
    assert_eq!(kept.meta.training.unwrap().global_step, 1);
}

#[test]
fn bad_input_gets_a_clear_error_naming_the_file() {
    let s = setup("errors");
    let missing = s.dir.join("nowhere");
    let err = fails(run(convnet()
        .args(["train", "--epochs", "1", "--data"])
        .arg(&missing)));
    assert!(err.contains("nowhere"), "{err}");
    let err = fails(run(convnet().args(["eval", "--checkpoint"]).arg(&missing)));
    assert!(
        err.contains("nowhere") && err.contains("no such checkpoint folder"),
        "{err}"
    );
    // A model that does not fit the data's images.
    let wrong = s.dir.join("wrong.toml");
    std::fs::write(&wrong, TINY_MODEL.replace("[1, 12, 12]", "[1, 28, 28]")).unwrap();
    let err = fails(run(convnet().args(train_args_with(
        &s,
        &wrong,
        &s.dir.join("r"),
        &[],
    ))));
    assert!(
        err.contains("takes images [1, 28, 28]") && err.contains("[1, 12, 12]"),
        "{err}"
    );
    // A model file with a typo.
    std::fs::write(&wrong, TINY_MODEL.replace("kernel = 3", "kernal = 3")).unwrap();
    let err = fails(run(convnet().args(train_args_with(
        &s,
        &wrong,
        &s.dir.join("r"),
        &[],
    ))));
    assert!(
        err.contains("wrong.toml") && err.contains("kernal"),
        "{err}"
    );
    // Corrupt IDX labels.
    std::fs::write(s.data.join("t10k-labels-idx1-ubyte"), [0u8, 0, 8, 1, 0, 0]).unwrap();
    let err = fails(run(convnet().args(train_args(&s, &s.dir.join("r"), &[]))));
    assert!(err.contains("t10k-labels-idx1-ubyte"), "{err}");
    // An image that is not one.
    let png = s.dir.join("broken.png");
    std::fs::write(&png, b"not a png").unwrap();
    let ck = s.dir.join("ck");
    write_idx(&s.data, "t10k", 30, 2);
    ok(run(convnet().args(train_args(&s, &ck, &["--epochs", "1"]))));
    let err = fails(run(convnet()
        .args(["predict", "--checkpoint"])
        .arg(ck.join("best"))
        .arg(&png)));
    assert!(err.contains("broken.png"), "{err}");
    // A .npy of the wrong image size.
    let x = convnet_core::Tensor::zeros([2, 1, 5, 5]).unwrap();
    let input = s.dir.join("x.npy");
    std::fs::write(&input, convnet::npy::to_bytes(&x)).unwrap();
    let err = fails(run(convnet()
        .args(["run", "--model"])
        .arg(&s.model)
        .arg("--weights")
        .arg(ck.join("best/weights.safetensors"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(s.dir.join("y.npy"))));
    assert!(
        err.contains("x.npy") && err.contains("model takes 1x12x12"),
        "{err}"
    );
    assert!(!s.dir.join("y.npy").exists(), "nothing half written");
}

#[test]
fn demo_trains_on_the_embedded_sample() {
    let dir = temp_dir("demo");
    let stdout = ok(run(convnet()
        .args(["demo", "--epochs", "1", "--out"])
        .arg(dir.join("demo"))));
    assert!(
        stdout.contains("demo: the reference CNN reached"),
        "{stdout}"
    );
    assert!(stdout.contains("embedded Fashion-MNIST sample"), "{stdout}");
}
