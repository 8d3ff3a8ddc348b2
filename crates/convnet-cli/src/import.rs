//! `convnet import`: an ONNX model as a checkpoint folder (model file + safetensors weights,
//! names kept from the graph).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use convnet::Model;
use convnet::checkpoint::{self, CheckpointMeta};
use convnet::files::write_atomic;
use convnet::preprocess::{ChannelOrder, Preprocessing, Resize};
use convnet::spec::{Source, parse_hwc};
use convnet_onnx::{ImportOptions, NameMap};

#[derive(Args)]
#[command(after_help = "Examples:
  convnet import resnet18.onnx -o models/resnet18
  convnet predict --checkpoint models/resnet18 cat.png
  convnet predict --checkpoint resnet18.onnx cat.png     (the same, converted on the fly)
  convnet import caffe_net.onnx -o models/net --bgr --resize 256 --crop 224 \
      --mean 0.406,0.456,0.485 --std 0.225,0.224,0.229

The folder gets model.toml, weights.safetensors (parameters under the graph's names) and
checkpoint.json; onnx-names.tsv says which ONNX node each layer came from. A 1000-class RGB
classifier gets ImageNet's class names, normalization and (at 224x224) torchvision's
preprocessing: the shorter side resized to 256, a 224x224 center crop. checkpoint.json keeps
the preprocessing, so predict and gradcam need no flags. docs/onnx.md lists the supported
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
    /// How images are resized before the crop: N (the shorter side to N pixels, the longer
    /// in proportion, as torchvision's Resize(N)) or HxW (exactly). Default: 256 for a
    /// 224x224 ImageNet classifier, else the input size.
    #[arg(long, value_name = "N|HxW")]
    resize: Option<String>,
    /// Center crop HxW (or N for NxN) after the resize: the model's input size. Default: 224
    /// for a 224x224 ImageNet classifier; else none, or the input size when --resize is
    /// given.
    #[arg(long, value_name = "HxW|N")]
    crop: Option<String>,
    /// Per-channel mean subtracted from pixels in [0, 1], in the model's channel order.
    /// Default: ImageNet's (0.485,0.456,0.406) for an ImageNet classifier, else 0.
    #[arg(long, value_name = "a,b,c")]
    mean: Option<String>,
    /// Per-channel standard deviation pixels are divided by after the mean, in the model's
    /// channel order. Default: ImageNet's (0.229,0.224,0.225) for an ImageNet classifier,
    /// else 1.
    #[arg(long, value_name = "a,b,c")]
    std: Option<String>,
    /// The model takes its colour channels as blue, green, red (OpenCV's order); default
    /// means and stds are then reversed to that order too.
    #[arg(long)]
    bgr: bool,
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
    let meta = meta_of(&args, &model)?;
    checkpoint::save(&args.out, &model, &meta, &[])?;
    write_atomic(&args.out.join("onnx-names.tsv"), names.as_bytes())?;
    let outputs: Vec<String> = (model.outputs().iter())
        .map(|s| match *s {
            Source::Node(j) => format!("{:?}", model.nodes()[j].output_shape),
            Source::Input(_) => format!("{:?}", model.input_shape()),
        })
        .collect();
    println!(
        "{} -> {}: {layers} layers, {} parameters, input {:?}, output {}",
        args.model.display(),
        args.out.display(),
        model.param_count(),
        model.input_shape(),
        outputs.join(", ")
    );
    let preprocessing = meta.preprocessing(model.input_shape());
    println!(
        "preprocessing: {}; mean {:?}, std {:?}",
        preprocessing.describe(),
        meta.normalization.mean,
        meta.normalization.std
    );
    Ok(())
}

