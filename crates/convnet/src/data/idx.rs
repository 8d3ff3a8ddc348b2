//! MNIST-family IDX files: an image file (magic `0x00000803`: unsigned bytes, 3 dimensions
//! `[N, H, W]`) and a label file (magic `0x00000801`: unsigned bytes, 1 dimension `[N]`), raw
//! or gzip, all integers big-endian. Files must be exactly as long as their header says.

use std::path::{Path, PathBuf};

use super::file::{Contents, read_maybe_gz};
use super::{DataError, Dataset, FASHION_MNIST_CLASSES};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

const IMAGES_KIND: &str = "an IDX image file (unsigned bytes, 3 dimensions)";
const LABELS_KIND: &str = "an IDX label file (unsigned bytes, 1 dimension)";

/// How the class names of an IDX data set are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdxClasses {
    /// The 10 Fashion-MNIST names; a label of 10 or more is an error.
    Fashion,
    /// "0".."9", or "0"..=max label when a label is above 9.
    Digits,
}

/// Loads an MNIST-family IDX pair (raw or gzip, detected by the `1f 8b` magic bytes).
///
/// Class names: the Fashion-MNIST names ([`FASHION_MNIST_CLASSES`]) when the images file is in
/// a folder whose name contains "fashion" (case-insensitive; for torchvision's layout
/// `FashionMNIST/raw/`, the folder above `raw`), and then a label of 10 or more is an error;
/// otherwise `"0"` to `"9"`, or `"0"` to the largest label when a label is above 9.
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let (img, lab) = rayon::join(|| read_maybe_gz(images), || read_maybe_gz(labels));
    let classes = if is_fashion_folder(images) {
        IdxClasses::Fashion
    } else {
        IdxClasses::Digits
    };
    parse_idx_pair(
        images,
        img?,
        labels,
        lab?,
        classes,
        images.display().to_string(),
    )
}

/// Whether `images` sits in a folder named like Fashion-MNIST (see [`load_idx`]).
fn is_fashion_folder(images: &Path) -> bool {
    let abs = std::path::absolute(images).unwrap_or_else(|_| images.to_path_buf());
    let name_of = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    };
    let parent = abs.parent();
    let dir = name_of(parent);
    dir.contains("fashion")
        || (dir == "raw" && name_of(parent.and_then(Path::parent)).contains("fashion"))
}

/// Parses an images/labels pair already read (and gunzipped); the paths are for messages.
pub(crate) fn parse_idx_pair(
    images_path: &Path,
    images: Contents,
    labels_path: &Path,
    labels: Contents,
    classes: IdxClasses,
    source: String,
) -> Result<Dataset, DataError> {
    let (n, height, width) = parse_images_header(images_path, &images)?;
    let n_labels = parse_labels_header(labels_path, &labels)?;
    if n != n_labels {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            labels: labels_path.to_path_buf(),
            n_images: n as u64,
            n_labels: n_labels as u64,
        });
    }
    let label_bytes = &labels.bytes[8..];
    let max = label_bytes.iter().copied().max().unwrap_or(0) as usize;
    let class_names: Vec<String> = match classes {
        IdxClasses::Fashion => {
            if let Some(index) = label_bytes.iter().position(|&l| l as usize >= 10) {
                return Err(DataError::LabelOutOfRange {
                    path: labels_path.to_path_buf(),
                    index,
                    label: label_bytes[index] as usize,
                    classes: FASHION_MNIST_CLASSES.len(),
                });
            }
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect()
        }
        IdxClasses::Digits => (0..(max + 1).max(10)).map(|i| i.to_string()).collect(),
    };
    let labels: Vec<usize> = label_bytes.iter().map(|&l| l as usize).collect();
    let mut pixels = images.bytes;
    pixels.drain(..16);
    Ok(Dataset {
        channels: 1,
        height,
        width,
        pixels,
        labels,
        classes: class_names,
        source,
    })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks the magic number: the file must hold at least the 4 magic bytes.
