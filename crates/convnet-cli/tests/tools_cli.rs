//! End-to-end tests of `convnet filter | conv | shape | summary` with the real binary.

use std::path::Path;
use std::process::Output;

mod common;
use common::{assert_says, convnet, fails, ok, repo, run, save_rgb, temp_dir};

fn conv(args: &[&str]) -> Output {
    convnet().arg("conv").args(args).output().unwrap()
}

/// The rows of the matrix printed after `header` (lines like `  [a b c]`).
fn matrix_after(text: &str, header: &str) -> Vec<Vec<i64>> {
    text.lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('['))
        .map(|l| {
            l.trim()
                .trim_matches(['[', ']'])
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect()
}

/// `text` with runs of spaces collapsed and no spaces just inside brackets, so matrices
/// compare without their column alignment.
fn squeeze(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    words.join(" ").replace("[ ", "[").replace(" ]", "]")
}

#[test]
fn conv_explains_the_docs_example_with_its_nine_products() {
    let out = ok(conv(&[
        "--input",
        "10,20,30;15,25,35;20,30,40",
        "--kernel",
        "1,0,-1;1,0,-1;1,0,-1",
        "--explain",
    ]));
    assert!(out.contains("output (0, 0) = -60"), "{out}");
    assert!(
        out.contains("sum: 10 + 0 - 30 + 15 + 0 - 35 + 20 + 0 - 40 = -60"),
        "{out}"
    );
    let flat = squeeze(&out);
    assert!(
        flat.contains("[10 0 -30]") && flat.contains("[15 0 -35]") && flat.contains("[20 0 -40]"),
        "{out}"
    );
    assert!(out.contains("floor((3 - 3 + 2*0) / 1) + 1 = 1"), "{out}");
    assert_eq!(matrix_after(&out, "output 1x1"), [[-60]]);
}

#[test]
fn conv_output_sizes_of_the_docs() {
    let four = "1,2,3,4;5,6,7,8;9,10,11,12;13,14,15,16";
    let out = ok(conv(&["--input", four, "--kernel", "1,1;1,1"]));
    assert!(out.contains("output 3x3"), "{out}");
    let out = ok(conv(&[
        "--input", four, "--kernel", "1,1;1,1", "--stride", "2",
    ]));
    assert!(out.contains("output 2x2"), "{out}");
    assert_eq!(matrix_after(&out, "output 2x2"), [[14, 22], [46, 54]]);
    // The flipped kernel: convolution of [1, 2] with [[1, 2]] rows.
    let out = ok(conv(&[
        "--input", "1,2,3", "--kernel", "1,0,-1", "--mode", "convolve",
    ]));
    assert_eq!(matrix_after(&out, "output 1x1"), [[2]]);
}

#[test]
fn conv_coverage_shows_how_often_each_pixel_is_used() {
    let six = ["1,1,1,1,1,1"; 6].join(";");
    let out = ok(conv(&[
        "--input",
        &six,
        "--kernel",
        "1,1,1;1,1,1;1,1,1",
        "--coverage",
    ]));
    let counts = matrix_after(&out, "coverage");
    assert_eq!(counts[0], [1, 2, 3, 3, 2, 1]);
    assert_eq!(counts[2], [3, 6, 9, 9, 6, 3]);
    assert_eq!((counts[0][0], counts[2][2], counts[3][3]), (1, 9, 9));
    let out = ok(conv(&[
        "--input",
        &six,
        "--kernel",
        "1,1,1;1,1,1;1,1,1",
        "--coverage",
        "--padding",
        "1",
    ]));
    let counts = matrix_after(&out, "coverage");
    assert_eq!(counts[0], [4, 6, 6, 6, 6, 4]);
    assert_eq!(counts[1], [6, 9, 9, 9, 9, 6]);
    assert_eq!(counts[5], [4, 6, 6, 6, 6, 4]);
}

#[test]
fn conv_multi_channel_and_bad_matrices() {
    let out = ok(conv(&[
        "--input",
        "1,2;3,4 | 5,6;7,8",
        "--kernel",
        "1,0;0,1 | 0,1;1,0",
    ]));
    // (1 + 4) + (6 + 7)
    assert_eq!(matrix_after(&out, "output 1x1"), [[18]]);
    let err = fails(conv(&["--input", "1,2;3", "--kernel", "1"]));
    assert!(
        err.contains("ragged rows: row 1 has 1 values but row 0 has 2"),
        "{err}"
    );
    let err = fails(conv(&["--input", "1,2;3,four", "--kernel", "1"]));
    assert!(err.contains("'four' is not a number"), "{err}");
    let err = fails(conv(&[
        "--input",
        "1,2;3,4",
        "--kernel",
        "1,1;1,1",
        "--padding",
        "same",
    ]));
    assert!(
        err.contains("'same' is ambiguous for the even 2x2 kernel")
            && err.contains("bottom and right"),
        "{err}"
    );
    let err = fails(conv(&[
        "--input", "1,2;3,4", "--kernel", "1", "--stride", "0",
    ]));
    assert!(err.contains("invalid stride"), "{err}");
    let err = fails(conv(&[
        "--input",
        "1,2;3,4",
        "--kernel",
        "1,1,1;1,1,1;1,1,1",
    ]));
    assert!(
        err.contains("kernel 3x3") && err.contains("larger than the padded input 2x2"),
        "{err}"
    );
}

/// `convnet filter INPUT -o OUTPUT ARGS...`, from `dir`.
fn filter(dir: &Path, input: &Path, output: &Path, args: &[&str]) -> Output {
    run(convnet()
        .current_dir(dir)
        .arg("filter")
        .arg(input)
        .arg("-o")
        .arg(output)
        .args(args))
}

#[test]
fn filter_writes_images_and_refuses_bad_input_without_writing() {
    let dir = temp_dir("filter");
    let input = dir.join("in.png");
    save_rgb(&input, [40, 30], |x, y| {
        [(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8]
    });
    let written = |name: &str, args: &[&str]| {
        let out = dir.join(name);
        ok(filter(&dir, &input, &out, args));
        image::open(&out).unwrap()
    };
    let img = written("edges.png", &["--kernel", "sobel"]);
    assert_eq!((img.width(), img.height()), (40, 30));
    // Gradients of a ramp: a flat, non-zero response inside.
    assert!(img.to_rgb8().pixels().any(|p| p.0 != [0, 0, 0]));
    // A 3-channel kernel sums over the channels: one output channel; stride halves the size.
    let img = written(
        "gray.png",
        &[
            "--kernel",
            "0.299 | 0.587 | 0.114",
            "--stride",
            "2",
            "--padding",
            "valid",
            "--bits",
            "16",
        ],
    );
    assert_eq!(
        (img.width(), img.height(), img.color()),
        (20, 15, image::ColorType::L16)
    );
    // Several kernels in sequence, repeated.
    let sequence = [
        "--kernel",
        "box:3",
        "--kernel",
        "sharpen",
        "--repeat",
        "2",
        "--output-range",
        "rescale",
    ];
    written("seq.jpg", &sequence);
    // A kernel file is read as a file whatever its name starts with.
    std::fs::write(dir.join("3x3.txt"), "0,1,0; 1,-4,1; 0,1,0").unwrap();
    written("lap.png", &["--kernel", "./3x3.txt"]);
    written("lap.png", &["--kernel", "3x3.txt"]);

    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"not an image").unwrap();
    let (bad_png, bad_jpg) = (dir.join("bad.png"), dir.join("bad.jpg"));
    let missing = dir.join("nowhere").join("x.png");
    // (input, output, options, what the error says)
    let refused: [(&Path, &Path, &[&str], &[&str]); 10] = [
        (
            &input,
            &missing,
            &["--kernel", "sobel-x"],
            &["nowhere", "does not exist"],
        ),
        (&broken, &bad_png, &["--kernel", "sobel-x"], &["broken.png"]),
        (&input, &bad_png, &["--kernel", "1,2;3"], &["ragged rows"]),
        (
            &input,
            &bad_png,
            &["--kernel", "1,1;1,1"],
            &["'same' is ambiguous", "--padding 0,1,0,1"],
        ),
        (
            &input,
            &bad_png,
            &["--kernel", "sobel", "--stride", "0"],
            &["stride"],
        ),
        (
            &input,
            &bad_png,
            &["--kernel", "blurry"],
            &["unknown kernel 'blurry'"],
        ),
        (
            &input,
            &bad_png,
            &["--kernel", "box:99999"],
            &["from 1 to 1001"],
        ),
        (
            &input,
            &bad_png,
            &[
                "--kernel",
                "sobel",
                "--padding",
                "100000",
                "--padding-mode",
                "zeros",
            ],
            &["padding too large", "[1, 3, 200030, 200040]"],
        ),
        (
            &input,
            &bad_jpg,
            &["--kernel", "sobel", "--bits", "16"],
            &["JPEG holds 8 bits"],
        ),
        (&input, &bad_png, &[], &["give at least one --kernel"]),
    ];
    for (input, output, args, expected) in refused {
        let err = fails(filter(&dir, input, output, args));
        assert_says(&format!("{args:?}"), &err, expected);
    }
    assert!(
        !bad_png.exists() && !bad_jpg.exists(),
        "nothing written on failure"
    );

    let list = ok(run(convnet().args(["filter", "--list"])));
    assert!(
        list.contains("sobel-x")
            && squeeze(&list).contains("[-2 0 2]")
            && list.contains("gaussian:SIGMA"),
        "{list}"
    );
}

#[test]
fn shape_prints_sizes_parameters_and_receptive_fields() {
    let out = ok(convnet()
        .args(["shape", "--input", "32x32x3", "conv:6:5x5:s1:same"])
        .output()
        .unwrap());
    assert!(out.contains("32x32x6") && out.contains("456"), "{out}");
    assert!(out.contains("floor((32 - 5 + 2*2) / 1) + 1 = 32"), "{out}");
    let out = ok(convnet()
        .args([
            "shape",
            "--input",
            "32x32x1",
            "conv:8:3x3",
            "conv:8:3x3",
            "conv:8:3x3",
            "--json",
        ])
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layers"][2]["receptive_field"], serde_json::json!([7, 7]));
    let err = fails(
        convnet()
            .args(["shape", "--input", "3x3x1", "conv:6:5x5"])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("kernel 5x5") && err.contains("padded input 3x3"),
        "{err}"
    );
    let err = fails(
        convnet()
            .args(["shape", "--input", "3x3", "conv:6:5z5"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("'conv:6:5z5'"), "{err}");
}

#[test]
fn summary_of_the_reference_model_has_pytorchs_totals() {
    let model = repo("models/fashion_cnn.toml");
    let out = ok(convnet()
        .args(["summary", "--model"])
        .arg(&model)
        .output()
        .unwrap());
    assert!(out.contains("total: 468,202 parameters"), "{out}");
    assert!(
        out.contains("classifier.1") && out.contains("401,536"),
        "{out}"
    );
    let json = ok(convnet()
        .args(["summary", "--json", "--model"])
        .arg(&model)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["total_params"], 468202);
    let out = ok(convnet()
        .args(["summary", "--model"])
        .arg(repo("models/resnet18.toml"))
        .output()
        .unwrap());
    assert!(out.contains("total: 11,689,512 parameters"), "{out}");
}
