//! `convnet import`: an ONNX model as a checkpoint folder (model file + safetensors weights,
//! names kept from the graph).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet::checkpoint;
use convnet::files::write_atomic;
use convnet::spec::parse_hwc;
use convnet_onnx::{ImportOptions, NameMap};

#[derive(Args)]
#[command(after_help = "Examples:
  convnet import resnet18.onnx -o models/resnet18
  convnet predict --checkpoint models/resnet18 cat.png
  convnet predict --checkpoint resnet18.onnx cat.png     (the same, converted on the fly)

The folder gets model.toml, weights.safetensors (parameters under the graph's names) and
checkpoint.json; onnx-names.tsv says which ONNX node each layer came from. A 1000-class RGB
classifier gets ImageNet's class names and normalization. docs/onnx.md lists the supported
operators.")]
pub struct ImportArgs {
    /// The ONNX model (.onnx; external data files beside it).
    model: PathBuf,
    /// The checkpoint folder to create (must not exist, or be empty).
    #[arg(short, long)]
    out: PathBuf,
    /// Input size HxWxC, for graphs whose input size is not fixed (or to override it).
    #[arg(long)]
    input_shape: Option<String>,
}

pub fn run(args: ImportArgs) -> Result<()> {
    check_empty(&args.out)?;
    let input_shape = match &args.input_shape {
        Some(text) => Some(parse_hwc(text).context("--input-shape")?),
        None => None,
    };
    let imported = convnet_onnx::import_file(&args.model, &ImportOptions { input_shape })?;
    let names = names_table(&imported.names);
    let layers = imported.spec.layers.len();
    let model = imported.into_model().with_context(|| {
        format!(
            "{}: the converted model does not build",
            args.model.display()
        )
    })?;
    let meta = convnet_onnx::default_meta(&model);
    checkpoint::save(&args.out, &model, &meta, &[])?;
    write_atomic(&args.out.join("onnx-names.tsv"), names.as_bytes())?;
    println!(
        "{} -> {}: {layers} layers, {} parameters, input {:?}, output {:?}",
        args.model.display(),
        args.out.display(),
        model.param_count(),
        model.input_shape(),
        model.output_shape()
    );
    Ok(())
}

/// Refuses a folder that exists and holds anything (an import never replaces files).
fn check_empty(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{}: the folder exists and is not empty; import into a new folder",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{}: is a file; name a folder to create", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("{}", dir.display())),
    }
}

/// `layer<TAB>node<TAB>output` lines, with a header.
fn names_table(names: &[NameMap]) -> String {
    let mut out = String::from("layer\tonnx_node\tonnx_output\n");
    for n in names {
        out.push_str(&format!("{}\t{}\t{}\n", n.layer, n.node, n.output));
    }
    out
}
