//! Sizes from users through the real binary (`conv`, `filter`, `shape`, `summary`): each runs
//! with its address space capped, so a command that allocates from a huge stride, padding or
//! layer size aborts instead of passing, and each must end within a few seconds.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{fails, ok, temp_dir};

/// The address space each command may use (the errors and small results below need a few
/// megabytes; thread stacks and allocator arenas take most of this).
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

/// Far above what these commands take (milliseconds), far below a run that allocates
/// gigabytes.
const QUICK: Duration = Duration::from_secs(5);

/// `convnet args...` with its address space capped at [`ADDRESS_SPACE_KIB`]; checks it ended
/// within [`QUICK`].
fn bounded<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_convnet"))
        .args(args)
        .output()
        .expect("sh runs the binary");
    assert!(
        start.elapsed() < QUICK,
        "took {:?}: {}",
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn conv_with_huge_stride_is_computed_in_bounded_memory() {
    // Took 13 GB for 1e8, aborted for 1e9 and panicked (capacity overflow) for u64::MAX.
    for stride in ["100000000", "1000000000", "18446744073709551615"] {
        let out = ok(bounded(&[
            "conv", "--input", "1,2;3,4", "--kernel", "1,0;0,1", "--stride", stride,
        ]));
        assert!(out.contains("output 1x1:\n  [5]"), "{stride}: {out}");
    }
    // Several channels take the direct path (and --coverage its input gradient).
    let out = ok(bounded(&[
        "conv",
        "--input",
        "1,2;3,4 | 5,6;7,8",
        "--kernel",
        "1,0;0,1 | 0,1;1,0",
        "--stride",
        "1,100000000",
        "--coverage",
    ]));
    assert!(out.contains("output 1x1:\n  [18]"), "{out}");
}

#[test]
fn filter_with_huge_stride_runs_in_bounded_memory() {
    let dir = temp_dir("geom-filter-stride");
    let output = dir.join("out.png");
    let astronaut = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/astronaut.png");
    for stride in ["1,10000000", "18446744073709551615,1"] {
        let err = String::from_utf8_lossy(
            &bounded(&[
                "filter",
                astronaut,
                "-o",
                output.to_str().unwrap(),
                "--kernel",
                "box:3",
                "--padding",
                "1",
                "--stride",
                stride,
            ])
            .stderr,
        )
        .to_string();
        assert!(err.contains("wrote"), "{stride}: {err}");
        let (w, h) = image::image_dimensions(&output).unwrap();
        assert!(w == 1 || h == 1, "{stride}: {w}x{h}");
    }
}

#[test]
fn conv_with_huge_padding_is_refused_naming_the_padding() {
    // Aborted: conv had no guard on its output (filter had its own).
    let err = fails(bounded(&[
        "conv",
        "--input",
        "1,2;3,4",
        "--kernel",
        "1,0;0,1",
        "--padding",
        "100000",
    ]));
    assert!(
        err.contains("padding too large")
            && err.contains("[1, 1, 200002, 200002]")
            && err.contains("2147483648"),
        "{err}"
    );
}

#[test]
fn shape_of_a_huge_linear_layer_counts_without_allocating() {
    // Allocated every weight to count them: 6 GB, then aborted.
    let out = ok(bounded(&[
        "shape",
        "--input",
        "28x28x1",
        "flatten",
        "fc:2000000",
    ]));
    assert!(out.contains("1,570,000,000 parameters"), "{out}");
}

#[test]
fn summary_of_a_layer_no_tensor_can_hold_is_refused_naming_the_layer() {
    // PReLU num_parameters = 2^40 aborted.
    let dir = temp_dir("geom-prelu");
    let model = write(
        &dir,
        "prelu.toml",
        "[model]\ninput = [1, 4, 4]\n[[layer]]\nname = \"act\"\ntype = \"prelu\"\n\
         num_parameters = 1099511627776\n",
    );
    let out = dir.join("run").to_string_lossy().into_owned();
    for verb in ["summary", "train"] {
        let mut args = vec![verb, "--model", &model];
        if verb == "train" {
            args.extend(["--epochs", "1", "--out", &out]);
        }
        let err = fails(bounded(&args));
        assert!(
            err.contains("layer 0 ('act', prelu)")
                && err.contains("weight [1099511627776]")
                && err.contains("2147483648"),
            "{verb}: {err}"
        );
    }
}

#[test]
fn shape_arithmetic_that_overflows_is_an_error_naming_the_layer() {
    // adaptive:4294967296x4294967296 then flatten wrapped to 0 features.
    let err = fails(bounded(&[
        "shape",
        "--input",
        "4x4x1",
        "adaptive:4294967296x4294967296",
        "flatten",
    ]));
    assert!(
        err.contains("layer 0 ('1', adaptive_avg_pool2d)")
            && err.contains("[1, 4294967296, 4294967296]"),
        "{err}"
    );
    // Strides whose product overflows gave a wrapped jump.
    let err = fails(bounded(&[
        "shape",
        "--input",
        "28x28x1",
        "conv:1:1x1:s4294967296",
        "conv:1:1x1:s4294967296",
    ]));
    assert!(
        err.contains("layer 1 ('2', conv2d)") && err.contains("receptive field"),
        "{err}"
    );
}

#[test]
fn model_file_pair_values_say_what_they_may_be() {
    // "data did not match any variant of untagged enum PairValue".
    let dir = temp_dir("geom-pairs");
    let cases = [
        (
            "kernel = [3, 3, 3]",
            "kernel: expected an integer or a pair [h, w] of integers, got [3, 3, 3]",
        ),
        (
            "kernel = 3\nstride = \"2\"",
            "stride: expected an integer or a pair [h, w] of integers, got \"2\"",
        ),
        (
            "kernel = 3\ndilation = -1",
            "dilation: expected an integer or a pair [h, w]",
        ),
        (
            "kernel = 3\npadding = [1, 1, 1]",
            "padding: expected an integer, a pair [h, w], [top, bottom, left, right], \"same\" or \"valid\", got [1, 1, 1]",
        ),
    ];
    for (i, (keys, want)) in cases.iter().enumerate() {
        let model = write(
            &dir,
            &format!("m{i}.toml"),
            &format!(
                "[model]\ninput = [1, 8, 8]\n[[layer]]\ntype = \"conv2d\"\nout_channels = 2\n{keys}\n"
            ),
        );
        let err = fails(bounded(&["summary", "--model", &model]));
        assert!(
            err.contains("layer 0 ('0', conv2d)") && err.contains(want),
            "{keys}: {err}"
        );
    }
    let model = write(
        &dir,
        "pool.toml",
        "[model]\ninput = [1, 8, 8]\n[[layer]]\ntype = \"adaptive_avg_pool2d\"\noutput_size = [2]\n",
    );
    let err = fails(bounded(&["summary", "--model", &model]));
    assert!(
        err.contains("output_size: expected an integer or a pair [h, w]"),
        "{err}"
    );
    let model = write(
        &dir,
        "bn.toml",
        "[model]\ninput = [1, 8, 8]\n[[layer]]\ntype = \"batchnorm2d\"\neps = inf\n",
    );
    let err = fails(bounded(&["summary", "--model", &model]));
    assert!(
        err.contains("eps: expected a finite number, got inf"),
        "{err}"
    );
}

#[test]
fn model_file_names_longer_than_the_bound_are_refused() {
    let dir = temp_dir("geom-names");
    let long = "n".repeat(300);
    for (what, model) in [
        (
            "layer",
            format!("[model]\ninput = [1, 8, 8]\n[[layer]]\nname = \"{long}\"\ntype = \"relu\"\n"),
        ),
        (
            "model",
            format!("[model]\nname = \"{long}\"\ninput = [1, 8, 8]\n"),
        ),
        (
            "class",
            format!("[model]\ninput = [1, 8, 8]\nclasses = [\"a\", \"{long}\"]\n"),
        ),
    ] {
        let path = write(&dir, &format!("{what}.toml"), &model);
        let err = fails(bounded(&["summary", "--model", &path]));
        assert!(
            err.contains("a name of 300 characters")
                && err.contains("at most 256")
                && err.len() < 400,
            "{what}: {err}"
        );
    }
}

#[test]
fn model_files_too_large_or_with_too_many_layers_are_refused() {
    let dir = temp_dir("geom-big-model");
    let mut text = String::from("[model]\ninput = [1, 8, 8]\n");
    for _ in 0..10_001 {
        text.push_str("[[layer]]\ntype = \"relu\"\n");
    }
    let path = write(&dir, "many.toml", &text);
    let err = fails(bounded(&["summary", "--model", &path]));
    assert!(
        err.contains("10001 layers are more than a model may have (10000)"),
        "{err}"
    );
    let path = write(&dir, "huge.toml", &format!("# {}\n", "x".repeat(5 << 20)));
    let err = fails(bounded(&["summary", "--model", &path]));
    assert!(err.contains("more than 4194304 bytes"), "{err}");
}

#[test]
fn conv_matrix_errors_name_the_option_the_cell_and_the_problem() {
    // An empty cell was dropped: "1,,2" read as "1,2".
    let err = fails(bounded(&["conv", "--input", "1,,2", "--kernel", "1"]));
    assert!(
        err.contains("invalid input: row 0, column 1 is empty (in '1,,2')"),
        "{err}"
    );
    let err = fails(bounded(&["conv", "--input", "1,2", "--kernel", "1;2,"]));
    assert!(
        err.contains("invalid kernel: row 1, column 1 is empty"),
        "{err}"
    );
    // 1e39 became inf (while "inf" was refused).
    for (option, value, cell) in [
        (
            "--input",
            "1,2;3,1e39",
            "invalid input: row 1, column 1: '1e39'",
        ),
        (
            "--kernel",
            "1 | -1e39",
            "invalid kernel: plane 1, row 0, column 0: '-1e39'",
        ),
        (
            "--kernel",
            "1,inf",
            "invalid kernel: row 0, column 1: 'inf'",
        ),
    ] {
        let (input, kernel) = if option == "--input" {
            (value, "1")
        } else {
            ("1,2;3,4 | 5,6;7,8", value)
        };
        let err = fails(bounded(&["conv", "--input", input, "--kernel", kernel]));
        assert!(
            err.contains(cell) && err.contains("not a finite number"),
            "{err}"
        );
    }
    // --input errors said "kernel".
    let err = fails(bounded(&["conv", "--input", "1,x", "--kernel", "1"]));
    assert!(
        err.contains("invalid input: row 0, column 1: 'x' is not a number"),
        "{err}"
    );
    assert!(!err.contains("kernel"), "{err}");
    let err = fails(bounded(&["conv", "--input", "sobel-x", "--kernel", "1"]));
    assert!(
        err.contains("invalid input: 'sobel-x' is neither rows of numbers"),
        "{err}"
    );
}

#[test]
fn kernel_files_larger_than_the_bound_are_refused_before_reading() {
    let dir = temp_dir("geom-kernel-file");
    let path = dir.join("k.txt");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(17 << 20).unwrap();
    let err = fails(bounded(&[
        "conv",
        "--input",
        "1,2;3,4",
        "--kernel",
        path.to_str().unwrap(),
    ]));
    assert!(err.contains("k.txt: more than 16777216 bytes"), "{err}");
    // A file within the bound is read as text.
    let small = write(&dir, "small.txt", "1, 0\n0, 1\n");
    let out = ok(bounded(&["conv", "--input", "1,2;3,4", "--kernel", &small]));
    assert!(out.contains("output 1x1:\n  [5]"), "{out}");
}

#[test]
fn names_longer_than_a_format_width_do_not_panic_the_tables() {
    // "Formatting argument out of range" when a printed width passed 65,535.
    let label = format!("relu{}", " ".repeat(70_000));
    let out = ok(bounded(&["shape", "--input", "8x8x1", &label]));
    assert!(
        out.contains("relu") && out.lines().all(|l| l.len() < 200),
        "{out}"
    );
    // conv --explain lines up kernel rows of 40,000 values.
    let ones = vec!["1"; 40_000].join(",");
    let out = ok(bounded(&[
        "conv",
        "--input",
        &ones,
        "--kernel",
        &ones,
        "--explain",
    ]));
    assert!(
        out.contains("output 1x1:\n  [40000]"),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
}
