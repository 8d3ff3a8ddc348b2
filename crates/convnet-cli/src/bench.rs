//! `convnet bench`: time conv2d forward and forward + backward on the layers of a suite, the
//! same way `bench/torch_conv_suite.py` times PyTorch, so the two compare line by line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet_core::{
    Conv2dAlgo, Conv2dParams, GradRequest, Padding, Tensor,
    geometry::conv2d_flops,
    ops::conv2d::{conv2d_backward_with, conv2d_with},
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::io::{check_distinct, read_text};
use convnet::files::{check_output, write_atomic};

/// The largest suite or report file read.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// The most layers in a suite.
const MAX_SUITE_LAYERS: usize = 1000;
/// The most memory one layer of a suite may take: input, weights, output and their gradients.
/// Layers run one at a time, so this bounds the whole run too.
const MAX_LAYER_BYTES: u64 = 2 << 30;
/// The most work in one forward pass of a suite layer (a layer runs some 80 passes; at this
/// bound, about half a second each on one core).
const MAX_LAYER_FLOPS: u64 = 100_000_000_000;
/// The most times `--repeat` runs the suite.
const MAX_REPEAT: u64 = 100;

/// The suite used when `--suite` is not given (a copy of the project's shared suite).
const DEFAULT_SUITE: &str = include_str!("../../../bench/conv-suite.json");

#[derive(Args)]
#[command(after_help = "Examples:
  convnet bench
  convnet bench --json ours.json --compare torch.json
  convnet bench --repeat 3 --compare torch-1.json --compare torch-2.json
  convnet bench --suite my-layers.json --layer res-128 --parts --algo im2col
  convnet bench --filter --compare opencv.json   (from bench/opencv_filter.py --json)
  convnet bench --model models/mobilenet_v2.onnx --batch 1,32   (a whole model's inference)
  convnet bench --train models/fashion_cnn.toml --batch 128 --steps 20 --repeat 3 \
      --compare-torch ~/.venv-torch/bin/python")]
pub struct BenchArgs {
    /// Suite file (JSON, same format as bench/conv-suite.json); default: the built-in suite.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Write the timings as JSON (the schema bench/torch_conv_suite.py --json writes).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Timings of another engine (e.g. from bench/torch_conv_suite.py --json) to print
    /// side by side, with our speed relative to it (>1: we are faster). Repeat the flag to
    /// give several runs of it: each layer takes its best time.
    #[arg(long)]
    compare: Vec<PathBuf>,
    /// Measure the whole suite this many times and keep each layer's best time (these
    /// machines are noisy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_REPEAT))]
    repeat: u64,
    /// Which conv2d implementation to time.
    #[arg(long, value_enum, default_value_t = AlgoArg::Auto)]
    algo: AlgoArg,
    /// Only layers whose name contains this text (may be repeated).
    #[arg(long)]
    layer: Vec<String>,
    /// Also time grad_input and grad_weight on their own, to see where backward time goes.
    #[arg(long)]
    parts: bool,
    /// Time image filtering instead (what `convnet filter` runs): a 3840x2160 RGB float
    /// image, 3x3, 5x5 and 7x7 kernels, 'same' size, in the border modes OpenCV shares;
    /// `--compare` takes bench/opencv_filter.py's JSON.
    #[arg(long, conflicts_with_all = ["suite", "algo", "parts"])]
    filter: bool,
    /// Time a whole model's inference instead: an ONNX file or a checkpoint folder.
    #[arg(long, conflicts_with_all = ["suite", "algo", "parts", "filter", "compare", "layer", "train"])]
    model: Option<PathBuf>,
    /// Time whole training steps of this model file instead (forward, cross-entropy,
    /// backward, AdamW step on the reference recipe's schedule) on random images, in
    /// images/s, and the process's peak RSS.
    #[arg(long, value_name = "MODEL", conflicts_with_all = ["suite", "algo", "parts", "filter", "compare", "layer", "json"])]
    train: Option<PathBuf>,
    /// Batch sizes: with --model, comma-separated (default 1,32); with --train, one size
    /// (default 128).
    #[arg(long)]
    batch: Option<String>,
    /// Timed training steps per run (with --train), after two warm-up steps.
    #[arg(long, default_value_t = 20, requires = "train",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TRAIN_STEPS))]
    steps: u64,
    /// With --train: also run tools/fashion_reference.py's same recipe (the reference model)
    /// under this Python, which needs PyTorch, interleaved with ours run by run.
    #[arg(long, value_name = "PYTHON", requires = "train")]
    compare_torch: Option<PathBuf>,
}

/// The largest --batch of a training bench.
const MAX_TRAIN_BATCH: usize = 1 << 16;

/// The batch size of `bench --train`: one size from 1 to [`MAX_TRAIN_BATCH`], 128 if not given.
fn train_batch(text: Option<&str>) -> Result<usize> {
    let Some(text) = text else { return Ok(128) };
    match text.trim().parse::<usize>() {
        Ok(b) if (1..=MAX_TRAIN_BATCH).contains(&b) => Ok(b),
        _ => {
            bail!("--batch '{text}': with --train, give one batch size from 1 to {MAX_TRAIN_BATCH}")
        }
    }
}
/// The most timed steps of a training bench.
const MAX_TRAIN_STEPS: u64 = 100_000;

#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgoArg {
    Auto,
    Direct,
    Im2col,
    Depthwise,
    Pointwise,
    Winograd,
    Reference,
}

