//! `convnet features | kernels | gradcam | maximize | plot` on a checkpoint of the reference
//! model: every picture is decoded and checked for its size and content (as many tiles as
//! maps, none blank), and bad requests get clear errors and no file.

use std::path::{Path, PathBuf};

use convnet::checkpoint::{self, CheckpointMeta};
use convnet::data::{self, FASHION_MNIST_CLASSES};

mod common;
use common::{assert_says, convnet, fails, ok, repo, save_rgb, temp_dir};

/// A checkpoint of the reference model (freshly initialized: the pictures' structure, not
/// what they show, is under test here; `tests/inspect.rs` checks the content on a trained
/// model).
fn reference_checkpoint(dir: &Path) -> PathBuf {
    let spec = convnet::ModelSpec::load(&repo("models/fashion_cnn.toml")).unwrap();
    let model = convnet::Model::from_spec(&spec, 3).unwrap();
    let sample = data::embedded_sample();
    let meta = CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes: FASHION_MNIST_CLASSES.map(String::from).to_vec(),
        normalization: sample.train.normalization(),
        training: None,
        config: None,
        data: None,
        preprocessing: None,
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
}

#[test]
fn bad_requests_get_clear_errors_and_no_file() {
    let dir = temp_dir("errors");
    let ck = reference_checkpoint(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (ck, png, raw, big) = (
        ck.to_str().unwrap(),
        path("out.png"),
        path("raw.npy"),
        path("big.png"),
    );
    let (cam_jpg, nowhere, no_csv) = (path("cam.jpg"), path("nope/k.png"), path("none.csv"));
    save_rgb(Path::new(&big), [40, 30], |_, _| [9, 9, 9]);
    let gradcam = |image: &str, extra: &[&str]| -> Vec<String> {
        ["gradcam", "--checkpoint", ck, image, "-o", &png]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let words = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    let refused: Vec<(Vec<String>, &[&str])> = vec![
        // A picture that is not .png is refused before any work, so --raw is not written
        // either.
        (
            words(&[
                "gradcam",
                "--checkpoint",
                ck,
                "sample:0",
                "-o",
                &cam_jpg,
                "--raw",
                &raw,
            ]),
            &["name the file .png"],
        ),
        (
            words(&[
                "features",
                "--checkpoint",
                ck,
                "sample:0",
                "--layer",
                "conv9",
                "-o",
                &png,
            ]),
            &["no layer named 'conv9'", "features.0, features.1"],
        ),
        (
            words(&[
                "features",
                "--checkpoint",
                ck,
                "sample:0",
                "--layer",
                "classifier.1",
                "-o",
                &png,
            ]),
            &["classifier.1", "[128]"],
        ),
        (
            words(&[
                "maximize",
                "--checkpoint",
                ck,
                "--layer",
                "features.10",
                "--channel",
                "64",
                "-o",
                &png,
            ]),
            &["channel 64 is out of range", "64 channels"],
        ),
        (
            gradcam("sample:0", &["--class", "10"]),
            &["--class 10 is out of range", "10 classes"],
        ),
        (
            words(&[
                "kernels",
                "--checkpoint",
                ck,
                "--layer",
                "features.1",
                "-o",
                &png,
            ]),
            &[
                "batchnorm2d",
                "features.0, features.3, features.7, features.10",
            ],
        ),
        // An image that does not fit the model: named, with its size and the model's.
        (
            gradcam(&big, &[]),
            &[
                "big.png is a 40x30 RGB image",
                "28x28 grayscale",
                "--resize",
            ],
        ),
        (gradcam("sample:500", &[]), &["500 test images"]),
        (
            gradcam("missing.png", &[]),
            &["cannot read image missing.png"],
        ),
        // Output in a missing folder: refused before any work.
        (
            words(&["kernels", "--checkpoint", ck, "-o", &nowhere]),
            &["does not exist"],
        ),
        (words(&["plot", &no_csv, "-o", &png]), &["none.csv"]),
    ];
    for (args, says) in refused {
        let err = fails(convnet().args(&args).output().unwrap());
        assert_says(&args.join(" "), &err, says);
    }
    assert!(
        !Path::new(&raw).exists(),
        "--raw written by a failed command"
    );
    assert!(!Path::new(&png).exists(), "a failed command left {png}");
    // The image that did not fit is read when converted.
    ok(convnet()
        .args(gradcam(&big, &["--resize"]))
        .output()
        .unwrap());
    assert!(Path::new(&png).exists());
}
