//! `convnet run`: a forward pass on a tensor file, for batch inference and interop with
//! NumPy / PyTorch.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use convnet::files::write_atomic;
use convnet::layers::ForwardCtx;
use convnet::{Model, checkpoint, npy};
use convnet_core::Tensor;

#[derive(Args)]
#[command(after_help = "Examples:
  convnet run --model models/fashion_cnn.toml --weights runs/train/best/weights.safetensors \\
      --input images.npy --output logits.npy
  convnet run --model resnet18.onnx --input images.npy --output logits.npy

The input is a float32 (or float64) .npy array [N, C, H, W], already normalized as the model
expects; the output is float32 [N, ...].")]
pub struct RunArgs {
    /// Model file (TOML), or an ONNX model (which holds its weights).
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
        None if convnet_onnx::is_onnx(&args.model) => {
            crate::source::load_checkpoint(&args.model)?.model
        }
        None => bail!(
            "--weights is needed with a model file ({}); an ONNX model holds its own",
            args.model.display()
        ),
    };
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
    let mut out: Vec<f32> = Vec::new();
    let mut out_dims: Vec<usize> = vec![n];
    for start in (0..n).step_by(batch) {
        let count = batch.min(n - start);
        let xb = Tensor::new(
            [count, c, h, w],
            x.data()[start * per..(start + count) * per].to_vec(),
        )?;
        let y = model.forward(&xb, ForwardCtx::eval(false))?;
        if start == 0 {
            out_dims.extend_from_slice(&y.dims()[1..]);
        }
        out.extend_from_slice(y.data());
    }
    if n == 0 {
        out_dims.extend_from_slice(model.output_shape());
    }
    let y = Tensor::new(out_dims, out)?;
    write_atomic(&args.output, &npy::to_bytes(&y))?;
    eprintln!("wrote {} {}", args.output.display(), y.shape());
    Ok(())
}