impl From<AlgoArg> for Conv2dAlgo {
    fn from(a: AlgoArg) -> Self {
        match a {
            AlgoArg::Auto => Conv2dAlgo::Auto,
            AlgoArg::Direct => Conv2dAlgo::Direct,
            AlgoArg::Im2col => Conv2dAlgo::Im2col,
            AlgoArg::Depthwise => Conv2dAlgo::Depthwise,
            AlgoArg::Pointwise => Conv2dAlgo::Pointwise,
            AlgoArg::Winograd => Conv2dAlgo::Winograd,
            AlgoArg::Reference => Conv2dAlgo::Reference,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    layers: Vec<SuiteLayer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteLayer {
    name: String,
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    r: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    groups: usize,
}

#[derive(Serialize, Deserialize)]
struct Report {
    engine: String,
    threads: usize,
    layers: Vec<Row>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Row {
    name: String,
    fwd_ms: f64,
    fwd_gflops: f64,
    fwdbwd_ms: f64,
    fwdbwd_gflops: f64,
}

/// Seconds per call: two warm-up calls, then the best of three runs of `reps` calls. What
/// `f` returns is kept from the optimizer and dropped.
fn time_per_call<T>(mut f: impl FnMut() -> Result<T>, reps: usize) -> Result<f64> {
    std::hint::black_box(f()?);
    std::hint::black_box(f()?);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(f()?);
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best)
}

/// Deterministic values in [-1, 1): the timings do not depend on them, but NaNs or denormals
/// would.
fn filled(dims: [usize; 4], seed: u64) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Ok(Tensor::from_fn(dims, |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })?)
}

/// Milliseconds of grad_input and grad_weight alone.
#[derive(Clone, Copy)]
struct Parts {
    input_ms: f64,
    weight_ms: f64,
}

impl SuiteLayer {
    fn input_dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    fn weight_dims(&self) -> [usize; 4] {
        [self.k, self.c / self.groups.max(1), self.r, self.r]
    }

