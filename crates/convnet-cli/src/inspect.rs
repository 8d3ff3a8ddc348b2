//! `convnet features | kernels | gradcam | maximize | plot`: pictures of what a trained model
//! computes. The math is `convnet::inspect`, the drawing `convnet::render`; this module reads
//! arguments and files and writes PNGs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use convnet::checkpoint::CheckpointMeta;
use convnet::data::{self, OpenOptions};
use convnet::files::{check_output, write_atomic};
use convnet::image;
use convnet::inspect::{self, CamMethod, MaximizeConfig, Parameterization};
use convnet::names;
use convnet::preprocess::{self, ChannelOrder};
use convnet::render::{self, KernelScale, check_png, write_png};
use convnet::train::parse_metrics_csv;
use convnet_core::Tensor;

use crate::io::check_distinct;

/// One image for a model: its pixels `[C, H, W]` in [0, 1] as the model sees them (resized
/// and cropped, in display order: RGB even for a BGR model), for pictures, and the
/// normalized input `[1, C, H, W]` (in the model's channel order), with a name and (for
/// dataset images) the true label.
pub struct InputImage {
    pub name: String,
    pub pixels: Tensor,
    pub input: Tensor,
    pub label: Option<usize>,
}

/// The file an image spec names: `None` for `sample:N` and `test:N`.
fn image_file(spec: &str) -> Option<&Path> {
    let dataset = spec.starts_with("sample:") || spec.starts_with("test:");
    (!dataset).then(|| Path::new(spec))
}

/// Read `spec`: a PNG/JPEG path, `sample:N` (test image N of the embedded Fashion-MNIST
/// sample) or `test:N` (test image N of `--data`, default Fashion-MNIST if installed, else the
/// sample). A file goes through the checkpoint's preprocessing (`meta.preprocessing`:
/// resize, center crop, channel order), so pictures show the crop the model sees; a
/// checkpoint that stores none takes files of the model's input size only, unless `resize`
/// (checked from the file's header, before it is decoded).
pub fn read_input(
    spec: &str,
    dims: [usize; 3],
    meta: &CheckpointMeta,
    data_dir: Option<&Path>,
    resize: bool,
) -> Result<InputImage> {
    let dataset_index = |prefix: &str| -> Option<Result<usize>> {
        spec.strip_prefix(prefix).map(|n| {
            n.parse::<usize>()
                .with_context(|| format!("'{spec}': '{n}' is not an image index"))
        })
    };
    let preprocessing = meta.preprocessing(dims);
    let (name, bytes, label) =
        if let Some(i) = dataset_index("sample:").or_else(|| dataset_index("test:")) {
            let i = i?;
            let split = if spec.starts_with("sample:") {
                data::embedded_sample()
            } else {
                data::open_or_default(data_dir, &OpenOptions::default())?
            };
            let set = &split.test;
            if i >= set.len() {
                bail!(
                    "'{spec}': {} has {} test images (0..={})",
                    set.source,
                    set.len(),
                    set.len().saturating_sub(1)
                );
            }
            if set.image_dims() != dims {
                bail!(
                    "'{spec}': {} holds images {:?}; the model takes {dims:?}",
                    set.source,
                    set.image_dims()
                );
            }
            (
                format!("{spec} ({})", set.classes[set.labels[i]]),
                set.image(i).to_vec(),
                Some(set.labels[i]),
            )
        } else {
            let path = Path::new(spec);
            if meta.preprocessing.is_none() && !resize {
                image::check_exact(path, dims)?;
            }
            let pixels = preprocess::read_pixels(path, dims, &preprocessing)?;
            (path.display().to_string(), pixels, None)
        };
    let pixels = Tensor::new(
        dims.to_vec(),
        bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
    )?;
    let model_order = preprocess::to_model_order(&bytes, dims, preprocessing.channel_order);
    Ok(InputImage {
        name,
        pixels,
        input: meta.normalization.to_input(&model_order, dims)?,
        label,
    })
}

/// `[C, H, W]` pixels in the model's channel order from display order, or back (a swap of
/// the first and last planes for BGR, its own inverse).
fn swap_order(pixels: &Tensor, order: ChannelOrder) -> Result<Tensor> {
    let dims: [usize; 3] = pixels
        .dims()
        .try_into()
        .map_err(|_| anyhow::anyhow!("an image is [C, H, W], got {}", pixels.shape()))?;
    let data = preprocess::to_model_order(pixels.data(), dims, order);
    Ok(Tensor::new(dims.to_vec(), data)?)
}

