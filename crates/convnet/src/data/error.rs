//! [`DataError`]: what went wrong reading a data set, naming the file or folder.
//!
//! Each message says everything once: a variant that prints an underlying error's text keeps
//! that error as a plain field, not as its `source()`, so a report that prints the chain of
//! sources (anyhow's `{:#}`) does not print the text twice.

use std::io;
use std::path::PathBuf;

/// An error reading a data set. Every message names the file (or folder) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read (missing, no permission, ...).
    #[error("{}: cannot read: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },

    /// The file starts with the gzip magic bytes but does not decompress.
    #[error("{}: corrupt or truncated gzip data: {reason}", path.display())]
    CorruptGzip { path: PathBuf, reason: String },

    /// The file is shorter than its header (or format) requires. Sizes are after gunzip for
    /// gzip files.
    #[error(
        "{}: file is truncated: {what} needs {expected} bytes, but the file holds {got}{}",
        path.display(),
        if *gzip { " (after gunzip)" } else { "" }
    )]
    Truncated {
        path: PathBuf,
        what: String,
        expected: u64,
        got: u64,
        gzip: bool,
    },

    /// The file is longer than its header says. `got` is its size when known without reading
    /// it all (a raw file), `None` when reading stopped at the first byte too many (gzip).
    #[error(
        "{}: unexpected file size: {what} needs {expected} bytes, but the file holds {}{}",
        path.display(),
        got.map_or_else(|| "more".to_string(), |g| g.to_string()),
        if *gzip { " (after gunzip)" } else { "" }
    )]
    TrailingBytes {
        path: PathBuf,
        what: String,
        expected: u64,
        got: Option<u64>,
        gzip: bool,
    },

    /// A size read from a file or asked for that this machine cannot hold: more than the
    /// memory available (`available`, when known), or more than the allocator grants.
    #[error(
        "{}: cannot hold {what} in memory: {bytes} bytes{}",
        path.display(),
        available.map_or_else(String::new, |a| format!(", but only {a} bytes are available"))
    )]
    OutOfMemory {
        path: PathBuf,
        what: String,
        bytes: u64,
        available: Option<u64>,
    },

    /// The file does not start with the magic number of the expected kind of file.
    #[error(
        "{}: not {kind}: wrong magic number 0x{found:08x}, expected 0x{expected:08x}{hint}",
        path.display()
    )]
    WrongMagic {
        path: PathBuf,
        kind: &'static str,
        found: u32,
        expected: u32,
        hint: &'static str,
    },

    /// A header field that makes no sense (zero-sized images, sizes that overflow).
    #[error("{}: invalid header: {reason}", path.display())]
    InvalidHeader { path: PathBuf, reason: String },

    /// The image file and the label file hold different numbers of records.
    #[error(
        "image/label count mismatch: {} holds {n_images} images but {} holds {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: u64,
        n_labels: u64,
    },

    /// A label is not below the number of classes.
    #[error(
        "{}: label out of range: record {index} has label {label}, but there are {classes} classes (labels 0..={})",
        path.display(),
        classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: usize,
        classes: usize,
    },

    /// Parts of a data set whose dimensions must agree do not.
    #[error("{}: inconsistent dimensions: {reason}", path.display())]
    InconsistentDimensions { path: PathBuf, reason: String },

    /// A CIFAR-10 binary batch whose size is not a whole number of records.
    #[error(
        "{}: not a CIFAR-10 binary batch: its size ({size} bytes) is not a positive multiple of the record size {record} (1 label byte + 3072 pixel bytes)",
        path.display()
    )]
    BadRecordSize {
        path: PathBuf,
        size: u64,
        record: u64,
    },

    /// A CIFAR-10 batch file with more records than a batch holds.
    #[error(
        "{}: more than {limit} records{}; CIFAR-10 batch files hold 10000 records each: split larger sets into several batch files",
        path.display(),
        if *gzip { " (after gunzip)" } else { "" }
    )]
    TooManyRecords {
        path: PathBuf,
        limit: usize,
        gzip: bool,
    },

    /// A class-name file that cannot be used (too large, too long a name, no names).
    #[error(
        "{}{}: {reason}",
        path.display(),
        line.map_or_else(String::new, |l| format!(", line {l}"))
    )]
    ClassNames {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },

    /// `load_cifar10` was given no files.
    #[error("CIFAR-10: no batch files were given")]
    NoBatchFiles,

    /// An image file that cannot be decoded (corrupt, or a format other than PNG or JPEG).
    #[error("{}: cannot decode image: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    /// An image whose size differs from the one required (when no resize was asked for).
    #[error(
        "{}: image of the wrong size: {}x{} (HxW), expected {}x{} ({reference}); to resize every image to {}x{}, give --resize {}x{} (OpenOptions::resize)",
        path.display(), got[0], got[1], expected[0], expected[1], expected[0], expected[1],
        expected[0], expected[1]
    )]
    WrongImageSize {
        path: PathBuf,
        got: [usize; 2],
        expected: [usize; 2],
        reference: String,
    },

    /// A class folder with no PNG or JPEG image in it.
    #[error("{}: empty class folder: no PNG or JPEG image in it", path.display())]
    EmptyClass { path: PathBuf },

    /// A folder tree with more files and folders than a data set is read from.
    #[error(
        "{}: more than {limit} files and folders; a data set folder may hold at most that many",
        path.display()
    )]
    TooManyFiles { path: PathBuf, limit: usize },

    /// A folder with no class sub-folders.
    #[error(
        "{}: no class folders: expected one sub-folder per class holding PNG/JPEG images",
        path.display()
    )]
    NoClasses { path: PathBuf },

    /// The test set's classes differ from the training set's.
    #[error(
        "{}: the test classes {test_classes:?} differ from the training classes {train_classes:?} of {}",
        test.display(),
        train.display()
    )]
    ClassMismatch {
        train: PathBuf,
        test: PathBuf,
        train_classes: Vec<String>,
        test_classes: Vec<String>,
    },

    /// Test labels outside the range of the training labels (IDX data sets, whose classes are
    /// the labels found).
    #[error(
        "{}: test labels go up to {test_max}, beyond the training classes 0..={} (the labels in {} go up to {train_max}): train and test must have the same classes",
        test.display(),
        train_classes.saturating_sub(1),
        train.display()
    )]
    LabelRangeMismatch {
        train: PathBuf,
        test: PathBuf,
        train_max: usize,
        test_max: usize,
        train_classes: usize,
    },

    /// A training or test set with no images.
    #[error(
        "{from}: the {split} set is empty (0 images); a data set needs at least one training and one test image"
    )]
    EmptySplit { split: &'static str, from: String },

    /// An augmentation that cannot be applied to images of this size.
    #[error("invalid augmentation: {reason}")]
    Augment { reason: String },

    /// A folder that holds part of a known layout but not all of it.
    #[error("{}: incomplete {layout}: missing {}", path.display(), missing.join(", "))]
    MissingFiles {
        path: PathBuf,
        layout: &'static str,
        missing: Vec<String>,
    },

    /// A path that is none of the layouts `open` knows.
    #[error("{}: no data set found; looked for {looked_for}", path.display())]
    UnknownLayout { path: PathBuf, looked_for: String },

    /// Data other than a run's own, to continue the run with.
    #[error(
        "the run was trained on {trained_on}; resuming would train it on {given}{}",
        folder.as_ref().map_or_else(String::new, |f| format!(": give --data {}", f.display()))
    )]
    OtherData {
        trained_on: String,
        given: String,
        /// The run's own data folder (`None`: the default data).
        folder: Option<PathBuf>,
    },

    /// An argument that cannot be honoured (e.g. 3 channels requested as 4).
    #[error("{}: {reason}", path.display())]
    InvalidOption { path: PathBuf, reason: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}
