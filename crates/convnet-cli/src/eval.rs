//! `convnet eval`: accuracy, per-class accuracy and confusion matrix of a checkpoint.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet::checkpoint;
use convnet::data::OpenOptions;
use convnet::train::{EvalReport, LossKind, evaluate};

use crate::train::open_data_with;

#[derive(Args)]
#[command(after_help = "Examples:
  convnet eval --checkpoint runs/train/best
  convnet eval --checkpoint runs/train/best --data /usr/share/datasets/fashion-mnist --json
  convnet eval --checkpoint runs/train/best --confusion confusion.png")]
pub struct EvalArgs {
    /// Checkpoint folder (written by `convnet train`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data folder whose test set to use; default: Fashion-MNIST if installed, else the
    /// embedded sample.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize every image to HxW (e.g. 32x32) when reading the data; default: the size the
    /// checkpoint's run resized to, if any.
    #[arg(long, value_name = "HxW", value_parser = OpenOptions::parse_size)]
    resize: Option<[usize; 2]>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Also draw the confusion matrix with class names to this PNG.
    #[arg(long)]
    confusion: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(path) = &args.confusion {
        crate::inspect::check_png(path)?;
    }
    let ck = checkpoint::load(&args.checkpoint)
        .with_context(|| format!("cannot load checkpoint {}", args.checkpoint.display()))?;
    let resize = args
        .resize
        .or_else(|| ck.meta.data.as_ref().and_then(|d| d.resize));
    let data = open_data_with(args.data.as_deref(), &OpenOptions { resize })?;
    if data.test.classes.len() != ck.meta.classes.len() {
        bail!(
            "the checkpoint knows {} classes but {} has {}",
            ck.meta.classes.len(),
            data.test.source,
            data.test.classes.len()
        );
    }
    let loss = ck.meta.config.as_ref().map_or(
        LossKind::CrossEntropy {
            label_smoothing: 0.0,
        },
        |c| c.loss,
    );
    let mut model = ck.model;
    let mut report = evaluate(
        &mut model,
        &data.test,
        &ck.meta.normalization,
        args.batch_size,
        loss,
    )?;
    report.classes = ck.meta.classes.clone();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&report))?);
    } else {
        print!("{}", text(&report, &data.test.source));
    }
    if let Some(path) = &args.confusion {
        let title = format!("confusion matrix on {}", data.test.source);
        let picture =
            convnet::render::confusion_matrix(&report.confusion, &report.classes, &title)?;
        crate::inspect::write_png(path, &picture)?;
        if !args.json {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn json(r: &EvalReport) -> serde_json::Value {
    let per_class: Vec<serde_json::Value> = r
        .classes
        .iter()
        .zip(r.per_class_accuracy())
        .zip(&r.confusion)
        .map(|((c, a), row)| {
            serde_json::json!({"class": c, "accuracy": if a.is_nan() { None } else { Some(a) }, "count": row.iter().sum::<usize>()})
        })
        .collect();
    serde_json::json!({
        "accuracy": r.accuracy,
        "loss": r.loss,
        "per_class": per_class,
        "classes": r.classes,
        "confusion": r.confusion,
    })
}

fn text(r: &EvalReport, source: &str) -> String {
    let total: usize = r.confusion.iter().flatten().sum();
    let correct: usize = (0..r.confusion.len()).map(|i| r.confusion[i][i]).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{source}: accuracy {:.2}% ({correct}/{total}), loss {:.4}\n",
        100.0 * r.accuracy,
        r.loss
    );
    let width = r.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:>3}  {:<width$}  accuracy  count", "#", "class");
    for (i, (c, a)) in r.classes.iter().zip(r.per_class_accuracy()).enumerate() {
        let count: usize = r.confusion[i].iter().sum();
        let _ = writeln!(out, "{i:>3}  {c:<width$}  {:>7.2}%  {count:>5}", 100.0 * a);
    }
    let _ = writeln!(
        out,
        "\nconfusion matrix (rows: true class, columns: predicted)"
    );
    let cell = r
        .confusion
        .iter()
        .flatten()
        .max()
        .map_or(1, |m| m.to_string().len())
        .max(3);
    let _ = write!(out, "{:>3} ", "");
    for j in 0..r.classes.len() {
        let _ = write!(out, " {j:>cell$}");
    }
    out.push('\n');
    for (i, row) in r.confusion.iter().enumerate() {
        let _ = write!(out, "{i:>3} ");
        for v in row {
            let _ = write!(out, " {v:>cell$}");
        }
        out.push('\n');
    }
    out
}
