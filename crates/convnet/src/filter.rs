//! Classic image filtering with the convolution engine: named kernels (edge detectors, blur,
//! sharpen, ...), kernels written as text, and turning results back into pixel values.
//!
//! Images are `[1, C, H, W]` tensors of pixel values in `0..=max` (255 for 8-bit images).
//! A one-channel kernel filters every channel on its own (a depthwise convolution, groups =
//! channels); a kernel with as many channels as the image is a true convolution over the
//! channels and gives one output channel. Filtering is `conv2d`, so stride, padding (explicit,
//! valid, same; zeros, reflect, replicate, circular), dilation and the flipped-kernel mode
//! apply as everywhere else.

use std::fmt::Write as _;
use std::path::Path;

use convnet_core::{Conv2dParams, Padding, Tensor, conv2d};

use crate::error::{Error, Result};

/// A kernel: `channels` planes of `height x width` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[channels, height, width]`.
    pub values: Vec<f32>,
}

/// What a filter computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// One kernel.
    Kernel(Kernel),
    /// The gradient magnitude `hypot(gx, gy)` of two kernels (`sobel`).
    Magnitude(Kernel, Kernel),
}

impl Kernel {
    fn square(name: &str, n: usize, values: Vec<f32>) -> Self {
        debug_assert_eq!(values.len(), n * n);
        Kernel {
            name: name.to_string(),
            channels: 1,
            height: n,
            width: n,
            values,
        }
    }

    /// The kernel scaled so that its values sum to 1 (an error if they sum to 0).
    pub fn normalized(mut self) -> Result<Self> {
        let sum: f64 = self.values.iter().map(|&v| f64::from(v)).sum();
        if sum.abs() < 1e-12 {
            return Err(Error::config(
                "normalize",
                format!("kernel {} sums to 0 and cannot be normalized", self.name),
            ));
        }
        for v in &mut self.values {
            *v = (f64::from(*v) / sum) as f32;
        }
        Ok(self)
    }

    /// The kernel as text, rows separated by `;` and planes by `|`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in 0..self.channels {
            if c > 0 {
                out.push_str(" | ");
            }
            for r in 0..self.height {
                if r > 0 {
                    out.push_str("; ");
                }
                let row = &self.values[(c * self.height + r) * self.width..][..self.width];
                let cells: Vec<String> = row.iter().map(|v| format_number(*v)).collect();
                out.push_str(&cells.join(", "));
            }
        }
        out
    }

    /// The kernel as an aligned matrix (one block per plane).
    pub fn to_matrix(&self) -> String {
        let cells: Vec<String> = self.values.iter().map(|v| format_number(*v)).collect();
        let width = cells.iter().map(String::len).max().unwrap_or(1);
        let mut out = String::new();
        for c in 0..self.channels {
            if c > 0 {
                out.push('\n');
            }
            for r in 0..self.height {
                let row = &cells[(c * self.height + r) * self.width..][..self.width];
                let cells: Vec<String> = row.iter().map(|s| format!("{s:>width$}")).collect();
                let _ = writeln!(out, "  [{}]", cells.join(" "));
            }
        }
        out
    }
}

