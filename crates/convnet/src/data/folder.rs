//! Image folders: one sub-folder per class holding PNG/JPEG files, as torchvision's
//! `ImageFolder`.
//!
//! - Classes are the sub-folders sorted by name (byte order, as Python sorts names); class
//!   index = position in that order. Hidden entries (names starting with `.`) are skipped,
//!   files and folders alike (torchvision would make `.ipynb_checkpoints` a class and then fail
//!   on it).
//! - Images are found as torchvision does: the class folder is walked recursively (following
//!   symbolic links, at most 16 levels deep), folders in the sorted order of their paths and
//!   files sorted by name within each.
//! - `.png`, `.jpg` and `.jpeg` files (any case) are images, decoded by content (a PNG named
//!   `.jpg` is read). Other image formats (`.bmp`, `.gif`, `.webp`, `.tif`, ...) are an error
//!   rather than silently dropped; any other file is ignored.
//! - Images are converted to the channel count asked for: 1 = luma as the `image` crate
//!   computes it (Rec. 709 weights), 3 = RGB (alpha dropped, as PIL's `convert("RGB")`); by
//!   default the first image's (1 for gray or gray + alpha, else 3).
//! - With a size, every image is resized to exactly that size with the `image` crate's
//!   triangle (bilinear) filter; without one, every image must have the first image's size.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use rayon::prelude::*;

use super::{DataError, Dataset};

/// Extensions (lower case) of the files read as images.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Extensions (lower case) of image formats this reader does not decode: an error if found.
const UNSUPPORTED_IMAGE_EXTENSIONS: [&str; 12] = [
    "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm", "pbm", "pnm", "ico", "tga", "avif",
];
/// How deep the walk of a class folder goes (a guard against symbolic-link loops).
const MAX_DEPTH: usize = 16;

/// How image sizes are treated.
#[derive(Debug, Clone)]
pub(crate) enum SizeRule {
    /// Resize every image to `[H, W]`.
    Resize([usize; 2]),
    /// Every image must be `[H, W]`, the size of `reference` (for messages).
    Require([usize; 2], String),
    /// Every image must have the first image's size.
    First,
}

/// Loads an image folder (see the module documentation): `size` is `[H, W]` to resize to,
/// `channels` 1 (grayscale) or 3 (RGB).
pub fn load_image_folder(
    dir: &Path,
    size: Option<[usize; 2]>,
    channels: Option<usize>,
) -> Result<Dataset, DataError> {
    let rule = match size {
        Some(s) => SizeRule::Resize(s),
        None => SizeRule::First,
    };
    load_with(dir, rule, channels)
}

pub(crate) fn load_with(
    dir: &Path,
    rule: SizeRule,
    channels: Option<usize>,
) -> Result<Dataset, DataError> {
    if let Some(c) = channels.filter(|&c| c != 1 && c != 3) {
        return Err(DataError::InvalidOption {
            path: dir.to_path_buf(),
            reason: format!("images can be read with 1 (grayscale) or 3 (RGB) channels, not {c}"),
        });
    }
    if let SizeRule::Resize([h, w]) = rule
        && (h == 0 || w == 0 || u32::try_from(h).is_err() || u32::try_from(w).is_err())
    {
        return Err(DataError::InvalidOption {
            path: dir.to_path_buf(),
            reason: format!("cannot resize images to {h}x{w}"),
        });
    }
    let classes = class_folders(dir)?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (label, (_, class_dir)) in classes.iter().enumerate() {
        let images = image_files(class_dir)?;
        if images.is_empty() {
            return Err(DataError::EmptyClass {
                path: class_dir.clone(),
            });
        }
        files.extend(images.into_iter().map(|p| (p, label)));
    }

    // The first image fixes the channel count and (without a size) the size.
    let first = &files[0].0;
    let first_img = decode(first)?;
    let channels = channels.unwrap_or(if first_img.color().has_color() { 3 } else { 1 });
    let rule = match rule {
        SizeRule::First => SizeRule::Require(
            [first_img.height() as usize, first_img.width() as usize],
            format!("the size of the first image, {}", first.display()),
        ),
        r => r,
    };
    let [height, width] = match &rule {
        SizeRule::Resize(s) | SizeRule::Require(s, _) => *s,
        SizeRule::First => unreachable!("replaced above"),
    };
    let first_pixels = convert(first, first_img, channels, &rule)?;
    let rest: Vec<Result<Vec<u8>, DataError>> = files[1..]
        .par_iter()
        .map(|(path, _)| convert(path, decode(path)?, channels, &rule))
        .collect();

    let per_image = channels * height * width;
    let mut pixels = Vec::with_capacity(per_image * files.len());
    pixels.extend_from_slice(&first_pixels);
    for r in rest {
        pixels.extend_from_slice(&r?);
    }
    Ok(Dataset {
        channels,
        height,
        width,
        pixels,
        labels: files.iter().map(|&(_, l)| l).collect(),
        classes: classes.into_iter().map(|(name, _)| name).collect(),
        source: dir.display().to_string(),
    })
}