/// What the checkpoint stores: `convnet_onnx::default_meta`'s classes, normalization and
/// preprocessing, with what the flags say instead (each checked, errors naming the flag).
fn meta_of(args: &ImportArgs, model: &Model) -> Result<CheckpointMeta> {
    let [channels, h, w] = model.input_shape();
    let mut meta = convnet_onnx::default_meta(model);
    let default = meta.preprocessing(model.input_shape());
    let resize = match &args.resize {
        Some(text) => match parse_size("--resize", text)? {
            Side::One(n) => Resize::ShorterSide(n),
            Side::Two(size) => Resize::Size(size),
        },
        None => default.resize,
    };
    let crop = match (&args.crop, &args.resize) {
        (Some(text), _) => Some(match parse_size("--crop", text)? {
            Side::One(n) => [n, n],
            Side::Two(size) => size,
        }),
        // A resize of other sizes than the input's is cropped to it.
        (None, Some(_)) => (resize != Resize::Size([h, w])).then_some([h, w]),
        (None, None) => default.crop,
    };
    if let Some([ch, cw]) = crop {
        if [ch, cw] != [h, w] {
            bail!(
                "--crop {ch}x{cw}: the crop is the model's input, which is {h}x{w} (HxW){}",
                crop_hint(&args.crop)
            );
        }
        let (fits, what) = match resize {
            Resize::ShorterSide(n) => (ch <= n && cw <= n, format!("a shorter side of {n}")),
            Resize::Size([rh, rw]) => (ch <= rh && cw <= rw, format!("{rh}x{rw}")),
        };
        if !fits {
            bail!(
                "--crop {ch}x{cw} is larger than the resized image ({what}){}: resize to at \
                 least the crop",
                crop_hint(&args.crop)
            );
        }
    }
    if args.bgr && channels != 3 {
        bail!("--bgr: the model takes {channels}-channel images; BGR orders 3 colour channels");
    }
    let channel_order = if args.bgr {
        ChannelOrder::Bgr
    } else {
        ChannelOrder::Rgb
    };
    let preprocessing = Preprocessing {
        resize,
        crop,
        channel_order,
    };
    preprocessing
        .check(model.input_shape())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the preprocessing the flags describe")?;
    // Defaults are per colour: in BGR order they are reversed.
    if args.bgr {
        meta.normalization.mean.reverse();
        meta.normalization.std.reverse();
    }
    if let Some(text) = &args.mean {
        meta.normalization.mean = parse_values("--mean", text, channels)?;
    }
    if let Some(text) = &args.std {
        let std = parse_values("--std", text, channels)?;
        if let Some((c, v)) = std.iter().enumerate().find(|(_, v)| **v <= 0.0) {
            bail!(
                "--std '{text}': the std of channel {c} is {v}; it divides, so it must be positive"
            );
        }
        meta.normalization.std = std;
    }
    meta.preprocessing = Some(preprocessing);
    Ok(meta)
}

/// `(the crop's default)` when `--crop` was not given: the crop came from the defaults.
fn crop_hint(crop: &Option<String>) -> &'static str {
    if crop.is_none() {
        " (the default crop: give --crop)"
    } else {
        ""
    }
}

/// A size flag's value: N or HxW.
enum Side {
    One(usize),
    Two([usize; 2]),
}

/// `N` or `HxW`, each side 1 to the largest side images are read at.
fn parse_size(flag: &str, text: &str) -> Result<Side> {
    let max = convnet::image::MAX_SIDE as usize;
    let side = |part: &str| -> Result<usize> {
        let n: usize = part.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{flag} '{text}': '{part}' is not a size (N or HxW, e.g. 256 or 224x224)"
            )
        })?;
        if !(1..=max).contains(&n) {
            bail!("{flag} '{text}': a side is 1 to {max} pixels");
        }
        Ok(n)
    };
    Ok(match text.split_once(['x', 'X']) {
        Some((a, b)) => Side::Two([side(a)?, side(b)?]),
        None => Side::One(side(text)?),
    })
}

/// `a,b,c`: one finite number per channel.
fn parse_values(flag: &str, text: &str, channels: usize) -> Result<Vec<f32>> {
    let values = text
        .split(',')
        .map(|part| {
            let v: f32 = part
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag} '{text}': '{part}' is not a number"))?;
            if !v.is_finite() {
                bail!("{flag} '{text}': {part} is not a finite number");
            }
            Ok(v)
        })
        .collect::<Result<Vec<f32>>>()?;
    if values.len() != channels {
        bail!(
            "{flag} '{text}': {} value(s), but the model takes {channels}-channel images (one \
             value per channel)",
            values.len()
        );
    }
    Ok(values)
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
