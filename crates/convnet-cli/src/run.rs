//! `convnet run`: a forward pass on a tensor file, for batch inference and interop with
//! NumPy / PyTorch.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use convnet::files::{check_output, write_atomic};
use convnet::layers::ForwardCtx;
use convnet::spec::Source;
use convnet::{Model, checkpoint, npy};

use crate::io::check_distinct;
use convnet_core::Tensor;

#[derive(Args)]
#[command(after_help = "Examples:
  convnet run --model models/fashion_cnn.toml --weights runs/train/best/weights.safetensors \\
      --input images.npy --output logits.npy
  convnet run --model resnet18.onnx --input images.npy --output logits.npy
  convnet run --model models/pnet --input faces.npy --output maps.npy   (a checkpoint folder)

The input is a float32 (or float64) .npy array [N, C, H, W], already normalized as the model
expects; the output is float32 [N, ...]. A model of several outputs writes one file each,
named after the output's layer: maps.npy -> maps-conv4_2.npy, maps-prob1.npy.")]
pub struct RunArgs {
    /// Model file (TOML), an ONNX model or a checkpoint folder (which hold their weights).
    #[arg(long)]
    model: PathBuf,
    /// Weights with PyTorch state_dict names (.safetensors), for a model file.
    #[arg(long)]
    weights: Option<PathBuf>,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut model = match &args.weights {
        Some(weights) => {
            let spec = crate::source::load_spec(&args.model)?;
            let mut model = Model::from_spec(&spec, 0)?;
            checkpoint::load_weights(&mut model, weights)?;
            model
        }
        None if convnet_onnx::is_onnx(&args.model) || args.model.is_dir() => {
            crate::source::load_checkpoint(&args.model)?.model
        }
        None => bail!(
            "--weights is needed with a model file ({}); an ONNX model or a checkpoint folder \
             holds its own",
            args.model.display()
        ),
    };
    let outputs = output_paths(&args.output, &model);
    for path in &outputs {
        check_output(path)?;
    }
    let named: Vec<(&str, &Path)> = outputs.iter().map(|p| ("--output", p.as_path())).collect();
    check_distinct(&named, &[("--input", &args.input)])?;
    let x = npy::read(&args.input)?;
    let want = model.input_shape();
    let [n, c, h, w] = match *x.dims() {
        [n, c, h, w] => [n, c, h, w],
        _ => bail!(
            "{}: shape {} is not [N, C, H, W]",
            args.input.display(),
            x.shape()
        ),
    };
    if [c, h, w] != want {
        bail!(
            "{}: images are {c}x{h}x{w} (C x H x W) but the model takes {}x{}x{}",
            args.input.display(),
            want[0],
            want[1],
            want[2]
        );
    }
    let per = c * h * w;
    let batch = args.batch_size.max(1);
    // Per output: its values over the batches, and its per-sample shape.
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); outputs.len()];
    let mut shapes: Vec<Vec<usize>> = Vec::new();
    for start in (0..n).step_by(batch) {
        let count = batch.min(n - start);
        let xb = Tensor::new(
            [count, c, h, w],
            x.data()[start * per..(start + count) * per].to_vec(),
        )?;
        let (ys, _) = model.forward_all(&[xb], ForwardCtx::eval(false), &[])?;
        if start == 0 {
            shapes = ys.iter().map(|y| y.dims()[1..].to_vec()).collect();
        }
        for (v, y) in values.iter_mut().zip(&ys) {
            v.extend_from_slice(y.data());
        }
    }
    if n == 0 {
        shapes = model
            .outputs()
            .iter()
            .map(|s| match *s {
                Source::Node(j) => model.nodes()[j].output_shape.clone(),
                Source::Input(_) => want.to_vec(),
            })
            .collect();
    }
    for ((path, v), shape) in outputs.iter().zip(values).zip(shapes) {
        let dims: Vec<usize> = std::iter::once(n).chain(shape).collect();
        let y = Tensor::new(dims, v)?;
        write_atomic(path, &npy::to_bytes(&y))?;
        eprintln!("wrote {} {}", path.display(), y.shape());
    }
    Ok(())
}

/// Where each output goes: `--output` for a model of one output; for several,
/// `<stem>-<output's node name>.npy` beside it (`y.npy` -> `y-conv4_2.npy`), in the model's
/// output order (a name given twice gets the output's position too).
fn output_paths(output: &Path, model: &Model) -> Vec<PathBuf> {
    let sources = model.outputs();
    if sources.len() == 1 {
        return vec![output.to_path_buf()];
    }
    let names: Vec<String> = sources
        .iter()
        .map(|s| match *s {
            Source::Node(j) => model.nodes()[j].name.clone(),
            Source::Input(_) => "input".to_string(),
        })
        .collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let repeated = names.iter().filter(|n| *n == name).count() > 1;
            let suffix = if repeated {
                format!("{name}-{i}")
            } else {
                name.clone()
            };
            crate::inspect::suffixed(output, &suffix)
        })
        .collect()
}