/// The longest class name in a tile's caption (the rest of the caption must stay visible).
const CAPTION_CHARS: usize = 20;

const IMAGE_HELP: &str =
    "IMAGE is a PNG/JPEG file of the model's input size (any size for a checkpoint that stores
its preprocessing, as imported models do: pictures show the crop the model sees), sample:N
(test image N of the embedded Fashion-MNIST sample) or test:N (test image N of --data).";

#[derive(Args)]
#[command(after_help = format!("Examples:
  convnet features --checkpoint runs/train/best sample:0 --layer features.2 -o maps.png
  convnet features --checkpoint runs/train/best shoe.png --layers features.2,features.9 -o maps.png

{IMAGE_HELP}
With several layers, one picture per layer is written: maps-features.2.png, ..."))]
pub struct FeaturesArgs {
    /// Checkpoint folder (written by `convnet train`).
    #[arg(long)]
    checkpoint: PathBuf,
    image: String,
    /// The layer whose feature maps to show.
    #[arg(long, conflicts_with = "layers")]
    layer: Option<String>,
    /// Several layers, comma-separated.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize and convert an image that does not match the model's input (a checkpoint that
    /// stores its preprocessing, as imported models do, always applies it).
    #[arg(long)]
    resize: bool,
}

pub fn features(args: FeaturesArgs) -> Result<()> {
    let names: Vec<String> = match (&args.layer, args.layers.is_empty()) {
        (Some(l), _) => vec![l.clone()],
        (None, false) => args.layers.clone(),
        (None, true) => bail!("name the layer to show with --layer (or several with --layers)"),
    };
    let repeated = (1..names.len()).find(|&i| names[..i].contains(&names[i]));
    if let Some(i) = repeated {
        bail!(
            "--layers names '{}' twice: each layer's picture is written once",
            names[i]
        );
    }
    let outputs: Vec<PathBuf> = if names.len() > 1 {
        names.iter().map(|n| suffixed(&args.output, n)).collect()
    } else {
        vec![args.output.clone()]
    };
    for path in &outputs {
        check_png(path)?;
    }
    let inputs: Vec<(&str, &Path)> = image_file(&args.image)
        .map(|p| ("input image", p))
        .into_iter()
        .collect();
    let named: Vec<(&str, &Path)> = outputs.iter().map(|p| ("-o", p.as_path())).collect();
    check_distinct(&named, &inputs)?;
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    let mut model = ck.model;
    let layers = names
        .iter()
        .map(|n| Ok(model.node_index(n)?))
        .collect::<Result<Vec<_>>>()?;
    for (&l, n) in layers.iter().zip(&names) {
        let shape = &model.nodes()[l].output_shape;
        if shape.len() != 3 {
            bail!(
                "layer '{n}' outputs {shape:?}, not feature maps [C, H, W]; choose a convolution, activation, normalization or pooling layer"
            );
        }
    }
    let img = read_input(
        &args.image,
        model.input_shape(),
        &ck.meta,
        args.data.as_deref(),
        args.resize,
    )?;
    let maps = inspect::feature_maps(&mut model, &img.input, &layers)?;
    for (((&l, name), m), path) in layers.iter().zip(&names).zip(&maps).zip(&outputs) {
        let kind = model.nodes()[l].kind;
        let title = format!("{name} ({kind}) on {}", img.name);
        let picture = render::feature_maps(&img.pixels, m, &title)?;
        write_png(path, &picture)?;
        println!(
            "{}: {} maps of {}x{} from {name}",
            path.display(),
            m.dims()[0],
            m.dims()[1],
            m.dims()[2]
        );
    }
    Ok(())
}

/// `maps.png` + `features.2` -> `maps-features.2.png`. Characters of the suffix other than
/// letters, digits, `.`, `-` and `_` become `_`, so a layer name never leaves the folder.
pub(crate) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or("out".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or("png".into(), |s| s.to_string_lossy().into_owned());
    let suffix: String = suffix
        .chars()
        .map(|ch| {
            if ch.is_alphanumeric() || matches!(ch, '.' | '-' | '_') {
                ch
            } else {
                '_'
            }
        })
        .collect();
    path.with_file_name(format!("{stem}-{suffix}.{ext}"))
}

