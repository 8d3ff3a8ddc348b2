//! Image folders: one sub-folder per class holding PNG/JPEG files, as torchvision's
//! `ImageFolder`.
//!
//! - Classes are the sub-folders sorted by name (byte order, as Python sorts names); class
//!   index = position in that order. Hidden entries (names starting with `.`) are skipped,
//!   files and folders alike (torchvision would make `.ipynb_checkpoints` a class and then fail
//!   on it).
//! - Images are found as torchvision does: the class folder is walked recursively, following
//!   symbolic links, folders in the sorted order of their paths and files sorted by name
//!   within each.
//! - Each real folder is read once per class, as `find -L` and `du -L` do: a link back to a
//!   folder the walk has already reached (a loop such as `a/loop -> ..`, or a second link to
//!   the same folder) is skipped, so a loop neither hangs the walk nor repeats images. Which
//!   path reads a folder reached twice: the first of a depth-first walk in sorted name order.
//!   Two links to the same *file* are two images, as torchvision reads them.
//! - Bounded before anything large is allocated: at most [`MAX_FOLDER_ENTRIES`] files and
//!   folders are listed per split; each image is decoded by [`crate::image::decode`], which
//!   refuses from its header one larger than images are read (16384 pixels a side, 64
//!   megapixels); the whole set's buffer is allocated (checked) before the images are decoded
//!   into it.
//! - `.png`, `.jpg` and `.jpeg` files (any case) are images, decoded by content (a PNG named
//!   `.jpg` is read). Other image formats (`.bmp`, `.gif`, `.webp`, `.tif`, ...) are an error
//!   rather than silently dropped; any other file is ignored.
//! - Images are converted to the channel count asked for ([`Color`]: 1 = luma, 3 = RGB, alpha
//!   dropped); by default the first image's (1 for gray or gray + alpha, else 3).
//! - With a size, every image is resized to exactly that size ([`resize_planes`]); without
//!   one, every image must have the first image's size.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::file::{check_memory, reserved};
use super::{DataError, Dataset};
use crate::image::{self, Color, ImageError, MAX_SIDE, resize_planes};
use crate::names::check_len;

/// Extensions (lower case) of the files read as images.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Extensions (lower case) of image formats this reader does not decode: an error if found.
const UNSUPPORTED_IMAGE_EXTENSIONS: [&str; 12] = [
    "bmp", "gif", "webp", "tif", "tiff", "ppm", "pgm", "pbm", "pnm", "ico", "tga", "avif",
];
/// The most files and folders listed under one split's folder (hidden ones included), so
/// that listing a huge tree is refused before its names fill memory.
pub const MAX_FOLDER_ENTRIES: usize = 1 << 20;

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
    load_bounded(dir, rule, channels, MAX_FOLDER_ENTRIES)
}

/// [`load_with`], listing at most `max_entries` files and folders.
fn load_bounded(
    dir: &Path,
    rule: SizeRule,
    channels: Option<usize>,
    max_entries: usize,
) -> Result<Dataset, DataError> {
    let color = match channels.map(|c| (c, Color::from_channels(c))) {
        Some((c, None)) => {
            return Err(DataError::InvalidOption {
                path: dir.to_path_buf(),
                reason: format!(
                    "images can be read with 1 (grayscale) or 3 (RGB) channels, not {c}"
                ),
            });
        }
        Some((_, color)) => color,
        None => None,
    };
    if let SizeRule::Resize(size) = rule {
        check_resize(dir, size)?;
    }
    let mut budget = Budget::new(dir, max_entries);
    let classes = list_class_folders(dir, &mut budget)?;
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (label, (_, class_dir)) in classes.iter().enumerate() {
        let images = image_files(class_dir, &mut budget)?;
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
    let color = color.unwrap_or_else(|| image::color_of(&first_img));
    let channels = color.channels();
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

    // The whole set is allocated once, before decoding the rest; each image is decoded
    // straight into its place.
    let per_image = channels * height * width;
    let mut pixels = alloc_images(dir, files.len(), [channels, height, width])?;
    let mut chunks = pixels.chunks_exact_mut(per_image);
    if let Some(dst) = chunks.next() {
        convert(first, first_img, color, &rule, dst)?;
    }
    let rest: Vec<Result<(), DataError>> = chunks
        .collect::<Vec<_>>()
        .into_par_iter()
        .zip(&files[1..])
        .map(|(dst, (path, _))| convert(path, decode(path)?, color, &rule, dst))
        .collect();
    // The first error in file order, whichever thread found it first.
    rest.into_iter().collect::<Result<(), DataError>>()?;
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

/// Checks a size to resize images to: from 1 to [`MAX_SIDE`] pixels a side.
pub(crate) fn check_resize(path: &Path, [h, w]: [usize; 2]) -> Result<(), DataError> {
    let side = 1..=MAX_SIDE as usize;
    if side.contains(&h) && side.contains(&w) {
        Ok(())
    } else {
        Err(DataError::InvalidOption {
            path: path.to_path_buf(),
            reason: format!(
                "cannot resize images to {h}x{w}: each side must be from 1 to {MAX_SIDE} pixels"
            ),
        })
    }
}

/// A zeroed buffer for `n` images of `[C, H, W]`, or an error naming `dir` when it is more
/// than the memory available or cannot be allocated.
pub(crate) fn alloc_images(dir: &Path, n: usize, dims: [usize; 3]) -> Result<Vec<u8>, DataError> {
    let [c, h, w] = dims;
    let what = || format!("{n} images of {c}x{h}x{w} (CxHxW)");
    let bytes = [n, c, h, w]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    check_memory(dir, &what, bytes)?;
    let mut pixels = reserved(dir, &what, bytes)?;
    // `reserved` checked that `bytes` fits in usize.
    pixels.resize(bytes as usize, 0);
    Ok(pixels)
}

/// Counts the files and folders a walk lists, so that no folder tree (however large, or
/// however many links lead back into it) is listed past a bound.
struct Budget {
    root: PathBuf,
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(root: &Path, limit: usize) -> Self {
        Budget {
            root: root.to_path_buf(),
            left: limit,
            limit,
        }
    }

    fn take(&mut self) -> Result<(), DataError> {
        self.left = self.left.checked_sub(1).ok_or(DataError::TooManyFiles {
            path: self.root.clone(),
            limit: self.limit,
        })?;
        Ok(())
    }
}

fn is_hidden(name: &OsString) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Whether `path` (following links) is a directory (false if it cannot be read).
fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

/// Visible entries of `dir`, sorted by name; every entry listed counts against `budget`.
/// Only names are kept while listing (paths are made once the listing is complete), so a
/// folder refused for its size costs the least memory and time.
fn sorted_entries(dir: &Path, budget: &mut Budget) -> Result<Vec<(OsString, PathBuf)>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        budget.take()?;
        let name = entry.map_err(|e| DataError::io(dir, e))?.file_name();
        if !is_hidden(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            (name, path)
        })
        .collect())
}

