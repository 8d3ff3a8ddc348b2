//! `convnet filter`: classic image filtering (edge detection, blur, sharpen, any kernel) with
//! the convolution engine.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use convnet::filter::{self, Filter, OutputRange};
use convnet::{files, image};
use convnet_core::{Conv2dParams, ConvMode, Padding, PaddingMode};

#[derive(Clone, Copy, ValueEnum)]
pub enum PaddingModeArg {
    Zeros,
    Reflect,
    Replicate,
    Circular,
}

impl From<PaddingModeArg> for PaddingMode {
    fn from(m: PaddingModeArg) -> Self {
        match m {
            PaddingModeArg::Zeros => PaddingMode::Zeros,
            PaddingModeArg::Reflect => PaddingMode::Reflect,
            PaddingModeArg::Replicate => PaddingMode::Replicate,
            PaddingModeArg::Circular => PaddingMode::Circular,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Cross-correlation: the kernel as written (what CNNs and OpenCV's filter2D do).
    Correlate,
    /// Convolution: the kernel flipped in both axes (the mathematical definition).
    Convolve,
}

impl From<ModeArg> for ConvMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Correlate => ConvMode::CrossCorrelation,
            ModeArg::Convolve => ConvMode::Convolution,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RangeArg {
    Clamp,
    Abs,
    Rescale,
}

/// Padding written on the command line: `valid`, `same`, `N`, `H,W` or `T,B,L,R`.
pub fn parse_padding(text: &str) -> Result<Padding> {
    match text.trim() {
        "valid" => return Ok(Padding::Valid),
        "same" => return Ok(Padding::Same),
        _ => {}
    }
    let v: Vec<usize> = text
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--padding '{text}' is not valid, same, N, H,W or T,B,L,R"))?;
    Ok(match v.as_slice() {
        [p] => Padding::symmetric([*p, *p]),
        [h, w] => Padding::symmetric([*h, *w]),
        [top, bottom, left, right] => Padding::Explicit {
            top: *top,
            bottom: *bottom,
            left: *left,
            right: *right,
        },
        _ => bail!("--padding '{text}' is not valid, same, N, H,W or T,B,L,R"),
    })
}

/// `N` or `H,W`.
pub fn parse_pair(what: &str, text: &str) -> Result<[usize; 2]> {
    let v: Vec<usize> = text
        .split([',', 'x'])
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--{what} '{text}' is not N or H,W"))?;
    match v.as_slice() {
        [n] => Ok([*n, *n]),
        [h, w] => Ok([*h, *w]),
        _ => bail!("--{what} '{text}' is not N or H,W"),
    }
}

/// The convolution options shared by `filter` and `conv`.
#[derive(Args, Clone)]
pub struct ConvOptions {
    /// Stride: N or H,W.
    #[arg(long, default_value = "1")]
    pub stride: String,
    /// Dilation: N or H,W.
    #[arg(long, default_value = "1")]
    pub dilation: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Correlate)]
    pub mode: ModeArg,
}

impl ConvOptions {
    pub fn params(&self, padding: Padding, padding_mode: PaddingMode) -> Result<Conv2dParams> {
        Ok(Conv2dParams::builder()
            .with_stride(parse_pair("stride", &self.stride)?)
            .with_dilation(parse_pair("dilation", &self.dilation)?)
            .with_padding(padding)
            .with_padding_mode(padding_mode)
            .with_mode(self.mode.into())
            .build()?)
    }
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet filter photo.png -o edges.png --kernel sobel
  convnet filter photo.png -o blur.png --kernel gaussian:2 --padding-mode replicate
  convnet filter photo.png -o v.png --kernel \"1,0,-1; 1,0,-1; 1,0,-1\" --output-range abs
  convnet filter photo.png -o out.png --kernel box:3 --kernel sharpen --repeat 2
  convnet filter --list

Kernels: a name (see --list), rows of numbers (\"1,0,-1; 2,0,-2; 1,0,-1\"; planes separated by
'|' for a kernel across the image's channels), or a text file of such rows. Each channel is
filtered on its own unless the kernel has as many planes as the image has channels.
The default border is 'same' padding with reflected edges (OpenCV's BORDER_REFLECT_101).")]
pub struct FilterArgs {
    /// Input image (PNG or JPEG, grayscale or RGB).
    input: Option<PathBuf>,
    /// Output image (PNG; JPEG for 8 bits).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Kernel to apply; give several to apply them in sequence.
    #[arg(long)]
    kernel: Vec<String>,
    /// Scale each kernel to sum to 1.
    #[arg(long)]
    normalize: bool,
    /// Apply the kernels this many times.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// valid, same, N, H,W or T,B,L,R.
    #[arg(long, default_value = "same")]
    padding: String,
    #[arg(long, value_enum, default_value_t = PaddingModeArg::Reflect)]
    padding_mode: PaddingModeArg,
    #[command(flatten)]
    conv: ConvOptions,
    /// How values outside the pixel range become pixels.
    #[arg(long, value_enum, default_value_t = RangeArg::Clamp)]
    output_range: RangeArg,
    /// Output bits per channel (default: the input's).
    #[arg(long, value_parser = ["8", "16"])]
    bits: Option<String>,
    /// Print the named kernels with their values.
    #[arg(long)]
    list: bool,
}

fn print_list() {
    println!("Named kernels (--kernel NAME):\n");
    for (name, what) in filter::NAMED {
        println!("{name:<16} {what}");
        let example = name
            .replace(":N", ":3")
            .replace(":SIGMA", ":1")
            .replace(":AMOUNT", ":1");
        if let Ok(f) = filter::named(&example) {
            let shown = match &f {
                Filter::Kernel(k) => k.clone(),
                Filter::Magnitude(kx, _) => kx.clone(),
            };
            if *name != example {
                println!("  as {example}:");
            }
            print!("{}", shown.to_matrix());
            if let Filter::Magnitude(_, ky) = f {
                println!("  and {}:", ky.name);
                print!("{}", ky.to_matrix());
            }
        }
        println!();
    }
}

pub fn run(args: FilterArgs) -> Result<()> {
    if args.list {
        print_list();
        return Ok(());
    }
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        bail!("give an input image and -o OUTPUT (or --list to see the kernels)");
    };
    if args.kernel.is_empty() {
        bail!("give at least one --kernel (see convnet filter --list)");
    }
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    files::check_output(output)?;
    let padding = parse_padding(&args.padding)?;
    let params = args.conv.params(padding, args.padding_mode.into())?;
    let filters: Vec<Filter> = args
        .kernel
        .iter()
        .map(|spec| -> Result<Filter> {
            let f = filter::from_spec(spec)?;
            let f = match (f, args.normalize) {
                (Filter::Kernel(k), true) => Filter::Kernel(k.normalized()?),
                (Filter::Magnitude(..), true) => {
                    bail!("--normalize: {spec} is a gradient magnitude, not one kernel")
                }
                (f, false) => f,
            };
            filter::check_same_padding(&f, padding)?;
            Ok(f)
        })
        .collect::<Result<_>>()?;
    let (mut values, in_max) = image::pixel_values(&image::decode(input)?)?;
    let bits = match args.bits.as_deref() {
        Some("16") => 16,
        Some(_) => 8,
        None if in_max > 255.0 => 16,
        None => 8,
    };
    image::output_format(output, bits)?;
    for _ in 0..args.repeat {
        for f in &filters {
            values = filter::apply(&values, f, &params)?;
        }
    }
    let range = match args.output_range {
        RangeArg::Clamp => OutputRange::Clamp,
        RangeArg::Abs => OutputRange::Abs,
        RangeArg::Rescale => OutputRange::Rescale,
    };
    image::save(output, &filter::to_image(&values, range, in_max, bits)?)?;
    let [_, c, h, w] = values.dims4("filter", "output")?;
    eprintln!(
        "wrote {} ({w}x{h}, {c} channel(s), {bits} bits)",
        output.display()
    );
    Ok(())
}
