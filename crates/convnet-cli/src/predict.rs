//! `convnet predict`: the top classes of images, by a checkpoint.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use convnet::layers::ForwardCtx;
use convnet::preprocess::read_image;
use convnet_core::softmax;

#[derive(Args)]
#[command(after_help = "Examples:
  convnet predict --checkpoint runs/train/best shoe.png
  convnet predict --checkpoint runs/train/best --top 5 --json a.png b.jpg

Images are converted to the model's channels (grayscale or RGB) and made its input as the
checkpoint's preprocessing says (an imported ImageNet classifier: the shorter side resized to
256, a 224x224 center crop; `convnet import --resize/--crop/--bgr` set it), else resized to
its input size; Fashion-MNIST models expect a light object on a dark background.")]
pub struct PredictArgs {
    /// Checkpoint folder, or a run folder (its best checkpoint), as `convnet train` writes.
    #[arg(long)]
    checkpoint: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: PredictArgs) -> Result<()> {
    // (The library's errors name the file at fault.)
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    crate::source::require_classifier(&ck, "predict")?;
    let mut model = ck.model;
    let dims = model.input_shape();
    let preprocessing = ck.meta.preprocessing(dims);
    let mut results = Vec::new();
    for path in &args.images {
        let x = read_image(path, dims, &preprocessing, &ck.meta.normalization)?.input;
        let logits = model.forward(&x, ForwardCtx::eval(false))?;
        let probs = softmax(&logits)?;
        let mut ranked: Vec<(usize, f32)> = probs.data().iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(args.top.max(1));
        results.push((path, ranked));
    }
    let name = |i: usize| {
        ck.meta
            .classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string())
    };
    if args.json {
        let out: Vec<serde_json::Value> = results
            .iter()
            .map(|(p, ranked)| {
                serde_json::json!({
                    "image": p.display().to_string(),
                    "top": ranked.iter().map(|&(i, pr)| serde_json::json!({"class": name(i), "index": i, "probability": pr})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (p, ranked) in &results {
            let parts: Vec<String> = ranked
                .iter()
                .enumerate()
                .map(|(k, &(i, pr))| format!("{}. {} {:.1}%", k + 1, name(i), 100.0 * pr))
                .collect();
            println!("{}: {}", p.display(), parts.join("  "));
        }
    }
    Ok(())
}
