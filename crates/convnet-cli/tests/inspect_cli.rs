//! `convnet features | kernels | gradcam | maximize | plot` on a checkpoint of the reference
//! model: every picture is decoded and checked for its size and content (as many tiles as
//! maps, none blank), and bad requests get clear errors and no file.

use std::path::{Path, PathBuf};

use convnet::checkpoint::{self, CheckpointMeta};
use convnet::data::{self, FASHION_MNIST_CLASSES};

mod common;
use common::{convnet, fails, ok, repo, temp_dir};

/// A checkpoint of the reference model (freshly initialized: the pictures' structure, not
/// what they show, is under test here; `tests/inspect.rs` checks the content on a trained
/// model).
fn reference_checkpoint(dir: &Path) -> PathBuf {
    let spec = convnet::ModelSpec::load(&repo("models/fashion_cnn.toml")).unwrap();
    let model = spec.build(3).unwrap();
    let sample = data::embedded_sample();
    let meta = CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes: FASHION_MNIST_CLASSES.map(String::from).to_vec(),
        normalization: sample.train.normalization(),
        training: None,
        config: None,
        data: None,
    };
    let ck = dir.join("ck");
    checkpoint::save(&ck, &model, &meta, &[]).unwrap();
    ck
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// The tiles of a picture: 4-connected regions of non-white pixels at least half as large as
/// the largest (text and colour bars are much smaller than a tile).
fn count_tiles(img: &image::RgbImage) -> usize {
    let (w, h) = img.dimensions();
    let filled = |x: u32, y: u32| img.get_pixel(x, y).0 != [255, 255, 255];
    let mut seen = vec![false; (w * h) as usize];
    let mut areas = Vec::new();
    for y0 in 0..h {
        for x0 in 0..w {
            if seen[(y0 * w + x0) as usize] || !filled(x0, y0) {
                continue;
            }
            let mut stack = vec![(x0, y0)];
            seen[(y0 * w + x0) as usize] = true;
            let mut area = 0usize;
            while let Some((x, y)) = stack.pop() {
                area += 1;
                let neighbours = [
                    (x.wrapping_sub(1), y),
                    (x + 1, y),
                    (x, y.wrapping_sub(1)),
                    (x, y + 1),
                ];
                for (nx, ny) in neighbours {
                    if nx < w && ny < h && !seen[(ny * w + nx) as usize] && filled(nx, ny) {
                        seen[(ny * w + nx) as usize] = true;
                        stack.push((nx, ny));
                    }
                }
            }
            areas.push(area);
        }
    }
    let largest = areas.iter().copied().max().unwrap_or(0);
    areas.iter().filter(|&&a| 2 * a >= largest).count()
}

/// Distinct colours: a blank or flat picture has very few.
fn colours(img: &image::RgbImage) -> usize {
    let mut set: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    set.sort_unstable();
    set.dedup();
    set.len()
}

