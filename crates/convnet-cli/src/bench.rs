//! `convnet bench`: time conv2d forward and forward + backward on the layers of a suite, the
//! same way `bench/torch_conv_suite.py` times PyTorch, so the two compare line by line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use convnet_core::{
    Conv2dParams, GradRequest, Padding, Tensor, conv2d, conv2d_backward, conv2d_input_grad,
    conv2d_weight_grad, geometry::conv2d_flops,
};
use serde::{Deserialize, Serialize};

use crate::io::write_atomic;

/// The suite used when `--suite` is not given (a copy of the project's shared suite).
const DEFAULT_SUITE: &str = include_str!("../../../bench/conv-suite.json");

#[derive(Args)]
#[command(after_help = "Examples:
  convnet bench
  convnet bench --json ours.json --compare torch.json
  convnet bench --suite my-layers.json --layer res-128")]
pub struct BenchArgs {
    /// Suite file (JSON, same format as bench/conv-suite.json); default: the built-in suite.
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Write the timings as JSON (the schema bench/torch_conv_suite.py --json writes).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Timings of another engine (e.g. from bench/torch_conv_suite.py --json) to print
    /// side by side, with our speed relative to it (>1: we are faster).
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Only layers whose name contains this text (may be repeated).
    #[arg(long)]
    layer: Vec<String>,
    /// Also time grad_input and grad_weight on their own, to see where backward time goes.
    #[arg(long)]
    parts: bool,
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

/// Seconds per call: two warm-up calls, then the best of three runs of `reps` calls.
fn time_per_call(mut f: impl FnMut() -> Result<()>, reps: usize) -> Result<f64> {
    f()?;
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..reps {
            f()?;
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
struct Parts {
    input_ms: f64,
    weight_ms: f64,
}

fn bench_layer(l: &SuiteLayer, parts: bool) -> Result<(Row, Option<Parts>)> {
    let params = Conv2dParams::builder()
        .stride([l.stride; 2])
        .padding(Padding::symmetric([l.pad; 2]))
        .dilation([l.dilation; 2])
        .groups(l.groups)
        .build()?;
    anyhow::ensure!(
        l.c.is_multiple_of(l.groups),
        "groups {} must divide channels {}",
        l.groups,
        l.c
    );
    let x_dims = [l.n, l.c, l.h, l.w];
    let w_dims = [l.k, l.c / l.groups, l.r, l.r];
    let x = filled(x_dims, 1)?;
    let w = filled(w_dims, 2)?;
    let b = Tensor::from_fn([l.k], |i| (i as f32 * 0.01).sin())?;
    let g = params.geometry([l.n, l.c, l.h, l.w], [l.k, l.c / l.groups, l.r, l.r])?;
    let flops = conv2d_flops(l.n, l.c, l.k, g.out_hw, [l.r, l.r], l.groups)? as f64;
    let fwd = time_per_call(
        || {
            std::hint::black_box(conv2d(&x, &w, Some(&b), &params)?);
            Ok(())
        },
        10,
    )?;
    let gy = filled(g.output_dims(), 3)?;
    let fwdbwd = time_per_call(
        || {
            let y = conv2d(&x, &w, Some(&b), &params)?;
            std::hint::black_box(&y);
            std::hint::black_box(conv2d_backward(&gy, &x, &w, &params, GradRequest::ALL)?);
            Ok(())
        },
        5,
    )?;
    let parts = if parts {
        let input = time_per_call(
            || {
                std::hint::black_box(conv2d_input_grad(&gy, &w, x_dims, &params)?);
                Ok(())
            },
            5,
        )?;
        let weight = time_per_call(
            || {
                std::hint::black_box(conv2d_weight_grad(&gy, &x, w_dims, &params)?);
                Ok(())
            },
            5,
        )?;
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

fn geomean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).exp()
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let (text, source) = match &args.suite {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read suite {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_SUITE.to_string(), "built-in suite".to_string()),
    };
    let suite: Suite =
        serde_json::from_str(&text).with_context(|| format!("{source} is not a valid suite"))?;
    let layers: Vec<&SuiteLayer> = suite
        .layers
        .iter()
        .filter(|l| args.layer.is_empty() || args.layer.iter().any(|f| l.name.contains(f.as_str())))
        .collect();
    anyhow::ensure!(!layers.is_empty(), "{source}: no layer to run");
    let other: Option<Report> = match &args.compare {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a bench report", path.display()))?,
            )
        }
        None => None,
    };
    let threads = rayon::current_num_threads();
    println!(
        "convnet {} conv2d, {threads} thread(s), {source}",
        env!("CARGO_PKG_VERSION")
    );
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for layer in layers {
        let (row, parts) =
            bench_layer(layer, args.parts).with_context(|| format!("layer {}", layer.name))?;
        let mut line = format!(
            "{:10} fwd {:8.2} ms {:6.1} GF/s | fwd+bwd {:8.2} ms {:6.1} GF/s",
            row.name, row.fwd_ms, row.fwd_gflops, row.fwdbwd_ms, row.fwdbwd_gflops
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
                " || {}: fwd {:8.2} ms, fwd+bwd {:8.2} ms | speed vs it: fwd {f:5.2}x fwd+bwd {fb:5.2}x",
                o_engine(other.as_ref()),
                o.fwd_ms,
                o.fwdbwd_ms
            );
            ratios.push((f, fb));
        }
        println!("{line}");
        rows.push(row);
    }
    println!(
        "{:10} fwd          {:6.1} GF/s | fwd+bwd             {:6.1} GF/s  (geometric mean)",
        "geomean",
        geomean(rows.iter().map(|r| r.fwd_gflops)),
        geomean(rows.iter().map(|r| r.fwdbwd_gflops))
    );
    if !ratios.is_empty() {
        println!(
            "speed relative to {} (geometric mean over {} layers, >1 is faster): fwd {:.2}x, fwd+bwd {:.2}x",
            o_engine(other.as_ref()),
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

fn o_engine(other: Option<&Report>) -> &str {
    other.map_or("other", |o| o.engine.as_str())
}
