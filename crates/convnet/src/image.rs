//! Image files in and out, for every part that reads or writes pictures of data: image-folder
//! data sets, `predict` and the picture commands' inputs, and filtering.
//!
//! - One bound for every image read: at most [`MAX_SIDE`] pixels a side and [`MAX_PIXELS`]
//!   pixels, checked from the file's header before anything is allocated for the picture
//!   ([`ImageError::TooLarge`]); the decoder may then allocate at most [`MAX_DECODED_BYTES`]
//!   (those pixels at 16-bit RGBA, the widest the decoders produce). The file is read through
//!   a buffer, never whole.
//! - PNG and JPEG, decoded by content (a PNG named `.jpg` is read), 8 or 16 bits a channel.
//! - Images become `[C, H, W]` planes as [`Color`] says: luma as the `image` crate computes
//!   it (Rec. 709 weights), or RGB; alpha is dropped (as PIL's `convert("RGB")`).
//! - Planes are resized with the `image` crate's triangle (bilinear) filter, plane by plane
//!   ([`resize_planes`]), so data sets of every layout and single images resize alike.
//!   A model's input is made through its preprocessing (resize, center crop, channel order,
//!   normalization): [`crate::preprocess::read_image`].
//! - Pictures are written atomically ([`crate::files::write_atomic`]) as PNG or JPEG, the
//!   format named by the file's extension ([`output_format`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ::image::imageops::{self, FilterType};
use ::image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits, Luma, Rgb,
};
use convnet_core::Tensor;

use crate::error::{Error, Result};

/// The largest side of an image that is read, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image that is read may have (64 Mi, an 8192 x 8192 picture).
pub const MAX_PIXELS: u64 = 1 << 26;
/// The most bytes the decoder may allocate for one image: [`MAX_PIXELS`] at 16-bit RGBA.
pub const MAX_DECODED_BYTES: u64 = MAX_PIXELS * 8;

/// An image file that cannot be read as asked, naming the file.
///
/// Messages are whole on their own: the `image` crate's errors are kept as text, since they
/// print their cause and also return it as their source (which `{:#}` would print twice).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file cannot be opened or read (missing, no permission, ...).
    #[error("cannot read image {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The header declares a picture larger than images are read.
    #[error("{}: {}", path.display(), too_large(*width, *height))]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    /// Not a PNG or JPEG the decoder can read (corrupt, truncated, another format).
    #[error("cannot read image {}: {reason}", path.display())]
    Decode { path: PathBuf, reason: String },
    /// An image that does not have the size and colour asked for, when it may not be
    /// converted ([`Fit::Exact`]).
    #[error(
        "{} is a {}x{} {} image; the model takes {}x{} {} images (pass --resize to convert it)",
        path.display(), got.width, got.height, got.color.name(), want[2], want[1],
        Color::name_of(want[0])
    )]
    WrongSize {
        path: PathBuf,
        got: Header,
        want: [usize; 3],
    },
    /// The picture would be larger than images are read once resized (a long strip whose
    /// shorter side a model's preprocessing enlarges).
    #[error(
        "{}: a {}x{} image resized to {}x{} (as the model's preprocessing says) would be larger \
         than images are read (at most {MAX_SIDE} pixels a side and {} megapixels): crop it \
         first",
        path.display(), from[1], from[0], to[1], to[0], MAX_PIXELS >> 20
    )]
    Resized {
        path: PathBuf,
        /// `[height, width]` of the file.
        from: [usize; 2],
        /// `[height, width]` it would be resized to.
        to: [usize; 2],
    },
    /// Planes of a channel count other than 1 (grayscale) and 3 (RGB) were asked for.
    #[error(
        "the model takes {channels}-channel images; only 1 (grayscale) and 3 (RGB) can be read"
    )]
    Channels { channels: usize },
}

/// Why an image of `width` x `height` is refused (the bound and what to do).
pub(crate) fn too_large(width: u32, height: u32) -> String {
    format!(
        "a {width}x{height} image is larger than images are read (at most {MAX_SIDE} pixels a \
         side and {} megapixels): scale it down first",
        MAX_PIXELS >> 20
    )
}