#[derive(Clone, Copy, ValueEnum)]
enum ScaleArg {
    Shared,
    Each,
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet kernels --checkpoint runs/train/best --layer features.0 -o kernels.png
  convnet kernels --checkpoint runs/train/best --layer features.3 --scale each -o k.png")]
pub struct KernelsArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// A convolutional layer (default: the first).
    #[arg(long)]
    layer: Option<String>,
    /// One colour range for all filters (compare strengths) or one per filter.
    #[arg(long, value_enum, default_value = "shared")]
    scale: ScaleArg,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn kernels(args: KernelsArgs) -> Result<()> {
    check_png(&args.output)?;
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    let model = ck.model;
    let layer = match &args.layer {
        Some(n) => model.node_index(n)?,
        None => model
            .nodes()
            .iter()
            .position(|n| n.layer.is::<convnet::layers::Conv2d>())
            .context("the model has no convolutional layer")?,
    };
    let weights = inspect::kernels(&model, layer)?;
    let name = &model.nodes()[layer].name;
    let scale = match args.scale {
        ScaleArg::Shared => KernelScale::Shared,
        ScaleArg::Each => KernelScale::Each,
    };
    let picture = render::kernels(&weights, scale, &format!("kernels of {name}"))?;
    write_png(&args.output, &picture)?;
    println!(
        "{}: {} kernels {:?} of {name}",
        args.output.display(),
        weights.dims()[0],
        &weights.dims()[1..]
    );
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    Gradcam,
    #[value(name = "gradcam++")]
    GradcamPlusPlus,
    Saliency,
}

#[derive(Args)]
#[command(after_help = format!("Examples:
  convnet gradcam --checkpoint runs/train/best sample:0 -o cam.png
  convnet gradcam --checkpoint runs/train/best sample:7 --top 3 --method gradcam++ -o cam.png
  convnet gradcam --checkpoint runs/train/best shoe.png --class 9 --raw cam.npy -o cam.png

{IMAGE_HELP}
The score is the class logit; the map is ReLU(sum_k w_k A_k) over the layer's channels,
upsampled to the image and scaled to [0, 1] (as pytorch-grad-cam)."))]
pub struct GradcamArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    image: String,
    /// The class to explain (default: the predicted one).
    #[arg(long, conflicts_with = "top")]
    class: Option<usize>,
    /// Explain the K most probable classes, side by side.
    #[arg(long)]
    top: Option<usize>,
    /// The layer (default: the last convolutional layer).
    #[arg(long)]
    layer: Option<String>,
    #[arg(long, value_enum, default_value = "gradcam")]
    method: MethodArg,
    /// Weight of the heatmap over the image.
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Also write the map(s) in [0, 1] before colouring, as .npy (`[H, W]`, or `[K, H, W]`
    /// with --top).
    #[arg(long)]
    raw: Option<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize and convert an image that does not match the model's input (a checkpoint that
    /// stores its preprocessing, as imported models do, always applies it).
    #[arg(long)]
    resize: bool,
}

pub fn gradcam(args: GradcamArgs) -> Result<()> {
    check_png(&args.output)?;
    let mut outputs = vec![("-o", args.output.as_path())];
    if let Some(raw) = &args.raw {
        check_output(raw)?;
        outputs.push(("--raw", raw.as_path()));
    }
    let inputs: Vec<(&str, &Path)> = image_file(&args.image)
        .map(|p| ("input image", p))
        .into_iter()
        .collect();
    check_distinct(&outputs, &inputs)?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.alpha),
        "--alpha must be in [0, 1], got {}",
        args.alpha
    );
    if let Some(k) = args.top {
        anyhow::ensure!(
            (1..=render::MAX_CLASS_MAPS).contains(&k),
            "--top {k}: one picture shows 1 to {} classes side by side",
            render::MAX_CLASS_MAPS
        );
    }
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    crate::source::require_classifier(&ck, "gradcam")?;
    let classes = ck.meta.classes.clone();
    let mut model = ck.model;
    let method = match args.method {
        MethodArg::Gradcam => CamMethod::GradCam,
        MethodArg::GradcamPlusPlus => CamMethod::GradCamPlusPlus,
        MethodArg::Saliency => CamMethod::Saliency,
    };
    let layer = args
        .layer
        .as_deref()
        .map(|n| model.node_index(n))
        .transpose()?;
    let img = read_input(
        &args.image,
        model.input_shape(),
        &ck.meta,
        args.data.as_deref(),
        args.resize,
    )?;
    let scores = inspect::scores(&mut model, &img.input)?;
    let n_classes = scores.len();
    let targets = match (args.class, args.top) {
        (Some(c), _) => {
            anyhow::ensure!(
                c < n_classes,
                "--class {c} is out of range: the model has {n_classes} classes (0..={})",
                n_classes - 1
            );
            vec![c]
        }
        (None, Some(k)) => inspect::top_k(&scores, k.min(n_classes)),
        (None, None) => inspect::top_k(&scores, 1),
    };
    let name = |i: usize| {
        classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    let mut panels = Vec::new();
    let mut raw = Vec::new();
    let mut used_layer = None;
    for &c in &targets {
        let e = inspect::explain(&mut model, &img.input, c, method, layer)?;
        used_layer = e.layer;
        println!(
            "{}: {} {:.1}% (score {:.3})",
            img.name,
            name(c),
            100.0 * e.probability(),
            e.score
        );
        raw.extend_from_slice(e.map.data());
        panels.push((
            e.map.clone(),
            format!(
                "{} {:.1}%",
                names::shorten(&name(c), CAPTION_CHARS),
                100.0 * e.probability()
            ),
        ));
    }
    let at = used_layer.map_or(String::new(), |l| format!(" at {}", model.nodes()[l].name));
    let truth = img
        .label
        .map_or(String::new(), |l| format!(", true class {}", name(l)));
    let title = format!("{}{at}: {}{truth}", method.title(), img.name);
    let picture = render::class_maps(&img.pixels, &panels, args.alpha, &title)?;
    if let Some(path) = &args.raw {
        let [_, h, w] = model.input_shape();
        let dims = if targets.len() == 1 {
            vec![h, w]
        } else {
            vec![targets.len(), h, w]
        };
        let bytes = convnet::npy::to_bytes(&Tensor::new(dims, raw)?);
        write_atomic(path, &bytes)?;
    }
    write_png(&args.output, &picture)?;
    println!("wrote {}", args.output.display());
    Ok(())
}