/// A number as short as it is exact enough to read: integers without a decimal point,
/// others with up to 4 significant decimals.
pub fn format_number(v: f32) -> String {
    if v == v.trunc() && v.abs() < 1e7 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The named kernels with what they do, for `--list`.
pub const NAMED: &[(&str, &str)] = &[
    ("identity", "leaves the image as it is"),
    ("sobel-x", "horizontal gradient (vertical edges), Sobel"),
    ("sobel-y", "vertical gradient (horizontal edges), Sobel"),
    ("sobel", "gradient magnitude hypot(sobel-x, sobel-y)"),
    ("prewitt-x", "horizontal gradient, Prewitt"),
    ("prewitt-y", "vertical gradient, Prewitt"),
    ("scharr-x", "horizontal gradient, Scharr"),
    ("scharr-y", "vertical gradient, Scharr"),
    ("laplacian", "second derivative, 4-neighbour Laplacian"),
    (
        "vertical-edge",
        "[1, 0, -1] rows: bright left of dark gives a positive response",
    ),
    ("horizontal-edge", "[1, 1, 1; 0, 0, 0; -1, -1, -1]"),
    ("box:N", "N x N mean"),
    (
        "gaussian:SIGMA",
        "Gaussian blur, size 2*ceil(3*SIGMA)+1 (or gaussian:SIGMA:N for N x N)",
    ),
    ("sharpen", "[0, -1, 0; -1, 5, -1; 0, -1, 0]"),
    (
        "unsharp:AMOUNT",
        "unsharp mask: (1 + AMOUNT) * identity - AMOUNT * gaussian:1:5",
    ),
    ("emboss", "[-2, -1, 0; -1, 1, 1; 0, 1, 2]"),
];

/// A number written as text, finite as an `f32` (what the kernels compute with): "inf",
/// "nan" and 1e39 (infinite in `f32`) are refused alike. `setting` names what it is part of.
fn parse_number(setting: &'static str, what: &str, s: &str) -> Result<f64> {
    let s = s.trim();
    let shown = crate::names::shorten(s, 40);
    let v = s
        .parse::<f64>()
        .map_err(|_| Error::config(setting, format!("{what}: '{shown}' is not a number")))?;
    if !(v as f32).is_finite() {
        return Err(Error::config(
            setting,
            format!(
                "{what}: '{shown}' is not a finite number in f32 (whose largest is about {:e})",
                f32::MAX
            ),
        ));
    }
    Ok(v)
}

/// The largest side of a named kernel: far beyond any useful filter, small enough that a
/// mistyped number is an error rather than an allocation failure.
pub const MAX_KERNEL_SIZE: usize = 1001;

fn parse_size(what: &str, s: &str) -> Result<usize> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_KERNEL_SIZE).contains(&n) => Ok(n),
        _ => Err(Error::config(
            "kernel",
            format!(
                "{what}: '{}' is not a size (a whole number from 1 to {MAX_KERNEL_SIZE})",
                s.trim()
            ),
        )),
    }
}

