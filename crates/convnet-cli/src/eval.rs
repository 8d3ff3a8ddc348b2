//! `convnet eval`: accuracy, per-class accuracy and confusion matrix of a checkpoint.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use convnet::checkpoint::Checkpoint;
use convnet::data::{Dataset, OpenOptions, open_or_default};
use convnet::names;
use convnet::preprocess::{self, ChannelOrder, Resize};
use convnet::render::{self, check_png, write_png};
use convnet::train::{EvalReport, LossKind, evaluate};

#[derive(Args)]
#[command(after_help = "Examples:
  convnet eval --checkpoint runs/train/best
  convnet eval --checkpoint runs/train              # a run folder: its best checkpoint
  convnet eval --checkpoint runs/train/best --data /usr/share/datasets/fashion-mnist --json
  convnet eval --checkpoint runs/train/best --confusion confusion.png
  convnet eval --checkpoint classifier.onnx --data photos/      (one sub-folder per class)

An imported model's images are resized (and center-cropped) as its stored preprocessing
says; one that resizes the shorter side of each image needs --resize HxW instead.")]
pub struct EvalArgs {
    /// Checkpoint folder, or a run folder (its best checkpoint), as `convnet train` writes.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Data folder whose test set to use; default: Fashion-MNIST if installed, else the
    /// embedded sample.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize every image to HxW (e.g. 32x32) when reading the data; default: as an imported
    /// model's stored preprocessing says, else the size the checkpoint's run resized to, if
    /// any.
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
        check_png(path)?;
    }
    // (The library's errors name the file at fault.)
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    crate::source::require_classifier(&ck, "eval")?;
    let reading = data_reading(&args, &ck)?;
    let resize = reading.resize;
    let mut data = open_or_default(args.data.as_deref(), &OpenOptions { resize })?;
    prepare(&mut data.test, reading.crop, reading.order)?;
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
        let picture = render::confusion_matrix(&report.confusion, &report.classes, &title)?;
        write_png(path, &picture)?;
        if !args.json {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// How the test set is read for `ck` ([`DataReading`]). `--resize` squashes every image to
/// that size; else a checkpoint that stores its preprocessing (an imported model) has images
/// resized and cropped as it says, which a data set (read at one size for every image) can
/// do for a resize to HxW but not for a resize of the shorter side (each image's own aspect
/// ratio: refused, naming --resize); else the size the checkpoint's run resized to, if any.
fn data_reading(args: &EvalArgs, ck: &Checkpoint) -> Result<DataReading> {
    let stored = ck.meta.preprocessing;
    let order = stored.map_or(ChannelOrder::Rgb, |p| p.channel_order);
    let (resize, crop) = match (args.resize, stored) {
        (Some(size), _) => (Some(size), None),
        (None, None) => (ck.meta.data.as_ref().and_then(|d| d.resize), None),
        (None, Some(p)) => match p.resize {
            Resize::Size(size) => (Some(size), p.crop),
            Resize::ShorterSide(_) => {
                let [_, h, w] = ck.model.input_shape();
                bail!(
                    "{}: the model's preprocessing ({}) resizes each image by its own aspect \
                     ratio, which a data set read at one size cannot do; pass --resize {h}x{w} \
                     to squash every image to the model's input instead (predict applies the \
                     preprocessing to single images)",
                    ck.dir.display(),
                    p.describe()
                )
            }
        },
    };
    Ok(DataReading {
        resize,
        crop,
        order,
    })
}

/// How `eval` reads its test set: resized to `resize`, center-cropped to `crop`, in `order`.
struct DataReading {
    resize: Option<[usize; 2]>,
    crop: Option<[usize; 2]>,
    order: ChannelOrder,
}

/// The test set as the model takes it: every image center-cropped to `crop` (torchvision's
/// `CenterCrop`, as single images are) and in the model's channel order.
fn prepare(set: &mut Dataset, crop: Option<[usize; 2]>, order: ChannelOrder) -> Result<()> {
    let dims = set.image_dims();
    if let Some(crop) = crop.filter(|&c| c != [dims[1], dims[2]]) {
        if crop[0] > dims[1] || crop[1] > dims[2] {
            bail!(
                "{}: images of {}x{} cannot be cropped to {}x{}",
                set.source,
                dims[1],
                dims[2],
                crop[0],
                crop[1]
            );
        }
        let origin = preprocess::center_crop_origin([dims[1], dims[2]], crop);
        set.pixels = (0..set.len())
            .flat_map(|i| preprocess::crop_planes(set.image(i), dims, origin, crop))
            .collect();
        [set.height, set.width] = crop;
    }
    if order == ChannelOrder::Bgr && set.channels == 3 {
        let dims = set.image_dims();
        let per = set.image_len();
        for image in set.pixels.chunks_exact_mut(per) {
            let swapped = preprocess::to_model_order(image, dims, order);
            image.copy_from_slice(&swapped);
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

/// The widest class name a table prints, in characters (longer ones are shortened).
const NAME_COLUMN: usize = 24;
/// The most classes whose confusion matrix is printed as a table (wider tables do not fit a
/// terminal; `--json` and `--confusion` hold every class).
const MAX_TABLE_CLASSES: usize = 40;

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
    let names: Vec<_> = r
        .classes
        .iter()
        .map(|c| names::shorten(c, NAME_COLUMN))
        .collect();
    let width = names
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(out, "{:>3}  {:<width$}  accuracy  count", "#", "class");
    for (i, (c, a)) in names.iter().zip(r.per_class_accuracy()).enumerate() {
        let count: usize = r.confusion[i].iter().sum();
        let _ = writeln!(out, "{i:>3}  {c:<width$}  {:>7.2}%  {count:>5}", 100.0 * a);
    }
    out.push('\n');
    if r.confusion.len() > MAX_TABLE_CLASSES {
        let _ = writeln!(
            out,
            "confusion matrix: {} classes, too many for a table (at most {MAX_TABLE_CLASSES}); \
             --json and --confusion FILE.png hold it",
            r.confusion.len()
        );
    } else {
        confusion_table(&mut out, &r.confusion);
    }
    out
}

/// `confusion[true][predicted]` as a table with class numbers for headers.
fn confusion_table(out: &mut String, confusion: &[Vec<usize>]) {
    let _ = writeln!(
        out,
        "confusion matrix (rows: true class, columns: predicted)"
    );
    let cell = confusion
        .iter()
        .flatten()
        .max()
        .map_or(1, |m| m.to_string().len())
        .max(3);
    let _ = write!(out, "{:>3} ", "");
    for j in 0..confusion.len() {
        let _ = write!(out, " {j:>cell$}");
    }
    out.push('\n');
    for (i, row) in confusion.iter().enumerate() {
        let _ = write!(out, "{i:>3} ");
        for v in row {
            let _ = write!(out, " {v:>cell$}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(k: usize, name_len: usize) -> EvalReport {
        EvalReport {
            loss: 0.5,
            accuracy: 0.5,
            confusion: (0..k)
                .map(|t| (0..k).map(|p| usize::from(t == p) * 1000).collect())
                .collect(),
            classes: (0..k)
                .map(|i| format!("{i}{}", "x".repeat(name_len)))
                .collect(),
        }
    }

    #[test]
    fn tables_of_long_names_keep_their_width() {
        let table = text(&report(3, 70_000), "test");
        assert!(table.lines().all(|l| l.chars().count() < 60), "{table}");
    }

    #[test]
    fn a_confusion_table_too_wide_for_a_terminal_is_left_to_json_and_pictures() {
        let wide = text(&report(MAX_TABLE_CLASSES + 1, 1), "test");
        assert!(wide.contains("too many for a table"), "{wide}");
        assert!(wide.lines().all(|l| l.chars().count() < 120), "{wide}");
        assert!(text(&report(MAX_TABLE_CLASSES, 1), "test").contains("rows: true class"));
    }
}
