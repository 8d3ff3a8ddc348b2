//! `train --resume` keeps the run's settings: options that describe the run as it is are
//! accepted, and options that would change it are refused, each setting named with the run's
//! value and the one asked for.

mod common;
use common::{convnet, error, ok, repo, run, temp_dir};

/// A small model of the embedded sample's 28x28 images.
const SMALL_MODEL: &str = r#"
layer = [
    { name = "conv", type = "conv2d", out_channels = 4, kernel = 3, stride = 2 },
    { type = "relu" },
    { type = "flatten" },
    { name = "fc", type = "linear", out_features = 10 },
]

[model]
input = [1, 28, 28]
"#;

#[test]
fn resume_accepts_the_runs_own_settings_and_refuses_others_naming_both_values() {
    let dir = temp_dir("resume-settings");
    let model = dir.join("small.toml");
    std::fs::write(&model, SMALL_MODEL).unwrap();
    let out = dir.join("run");
    let settings = ["--epochs", "1", "--batch-size", "100", "--lr", "0.01"];
    ok(run(convnet()
        .arg("train")
        .args(settings)
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(repo("data/fashion-mnist-sample"))
        .arg("--out")
        .arg(&out)));
    let resume = |options: &[&str]| {
        run(convnet()
            .args(["train", "--resume", "--out"])
            .arg(&out)
            .args(options))
    };
    // The run's own values: nothing would change, so the (finished) run is resumed.
    let same = resume(&[&settings[..], &["--seed", "0"]].concat());
    let stderr = String::from_utf8_lossy(&same.stderr).to_string();
    ok(same);
    assert!(stderr.contains("nothing to resume"), "{stderr}");
    // Other values: refused, naming each setting and both values.
    for (options, says) in [
        (&["--batch-size", "50"][..], "batch_size from 100 to 50"),
        (&["--no-hflip"][..], "augment.hflip from true to false"),
        (
            &["--optimizer", "sgd"][..],
            "optimizer.kind from adam_w to sgd",
        ),
        (
            &["--schedule", "cosine"][..],
            "schedule.kind from one_cycle to cosine",
        ),
        (
            &["--label-smoothing", "0.1"][..],
            "loss.label_smoothing from 0.0 to 0.1",
        ),
        (&["--resize", "32x32"][..], "--resize from none to 32x32"),
    ] {
        let err = error(resume(options));
        assert!(
            err.contains(says) && err.contains("checkpoint.json"),
            "{options:?}: {err}"
        );
    }
}