fn check_magic(
    path: &Path,
    c: &Contents,
    kind: &'static str,
    expected: u32,
) -> Result<(), DataError> {
    if c.bytes.len() < 4 {
        return Err(truncated(path, c, format!("the magic number of {kind}"), 4));
    }
    let found = be_u32(&c.bytes, 0);
    if found != expected {
        let other = if expected == IDX_IMAGES_MAGIC {
            IDX_LABELS_MAGIC
        } else {
            IDX_IMAGES_MAGIC
        };
        let hint = if found == other {
            " (that is the other file of an IDX pair: are images and labels swapped?)"
        } else if c.gzip {
            ""
        } else {
            " (the file is not gzip either)"
        };
        return Err(DataError::WrongMagic {
            path: path.to_path_buf(),
            kind,
            found,
            expected,
            hint,
        });
    }
    Ok(())
}

fn truncated(path: &Path, c: &Contents, what: String, expected: u64) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        what,
        expected,
        got: c.bytes.len() as u64,
        gzip: c.gzip,
    }
}

/// Checks that `c` holds exactly `expected` bytes.
fn check_size(path: &Path, c: &Contents, what: String, expected: u64) -> Result<(), DataError> {
    let got = c.bytes.len() as u64;
    if got < expected {
        Err(truncated(path, c, what, expected))
    } else if got > expected {
        Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            what,
            expected,
            got,
            gzip: c.gzip,
        })
    } else {
        Ok(())
    }
}

/// `(n, height, width)` of an IDX image file, whose size is checked.
fn parse_images_header(path: &Path, c: &Contents) -> Result<(usize, usize, usize), DataError> {
    check_magic(path, c, IMAGES_KIND, IDX_IMAGES_MAGIC)?;
    if c.bytes.len() < 16 {
        return Err(truncated(
            path,
            c,
            "the 16-byte header of an IDX image file".into(),
            16,
        ));
    }
    let [n, h, w] = [4, 8, 12].map(|at| be_u32(&c.bytes, at) as u64);
    if (h == 0 || w == 0) && n > 0 {
        return Err(DataError::InvalidHeader {
            path: path.to_path_buf(),
            reason: format!("images of {h}x{w} pixels"),
        });
    }
    // At most 2^96: computed in u128 so it cannot overflow.
    let needed = 16 + n as u128 * h as u128 * w as u128;
    let needed = u64::try_from(needed)
        .ok()
        .filter(|&b| usize::try_from(b).is_ok())
        .ok_or_else(|| DataError::InvalidHeader {
            path: path.to_path_buf(),
            reason: format!("{n} images of {h}x{w} pixels do not fit in memory"),
        })?;
    check_size(
        path,
        c,
        format!("the header's {n} images of {h}x{w} pixels"),
        needed,
    )?;
    Ok((n as usize, h as usize, w as usize))
}

/// The number of labels of an IDX label file, whose size is checked.
fn parse_labels_header(path: &Path, c: &Contents) -> Result<usize, DataError> {
    check_magic(path, c, LABELS_KIND, IDX_LABELS_MAGIC)?;
    if c.bytes.len() < 8 {
        return Err(truncated(
            path,
            c,
            "the 8-byte header of an IDX label file".into(),
            8,
        ));
    }
    let n = be_u32(&c.bytes, 4) as u64;
    check_size(path, c, format!("the header's {n} labels"), 8 + n)?;
    Ok(n as usize)
}

/// The four files of an MNIST-family folder, as `(train images, train labels, test images,
/// test labels)` base names (each may also end in `.gz`).
pub(crate) const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The path of `base` or `base.gz` in `dir` (the raw file first), if either exists.
pub(crate) fn find_idx_file(dir: &Path, base: &str) -> Option<PathBuf> {
    [dir.join(base), dir.join(format!("{base}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}
