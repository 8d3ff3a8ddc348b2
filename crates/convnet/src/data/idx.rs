//! MNIST-family IDX files: an image file (magic `0x00000803`: unsigned bytes, 3 dimensions
//! `[N, H, W]`) and a label file (magic `0x00000801`: unsigned bytes, 1 dimension `[N]`), raw
//! or gzip, all integers big-endian. Files must be exactly as long as their header says: the
//! header is read and checked first, then exactly that many bytes (a longer file is refused
//! without reading the rest).

use std::path::{Path, PathBuf};

use super::file::DataFile;
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
///
/// Both headers are read and checked (magic numbers, sizes, equal counts) before either body;
/// a body is then read exactly as long as its header says (see `file.rs`).
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let (img, lab) = rayon::join(|| DataFile::open(images), || DataFile::open(labels));
    let classes = if is_fashion_folder(images) {
        IdxClasses::Fashion
    } else {
        IdxClasses::Digits
    };
    read_idx_pair(img?, lab?, classes, images.display().to_string())
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

/// Reads an images/labels pair from open files: headers, then bodies.
pub(crate) fn read_idx_pair(
    mut images: DataFile,
    mut labels: DataFile,
    classes: IdxClasses,
    source: String,
) -> Result<Dataset, DataError> {
    let (n, height, width) = read_images_header(&mut images)?;
    let n_labels = read_labels_header(&mut labels)?;
    if n != n_labels {
        return Err(DataError::CountMismatch {
            images: images.path().to_path_buf(),
            labels: labels.path().to_path_buf(),
            n_images: n as u64,
            n_labels: n_labels as u64,
        });
    }
    // Checked to fit in memory by `read_images_header`.
    let pixel_bytes = (n * height * width) as u64;
    let (pixels, label_bytes) = rayon::join(
        || {
            images.read_rest(pixel_bytes, || {
                format!("the header's {n} images of {height}x{width} pixels")
            })
        },
        || labels.read_rest(n as u64, || format!("the header's {n} labels")),
    );
    let (pixels, label_bytes) = (pixels?, label_bytes?);
    let class_names = class_names(labels.path(), &label_bytes, classes)?;
    Ok(Dataset {
        channels: 1,
        height,
        width,
        pixels,
        labels: label_bytes.iter().map(|&l| l as usize).collect(),
        classes: class_names,
        source,
    })
}

/// The class names of an IDX label file's labels (see [`load_idx`]).
fn class_names(path: &Path, labels: &[u8], classes: IdxClasses) -> Result<Vec<String>, DataError> {
    match classes {
        IdxClasses::Fashion => {
            if let Some(index) = labels.iter().position(|&l| l as usize >= 10) {
                return Err(DataError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    index,
                    label: labels[index] as usize,
                    classes: FASHION_MNIST_CLASSES.len(),
                });
            }
            Ok(FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect())
        }
        IdxClasses::Digits => {
            let max = labels.iter().copied().max().unwrap_or(0) as usize;
            Ok((0..(max + 1).max(10)).map(|i| i.to_string()).collect())
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a header of `len` bytes whose first 4 are the magic number `expected`.
fn read_header(
    file: &mut DataFile,
    len: usize,
    kind: &'static str,
    expected: u32,
) -> Result<Vec<u8>, DataError> {
    let header = file.read_prefix(len)?;
    if header.len() < 4 {
        return Err(file.truncated(format!("the magic number of {kind}"), 4));
    }
    let found = be_u32(&header, 0);
    if found != expected {
        let other = if expected == IDX_IMAGES_MAGIC {
            IDX_LABELS_MAGIC
        } else {
            IDX_IMAGES_MAGIC
        };
        let hint = if found == other {
            " (that is the other file of an IDX pair: are images and labels swapped?)"
        } else if file.is_gzip() {
            ""
        } else {
            " (the file is not gzip either)"
        };
        return Err(DataError::WrongMagic {
            path: file.path().to_path_buf(),
            kind,
            found,
            expected,
            hint,
        });
    }
    if header.len() < len {
        let what = format!("the {len}-byte header of {kind}");
        return Err(file.truncated(what, len as u64));
    }
    Ok(header)
}

/// `(n, height, width)` from an IDX image file's header; the body is left to read.
fn read_images_header(file: &mut DataFile) -> Result<(usize, usize, usize), DataError> {
    let header = read_header(file, 16, IMAGES_KIND, IDX_IMAGES_MAGIC)?;
    let [n, h, w] = [4, 8, 12].map(|at| be_u32(&header, at) as u64);
    if (h == 0 || w == 0) && n > 0 {
        return Err(DataError::InvalidHeader {
            path: file.path().to_path_buf(),
            reason: format!("images of {h}x{w} pixels"),
        });
    }
    // At most 2^96: computed in u128 so it cannot overflow.
    let needed = 16 + n as u128 * h as u128 * w as u128;
    if u64::try_from(needed)
        .ok()
        .and_then(|b| usize::try_from(b).ok())
        .is_none()
    {
        return Err(DataError::InvalidHeader {
            path: file.path().to_path_buf(),
            reason: format!("{n} images of {h}x{w} pixels do not fit in memory"),
        });
    }
    Ok((n as usize, h as usize, w as usize))
}

/// The number of labels from an IDX label file's header; the body is left to read.
fn read_labels_header(file: &mut DataFile) -> Result<usize, DataError> {
    let header = read_header(file, 8, LABELS_KIND, IDX_LABELS_MAGIC)?;
    Ok(be_u32(&header, 4) as usize)
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
