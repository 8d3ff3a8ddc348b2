//! `convnet::preprocess`: the preprocessing a checkpoint stores (round trip, old checkpoints,
//! every bad value refused naming checkpoint.json and the field), the center crop (pixel-exact
//! on synthetic pictures), and resize-then-crop against torchvision's `Resize` +
//! `CenterCrop` on PIL images (fixtures of tools/gen_preprocess_fixtures.py).

use std::path::{Path, PathBuf};

use convnet::checkpoint::{self, CheckpointMeta};
use convnet::data::Normalization;
use convnet::preprocess::{ChannelOrder, Preprocessing, Resize, read_image, read_pixels};
use convnet::{Model, ModelSpec};

#[path = "common/data_files.rs"]
mod data_files;
use data_files::TempDir;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/preprocess")
        .join(name)
}

/// The reference Fashion-MNIST model (1x28x28, 10 classes).
fn fashion_model() -> Model {
    let spec = ModelSpec::load(&repo("models/fashion_cnn.toml")).unwrap();
    Model::from_spec(&spec, 1).unwrap()
}

fn meta(preprocessing: Option<Preprocessing>) -> CheckpointMeta {
    CheckpointMeta {
        format: CheckpointMeta::FORMAT,
        classes: (0..10).map(|i| format!("class {i}")).collect(),
        normalization: Normalization {
            mean: vec![0.25],
            std: vec![0.5],
        },
        training: None,
        config: None,
        data: None,
        preprocessing,
    }
}

fn edit_json(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(checkpoint::META_FILE);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn preprocessing_round_trips_through_checkpoint_json() {
    let dir = TempDir::new("preprocess-round-trip");
    let model = fashion_model();
    for preprocessing in [
        Preprocessing::resize_and_crop(32, 28),
        Preprocessing {
            resize: Resize::Size([40, 30]),
            crop: Some([28, 28]),
            channel_order: ChannelOrder::Rgb,
        },
        Preprocessing::squash([28, 28]),
    ] {
        let ck = dir.file(&format!("ck-{}", preprocessing.describe().len()));
        let saved = meta(Some(preprocessing));
        checkpoint::save(&ck, &model, &saved, &[]).unwrap();
        let text = std::fs::read_to_string(ck.join(checkpoint::META_FILE)).unwrap();
        assert!(text.contains("\"preprocessing\""), "{text}");
        let loaded = checkpoint::load(&ck).unwrap();
        assert_eq!(loaded.meta, saved);
        assert_eq!(
            loaded.meta.preprocessing(model.input_shape()),
            preprocessing
        );
    }
    // The form checkpoint.json holds, as the documentation shows it.
    let json = serde_json::to_value(Preprocessing::resize_and_crop(256, 224)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"resize": {"shorter_side": 256}, "crop": [224, 224], "channel_order": "rgb"})
    );
    let exact: Preprocessing =
        serde_json::from_value(serde_json::json!({"resize": {"size": [28, 28]}})).unwrap();
    assert_eq!(exact, Preprocessing::squash([28, 28]));
}

#[test]
fn a_checkpoint_without_preprocessing_loads_unchanged_and_means_a_resize_to_the_input() {
    let dir = TempDir::new("preprocess-old");
    let model = fashion_model();
    let ck = dir.file("old");
    checkpoint::save(&ck, &model, &meta(None), &[]).unwrap();
    let text = std::fs::read_to_string(ck.join(checkpoint::META_FILE)).unwrap();
    // Written as before the field existed.
    assert!(!text.contains("preprocessing"), "{text}");
    let loaded = checkpoint::load(&ck).unwrap();
    assert_eq!(loaded.meta, meta(None));
    assert_eq!(
        loaded.meta.preprocessing(model.input_shape()),
        Preprocessing::squash([28, 28])
    );
    // And the input it makes is what the resize to the input size made before.
    let image = dir.file("x.png");
    image::RgbImage::from_fn(50, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, ((x + y) * 2) as u8])
    })
    .save(&image)
    .unwrap();
    let dims = model.input_shape();
    let before = convnet::image::read_planes(&image, dims, convnet::image::Fit::Resize).unwrap();
    let now = read_image(
        &image,
        dims,
        &loaded.meta.preprocessing(dims),
        &loaded.meta.normalization,
    )
    .unwrap();
    assert_eq!(now.pixels, before);
    assert_eq!(
        now.input,
        loaded.meta.normalization.to_input(&before, dims).unwrap()
    );
}