    /// Its parameters, and its forward FLOPs, once checked: every size set, the geometry
    /// valid, and memory and work within [`MAX_LAYER_BYTES`] and [`MAX_LAYER_FLOPS`]. Nothing
    /// is allocated before.
    fn check(&self) -> Result<(Conv2dParams, u64)> {
        if let Err(reason) = convnet::names::check_len(&self.name) {
            anyhow::bail!("name: {reason}");
        }
        let sizes = [("n", self.n), ("c", self.c), ("h", self.h), ("w", self.w)];
        let sizes = sizes.into_iter().chain([("k", self.k), ("r", self.r)]);
        for (field, v) in sizes {
            anyhow::ensure!(v >= 1, "\"{field}\" is 0; every size is at least 1");
        }
        let params = Conv2dParams::builder()
            .with_stride([self.stride; 2])
            .with_padding(Padding::symmetric([self.pad; 2]))
            .with_dilation([self.dilation; 2])
            .with_groups(self.groups)
            .build()?;
        let g = params.geometry(self.input_dims(), self.weight_dims())?;
        let count = |dims: [usize; 4]| {
            dims.iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
                .unwrap_or(u64::MAX)
        };
        let (x, w, y) = (
            count(self.input_dims()),
            count(self.weight_dims()),
            count(g.output_dims()),
        );
        // Input, weights and their gradients; output, its gradient and one more for scratch.
        let bytes = [x, x, w, w, y, y, y]
            .iter()
            .fold(0u64, |acc, &v| acc.saturating_add(v.saturating_mul(4)));
        anyhow::ensure!(
            bytes <= MAX_LAYER_BYTES,
            "needs about {} MiB (input {:?}, output {:?}); a suite layer may take at most {} MiB",
            bytes >> 20,
            self.input_dims(),
            g.output_dims(),
            MAX_LAYER_BYTES >> 20
        );
        let flops = conv2d_flops(self.n, self.c, self.k, g.out_hw, [self.r; 2], self.groups)?;
        anyhow::ensure!(
            flops <= MAX_LAYER_FLOPS,
            "{:.1} GFLOP per forward pass; a suite layer may take at most {} GFLOP",
            flops as f64 / 1e9,
            MAX_LAYER_FLOPS / 1_000_000_000
        );
        Ok((params, flops))
    }
}

/// A suite file (or the built-in suite), every layer checked, and the name it goes by.
fn read_suite(path: Option<&Path>) -> Result<(Suite, String)> {
    let (text, source) = match path {
        Some(path) => (
            read_text(path, "suite", MAX_FILE_BYTES)?,
            path.display().to_string(),
        ),
        None => (DEFAULT_SUITE.to_string(), "built-in suite".to_string()),
    };
    let suite: Suite =
        serde_json::from_str(&text).with_context(|| format!("{source} is not a valid suite"))?;
    anyhow::ensure!(
        suite.layers.len() <= MAX_SUITE_LAYERS,
        "{source} has {} layers; a suite has at most {MAX_SUITE_LAYERS}",
        suite.layers.len()
    );
    for (i, layer) in suite.layers.iter().enumerate() {
        layer.check().with_context(|| {
            format!(
                "{source}: layer {} ('{}')",
                i + 1,
                convnet::names::shorten(&layer.name, 40)
            )
        })?;
    }
    Ok((suite, source))
}

fn bench_layer(l: &SuiteLayer, algo: Conv2dAlgo, parts: bool) -> Result<(Row, Option<Parts>)> {
    let (params, flops) = l.check()?;
    let flops = flops as f64;
    let x = filled(l.input_dims(), 1)?;
    let w = filled(l.weight_dims(), 2)?;
    let b = Tensor::from_fn([l.k], |i| (i as f32 * 0.01).sin())?;
    let g = params.geometry(l.input_dims(), l.weight_dims())?;
    let forward = || conv2d_with(&x, &w, Some(&b), &params, algo);
    let gy = filled(g.output_dims(), 3)?;
    let backward = |request| conv2d_backward_with(&gy, &x, &w, &params, request, algo);
    let fwd = time_per_call(|| Ok(forward()?), 10)?;
    let fwdbwd = time_per_call(
        || {
            std::hint::black_box(forward()?);
            std::hint::black_box(backward(GradRequest::ALL)?);
            Ok(())
        },
        5,
    )?;
    let parts = if parts {
        let only = |input, weight| GradRequest {
            input,
            weight,
            bias: false,
        };
        let input = time_per_call(|| Ok(backward(only(true, false))?), 5)?;
        let weight = time_per_call(|| Ok(backward(only(false, true))?), 5)?;
        Some(Parts {
            input_ms: input * 1e3,
            weight_ms: weight * 1e3,
        })
    } else {
        None
    };
    let row = Row {
        name: l.name.clone(),
        fwd_ms: fwd * 1e3,
        fwd_gflops: flops / fwd / 1e9,
        fwdbwd_ms: fwdbwd * 1e3,
        fwdbwd_gflops: 3.0 * flops / fwdbwd / 1e9,
    };
    Ok((row, parts))
}

/// Keep the faster of two measurements of the same layer.
fn best(a: Row, b: Row) -> Row {
    let fwd = if b.fwd_ms < a.fwd_ms { &b } else { &a };
    let fwdbwd = if b.fwdbwd_ms < a.fwdbwd_ms { &b } else { &a };
    Row {
        name: a.name.clone(),
        fwd_ms: fwd.fwd_ms,
        fwd_gflops: fwd.fwd_gflops,
        fwdbwd_ms: fwdbwd.fwdbwd_ms,
        fwdbwd_gflops: fwdbwd.fwdbwd_gflops,
    }
}

fn geomean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).exp()
    }
}

/// Reports of another engine, merged: each layer's best time over the runs.
fn read_reports(paths: &[PathBuf]) -> Result<Option<Report>> {
    let mut merged: Option<Report> = None;
    for path in paths {
        let text = read_text(path, "bench report", MAX_FILE_BYTES)?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench report", path.display()))?;
        merged = Some(match merged {
            None => report,
            Some(mut m) => {
                for row in report.layers {
                    match m.layers.iter_mut().find(|r| r.name == row.name) {
                        Some(r) => *r = best(r.clone(), row),
                        None => m.layers.push(row),
                    }
                }
                m
            }
        });
    }
    Ok(merged)
}

