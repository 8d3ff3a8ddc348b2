//! Bad input to the tables, pictures, `plot`, `bench` and the global options: each gets one
//! clear error, before any work and in bounded time, or a bounded result; no panic, no hang,
//! no output that replaces an input or another output, no text said twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod common;
use common::{
    TestDir, convnet, edit_meta, fails, ok, run, run_within, said_once, save_gray, temp_dir,
};

/// A loose bound on commands that must end at once: far above what they take, far below a
/// hang (or the 77 s that 100,000 threads took to start).
const PROMPTLY: Duration = Duration::from_secs(20);

/// The smallest model with a convolution: a 12x12 grayscale image to 10 classes.
const MODEL: &str = r#"
model = { input = [1, 12, 12] }
layer = [
    { name = "conv", type = "conv2d", out_channels = 2, kernel = 5, stride = 2 },
    { type = "flatten" },
    { name = "fc", type = "linear", out_features = 10 },
]
"#;

/// A 12x12 grayscale PNG, its pixels drawn from `seed`.
fn write_png(path: &Path, seed: u32) {
    save_gray(path, [12, 12], |x, y| ((x * 20 + y * seed) % 256) as u8);
}

/// An image-folder data set: train/ and test/, ten classes of two images each.
fn write_image_folders(dir: &Path) {
    for split in ["train", "test"] {
        for class in 0..10 {
            let folder = dir.join(split).join(format!("class{class}"));
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..2 {
                write_png(&folder.join(format!("{i}.png")), class * 2 + i);
            }
        }
    }
}

/// A folder with a small data set, the model and a checkpoint of it trained for one epoch
/// (`dir/run/best`).
struct Trained {
    dir: TestDir,
    best: PathBuf,
    data: PathBuf,
    model: PathBuf,
}

fn trained(name: &str) -> Trained {
    let dir = temp_dir(name);
    let data = dir.join("data");
    write_image_folders(&data);
    let model = dir.join("model.toml");
    std::fs::write(&model, MODEL).unwrap();
    let out = dir.join("run");
    ok(run(convnet()
        .args(["train", "--epochs", "1", "--batch-size", "8", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&out)));
    Trained {
        best: out.join("best"),
        dir,
        data,
        model,
    }
}

/// Give class `index` of a checkpoint another name.
fn rename_class(checkpoint: &Path, index: usize, name: &str) {
    edit_meta(checkpoint, |meta| meta["classes"][index] = name.into());
}

#[test]
fn eval_table_width_does_not_follow_class_name_length() {
    let s = trained("eval-names");
    let long = "a rather long class name ".repeat(10);
    rename_class(&s.best, 3, &long);
    let text = ok(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&s.best)
        .arg("--data")
        .arg(&s.data)));
    let widest = text
        .lines()
        .skip(1)
        .map(|l| l.chars().count())
        .max()
        .unwrap();
    assert!(widest <= 60, "a line of {widest} characters:\n{text}");
    assert!(text.contains("  a rather long class nam…  "), "{text}");
}

#[test]
fn confusion_picture_size_does_not_follow_class_name_length() {
    let s = trained("confusion-names");
    for class in 0..10 {
        rename_class(&s.best, class, &format!("{class} {}", "x".repeat(250)));
    }
    let png = s.dir.join("confusion.png");
    ok(run(convnet()
        .args(["eval", "--checkpoint"])
        .arg(&s.best)
        .arg("--data")
        .arg(&s.data)
        .arg("--confusion")
        .arg(&png)));
    let (w, h) = image::image_dimensions(&png).unwrap();
    // Ten cells of 52 pixels and names of 24 characters at most.
    assert!(w < 1200 && h < 1200, "{w}x{h}");
}

#[test]
fn plot_of_values_whose_range_overflows_finishes() {
    let dir = temp_dir("plot-overflow");
    let csv = dir.join("metrics.csv");
    std::fs::write(
        &csv,
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second\n\
         1,1e308,0.5,1,0.5,0.1,1,1\n\
         2,-1e308,0.5,NaN,0.5,0.1,1,1\n\
         3,inf,0.6,1,0.5,0.1,1,1\n",
    )
    .unwrap();
    let png = dir.join("curves.png");
    ok(run_within(
        convnet().arg("plot").arg(&csv).arg("-o").arg(&png),
        PROMPTLY,
    ));
    assert_eq!(image::image_dimensions(&png).unwrap(), (1100, 440));
}