#[test]
fn a_preprocessing_that_cannot_make_the_models_input_is_refused_naming_the_file_and_field() {
    let dir = TempDir::new("preprocess-bad");
    let model = fashion_model();
    let ck = dir.file("ck");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"resize": {"shorter_side": 24}, "crop": [28, 28]}),
            "preprocessing.crop: 28x28 is larger than the resized image",
        ),
        (
            serde_json::json!({"resize": {"shorter_side": 32}, "crop": [24, 24]}),
            "preprocessing.crop: makes 24x24 images but the model takes 28x28",
        ),
        (
            serde_json::json!({"resize": {"size": [28, 30]}}),
            "preprocessing.resize.size: makes 28x30 images",
        ),
        (
            serde_json::json!({"resize": {"shorter_side": 28}}),
            "add a crop (preprocessing.crop) of 28x28",
        ),
        (
            serde_json::json!({"resize": {"shorter_side": 0}, "crop": [28, 28]}),
            "preprocessing.resize.shorter_side: 0 pixels",
        ),
        (
            serde_json::json!({"resize": {"shorter_side": 100000}, "crop": [28, 28]}),
            "preprocessing.resize.shorter_side: 100000 pixels (a side is 1 to 16384)",
        ),
        (
            serde_json::json!({"resize": {"size": [28, 28]}, "channel_order": "bgr"}),
            "preprocessing.channel_order: bgr orders 3 colour channels",
        ),
        (
            serde_json::json!({"resize": {"size": [28, 28]}, "channel_order": "grb"}),
            "unknown variant `grb`",
        ),
        (
            serde_json::json!({"resize": {"size": [28, 28]}, "flip": true}),
            "unknown field `flip`",
        ),
        (
            serde_json::json!({"resize": {"longer_side": 28}}),
            "unknown variant `longer_side`",
        ),
    ];
    for (value, says) in cases {
        checkpoint::save(&ck, &model, &meta(None), &[]).unwrap();
        edit_json(&ck, |v| v["preprocessing"] = value.clone());
        let err = checkpoint::load(&ck).unwrap_err().to_string();
        assert!(
            err.contains("checkpoint.json") && err.contains(says),
            "{value}: {err}"
        );
    }
}

/// A picture `[w, h]` whose four quadrants are red, green, blue and white.
fn quadrants(path: &Path, [w, h]: [u32; 2]) {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(match (x < w / 2, y < h / 2) {
            (true, true) => [255, 0, 0],
            (false, true) => [0, 255, 0],
            (true, false) => [0, 0, 255],
            (false, false) => [255, 255, 255],
        })
    })
    .save(path)
    .unwrap();
}

#[test]
fn the_crop_is_centered_pixel_exact() {
    let dir = TempDir::new("preprocess-center");
    // Without resampling (the resize keeps the size): a 12x9 picture of distinct pixels,
    // cropped 5x6 (HxW) at top round(4 / 2) = 2, left round(6 / 2) = 3.
    let path = dir.file("numbered.png");
    image::GrayImage::from_fn(12, 9, |x, y| image::Luma([(y * 12 + x) as u8]))
        .save(&path)
        .unwrap();
    let exact = Preprocessing {
        resize: Resize::Size([9, 12]),
        crop: Some([5, 6]),
        channel_order: ChannelOrder::Rgb,
    };
    let got = read_pixels(&path, [1, 5, 6], &exact).unwrap();
    let want: Vec<u8> = (2..7)
        .flat_map(|y| (3..9).map(move |x| (y * 12 + x) as u8))
        .collect();
    assert_eq!(got, want);
    // Odd margins round to even as torchvision's int(round(...)): 12x9 cropped to 4x9 leaves
    // 5 rows and 3 columns: top round(2.5) = 2, left round(1.5) = 2.
    let odd = Preprocessing {
        crop: Some([4, 9]),
        ..exact
    };
    let got = read_pixels(&path, [1, 4, 9], &odd).unwrap();
    let want: Vec<u8> = (2..6)
        .flat_map(|y| (2..11).map(move |x| (y * 12 + x) as u8))
        .collect();
    assert_eq!(got, want);

    // With resampling: 64x48 quadrants, the shorter side halved (32x24), cropped 16x16 at
    // (4, 8): the quadrants' corner lands between crop pixels 7 and 8 on both axes.
    let path = dir.file("quadrants.png");
    quadrants(&path, [64, 48]);
    let crop = read_pixels(&path, [3, 16, 16], &Preprocessing::resize_and_crop(24, 16)).unwrap();
    let at = |c: usize, y: usize, x: usize| crop[(c * 16 + y) * 16 + x];
    let rgb = |y: usize, x: usize| [at(0, y, x), at(1, y, x), at(2, y, x)];
    for y in 0..16 {
        for x in 0..16 {
            // Away from the corner's rows and columns, each quadrant's own colour, exactly.
            let inner = |v: usize| !(6..=9).contains(&v);
            if inner(y) && inner(x) {
                let want = match (x < 8, y < 8) {
                    (true, true) => [255, 0, 0],
                    (false, true) => [0, 255, 0],
                    (true, false) => [0, 0, 255],
                    (false, false) => [255, 255, 255],
                };
                assert_eq!(rgb(y, x), want, "pixel ({y}, {x})");
            }
        }
    }
    // Symmetric about the corner: row 7 mixes as much of the lower colour as row 8 of the
    // upper (red/blue on the left), column 7 as column 8 (red/green on top).
    for x in 0..4 {
        assert_eq!(at(2, 7, x), 255 - at(2, 8, x), "rows 7 and 8 at column {x}");
        assert_eq!(at(0, 7, x), 255 - at(0, 8, x), "rows 7 and 8 at column {x}");
        assert!(at(0, 7, x) > 128, "row 7 is mostly red: {:?}", rgb(7, x));
    }
    for y in 0..4 {
        assert_eq!(at(1, y, 7), 255 - at(1, y, 8), "columns 7 and 8 at row {y}");
        assert!(at(0, y, 7) > 128, "column 7 is mostly red: {:?}", rgb(y, 7));
    }
}