#[test]
fn every_command_draws_the_picture_it_promises() {
    let dir = temp_dir("pictures");
    let ck = reference_checkpoint(&dir);
    let ck = ck.to_str().unwrap();
    let out = |name: &str| dir.join(name);

    // Feature maps: the input and 32 maps of 28x28.
    ok(convnet()
        .args([
            "features",
            "--checkpoint",
            ck,
            "sample:0",
            "--layer",
            "features.2",
            "-o",
        ])
        .arg(out("maps.png"))
        .output()
        .unwrap());
    let img = decode(&out("maps.png"));
    assert_eq!(count_tiles(&img), 33);
    assert!(
        colours(&img) > 200,
        "maps look flat: {} colours",
        colours(&img)
    );
    // Several layers: one picture each.
    ok(convnet()
        .args([
            "features",
            "--checkpoint",
            ck,
            "sample:1",
            "--layers",
            "features.6,features.12",
            "-o",
        ])
        .arg(out("m.png"))
        .output()
        .unwrap());
    assert_eq!(count_tiles(&decode(&out("m-features.6.png"))), 33);
    assert_eq!(count_tiles(&decode(&out("m-features.12.png"))), 65);

    // Kernels: 32 first-layer filters; 64 x 32 per-channel tiles for a deeper layer.
    ok(convnet()
        .args(["kernels", "--checkpoint", ck, "--layer", "features.0", "-o"])
        .arg(out("k0.png"))
        .output()
        .unwrap());
    assert_eq!(count_tiles(&decode(&out("k0.png"))), 32);
    ok(convnet()
        .args([
            "kernels",
            "--checkpoint",
            ck,
            "--layer",
            "features.3",
            "--scale",
            "each",
            "-o",
        ])
        .arg(out("k3.png"))
        .output()
        .unwrap());
    assert_eq!(count_tiles(&decode(&out("k3.png"))), 32 * 32);

    // Grad-CAM: the input and the top 3 classes, each with its probability; --raw writes the
    // maps.
    let text = ok(convnet()
        .args([
            "gradcam",
            "--checkpoint",
            ck,
            "sample:0",
            "--top",
            "3",
            "--raw",
        ])
        .arg(out("cam.npy"))
        .arg("-o")
        .arg(out("cam.png"))
        .output()
        .unwrap());
    assert_eq!(text.matches('%').count(), 3, "{text}");
    let img = decode(&out("cam.png"));
    assert_eq!(count_tiles(&img), 4);
    assert!(img.width() >= 4 * 224 && img.height() >= 224);
    let raw = convnet::npy::read(&out("cam.npy")).unwrap();
    assert_eq!(raw.dims(), [3, 28, 28]);
    assert!(raw.data().iter().all(|v| (0.0..=1.0).contains(v)));
    for method in ["gradcam++", "saliency"] {
        ok(convnet()
            .args([
                "gradcam",
                "--checkpoint",
                ck,
                "sample:3",
                "--method",
                method,
                "--class",
                "1",
                "-o",
            ])
            .arg(out("c.png"))
            .output()
            .unwrap());
        assert_eq!(count_tiles(&decode(&out("c.png"))), 2, "{method}");
    }

    // Activation maximization: a tile per channel.
    ok(convnet()
        .args([
            "maximize",
            "--checkpoint",
            ck,
            "--layer",
            "features.10",
            "--channels",
            "0..4",
            "--steps",
            "20",
            "-o",
        ])
        .arg(out("max.png"))
        .output()
        .unwrap());
    let img = decode(&out("max.png"));
    assert_eq!(count_tiles(&img), 4);
    assert!(colours(&img) > 50);

    // Curves from a metrics file.
    std::fs::write(
        out("metrics.csv"),
        "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second\n\
         1,0.9,0.7,0.8,0.72,1e-3,10,100\n2,0.5,0.82,0.55,0.8,2e-3,10,100\n3,0.4,0.86,0.5,0.83,1e-3,10,100\n",
    )
    .unwrap();
    ok(convnet()
        .arg("plot")
        .arg(out("metrics.csv"))
        .arg("-o")
        .arg(out("curves.png"))
        .output()
        .unwrap());
    let img = decode(&out("curves.png"));
    assert_eq!(img.dimensions(), (1100, 440));
    // The train (blue) and test (orange) lines are drawn.
    assert!(img.pixels().filter(|p| p.0 == [31, 119, 180]).count() > 200);
    assert!(img.pixels().filter(|p| p.0 == [255, 127, 14]).count() > 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_requests_get_clear_errors_and_no_file() {
    let dir = temp_dir("errors");
    let ck = reference_checkpoint(&dir);
    let ck = ck.to_str().unwrap();
    let png = dir.join("out.png");
    let png_s = png.to_str().unwrap();

    // A picture that is not .png is refused before any work, so --raw is not written either.
    let raw = dir.join("raw.npy");
    let err = fails(
        convnet()
            .args(["gradcam", "--checkpoint", ck, "sample:0", "-o"])
            .arg(dir.join("cam.jpg"))
            .arg("--raw")
            .arg(&raw)
            .output()
            .unwrap(),
    );
    assert!(err.contains("name the file .png"), "{err}");
    assert!(!raw.exists(), "--raw written by a failed command");

    let err = fails(
        convnet()
            .args([
                "features",
                "--checkpoint",
                ck,
                "sample:0",
                "--layer",
                "conv9",
                "-o",
                png_s,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("no layer named 'conv9'") && err.contains("features.0, features.1"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args([
                "features",
                "--checkpoint",
                ck,
                "sample:0",
                "--layer",
                "classifier.1",
                "-o",
                png_s,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("classifier.1") && err.contains("[128]"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args([
                "maximize",
                "--checkpoint",
                ck,
                "--layer",
                "features.10",
                "--channel",
                "64",
                "-o",
                png_s,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("channel 64 is out of range") && err.contains("64 channels"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args([
                "gradcam",
                "--checkpoint",
                ck,
                "sample:0",
                "--class",
                "10",
                "-o",
                png_s,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("--class 10 is out of range") && err.contains("10 classes"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args([
                "kernels",
                "--checkpoint",
                ck,
                "--layer",
                "features.1",
                "-o",
                png_s,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("batchnorm2d")
            && err.contains("features.0, features.3, features.7, features.10"),
        "{err}"
    );

    // An image that does not fit the model: named, with its size and the model's.
    let big = dir.join("big.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([9, 9, 9]))
        .save(&big)
        .unwrap();
    let err = fails(
        convnet()
            .args(["gradcam", "--checkpoint", ck])
            .arg(&big)
            .args(["-o", png_s])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("big.png is a 40x30 RGB image")
            && err.contains("28x28 grayscale")
            && err.contains("--resize"),
        "{err}"
    );
    ok(convnet()
        .args(["gradcam", "--checkpoint", ck])
        .arg(&big)
        .args(["--resize", "-o", png_s])
        .output()
        .unwrap());
    std::fs::remove_file(&png).unwrap();
    let err = fails(
        convnet()
            .args(["gradcam", "--checkpoint", ck, "sample:500", "-o", png_s])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("500 test images") || err.contains("has 500"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args(["gradcam", "--checkpoint", ck, "missing.png", "-o", png_s])
            .output()
            .unwrap(),
    );
    assert!(err.contains("cannot read image missing.png"), "{err}");

    // Output in a missing folder: refused before any work.
    let err = fails(
        convnet()
            .args(["kernels", "--checkpoint", ck, "-o"])
            .arg(dir.join("nope/k.png"))
            .output()
            .unwrap(),
    );
    assert!(err.contains("does not exist"), "{err}");
    let err = fails(
        convnet()
            .arg("plot")
            .arg(dir.join("none.csv"))
            .args(["-o", png_s])
            .output()
            .unwrap(),
    );
    assert!(err.contains("none.csv"), "{err}");
    assert!(!png.exists(), "a failed command left {}", png.display());
    let _ = std::fs::remove_dir_all(&dir);
}
