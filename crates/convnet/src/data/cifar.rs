//! CIFAR-10 binary batches: records of 1 label byte and 3072 pixel bytes (the red, green and
//! blue planes of a 32x32 image, each row-major), which is already the `[C, H, W]` layout.

use std::path::{Path, PathBuf};

use std::io::Read;

use super::file::DataFile;
use super::{DataError, Dataset};
use crate::names::check_len;

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

/// The most records one batch file may hold: CIFAR-10's batches hold 10,000 each. The bound
/// is checked as records are read, so a gzip file that inflates to more is refused after
/// inflating about 30 MB, whatever its size after gunzip.
pub const CIFAR10_MAX_RECORDS: usize = 10_000;

/// The most bytes of a `batches.meta.txt`: 256 names (labels are bytes) of at most
/// [`MAX_NAME_CHARS`](crate::names::MAX_NAME_CHARS) characters, with room to spare.
const META_MAX_BYTES: u64 = 1 << 20;
/// The most lines of a `batches.meta.txt`, blank ones included.
const META_MAX_LINES: usize = 1024;
/// The most class names a `batches.meta.txt` may give: a label is one byte.
const META_MAX_NAMES: usize = 256;

/// Loads CIFAR-10 binary batches (records in file order, files in the order given), raw or
/// gzip. A file whose size is not a positive multiple of 3073 bytes, that holds more than
/// [`CIFAR10_MAX_RECORDS`] records, or a label not below `classes.len()`, is an error.
///
/// Files are read one after the other, record by record, straight into the data set's
/// buffers: memory is the data set itself, never a second copy of the files.
pub fn load_cifar10(batches: &[PathBuf], classes: Vec<String>) -> Result<Dataset, DataError> {
    if batches.is_empty() {
        return Err(DataError::NoBatchFiles);
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in batches {
        read_batch(path, classes.len(), &mut pixels, &mut labels)?;
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

/// Appends the records of one batch file to `pixels` and `labels`.
fn read_batch(
    path: &Path,
    classes: usize,
    pixels: &mut Vec<u8>,
    labels: &mut Vec<usize>,
) -> Result<(), DataError> {
    let mut file = DataFile::open(path)?;
    let bad_size = |size: u64| DataError::BadRecordSize {
        path: path.to_path_buf(),
        size,
        record: CIFAR10_RECORD as u64,
    };
    let gzip = file.is_gzip();
    let too_many = || DataError::TooManyRecords {
        path: path.to_path_buf(),
        limit: CIFAR10_MAX_RECORDS,
        gzip,
    };
    // A raw file's size is known: check it before reading.
    let expected = match file.raw_len() {
        Some(size) if size == 0 || !size.is_multiple_of(CIFAR10_RECORD as u64) => {
            return Err(bad_size(size));
        }
        Some(size) if size / CIFAR10_RECORD as u64 > CIFAR10_MAX_RECORDS as u64 => {
            return Err(too_many());
        }
        Some(size) => (size / CIFAR10_RECORD as u64) as usize,
        None => 0,
    };
    reserve(path, pixels, expected * (CIFAR10_RECORD - 1))?;
    reserve(path, labels, expected)?;
    let mut record = [0u8; CIFAR10_RECORD];
    let mut index = 0;
    loop {
        let got = file.read_fill(&mut record)?;
        if got == 0 {
            break;
        }
        if got < CIFAR10_RECORD {
            return Err(bad_size((index * CIFAR10_RECORD + got) as u64));
        }
        if index == CIFAR10_MAX_RECORDS {
            return Err(too_many());
        }
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
        index += 1;
    }
    if index == 0 {
        return Err(bad_size(0));
    }
    Ok(())
}

/// Reserves room for `more` items, or says the data set does not fit in memory.
fn reserve<T>(path: &Path, v: &mut Vec<T>, more: usize) -> Result<(), DataError> {
    v.try_reserve(more).map_err(|_| DataError::OutOfMemory {
        path: path.to_path_buf(),
        what: format!("{more} more records"),
        bytes: (more as u64).saturating_mul(size_of::<T>() as u64),
        available: None,
    })
}

/// Class names from a `batches.meta.txt` (one per line; blank lines and surrounding spaces
/// ignored). Its size, lines and names are bounded: at most 1 MiB, 1024 lines, 256 names of
/// at most [`MAX_NAME_CHARS`](crate::names::MAX_NAME_CHARS) characters each; a longer name is
/// refused with its line.
pub(crate) fn read_meta(path: &Path) -> Result<Vec<String>, DataError> {
    let bad = |line: Option<usize>, reason: String| DataError::ClassNames {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(META_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > META_MAX_BYTES {
        return Err(bad(
            None,
            format!(
                "more than {META_MAX_BYTES} bytes; a class-name file holds one short name per line"
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| bad(None, format!("not UTF-8 text ({e})")))?;
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == META_MAX_LINES {
            return Err(bad(
                None,
                format!("more than {META_MAX_LINES} lines (one class name per line)"),
            ));
        }
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        check_len(name).map_err(|reason| bad(Some(i + 1), reason))?;
        if names.len() == META_MAX_NAMES {
            return Err(bad(
                Some(i + 1),
                format!("more than {META_MAX_NAMES} class names (a label is one byte)"),
            ));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(bad(
            None,
            "no class names in it (expected one name per line)".into(),
        ));
    }
    Ok(names)
}