/// The planes an image is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    /// One plane: luma (Rec. 709 weights, as the `image` crate computes it).
    Gray,
    /// Three planes: red, green, blue.
    Rgb,
}

impl Color {
    /// The colour of `channels` planes: 1 or 3.
    pub fn from_channels(channels: usize) -> Option<Color> {
        match channels {
            1 => Some(Color::Gray),
            3 => Some(Color::Rgb),
            _ => None,
        }
    }

    /// How many planes.
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb => 3,
        }
    }

    /// What a file of `color` holds: gray (with or without alpha), else RGB.
    fn of(color: ::image::ColorType) -> Color {
        if color.has_color() {
            Color::Rgb
        } else {
            Color::Gray
        }
    }

    /// `grayscale` or `RGB`.
    pub fn name(self) -> &'static str {
        match self {
            Color::Gray => "grayscale",
            Color::Rgb => "RGB",
        }
    }

    fn name_of(channels: usize) -> &'static str {
        Color::from_channels(channels).map_or("multi-channel", Color::name)
    }
}

/// What an image file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// The planes the image holds (alpha not counted).
    pub color: Color,
    /// Bits a channel: 8 or 16.
    pub bits: u32,
}

impl Header {
    fn of(width: u32, height: u32, color: ::image::ColorType) -> Header {
        Header {
            width,
            height,
            color: Color::of(color),
            bits: bits(color),
        }
    }
}

/// Bits a channel of `color`: 8, or 16 for wider channels.
fn bits(color: ::image::ColorType) -> u32 {
    if color.bytes_per_pixel() > color.channel_count() {
        16
    } else {
        8
    }
}

/// The header of the image file `path`, refused when larger than images are read.
pub fn read_header(path: &Path) -> Result<Header, ImageError> {
    checked_decoder(path).map(|(_, header)| header)
}

/// The image file `path`, decoded once its header shows it within the bounds (see the module
/// documentation): a small file that declares a huge picture is refused before anything is
/// allocated for it.
pub fn decode(path: &Path) -> Result<DynamicImage, ImageError> {
    let (mut decoder, _) = checked_decoder(path)?;
    let decode_error = |e| decode_error(path, e);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
        .reserve(decoder.total_bytes())
        .map_err(decode_error)?;
    decoder.set_limits(limits).map_err(decode_error)?;
    DynamicImage::from_decoder(decoder).map_err(decode_error)
}

/// The decoder of `path` with its header read and checked against the bounds.
fn checked_decoder(path: &Path) -> Result<(impl ImageDecoder, Header), ImageError> {
    let io_error = |error| ImageError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut reader = ImageReader::open(path)
        .map_err(io_error)?
        .with_guessed_format()
        .map_err(io_error)?;
    // While the header is read, only the decoder's own buffers are bounded; the picture's
    // size is checked here, with a message that says what to do.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
        });
    }
    let header = Header::of(width, height, decoder.color_type());
    Ok((decoder, header))
}

fn decode_error(path: &Path, e: ::image::ImageError) -> ImageError {
    let reason = match e {
        // The header was within the bounds; the decoder asked for more all the same.
        ::image::ImageError::Limits(e) => format!("larger than images are read: {e}"),
        ::image::ImageError::IoError(e) => e.to_string(),
        e => e.to_string(),
    };
    ImageError::Decode {
        path: path.to_path_buf(),
        reason,
    }
}

/// How an image of another size or colour than asked for is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Refused ([`ImageError::WrongSize`]), from the header, before decoding. A grayscale
    /// image is accepted for RGB planes only when converted; an RGB image for grayscale
    /// planes is converted to luma.
    Exact,
    /// Converted to the colour asked for and resized (bilinear) to the size asked for.
    Resize,
}

/// The image file `path` as `[C, H, W]` bytes of `dims`: `C` = 1 (luma) or 3 (RGB), at
/// `H x W` as `fit` says.
pub fn read_planes(path: &Path, dims: [usize; 3], fit: Fit) -> Result<Vec<u8>, ImageError> {
    let [c, h, w] = dims;
    let color = Color::from_channels(c).ok_or(ImageError::Channels { channels: c })?;
    if fit == Fit::Exact {
        check_exact(path, dims)?;
    }
    let img = decode(path)?;
    let src = [c, img.height() as usize, img.width() as usize];
    let mut out = vec![0; c * h * w];
    resize_planes(&to_planes(&img, color), src, [h, w], &mut out);
    Ok(out)
}