/// Refuse, before any timing, a `--json` that cannot be written or would replace an input.
fn check_json_output(args: &BenchArgs) -> Result<()> {
    let Some(json) = &args.json else {
        return Ok(());
    };
    check_output(json)?;
    let inputs: Vec<(&str, &Path)> = args
        .compare
        .iter()
        .map(|p| ("--compare file", p.as_path()))
        .chain(args.suite.iter().map(|p| ("--suite file", p.as_path())))
        .collect();
    check_distinct(&[("--json", json)], &inputs)
}

/// A progress bar of `steps` measurements on stderr (drawn only on a terminal).
fn progress(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("bench [{bar:28}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

pub fn run(args: BenchArgs) -> Result<()> {
    check_json_output(&args)?;
    if let Some(model) = &args.model {
        let batches = crate::bench_model::parse_batches(args.batch.as_deref().unwrap_or("1,32"))?;
        return crate::bench_model::run(model, &batches, args.json.as_deref());
    }
    if args.batch.is_some() && args.train.is_none() {
        bail!("--batch sizes the batches of --model or --train: give one of them");
    }
    if args.filter {
        return run_filter(&args);
    }
    if let Some(model) = &args.train {
        return crate::bench_train::run(crate::bench_train::TrainBench {
            model,
            batch: train_batch(args.batch.as_deref())?,
            steps: args.steps as usize,
            repeat: args.repeat as usize,
            torch_python: args.compare_torch.as_deref(),
        });
    }
    let (suite, source) = read_suite(args.suite.as_deref())?;
    let layers: Vec<&SuiteLayer> = suite
        .layers
        .iter()
        .filter(|l| args.layer.is_empty() || args.layer.iter().any(|f| l.name.contains(f.as_str())))
        .collect();
    anyhow::ensure!(!layers.is_empty(), "{source}: no layer to run");
    let other = read_reports(&args.compare)?;
    let engine = other.as_ref().map_or("other", |o| o.engine.as_str());
    let threads = rayon::current_num_threads();
    let algo = Conv2dAlgo::from(args.algo);
    println!(
        "convnet {} conv2d ({algo:?}), {threads} thread(s), {source}, best of {} run(s)",
        env!("CARGO_PKG_VERSION"),
        args.repeat
    );
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let bar = progress(layers.len() * args.repeat as usize);
    for layer in layers {
        let mut measured: Option<(Row, Option<Parts>)> = None;
        for run in 1..=args.repeat {
            bar.set_message(format!(
                "{} (run {run}/{})",
                convnet::names::shorten(&layer.name, 24),
                args.repeat
            ));
            let (row, parts) = bench_layer(layer, algo, args.parts)
                .with_context(|| format!("layer {}", layer.name))?;
            bar.inc(1);
            measured = Some(match measured {
                None => (row, parts),
                Some((r, p)) => {
                    let parts = match (p, parts) {
                        (Some(a), Some(b)) => Some(Parts {
                            input_ms: a.input_ms.min(b.input_ms),
                            weight_ms: a.weight_ms.min(b.weight_ms),
                        }),
                        (a, b) => a.or(b),
                    };
                    (best(r, row), parts)
                }
            });
        }
        let (row, parts) = measured.expect("at least one run");
        let mut line = format!(
            "{:10} fwd {:8.2} ms {:6.1} GF/s | fwd+bwd {:8.2} ms {:6.1} GF/s",
            convnet::names::shorten(&row.name, 24),
            row.fwd_ms,
            row.fwd_gflops,
            row.fwdbwd_ms,
            row.fwdbwd_gflops
        );
        if let Some(p) = parts {
            line += &format!(
                " | grad_input {:7.2} ms grad_weight {:7.2} ms",
                p.input_ms, p.weight_ms
            );
        }
        if let Some(o) = other
            .as_ref()
            .and_then(|o| o.layers.iter().find(|r| r.name == row.name))
        {
            let (f, fb) = (o.fwd_ms / row.fwd_ms, o.fwdbwd_ms / row.fwdbwd_ms);
            line += &format!(
                " || {engine}: fwd {:8.2} ms fwd+bwd {:8.2} ms | ours vs it: fwd {f:5.2}x fwd+bwd {fb:5.2}x",
                o.fwd_ms, o.fwdbwd_ms
            );
            ratios.push((f, fb));
        }
        bar.suspend(|| println!("{line}"));
        rows.push(row);
    }
    bar.finish_and_clear();
    println!(
        "{:10} fwd          {:6.1} GF/s | fwd+bwd             {:6.1} GF/s  (geometric mean)",
        "geomean",
        geomean(rows.iter().map(|r| r.fwd_gflops)),
        geomean(rows.iter().map(|r| r.fwdbwd_gflops))
    );
    if !ratios.is_empty() {
        println!(
            "speed relative to {engine} (geometric mean over {} layers, >1 is faster): fwd {:.2}x, fwd+bwd {:.2}x",
            ratios.len(),
            geomean(ratios.iter().map(|r| r.0)),
            geomean(ratios.iter().map(|r| r.1))
        );
    }
    if let Some(path) = &args.json {
        let report = Report {
            engine: format!("convnet {}", env!("CARGO_PKG_VERSION")),
            threads,
            layers: rows,
        };
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct FilterReport {
    engine: String,
    threads: usize,
    filters: Vec<FilterRow>,
}

#[derive(Serialize, Deserialize, Clone)]
struct FilterRow {
    name: String,
    ms: f64,
}

/// `convnet bench --filter`: the image-filtering benchmark, row for row like
/// bench/opencv_filter.py.
fn run_filter(args: &BenchArgs) -> Result<()> {
    use convnet::filter::{Kernel, apply_kernel};
    use convnet_core::PaddingMode;
    const HEIGHT: usize = 2160;
    const WIDTH: usize = 3840;
    let mut other: Option<FilterReport> = None;
    for path in &args.compare {
        let text = read_text(path, "bench report", MAX_FILE_BYTES)?;
        let report: FilterReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a filter bench report", path.display()))?;
        other = Some(match other {
            None => report,
            Some(mut merged) => {
                for row in report.filters {
                    match merged.filters.iter_mut().find(|r| r.name == row.name) {
                        Some(r) => r.ms = r.ms.min(row.ms),
                        None => merged.filters.push(row),
                    }
                }
                merged
            }
        });
    }
    let threads = rayon::current_num_threads();
    println!(
        "convnet {} filter, {threads} thread(s), {WIDTH}x{HEIGHT} RGB f32, best of {} run(s)",
        env!("CARGO_PKG_VERSION"),
        args.repeat
    );
    let image = filled([1, 3, HEIGHT, WIDTH], 1)?;
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    let bar = progress(9 * args.repeat as usize);
    for (border, mode) in [
        ("zeros", PaddingMode::Zeros),
        ("reflect", PaddingMode::Reflect),
        ("replicate", PaddingMode::Replicate),
    ] {
        for k in [3, 5, 7] {
            let name = format!("{k}x{k}-{border}");
            if !args.layer.is_empty() && !args.layer.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let kernel = Kernel {
                name: name.clone(),
                channels: 1,
                height: k,
                width: k,
                values: filled([1, 1, k, k], 2)?.data().to_vec(),
            };
            let params = Conv2dParams::builder()
                .with_padding(Padding::Same)
                .with_padding_mode(mode)
                .build()?;
            let mut ms = f64::INFINITY;
            for run in 1..=args.repeat {
                bar.set_message(format!("{name} (run {run}/{})", args.repeat));
                ms =
                    ms.min(1e3 * time_per_call(|| Ok(apply_kernel(&image, &kernel, &params)?), 5)?);
                bar.inc(1);
            }
            let mut line = format!("{name:14} {ms:8.2} ms");
            if let Some(o) = other
                .as_ref()
                .and_then(|o| o.filters.iter().find(|r| r.name == name))
            {
                let ratio = ms / o.ms;
                line += &format!(
                    " || {}: {:8.2} ms | ours / theirs {ratio:5.2}x",
                    other.as_ref().map_or("other", |o| o.engine.as_str()),
                    o.ms
                );
                ratios.push(ratio);
            }
            bar.suspend(|| println!("{line}"));
            rows.push(FilterRow { name, ms });
        }
    }
    bar.finish_and_clear();
    anyhow::ensure!(
        !rows.is_empty(),
        "no filter matches --layer {:?}",
        args.layer
    );
    if !ratios.is_empty() {
        println!(
            "time relative to {} (<1 is faster): geometric mean {:.2}x, worst {:.2}x",
            other.as_ref().map_or("other", |o| o.engine.as_str()),
            geomean(ratios.iter().copied()),
            ratios.iter().copied().fold(0.0, f64::max)
        );
    }
    if let Some(path) = &args.json {
        let report = FilterReport {
            engine: format!("convnet {}", env!("CARGO_PKG_VERSION")),
            threads,
            filters: rows,
        };
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