fn is_hidden(name: &OsString) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Whether `path` (following links) is a directory (false if it cannot be read).
fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

/// Visible entries of `dir`, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>, DataError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if !is_hidden(&name) {
            entries.push((name, entry.path()));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// The class sub-folders of `dir`, sorted by name, as `(name, path)`.
pub(crate) fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let classes: Vec<(String, PathBuf)> = sorted_entries(dir)?
        .into_iter()
        .filter(|(_, p)| is_dir(p))
        .map(|(n, p)| (n.to_string_lossy().into_owned(), p))
        .collect();
    if classes.is_empty() {
        return Err(DataError::NoClasses {
            path: dir.to_path_buf(),
        });
    }
    Ok(classes)
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The image files under `class_dir`, in torchvision's order: folders by the sorted order of
/// their path strings (`sorted(os.walk(...))`), files by name within each.
fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    // (folder, its image files sorted by name)
    let mut folders: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut pending = vec![(class_dir.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let mut images = Vec::new();
        for (_, path) in sorted_entries(&dir)? {
            if is_dir(&path) {
                if depth < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
                continue;
            }
            let ext = extension(&path);
            if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                images.push(path);
            } else if UNSUPPORTED_IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                return Err(DataError::Image {
                    path,
                    reason: format!(
                        "unsupported image format .{ext} (only PNG and JPEG are read); convert it or move it out of the folder"
                    ),
                });
            }
        }
        folders.push((dir, images));
    }
    folders.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    Ok(folders.into_iter().flat_map(|(_, f)| f).collect())
}

fn decode(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    image::load_from_memory(&bytes).map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The image as `[C, H, W]` bytes under `rule`.
fn convert(
    path: &Path,
    img: image::DynamicImage,
    channels: usize,
    rule: &SizeRule,
) -> Result<Vec<u8>, DataError> {
    let got = [img.height() as usize, img.width() as usize];
    let target = match rule {
        SizeRule::Resize(s) => *s,
        SizeRule::Require(s, reference) => {
            if got != *s {
                return Err(DataError::WrongImageSize {
                    path: path.to_path_buf(),
                    got,
                    expected: *s,
                    reference: reference.clone(),
                });
            }
            *s
        }
        SizeRule::First => got,
    };
    let resize = got != target;
    // Checked against u32 in `load_with`.
    let (w, h) = (target[1] as u32, target[0] as u32);
    if channels == 1 {
        let mut g = img.to_luma8();
        if resize {
            g = imageops::resize(&g, w, h, FilterType::Triangle);
        }
        Ok(g.into_raw())
    } else {
        let mut rgb = img.to_rgb8();
        if resize {
            rgb = imageops::resize(&rgb, w, h, FilterType::Triangle);
        }
        let hwc = rgb.into_raw();
        let plane = target[0] * target[1];
        let mut chw = vec![0u8; 3 * plane];
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            chw[i] = px[0];
            chw[plane + i] = px[1];
            chw[2 * plane + i] = px[2];
        }
        Ok(chw)
    }
}