/// Refuses, from its header, an image file that [`Fit::Exact`] does not take as `[C, H, W]`
/// = `dims` planes: another size, or a grayscale image for RGB planes.
pub fn check_exact(path: &Path, dims: [usize; 3]) -> Result<(), ImageError> {
    let [c, h, w] = dims;
    let color = Color::from_channels(c).ok_or(ImageError::Channels { channels: c })?;
    let got = read_header(path)?;
    let size = [got.height as usize, got.width as usize];
    if size != [h, w] || (color, got.color) == (Color::Rgb, Color::Gray) {
        return Err(ImageError::WrongSize {
            path: path.to_path_buf(),
            got,
            want: dims,
        });
    }
    Ok(())
}

/// The planes `img` holds (alpha not counted).
pub fn color_of(img: &DynamicImage) -> Color {
    Color::of(img.color())
}

/// The image as `[C, H, W]` bytes in `color`.
pub fn to_planes(img: &DynamicImage, color: Color) -> Vec<u8> {
    match color {
        Color::Gray => img.to_luma8().into_raw(),
        Color::Rgb => hwc_to_chw(img.to_rgb8().as_raw(), 3),
    }
}

/// The image's pixel values in its own colour and depth, as `[1, C, H, W]` (integers up to
/// 255 or 65535, exact in `f32`), and the largest value a pixel can take.
pub fn pixel_values(img: &DynamicImage) -> Result<(Tensor, f32)> {
    let color = Color::of(img.color());
    let sixteen = bits(img.color()) == 16;
    let dims = [
        1,
        color.channels(),
        img.height() as usize,
        img.width() as usize,
    ];
    let values = match (color, sixteen) {
        (Color::Gray, false) => to_f32(img.to_luma8().as_raw()),
        (Color::Gray, true) => to_f32(img.to_luma16().as_raw()),
        (Color::Rgb, false) => to_f32(&hwc_to_chw(img.to_rgb8().as_raw(), 3)),
        (Color::Rgb, true) => to_f32(&hwc_to_chw(img.to_rgb16().as_raw(), 3)),
    };
    let max = if sixteen { 65535.0 } else { 255.0 };
    Ok((Tensor::new(dims, values)?, max))
}

fn to_f32<T: Copy + Into<f32>>(values: &[T]) -> Vec<f32> {
    values.iter().map(|&v| v.into()).collect()
}

/// `[C, H, W]` pixels (`C` = 1 or 3, values below 2^`bits`) as an image of `bits` (8 or 16)
/// bits a channel.
pub fn from_planes(pixels: &[u16], [c, h, w]: [usize; 3], bits: u32) -> Result<DynamicImage> {
    let wrong = |reason: String| Error::config("image", reason);
    let color = Color::from_channels(c)
        .ok_or_else(|| wrong(format!("{c} channels (an image has 1 or 3)")))?;
    if pixels.len() != c * h * w {
        return Err(wrong(format!(
            "{} values are not {c}x{h}x{w}",
            pixels.len()
        )));
    }
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| wrong(format!("width {w}")))?,
        u32::try_from(h).map_err(|_| wrong(format!("height {h}")))?,
    );
    let hwc = chw_to_hwc(pixels, c);
    let narrow = || hwc.iter().map(|&v| v as u8).collect::<Vec<u8>>();
    let img = match (color, bits) {
        (Color::Gray, 8) => {
            ImageBuffer::<Luma<u8>, _>::from_raw(w32, h32, narrow()).map(DynamicImage::ImageLuma8)
        }
        (Color::Gray, _) => {
            ImageBuffer::<Luma<u16>, _>::from_raw(w32, h32, hwc).map(DynamicImage::ImageLuma16)
        }
        (Color::Rgb, 8) => {
            ImageBuffer::<Rgb<u8>, _>::from_raw(w32, h32, narrow()).map(DynamicImage::ImageRgb8)
        }
        (Color::Rgb, _) => {
            ImageBuffer::<Rgb<u16>, _>::from_raw(w32, h32, hwc).map(DynamicImage::ImageRgb16)
        }
    };
    img.ok_or_else(|| wrong(format!("{c}x{h}x{w} does not fit its buffer")))
}