/// The class sub-folders of `dir`, sorted by name, as `(name, path)`.
pub(crate) fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    list_class_folders(dir, &mut Budget::new(dir, MAX_FOLDER_ENTRIES))
}

fn list_class_folders(
    dir: &Path,
    budget: &mut Budget,
) -> Result<Vec<(String, PathBuf)>, DataError> {
    let classes: Vec<(String, PathBuf)> = sorted_entries(dir, budget)?
        .into_iter()
        .filter(|(_, p)| is_dir(p))
        .map(|(n, p)| (n.to_string_lossy().into_owned(), p))
        .collect();
    if classes.is_empty() {
        return Err(DataError::NoClasses {
            path: dir.to_path_buf(),
        });
    }
    // File systems bound names to 255 bytes; checked all the same, as every class name is.
    for (name, path) in &classes {
        check_len(name).map_err(|reason| DataError::ClassNames {
            path: path.clone(),
            line: None,
            reason,
        })?;
    }
    Ok(classes)
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The image files under `class_dir`, in torchvision's order: folders by the sorted order of
/// their path strings (`sorted(os.walk(...))`), files by name within each. Each real folder
/// is listed once: the walk goes depth-first through names in sorted order, and a folder
/// reached again (by its canonical path: a link back up, or a second link to it) is skipped.
fn image_files(class_dir: &Path, budget: &mut Budget) -> Result<Vec<PathBuf>, DataError> {
    // (folder, its image files sorted by name)
    let mut folders: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut visited: HashSet<PathBuf> = HashSet::new();
    let mut pending = vec![class_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let real = std::fs::canonicalize(&dir).map_err(|e| DataError::io(&dir, e))?;
        if !visited.insert(real) {
            continue;
        }
        let mut images = Vec::new();
        let mut subfolders = Vec::new();
        for (_, path) in sorted_entries(&dir, budget)? {
            if is_dir(&path) {
                subfolders.push(path);
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
        // Popped in sorted order.
        pending.extend(subfolders.into_iter().rev());
        folders.push((dir, images));
    }
    folders.sort_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    Ok(folders.into_iter().flat_map(|(_, f)| f).collect())
}

/// Decodes an image ([`image::decode`]), its errors as the data set's.
fn decode(path: &Path) -> Result<::image::DynamicImage, DataError> {
    image::decode(path).map_err(|e| match e {
        ImageError::Io { path, error } => DataError::Io { path, error },
        ImageError::TooLarge {
            path,
            width,
            height,
        } => DataError::Image {
            path,
            reason: image::too_large(width, height),
        },
        ImageError::Decode { path, reason } => DataError::Image { path, reason },
        e => DataError::Image {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// The image as `[C, H, W]` bytes under `rule`, into `dst`.
fn convert(
    path: &Path,
    img: ::image::DynamicImage,
    color: Color,
    rule: &SizeRule,
    dst: &mut [u8],
) -> Result<(), DataError> {
    let got = [img.height() as usize, img.width() as usize];
    if let SizeRule::Require(expected, reference) = rule
        && got != *expected
    {
        return Err(DataError::WrongImageSize {
            path: path.to_path_buf(),
            got,
            expected: *expected,
            reference: reference.clone(),
        });
    }
    let target = match rule {
        SizeRule::Resize(s) | SizeRule::Require(s, _) => *s,
        SizeRule::First => got,
    };
    let planes = image::to_planes(&img, color);
    resize_planes(&planes, [color.channels(), got[0], got[1]], target, dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_tree_with_more_entries_than_the_bound_is_refused_before_decoding() {
        let dir = std::env::temp_dir().join(format!("convnet-entries-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for i in 0..6 {
            let path = dir.join("a").join(format!("{i}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // Not images at all: the bound must refuse before any decoding.
            std::fs::write(&path, b"not a png").unwrap();
        }
        // 1 class folder + 6 files = 7 entries.
        let err = load_bounded(&dir, SizeRule::First, None, 6).unwrap_err();
        assert!(
            matches!(&err, DataError::TooManyFiles { limit: 6, path } if *path == dir),
            "{err:?}"
        );
        assert!(err.to_string().contains("more than 6 files and folders"));
        let err = load_bounded(&dir, SizeRule::First, None, 7).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{err:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