#[test]
fn bench_suite_with_huge_sizes_is_refused_naming_the_layer() {
    let dir = temp_dir("bench-suite");
    let layer = |name: &str, [n, c, hw, k]: [u64; 4], r: u64| {
        format!(
            r#"{{"name": "{name}", "n": {n}, "c": {c}, "h": {hw}, "w": {hw}, "k": {k}, "r": {r},
                "stride": 1, "pad": 0, "dilation": 1, "groups": 1}}"#
        )
    };
    for (huge, what) in [
        (layer("giant", [64, 256, 256, 64], 3), "MiB"),
        (layer("giant", [1 << 40, 256, 1 << 20, 64], 3), "overflow"),
        (layer("giant", [1, 1024, 128, 1024], 11), "GFLOP"),
    ] {
        let suite = dir.join("suite.json");
        let text = format!(
            r#"{{"layers": [{}, {huge}]}}"#,
            layer("small", [1, 1, 8, 1], 3)
        );
        std::fs::write(&suite, text).unwrap();
        let err = fails(run_within(
            convnet().args(["bench", "--suite"]).arg(&suite),
            PROMPTLY,
        ));
        assert!(
            err.contains("layer 2 ('giant')") && err.contains(what),
            "{err}"
        );
    }
}

#[test]
fn bench_repeat_and_threads_are_bounded_before_any_work() {
    let err = fails(run_within(
        convnet().args(["bench", "--repeat", "18446744073709551615"]),
        PROMPTLY,
    ));
    assert!(err.contains("is not in 1..=100"), "{err}");
    // Refused before 100,000 threads start, for every verb.
    let err = fails(run_within(
        convnet().args([
            "--threads",
            "100000",
            "shape",
            "conv:6:5x5",
            "--input",
            "28x28x1",
        ]),
        PROMPTLY,
    ));
    assert!(err.contains("--threads 100000: give 1 to"), "{err}");
    let err = fails(run_within(
        convnet().env("RAYON_NUM_THREADS", "100000").args([
            "shape",
            "conv:6:5x5",
            "--input",
            "28x28x1",
        ]),
        PROMPTLY,
    ));
    assert!(err.contains("RAYON_NUM_THREADS=100000: at most"), "{err}");
    ok(run(convnet().args([
        "--threads",
        "3",
        "shape",
        "conv:6:5x5",
        "--input",
        "28x28x1",
    ])));
}

#[test]
fn an_output_that_names_another_output_or_an_input_is_refused() {
    let s = trained("same-file");
    let image = s.dir.join("in.png");
    write_png(&image, 1);
    let before = std::fs::read(&image).unwrap();
    let cam = s.dir.join("cam.png");
    let gradcam = |extra: &[&std::ffi::OsStr]| {
        let mut cmd = convnet();
        cmd.args(["gradcam", "--checkpoint"])
            .arg(&s.best)
            .arg(&image)
            .args(extra);
        fails(run(&mut cmd))
    };
    // -o and --raw, the second through another spelling of the same path.
    let other_spelling = s.dir.join("run/../cam.png");
    let err = gradcam(&[
        "-o".as_ref(),
        cam.as_ref(),
        "--raw".as_ref(),
        other_spelling.as_ref(),
    ]);
    assert!(err.contains("-o and --raw both name"), "{err}");
    let err = gradcam(&["-o".as_ref(), image.as_ref()]);
    assert!(err.contains("is also the input image"), "{err}");
    assert!(!cam.exists());
    assert_eq!(std::fs::read(&image).unwrap(), before, "the input changed");

    let metrics = s.dir.join("run/metrics.csv");
    let png_named = s.dir.join("metrics.png");
    std::fs::copy(&metrics, &png_named).unwrap();
    let err = fails(run(convnet()
        .arg("plot")
        .arg(&png_named)
        .arg("-o")
        .arg(&png_named)));
    assert!(err.contains("is also the metrics file"), "{err}");

    let err = fails(run(convnet()
        .args(["features", "--layers", "conv,conv", "--checkpoint"])
        .arg(&s.best)
        .arg(&image)
        .arg("-o")
        .arg(&cam)));
    assert!(err.contains("names 'conv' twice"), "{err}");

    let report = s.dir.join("report.json");
    let err = fails(run(convnet()
        .args(["bench", "--json"])
        .arg(&report)
        .arg("--compare")
        .arg(&report)));
    assert!(err.contains("is also the --compare file"), "{err}");
}