/// The format the extension of `path` names (`.png`, `.jpg`, `.jpeg`), if it can hold `bits`
/// bits a channel: checked before any work, so a long computation does not end in a refusal.
pub fn output_format(path: &Path, bits: u32) -> Result<ImageFormat> {
    let refuse = |reason: &str| Err(Error::write(path, reason));
    match ImageFormat::from_path(path) {
        Ok(ImageFormat::Png) => Ok(ImageFormat::Png),
        Ok(ImageFormat::Jpeg) if bits == 16 => {
            refuse("JPEG holds 8 bits per channel; use .png for 16 bits (--bits 16)")
        }
        Ok(ImageFormat::Jpeg) => Ok(ImageFormat::Jpeg),
        Ok(_) => refuse("write .png or .jpg"),
        Err(_) => refuse("unknown image extension (use .png or .jpg)"),
    }
}

/// Write `img` to `path` in the format its extension names, atomically.
pub fn save(path: &Path, img: &DynamicImage) -> Result<()> {
    let format = output_format(path, bits(img.color()))?;
    let bytes = encode(path, |out| img.write_to(out, format))?;
    crate::files::write_atomic(path, &bytes)
}

/// The bytes `write` encodes (`path` names the file they are for, in the error).
pub(crate) fn encode(
    path: &Path,
    write: impl FnOnce(&mut Cursor<Vec<u8>>) -> ::image::ImageResult<()>,
) -> Result<Vec<u8>> {
    let mut bytes = Cursor::new(Vec::new());
    write(&mut bytes).map_err(|e| Error::write(path, format!("cannot encode the picture: {e}")))?;
    Ok(bytes.into_inner())
}

/// Resizes `src` (`[C, H, W]` = `dims`) to `[C, target]` into `dst`, plane by plane with the
/// triangle (bilinear) filter; a plain copy when the size is already `target`.
///
/// # Panics
/// If `src` or `dst` is not as long as its dimensions say, or a side does not fit in `u32`
/// (callers bound sides by [`MAX_SIDE`]).
pub fn resize_planes(src: &[u8], dims: [usize; 3], target: [usize; 2], dst: &mut [u8]) {
    let [c, h, w] = dims;
    let [th, tw] = target;
    assert_eq!(
        src.len(),
        c * h * w,
        "resize_planes: source is not {c}x{h}x{w}"
    );
    assert_eq!(
        dst.len(),
        c * th * tw,
        "resize_planes: target is not {c}x{th}x{tw}"
    );
    if [h, w] == target {
        dst.copy_from_slice(src);
        return;
    }
    let side = |v: usize| u32::try_from(v).expect("image sides are checked to fit in u32");
    for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(th * tw)) {
        let img = ImageBuffer::<Luma<u8>, &[u8]>::from_raw(side(w), side(h), plane)
            .expect("a plane of h * w bytes");
        let resized = imageops::resize(&img, side(tw), side(th), FilterType::Triangle);
        out.copy_from_slice(resized.as_raw());
    }
}

/// Interleaved `[H, W, C]` pixels as `[C, H, W]` planes.
pub fn hwc_to_chw<T: Copy + Default>(hwc: &[T], channels: usize) -> Vec<T> {
    let plane = hwc.len() / channels;
    let mut chw = vec![T::default(); hwc.len()];
    for (i, px) in hwc.chunks_exact(channels).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v;
        }
    }
    chw
}

/// `[C, H, W]` planes as interleaved `[H, W, C]` pixels.
pub fn chw_to_hwc<T: Copy + Default>(chw: &[T], channels: usize) -> Vec<T> {
    let plane = chw.len() / channels;
    let mut hwc = vec![T::default(); chw.len()];
    for (ch, values) in chw.chunks_exact(plane.max(1)).enumerate() {
        for (i, &v) in values.iter().enumerate() {
            hwc[i * channels + ch] = v;
        }
    }
    hwc
}
