//! `convnet shape` and `convnet summary`: output sizes, parameters, FLOPs and receptive
//! fields, layer by layer.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use convnet::names::shorten;
use convnet::spec::{parse_hwc, shorthand_model};
use convnet::summary::{self, Summary};

#[derive(Args)]
#[command(after_help = "Examples:
  convnet shape --input 32x32x3 conv:6:5x5:s1:same
  convnet shape --input 28x28x1 conv:32:3x3:p1 bn relu pool:max:2x2 conv:64:3x3:p1 pool:max:2x2 flatten fc:10
  convnet shape --input 224x224x3 conv:64:7x7:s2:p3 pool:max:3x3:s2:p1 conv:64:3x3:p1 conv:64:3x3:p1

Layers: conv:OUT:KxK[:sS][:pP|:pT,B,L,R|:same|:valid][:dD][:gG][:nobias],
pool:max|avg:KxK[:sS][:pP][:ceil], gpool:avg|max, adaptive:HxW, fc:OUT, flatten, bn, bn1d,
dropout[:P], relu, leaky_relu, elu, tanh, sigmoid, prelu.")]
pub struct ShapeArgs {
    /// Input size HxWxC (height, width, channels).
    #[arg(long)]
    input: String,
    /// Layers in order.
    #[arg(required = true)]
    layers: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet summary --model models/fashion_cnn.toml
  convnet summary --model models/resnet18.toml --json
  convnet summary --model my.toml --input 64x64x3")]
pub struct SummaryArgs {
    /// Model file (TOML).
    #[arg(long)]
    model: PathBuf,
    /// Input size HxWxC instead of the model file's.
    #[arg(long)]
    input: Option<String>,
    #[arg(long)]
    json: bool,
}

fn shape_text(s: &[usize]) -> String {
    match *s {
        [c, h, w] => format!("{h}x{w}x{c}"),
        _ => s
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The widest label a table shows: longer names are shortened, so no column width follows
/// the input.
const LABEL_CHARS: usize = 40;

/// The table of a summary, with totals.
pub fn table(s: &Summary, labels: &[String]) -> String {
    let mut out = String::new();
    let rows: Vec<[String; 7]> = s
        .layers
        .iter()
        .zip(labels)
        .map(|(l, label)| {
            [
                shorten(label, LABEL_CHARS).into_owned(),
                l.kind.to_string(),
                shape_text(&l.output_shape),
                thousands(l.params),
                thousands(l.flops),
                l.receptive_field.map_or("all".into(), |r| {
                    if r[0] == r[1] {
                        format!("{}", r[0])
                    } else {
                        format!("{}x{}", r[0], r[1])
                    }
                }),
                l.jump.map_or("-".into(), |j| {
                    if j[0] == j[1] {
                        format!("{}", j[0])
                    } else {
                        format!("{}x{}", j[0], j[1])
                    }
                }),
            ]
        })
        .collect();
    let header = [
        "layer",
        "type",
        "output (HxWxC)",
        "params",
        "FLOPs",
        "RF",
        "jump",
    ];
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: [&str; 7]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 3 || i == 4 {
                let _ = write!(l, "{c:>w$}  ", w = widths[i]);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "input {}", shape_text(&s.input));
    let _ = writeln!(out, "{}", line(header));
    for (r, l) in rows.iter().zip(&s.layers) {
        let _ = writeln!(
            out,
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]])
        );
        if let Some(f) = &l.formula {
            let _ = writeln!(out, "    size: {f}");
        }
    }
    let _ = writeln!(
        out,
        "total: {} parameters ({:.2} MB as f32), {} FLOPs per sample, {} activations per sample",
        thousands(s.total_params),
        s.total_params as f64 * 4.0 / 1e6,
        thousands(s.total_flops),
        thousands(s.activations)
    );
    out
}

pub fn shape(args: ShapeArgs) -> Result<()> {
    let input = parse_hwc(&args.input)?;
    let spec = shorthand_model(input, &args.layers)?;
    let s = summary::summarize_spec(&spec)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", table(&s, &args.layers));
    }
    Ok(())
}

pub fn summary(args: SummaryArgs) -> Result<()> {
    let mut spec = crate::source::load_spec(&args.model)?;
    if let Some(input) = &args.input {
        spec.input = parse_hwc(input)?;
    }
    let s = summary::summarize_spec(&spec)
        .with_context(|| format!("{} does not build", args.model.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        let labels: Vec<String> = s.layers.iter().map(|l| l.name.clone()).collect();
        if let Some(name) = &spec.name {
            println!("model {}", shorten(name, LABEL_CHARS));
        }
        print!("{}", table(&s, &labels));
    }
    Ok(())
}