/// How far `ours` is from torchvision's picture: (largest, mean) absolute difference of the
/// bytes, and the share of bytes that differ by more than 1.
fn difference(ours: &[u8], theirs: &[u8]) -> (u8, f64, f64) {
    assert_eq!(ours.len(), theirs.len());
    let diffs: Vec<u8> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let max = diffs.iter().copied().max().unwrap();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let over_one = diffs.iter().filter(|&&d| d > 1).count() as f64 / diffs.len() as f64;
    (max, mean, over_one)
}

fn torchvision(name: &str, dims: [usize; 3]) -> Vec<u8> {
    let img = convnet::image::decode(&fixture(name)).unwrap();
    assert_eq!(
        [img.height() as usize, img.width() as usize],
        [dims[1], dims[2]]
    );
    convnet::image::to_planes(&img, convnet::image::Color::Rgb)
}

/// Resize(256) + CenterCrop(224) of chelsea.png (451x300) and coffee.png (600x400) against
/// torchvision on PIL images. The crop is the same window (both resize to 384x256 and crop
/// at (16, 80)); the pixels differ only by the filters' arithmetic: PIL's bilinear filter
/// (antialiased, its support widened by the scale, as ours) works in fixed point and rounds
/// to bytes between its horizontal and vertical passes, ours in f32 throughout. Bound: no
/// byte more than 1 apart, and a mean difference under 0.25 (measured: 0.18 and 0.16; no
/// byte more than 1 apart).
#[test]
fn resize_256_and_crop_224_match_torchvision_on_pil_images() {
    let dims = [3, 224, 224];
    for photo in ["chelsea", "coffee"] {
        let ours = read_pixels(
            &repo(&format!("data/{photo}.png")),
            dims,
            &Preprocessing::resize_and_crop(256, 224),
        )
        .unwrap();
        let theirs = torchvision(&format!("{photo}_resize256_crop224.png"), dims);
        let (max, mean, over_one) = difference(&ours, &theirs);
        eprintln!("{photo}: max {max}, mean {mean:.4}, more than 1 apart {over_one:.4}");
        assert!(
            max <= 1 && mean < 0.25 && over_one == 0.0,
            "{photo}: max {max}, mean {mean}, share over 1 {over_one}"
        );
    }
}

/// Resize((160, 200)), an exact height and width, against torchvision: the same bound
/// (measured: mean differences 0.14 and 0.12).
#[test]
fn an_exact_resize_matches_torchvision_on_pil_images() {
    let dims = [3, 160, 200];
    for photo in ["chelsea", "coffee"] {
        let ours = read_pixels(
            &repo(&format!("data/{photo}.png")),
            dims,
            &Preprocessing::squash([160, 200]),
        )
        .unwrap();
        let theirs = torchvision(&format!("{photo}_resize160x200.png"), dims);
        let (max, mean, over_one) = difference(&ours, &theirs);
        eprintln!("{photo}: max {max}, mean {mean:.4}, more than 1 apart {over_one:.4}");
        assert!(
            max <= 1 && mean < 0.25 && over_one == 0.0,
            "{photo}: max {max}, mean {mean}, share over 1 {over_one}"
        );
    }
}

#[test]
fn bgr_models_get_blue_first_while_pictures_stay_rgb() {
    let dir = TempDir::new("preprocess-bgr");
    let path = dir.file("quadrants.png");
    quadrants(&path, [8, 8]);
    let bgr = Preprocessing {
        channel_order: ChannelOrder::Bgr,
        ..Preprocessing::squash([8, 8])
    };
    let norm = Normalization {
        mean: vec![0.0, 0.5, 1.0],
        std: vec![1.0, 1.0, 2.0],
    };
    let m = read_image(&path, [3, 8, 8], &bgr, &norm).unwrap();
    // Top-left pixel is red: pictures see (255, 0, 0); the model's plane 0 is blue (0).
    assert_eq!([m.pixels[0], m.pixels[64], m.pixels[128]], [255, 0, 0]);
    let x = m.input.data();
    assert_eq!([x[0], x[64], x[128]], [0.0, -0.5, 0.0]);
}

#[test]
fn a_strip_enlarged_beyond_the_image_bound_is_refused_naming_the_file() {
    let dir = TempDir::new("preprocess-strip");
    let path = dir.file("strip.png");
    image::GrayImage::from_pixel(4000, 2, image::Luma([7]))
        .save(&path)
        .unwrap();
    // The shorter side 2 -> 256 makes the longer 512000 pixels.
    let err = read_pixels(
        &path,
        [1, 224, 224],
        &Preprocessing::resize_and_crop(256, 224),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("strip.png") && err.contains("4000x2 image resized to 512000x256"),
        "{err}"
    );
}