#[test]
fn missing_input_and_unwritable_output_are_reported_once() {
    let s = trained("said-once");
    let missing = s.dir.join("missing.toml");
    let err = fails(run(convnet().args(["summary", "--model"]).arg(&missing)));
    let line = said_once(&err);
    assert!(
        line.contains("missing.toml") && line.contains("No such file"),
        "{line}"
    );
    let err = fails(run(convnet()
        .arg("plot")
        .arg(s.dir.join("missing.csv"))
        .arg("-o")
        .arg(s.dir.join("p.png"))));
    let line = said_once(&err);
    assert!(
        line.contains("missing.csv") && line.contains("No such file"),
        "{line}"
    );

    // Outputs that cannot be written: a folder in /proc accepts no new file, even for root.
    let x = convnet_core::Tensor::from_fn([1, 1, 12, 12], |i| i as f32 / 144.0).unwrap();
    let input = s.dir.join("x.npy");
    std::fs::write(&input, convnet::npy::to_bytes(&x)).unwrap();
    let err = fails(run(convnet()
        .args(["run", "--model"])
        .arg(&s.model)
        .arg("--weights")
        .arg(s.best.join("weights.safetensors"))
        .arg("--input")
        .arg(&input)
        .args(["--output", "/proc/convnet-out.npy"])));
    let line = said_once(&err);
    assert!(
        line.contains("cannot write /proc/convnet-out.npy"),
        "{line}"
    );
    let err = fails(run(convnet()
        .arg("plot")
        .arg(s.dir.join("run/metrics.csv"))
        .args(["-o", "/proc/convnet-curves.png"])));
    let line = said_once(&err);
    assert!(
        line.contains("cannot write /proc/convnet-curves.png"),
        "{line}"
    );
    // An output that is a folder is refused before any work.
    let folder = s.dir.join("out.png");
    std::fs::create_dir_all(&folder).unwrap();
    let err = fails(run(convnet()
        .arg("plot")
        .arg(s.dir.join("run/metrics.csv"))
        .arg("-o")
        .arg(&folder)));
    assert!(said_once(&err).contains("it is a folder"), "{err}");
}

#[test]
fn picture_options_out_of_range_are_refused_before_work() {
    let s = trained("picture-options");
    let out = s.dir.join("out.png");
    let maximize = |extra: &[&str]| {
        let mut cmd = convnet();
        cmd.args(["maximize", "--layer", "conv", "--checkpoint"])
            .arg(&s.best)
            .arg("-o")
            .arg(&out)
            .args(extra);
        fails(run_within(&mut cmd, PROMPTLY))
    };
    let err = maximize(&["--channel", "0", "--steps", "1000000000000000000"]);
    assert!(err.contains("at most 100000"), "{err}");
    let err = maximize(&["--channel", "0", "--jitter", "18446744073709551615"]);
    assert!(
        err.contains("invalid jitter") && err.contains("12x12"),
        "{err}"
    );
    let err = maximize(&["--channel", "0", "--l2", "NaN"]);
    assert!(err.contains("invalid l2"), "{err}");
    let many: Vec<String> = (0..2000).map(|c| c.to_string()).collect();
    let err = maximize(&["--channels", &many.join(",")]);
    assert!(err.contains("lists 2000 channels"), "{err}");

    let image = s.dir.join("in.png");
    write_png(&image, 1);
    let err = fails(run(convnet()
        .args(["gradcam", "--top", "100", "--checkpoint"])
        .arg(&s.best)
        .arg(&image)
        .arg("-o")
        .arg(&out)));
    assert!(err.contains("--top 100"), "{err}");

    // An image wider than any that is read is refused from its header, with or without
    // --resize, and by predict.
    let wide = s.dir.join("wide.png");
    image::GrayImage::new(20_000, 1).save(&wide).unwrap();
    let refused = |cmd: &mut Command| {
        let err = fails(run_within(cmd, PROMPTLY));
        assert!(
            err.contains("20000x1 image") && err.contains("at most 16384"),
            "{err}"
        );
    };
    refused(
        convnet()
            .args(["gradcam", "--resize", "--checkpoint"])
            .arg(&s.best)
            .arg(&wide)
            .arg("-o")
            .arg(&out),
    );
    refused(
        convnet()
            .args(["predict", "--checkpoint"])
            .arg(&s.best)
            .arg(&wide),
    );
    assert!(!out.exists());
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_a_panic() {
    // `convnet summary --json | head` panicked in println! once head had gone.
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::ExitStatusExt;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened by pipe() and are owned here alone.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader); // the reader is gone before the first write
    let out = convnet()
        .args(["shape", "--input", "28x28x1", "conv:6:5x5", "flatten"])
        .stdout(std::process::Stdio::from(writer))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}