/// The most tiles `maximize --channels` draws at once.
const MAX_CHANNELS: usize = render::MAX_TILES;

/// `a..b` (end exclusive), `a..=b`, or `a,b,c`: at most [`MAX_CHANNELS`] channels.
fn parse_channels(text: &str) -> Result<Vec<usize>> {
    let num = |s: &str| {
        s.trim()
            .parse::<usize>()
            .with_context(|| format!("--channels: '{s}' is not a channel index"))
    };
    if let Some((a, b)) = text.split_once("..") {
        let (b, inclusive) = match b.strip_prefix('=') {
            Some(b) => (b, true),
            None => (b, false),
        };
        let (a, b) = (num(a)?, num(b)?);
        let end = if inclusive { b.saturating_add(1) } else { b };
        anyhow::ensure!(end > a, "--channels {text} is empty");
        anyhow::ensure!(
            end - a <= MAX_CHANNELS,
            "--channels {text}: at most {MAX_CHANNELS} channels in one picture"
        );
        return Ok((a..end).collect());
    }
    let count = text.split(',').count();
    anyhow::ensure!(
        count <= MAX_CHANNELS,
        "--channels lists {count} channels; at most {MAX_CHANNELS} in one picture"
    );
    text.split(',').map(num).collect()
}

#[derive(Clone, Copy, ValueEnum)]
enum ParamArg {
    Pixel,
    Fourier,
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet maximize --checkpoint runs/train/best --layer features.10 --channel 5 -o viz.png
  convnet maximize --checkpoint runs/train/best --layer features.10 --channels 0..16 -o viz.png
  convnet maximize --checkpoint runs/train/best --layer classifier.4 --channels 0..10 --param fourier -o classes.png

Gradient ascent on the input, from the data's mean pixel plus a little noise, with L2 decay,
total variation, random jitter and periodic blur (or a 1/f-scaled Fourier parameterization)
keeping the picture readable.")]
pub struct MaximizeArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    layer: String,
    /// One channel (unit) of the layer.
    #[arg(long, conflicts_with = "channels")]
    channel: Option<usize>,
    /// Several channels as a grid: 0..16, 0..=3 or 1,5,9.
    #[arg(long)]
    channels: Option<String>,
    #[arg(long, default_value_t = 256)]
    steps: usize,
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// L2 decay towards the data's mean pixel.
    #[arg(long, default_value_t = 0.01)]
    l2: f32,
    /// Total-variation weight.
    #[arg(long, default_value_t = 0.05)]
    tv: f32,
    /// Largest random shift in pixels.
    #[arg(long, default_value_t = 1)]
    jitter: usize,
    /// Blur every N steps (0: never).
    #[arg(long, default_value_t = 4)]
    blur_every: usize,
    #[arg(long, value_enum, default_value = "pixel")]
    param: ParamArg,
    /// Start from this image instead of the data's mean pixel plus noise (IMAGE as for
    /// gradcam).
    #[arg(long)]
    start: Option<String>,
    /// Resize (and convert) a --start image to the model's input.
    #[arg(long)]
    resize: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn maximize(args: MaximizeArgs) -> Result<()> {
    check_png(&args.output)?;
    let inputs: Vec<(&str, &Path)> = args
        .start
        .as_deref()
        .and_then(image_file)
        .map(|p| ("--start image", p))
        .into_iter()
        .collect();
    check_distinct(&[("-o", &args.output)], &inputs)?;
    let ck = crate::source::load_checkpoint(&args.checkpoint)?;
    let mut model = ck.model;
    let layer = model.node_index(&args.layer)?;
    let channels = match (&args.channels, args.channel) {
        (Some(t), _) => parse_channels(t)?,
        (None, Some(c)) => vec![c],
        (None, None) => bail!("name the unit with --channel C (or several with --channels 0..16)"),
    };
    // The ascent works on pixels in the model's channel order; pictures show them as RGB.
    let order = ck.meta.preprocessing(model.input_shape()).channel_order;
    let init = args
        .start
        .as_deref()
        .map(|s| {
            read_input(
                s,
                model.input_shape(),
                &ck.meta,
                args.data.as_deref(),
                args.resize,
            )
            .and_then(|i| swap_order(&i.pixels, order))
        })
        .transpose()?;
    let config = MaximizeConfig {
        steps: args.steps,
        lr: args.lr,
        l2: args.l2,
        tv: args.tv,
        jitter: args.jitter,
        blur_every: args.blur_every,
        parameterization: match args.param {
            ParamArg::Pixel => Parameterization::Pixel,
            ParamArg::Fourier => Parameterization::Fourier,
        },
        seed: args.seed,
        init,
        ..MaximizeConfig::default()
    };
    let shape = model.nodes()[layer].output_shape.clone();
    let n = shape.first().copied().unwrap_or(1);
    if let Some(&bad) = channels.iter().find(|&&c| c >= n) {
        bail!(
            "channel {bad} is out of range: layer '{}' has {n} channels (0..={})",
            args.layer,
            n - 1
        );
    }
    let is_output = layer + 1 == model.nodes().len();
    let classes = ck.meta.classes.clone();
    let mut pictures = Vec::new();
    for &c in &channels {
        let r = inspect::maximize(&mut model, &ck.meta.normalization, layer, c, &config)?;
        let label = if is_output && c < classes.len() {
            format!("{c} {}", names::shorten(&classes[c], CAPTION_CHARS))
        } else {
            c.to_string()
        };
        println!(
            "{} channel {c}: mean activation {:.4} -> {:.4}",
            args.layer, r.start_activation, r.activation
        );
        pictures.push((swap_order(&r.image, order)?, label));
    }
    let title = format!("what excites {} ({} steps)", args.layer, args.steps);
    let picture = render::images(
        &pictures,
        &title,
        "each tile: the input that maximizes that channel's mean activation",
    )?;
    write_png(&args.output, &picture)?;
    println!("wrote {}", args.output.display());
    Ok(())
}

#[derive(Args)]
#[command(after_help = "Example:
  convnet plot runs/train/metrics.csv -o curves.png

Values that are not finite (NaN, inf: a diverged run) are not drawn; each chart's caption
names the first and how many. Axes span the finite values, at most +/-1e300 (larger
magnitudes are drawn at the edge). A metrics file may hold at most 16 MiB.")]
pub struct PlotArgs {
    /// metrics.csv written by `convnet train`.
    metrics: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, default_value = "training")]
    title: String,
}

/// The largest metrics.csv `plot` reads (about 100 bytes an epoch: some 160,000 epochs).
const MAX_METRICS_BYTES: u64 = 16 << 20;

pub fn plot(args: PlotArgs) -> Result<()> {
    check_png(&args.output)?;
    check_distinct(&[("-o", &args.output)], &[("metrics file", &args.metrics)])?;
    let text = crate::io::read_text(&args.metrics, "metrics file", MAX_METRICS_BYTES)?;
    let history = parse_metrics_csv(&text, &args.metrics)?;
    let picture = render::curves(&history, &args.title)?;
    write_png(&args.output, &picture)?;
    println!("{}: {} epochs", args.output.display(), history.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_lists() {
        assert_eq!(parse_channels("0..4").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_channels("2..=3").unwrap(), vec![2, 3]);
        assert_eq!(parse_channels("1,5, 9").unwrap(), vec![1, 5, 9]);
        assert!(parse_channels("3..3").is_err());
        assert!(parse_channels("a").is_err());
    }

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(
            suffixed(Path::new("out/maps.png"), "features.2"),
            PathBuf::from("out/maps-features.2.png")
        );
    }
}
