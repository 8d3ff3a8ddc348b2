//! CIFAR-10 binary batches: records of 1 label byte and 3072 pixel bytes (the red, green and
//! blue planes of a 32x32 image, each row-major), which is already the `[C, H, W]` layout.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::file::read_maybe_gz;
use super::{DataError, Dataset};

/// The 10 CIFAR-10 class names, in label order (as `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Bytes of one CIFAR-10 record: a label byte and a 3x32x32 image.
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// The training batches of a CIFAR-10 binary folder, in order.
pub(crate) const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch of a CIFAR-10 binary folder.
pub(crate) const CIFAR10_TEST_FILE: &str = "test_batch.bin";
/// The optional class-name file of a CIFAR-10 binary folder (one name per line).
pub(crate) const CIFAR10_META_FILE: &str = "batches.meta.txt";

/// Loads CIFAR-10 binary batches (records in file order, files in the order given), raw or
/// gzip. A file whose size is not a positive multiple of 3073 bytes, or a label not below
/// `classes.len()`, is an error.
pub fn load_cifar10(batches: &[PathBuf], classes: Vec<String>) -> Result<Dataset, DataError> {
    if batches.is_empty() {
        return Err(DataError::NoBatchFiles);
    }
    let parts: Vec<Result<Records, DataError>> = batches
        .par_iter()
        .map(|path| read_batch(path, classes.len()))
        .collect();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for part in parts {
        let (p, l) = part?;
        pixels.extend_from_slice(&p);
        labels.extend_from_slice(&l);
    }
    let source = batches
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Dataset {
        channels: 3,
        height: 32,
        width: 32,
        pixels,
        labels,
        classes,
        source,
    })
}

/// The pixels and labels of one batch file.
type Records = (Vec<u8>, Vec<usize>);

fn read_batch(path: &Path, classes: usize) -> Result<Records, DataError> {
    let c = read_maybe_gz(path)?;
    let size = c.bytes.len();
    if size == 0 || !size.is_multiple_of(CIFAR10_RECORD) {
        return Err(DataError::BadRecordSize {
            path: path.to_path_buf(),
            size: size as u64,
            record: CIFAR10_RECORD as u64,
        });
    }
    let n = size / CIFAR10_RECORD;
    let mut pixels = Vec::with_capacity(n * (CIFAR10_RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (index, record) in c.bytes.chunks_exact(CIFAR10_RECORD).enumerate() {
        let label = record[0] as usize;
        if label >= classes {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                index,
                label,
                classes,
            });
        }
        labels.push(label);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok((pixels, labels))
}

/// Class names from a `batches.meta.txt` (one per line; blank lines and surrounding spaces
/// ignored).
pub(crate) fn read_meta(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.is_empty() {
        return Err(DataError::InvalidOption {
            path: path.to_path_buf(),
            reason: "no class names in it (expected one name per line)".into(),
        });
    }
    Ok(names)
}