/// A Gaussian of standard deviation `sigma`, `n x n` (odd), sampled at integer offsets and
/// normalized to sum 1.
fn gaussian(sigma: f64, n: usize, name: &str) -> Kernel {
    let half = (n as f64 - 1.0) / 2.0;
    let one: Vec<f64> = (0..n)
        .map(|i| (-(i as f64 - half).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = one.iter().sum();
    let values = (0..n * n)
        .map(|k| (one[k / n] * one[k % n] / (sum * sum)) as f32)
        .collect();
    Kernel::square(name, n, values)
}

fn identity(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|k| if k == n * n / 2 { 1.0 } else { 0.0 })
        .collect()
}

/// A named kernel (see [`NAMED`]).
pub fn named(spec: &str) -> Result<Filter> {
    let shown = crate::names::shorten(spec, 64);
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or("").trim();
    let args: Vec<&str> = parts.collect();
    let no_args = |f: Filter| -> Result<Filter> {
        if args.is_empty() {
            Ok(f)
        } else {
            Err(Error::config(
                "kernel",
                format!("{name} takes no ':' arguments, got '{shown}'"),
            ))
        }
    };
    let k3 = |n: &str, v: [f32; 9]| Filter::Kernel(Kernel::square(n, 3, v.to_vec()));
    let transpose = |k: [f32; 9]| -> [f32; 9] { std::array::from_fn(|i| k[(i % 3) * 3 + i / 3]) };
    const SOBEL_X: [f32; 9] = [-1., 0., 1., -2., 0., 2., -1., 0., 1.];
    const PREWITT_X: [f32; 9] = [-1., 0., 1., -1., 0., 1., -1., 0., 1.];
    const SCHARR_X: [f32; 9] = [-3., 0., 3., -10., 0., 10., -3., 0., 3.];
    match name {
        "identity" => no_args(k3("identity", [0., 0., 0., 0., 1., 0., 0., 0., 0.])),
        "sobel-x" => no_args(k3("sobel-x", SOBEL_X)),
        "sobel-y" => no_args(k3("sobel-y", transpose(SOBEL_X))),
        "sobel" => no_args(Filter::Magnitude(
            Kernel::square("sobel-x", 3, SOBEL_X.to_vec()),
            Kernel::square("sobel-y", 3, transpose(SOBEL_X).to_vec()),
        )),
        "prewitt-x" => no_args(k3("prewitt-x", PREWITT_X)),
        "prewitt-y" => no_args(k3("prewitt-y", transpose(PREWITT_X))),
        "scharr-x" => no_args(k3("scharr-x", SCHARR_X)),
        "scharr-y" => no_args(k3("scharr-y", transpose(SCHARR_X))),
        "laplacian" => no_args(k3("laplacian", [0., 1., 0., 1., -4., 1., 0., 1., 0.])),
        "vertical-edge" => no_args(k3("vertical-edge", [1., 0., -1., 1., 0., -1., 1., 0., -1.])),
        "horizontal-edge" => no_args(k3(
            "horizontal-edge",
            [1., 1., 1., 0., 0., 0., -1., -1., -1.],
        )),
        "sharpen" => no_args(k3("sharpen", [0., -1., 0., -1., 5., -1., 0., -1., 0.])),
        "emboss" => no_args(k3("emboss", [-2., -1., 0., -1., 1., 1., 0., 1., 2.])),
        "box" => match args.as_slice() {
            [n] => {
                let n = parse_size("box:N", n)?;
                let v = 1.0 / (n * n) as f32;
                Ok(Filter::Kernel(Kernel::square(spec, n, vec![v; n * n])))
            }
            _ => Err(Error::config(
                "kernel",
                format!("write box:N (e.g. box:3), got '{shown}'"),
            )),
        },
        "gaussian" => {
            let (sigma, n) = match args.as_slice() {
                [s] => {
                    let sigma = parse_number("kernel", "gaussian:SIGMA", s)?;
                    // (Saturating for huge sigmas, which the size check below refuses.)
                    let half = (3.0 * sigma).ceil().clamp(1.0, MAX_KERNEL_SIZE as f64) as usize;
                    (sigma, 2 * half + 1)
                }
                [s, n] => (
                    parse_number("kernel", "gaussian:SIGMA:N", s)?,
                    parse_size("gaussian:SIGMA:N", n)?,
                ),
                _ => {
                    return Err(Error::config(
                        "kernel",
                        format!("write gaussian:SIGMA or gaussian:SIGMA:N, got '{shown}'"),
                    ));
                }
            };
            if sigma <= 0.0 {
                return Err(Error::config(
                    "kernel",
                    format!("{shown}: SIGMA must be positive"),
                ));
            }
            if n > MAX_KERNEL_SIZE {
                return Err(Error::config(
                    "kernel",
                    format!(
                        "{shown}: SIGMA {sigma} needs a kernel wider than the largest, \
                         {MAX_KERNEL_SIZE}x{MAX_KERNEL_SIZE}"
                    ),
                ));
            }
            if n % 2 == 0 {
                return Err(Error::config(
                    "kernel",
                    format!("{shown}: the size must be odd"),
                ));
            }
            Ok(Filter::Kernel(gaussian(sigma, n, spec)))
        }
        "unsharp" => match args.as_slice() {
            [a] => {
                let amount = parse_number("kernel", "unsharp:AMOUNT", a)? as f32;
                let blur = gaussian(1.0, 5, "gaussian:1:5");
                let values = identity(5)
                    .iter()
                    .zip(&blur.values)
                    .map(|(i, g)| (1.0 + amount) * i - amount * g)
                    .collect();
                Ok(Filter::Kernel(Kernel::square(spec, 5, values)))
            }
            _ => Err(Error::config(
                "kernel",
                format!("write unsharp:AMOUNT (e.g. unsharp:1.5), got '{shown}'"),
            )),
        },
        _ => {
            let names: Vec<&str> = NAMED.iter().map(|(n, _)| *n).collect();
            Err(Error::config(
                "kernel",
                format!(
                    "unknown kernel '{shown}'; named kernels: {}; or write rows of numbers like \"1,0,-1; 2,0,-2; 1,0,-1\"",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The largest matrix written as text, and the largest text file read for one, in bytes
/// (millions of values; an image belongs in a .npy or image file).
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

/// A kernel written as text: numbers separated by `,` (or, in a row without commas, by
/// spaces), rows by `;` (or new lines), channel planes by `|`.
pub fn parse(text: &str) -> Result<Kernel> {
    parse_matrix("kernel", text)
}

/// A matrix written as text, as [`parse`] reads it; errors say it is the `setting` ("kernel",
/// "input") and name the plane, row and column at fault. Every cell must be a number finite
/// in `f32`: an empty cell (`1,,2`) is an error, not skipped.
pub fn parse_matrix(setting: &'static str, text: &str) -> Result<Kernel> {
    let err = |reason: String| Error::config(setting, reason);
    if text.len() as u64 > MAX_TEXT_BYTES {
        return Err(err(format!(
            "{} bytes of text are more than a matrix may have ({MAX_TEXT_BYTES}); write a \
             .npy file",
            text.len()
        )));
    }
    let planes: Vec<&str> = text.split('|').collect();
    let many = planes.len() > 1;
    let mut values = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    for (c, plane) in planes.iter().enumerate() {
        let at = |r: usize| {
            if many {
                format!("plane {c}, row {r}")
            } else {
                format!("row {r}")
            }
        };
        let mut rows = 0;
        let mut width = None;
        for (r, row) in plane
            .split([';', '\n'])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .enumerate()
        {
            let start = values.len();
            for (col, cell) in cells(row).enumerate() {
                if cell.is_empty() {
                    return Err(err(format!(
                        "{}, column {col} is empty (in '{}'): write a number in every cell",
                        at(r),
                        crate::names::shorten(row, 40)
                    )));
                }
                let v = parse_number(setting, &format!("{}, column {col}", at(r)), cell)?;
                values.push(v as f32);
            }
            let cols = values.len() - start;
            match width {
                None => width = Some(cols),
                Some(w) if w != cols => {
                    return Err(err(format!(
                        "ragged rows: {} has {cols} values but row 0 has {w}",
                        at(r)
                    )));
                }
                _ => {}
            }
            rows += 1;
        }
        if rows == 0 {
            return Err(err(if many {
                format!("plane {c} has no rows")
            } else {
                "no numbers".to_string()
            }));
        }
        let this = (rows, width.unwrap_or(0));
        match shape {
            None => shape = Some(this),
            Some(s) if s != this => {
                return Err(err(format!(
                    "plane {c} is {}x{} but plane 0 is {}x{}",
                    this.0, this.1, s.0, s.1
                )));
            }
            _ => {}
        }
    }
    let (height, width) = shape.unwrap_or((0, 0));
    Ok(Kernel {
        name: crate::names::shorten(text.trim(), 40).into_owned(),
        channels: planes.len(),
        height,
        width,
        values,
    })
}

/// The cells of a row: separated by commas (each trimmed; an empty one is kept, to be
/// refused), or, in a row without commas, by whitespace.
fn cells(row: &str) -> Box<dyn Iterator<Item = &str> + '_> {
    if row.contains(',') {
        Box::new(row.split(',').map(str::trim))
    } else {
        Box::new(row.split_whitespace())
    }
}

/// `--kernel`'s value: a named kernel, numbers (see [`parse`]), or the path of a text file
/// holding numbers.
pub fn from_spec(spec: &str) -> Result<Filter> {
    from_spec_as("kernel", spec)
}

/// A matrix given as [`from_spec`] takes it, with errors naming it `setting` ("kernel",
/// "input"); names of kernels are kernels only. A text file is read only up to
/// [`MAX_TEXT_BYTES`].
pub fn from_spec_as(setting: &'static str, spec: &str) -> Result<Filter> {
    let path = Path::new(spec);
    if path.is_file() {
        let text = read_text(path)?;
        let mut k = parse_matrix(setting, &text).map_err(|e| Error::file(path, e.to_string()))?;
        k.name = spec.to_string();
        return Ok(Filter::Kernel(k));
    }
    from_text(setting, spec)
}

/// A matrix written as text or a named kernel (for `setting` "kernel"), as [`from_spec_as`]
/// reads what is not a file.
pub fn from_text(setting: &'static str, spec: &str) -> Result<Filter> {
    let looks_numeric = spec
        .trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || "-+.".contains(c));
    if looks_numeric {
        return Ok(Filter::Kernel(parse_matrix(setting, spec)?));
    }
    if setting != "kernel" {
        return Err(Error::config(
            setting,
            format!(
                "'{}' is neither rows of numbers (like \"1,2;3,4\") nor a file",
                crate::names::shorten(spec, 40)
            ),
        ));
    }
    named(spec)
}

/// A text file of at most [`MAX_TEXT_BYTES`], refused (before reading) when larger.
fn read_text(path: &Path) -> Result<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut text = String::new();
    if size <= MAX_TEXT_BYTES {
        // (`take`: a file that grows meanwhile is still read only up to the bound.)
        file.take(MAX_TEXT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
    }
    if size > MAX_TEXT_BYTES || text.len() as u64 > MAX_TEXT_BYTES {
        return Err(Error::file(
            path,
            format!("more than {MAX_TEXT_BYTES} bytes: too large for a matrix written as text"),
        ));
    }
    Ok(text)
}

/// Apply one kernel to an image `[1, C, H, W]`: per channel for a 1-channel kernel, across the
/// channels (one output channel) for a `C`-channel kernel.
pub fn apply_kernel(image: &Tensor, kernel: &Kernel, params: &Conv2dParams) -> Result<Tensor> {
    let [_, c, _, _] = image.dims4("filter", "image")?;
    let (weight, groups) = if kernel.channels == 1 {
        let values = kernel
            .values
            .iter()
            .copied()
            .cycle()
            .take(c * kernel.values.len())
            .collect();
        (Tensor::new([c, 1, kernel.height, kernel.width], values)?, c)
    } else if kernel.channels == c {
        (
            Tensor::new([1, c, kernel.height, kernel.width], kernel.values.clone())?,
            1,
        )
    } else {
        return Err(Error::config(
            "kernel",
            format!(
                "kernel {} has {} planes; the image has {c} channels (give 1 plane to filter each channel, or {c})",
                kernel.name, kernel.channels
            ),
        ));
    };
    let params = Conv2dParams::builder()
        .with_stride(params.stride())
        .with_padding(params.padding())
        .with_dilation(params.dilation())
        .with_padding_mode(params.padding_mode())
        .with_mode(params.mode())
        .with_groups(groups)
        .build()?;
    // conv2d bounds the output (and the padded input) before allocating anything.
    Ok(conv2d(image, &weight, None, &params)?)
}

/// Apply a filter (a kernel, or the magnitude of two).
pub fn apply(image: &Tensor, filter: &Filter, params: &Conv2dParams) -> Result<Tensor> {
    match filter {
        Filter::Kernel(k) => apply_kernel(image, k, params),
        Filter::Magnitude(kx, ky) => {
            let gx = apply_kernel(image, kx, params)?;
            let gy = apply_kernel(image, ky, params)?;
            Ok(Tensor::from_fn(gx.dims().to_vec(), |i| {
                gx.data()[i].hypot(gy.data()[i])
            })?)
        }
    }
}

/// Refuse 'same' padding with an even kernel, whose extra row and column could go either
/// way (PyTorch puts them bottom and right; OpenCV's anchor puts them top and left).
pub fn check_same_padding(filter: &Filter, padding: Padding) -> Result<()> {
    let kernel = match filter {
        Filter::Kernel(k) | Filter::Magnitude(k, _) => k,
    };
    if padding == Padding::Same && (kernel.height % 2 == 0 || kernel.width % 2 == 0) {
        return Err(Error::config(
            "padding",
            format!(
                "'same' is ambiguous for the even {}x{} kernel {}: the extra padding row and \
                 column could go before or after (PyTorch puts them at the bottom and right); \
                 give the padding explicitly as top,bottom,left,right, e.g. --padding {},{},{},{}",
                kernel.height,
                kernel.width,
                kernel.name,
                (kernel.height - 1) / 2,
                kernel.height / 2,
                (kernel.width - 1) / 2,
                kernel.width / 2
            ),
        ));
    }
    Ok(())
}

/// How values outside `[0, max]` become pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRange {
    /// Cut to `[0, max]`.
    Clamp,
    /// Absolute value, then cut (edge responses of either sign show).
    Abs,
    /// Stretch the image's own minimum..maximum to `0..max`.
    Rescale,
}

/// A filtered image `[1, C, H, W]` (values on an input scale of `0..=in_max`) as a picture of
/// `bits` (8 or 16) bits a channel, values outside the pixel range made pixels as `range` says.
pub fn to_image(
    image: &Tensor,
    range: OutputRange,
    in_max: f32,
    bits: u32,
) -> Result<::image::DynamicImage> {
    let [_, c, h, w] = image.dims4("filter", "output")?;
    let out_max = if bits == 16 { 65535.0 } else { 255.0 };
    let pixels = to_pixels(image.data(), range, in_max, out_max);
    crate::image::from_planes(&pixels, [c, h, w], bits)
}

/// Map filtered values (on an input scale of `0..=in_max`) to pixels `0..=out_max`.
pub fn to_pixels(values: &[f32], range: OutputRange, in_max: f32, out_max: f32) -> Vec<u16> {
    let scale = out_max / in_max;
    match range {
        OutputRange::Clamp => values
            .iter()
            .map(|v| (v * scale).round().clamp(0.0, out_max) as u16)
            .collect(),
        OutputRange::Abs => values
            .iter()
            .map(|v| (v.abs() * scale).round().clamp(0.0, out_max) as u16)
            .collect(),
        OutputRange::Rescale => {
            let (lo, hi) = values
                .iter()
                .filter(|v| v.is_finite())
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            let span = hi - lo;
            values
                .iter()
                .map(|&v| {
                    if span > 0.0 {
                        ((v - lo) / span * out_max).round().clamp(0.0, out_max) as u16
                    } else {
                        0
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(spec: &str) -> Kernel {
        match named(spec).unwrap() {
            Filter::Kernel(k) => k,
            Filter::Magnitude(..) => panic!("{spec} is a magnitude"),
        }
    }

    #[test]
    fn named_kernels_have_their_textbook_values() {
        let v = |spec: &str| kernel(spec).values;
        assert_eq!(v("sobel-x"), [-1., 0., 1., -2., 0., 2., -1., 0., 1.]);
        assert_eq!(v("sobel-y"), [-1., -2., -1., 0., 0., 0., 1., 2., 1.]);
        assert_eq!(v("prewitt-x"), [-1., 0., 1., -1., 0., 1., -1., 0., 1.]);
        assert_eq!(v("prewitt-y"), [-1., -1., -1., 0., 0., 0., 1., 1., 1.]);
        assert_eq!(v("scharr-x"), [-3., 0., 3., -10., 0., 10., -3., 0., 3.]);
        assert_eq!(v("scharr-y"), [-3., -10., -3., 0., 0., 0., 3., 10., 3.]);
        assert_eq!(v("laplacian"), [0., 1., 0., 1., -4., 1., 0., 1., 0.]);
        assert_eq!(v("vertical-edge"), [1., 0., -1., 1., 0., -1., 1., 0., -1.]);
        assert_eq!(
            v("horizontal-edge"),
            [1., 1., 1., 0., 0., 0., -1., -1., -1.]
        );
        assert_eq!(v("sharpen"), [0., -1., 0., -1., 5., -1., 0., -1., 0.]);
        assert_eq!(v("emboss"), [-2., -1., 0., -1., 1., 1., 0., 1., 2.]);
        assert_eq!(v("identity"), [0., 0., 0., 0., 1., 0., 0., 0., 0.]);
        assert_eq!(v("box:2"), [0.25; 4]);
        // The textbook 3x3 Gaussian of sigma 0.85 is close to [1 2 1; 2 4 2; 1 2 1] / 16.
        let g = kernel("gaussian:0.85:3");
        let textbook = [1., 2., 1., 2., 4., 2., 1., 2., 1.].map(|x: f32| x / 16.0);
        for (a, b) in g.values.iter().zip(textbook) {
            assert!((a - b).abs() < 0.01, "{:?}", g.values);
        }
        assert_eq!(kernel("gaussian:1").height, 7);
        let sum: f32 = kernel("gaussian:2:9").values.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        // Unsharp masking leaves a flat image flat: its values sum to 1.
        let sum: f32 = kernel("unsharp:1.5").values.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
    }

    #[test]
    fn sobel_magnitude_is_the_hypot_of_the_two_gradients() {
        let img = Tensor::from_fn([1, 1, 6, 7], |i| ((i * 37) % 23) as f32).unwrap();
        let p = Conv2dParams::builder()
            .with_padding(Padding::Same)
            .build()
            .unwrap();
        let mag = apply(&img, &named("sobel").unwrap(), &p).unwrap();
        let gx = apply(&img, &named("sobel-x").unwrap(), &p).unwrap();
        let gy = apply(&img, &named("sobel-y").unwrap(), &p).unwrap();
        for i in 0..mag.numel() {
            assert_eq!(mag.data()[i], gx.data()[i].hypot(gy.data()[i]));
        }
    }

    #[test]
    fn text_kernels_parse_and_explain_their_mistakes() {
        let k = parse("1,0,-1; 1,0,-1; 1,0,-1").unwrap();
        assert_eq!((k.channels, k.height, k.width), (1, 3, 3));
        assert_eq!(parse("1 2\n3 4").unwrap().values, [1., 2., 3., 4.]);
        let rgb = parse("1,0;0,1 | 2,0;0,2 | 3,0;0,3").unwrap();
        assert_eq!((rgb.channels, rgb.height, rgb.width), (3, 2, 2));
        let err = parse("1,0,-1; 1,0; 1,0,-1").unwrap_err().to_string();
        assert!(
            err.contains("ragged rows: row 1 has 2 values but row 0 has 3"),
            "{err}"
        );
        let err = parse("1,x,-1").unwrap_err().to_string();
        assert!(err.contains("'x' is not a number"), "{err}");
        let err = named("blur").unwrap_err().to_string();
        assert!(
            err.contains("unknown kernel 'blur'") && err.contains("sobel-x"),
            "{err}"
        );
        assert!(named("box:0").is_err());
        assert!(named("gaussian:0").is_err());
        assert!(
            named("gaussian:1:4")
                .unwrap_err()
                .to_string()
                .contains("odd")
        );
        assert!(parse("0, 0; 0, 0").unwrap().normalized().is_err());
        assert_eq!(
            parse("1, 3").unwrap().normalized().unwrap().values,
            [0.25, 0.75]
        );
    }

    #[test]
    fn even_kernels_with_same_padding_are_refused_with_the_explicit_alternative() {
        let k = Filter::Kernel(parse("1,1;1,1").unwrap());
        let err = check_same_padding(&k, Padding::Same)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bottom and right") && err.contains("--padding 0,1,0,1"),
            "{err}"
        );
        assert!(check_same_padding(&k, Padding::Valid).is_ok());
        assert!(check_same_padding(&named("box:3").unwrap(), Padding::Same).is_ok());
    }

    #[test]
    fn output_ranges_map_values_to_pixels() {
        let v = [-20.0, 0.0, 100.0, 300.0];
        assert_eq!(
            to_pixels(&v, OutputRange::Clamp, 255.0, 255.0),
            [0, 0, 100, 255]
        );
        assert_eq!(
            to_pixels(&v, OutputRange::Abs, 255.0, 255.0),
            [20, 0, 100, 255]
        );
        assert_eq!(
            to_pixels(&v, OutputRange::Rescale, 255.0, 255.0),
            [0, 16, 96, 255]
        );
        assert_eq!(
            to_pixels(&[255.0], OutputRange::Clamp, 255.0, 65535.0),
            [65535]
        );
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(format_number(-60.0), "-60");
        assert_eq!(format_number(0.25), "0.25");
        assert_eq!(format_number(1.0 / 3.0), "0.3333");
    }
}
