//! Data sets for training: loaders, the embedded Fashion-MNIST sample, normalization and
//! deterministic batching.
//!
//! - [`load_idx`] (`idx.rs`): MNIST-family IDX files, raw or gzip.
//! - [`load_cifar10`] (`cifar.rs`): CIFAR-10 binary batches.
//! - [`load_image_folder`] (`folder.rs`): one sub-folder of PNG/JPEG images per class.
//! - [`open`], [`open_with`]: a folder in any of those layouts, as a train/test [`DataSplit`],
//!   optionally resized ([`OpenOptions`]).
//! - [`embedded_sample`] (`sample.rs`) and [`default_data`]: Fashion-MNIST with no download;
//!   [`open_or_default`]: a folder, or the default data.
//! - [`DataOrigin`] (`origin.rs`): where a run's data came from, opened and reopened (a
//!   resumed run refuses other data).
//! - [`Dataset`], [`Normalization`] (`dataset.rs`): raw `u8` images in memory, normalized per
//!   batch as torchvision's `ToTensor` + `Normalize`.
//! - [`EpochPlan`] (`batch.rs`): shuffling, batching and augmentation, keyed by
//!   `(seed, epoch, position)` so any batch can be rebuilt alone (resume mid-epoch).
//!
//! Loaders read a file's header first and then exactly the bytes it announces (gunzipping on
//! the fly with `flate2` when the file starts with the gzip magic bytes, `file.rs`), so no
//! size taken from a file is allocated before it is checked; they return a [`DataError`]
//! naming the file and the problem, and bad data never panics. Every bound is a named
//! constant: [`CIFAR10_MAX_RECORDS`] per batch file; [`MAX_FOLDER_ENTRIES`] for image
//! folders, whose images are read within [`crate::image`]'s bounds; class names at most
//! [`MAX_NAME_CHARS`](crate::names::MAX_NAME_CHARS) characters. [`open_with`] refuses an
//! empty training or test set, and test classes that differ from the training classes.

mod batch;
mod cifar;
mod dataset;
mod error;
mod file;
mod folder;
mod idx;
mod origin;
mod resize;
mod sample;

use std::path::{Path, PathBuf};

pub use batch::{AUGMENT_TAG, Augment, Batch, BatchSpec, EpochPlan, SHUFFLE_TAG, augment_into};
pub use cifar::{CIFAR10_CLASSES, CIFAR10_MAX_RECORDS, CIFAR10_RECORD, load_cifar10};
pub use dataset::{Dataset, Normalization};
pub use error::DataError;
pub use folder::{MAX_FOLDER_ENTRIES, load_image_folder};
pub use idx::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, load_idx};
pub use origin::{DataOrigin, open_or_default};
pub use sample::{EMBEDDED_SAMPLE_SOURCE, embedded_sample};

use cifar::{CIFAR10_META_FILE, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, read_meta};
use folder::{SizeRule, check_resize};
use idx::{IDX_FILES, find_idx_file};

/// Where `apt-get install -y dataset-fashion-mnist` puts the full Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// A training set and a test set.
#[derive(Debug, Clone)]
pub struct DataSplit {
    pub train: Dataset,
    pub test: Dataset,
}

/// How [`open_with`] reads a data set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Resize every image to `[H, W]` (from 1 to [`crate::image::MAX_SIDE`] a side) with the triangle
    /// (bilinear) filter, channel by channel, in every layout: image-folder images as they
    /// are decoded (so images of several sizes can be mixed), IDX and CIFAR-10 images after
    /// reading. `None`: images keep their size (image folders then need one size throughout).
    pub resize: Option<[usize; 2]>,
}

impl OpenOptions {
    /// Parses a size written `HxW` (e.g. `32x32`), as the command line takes it. Only the
    /// form is checked here; [`open_with`] checks the size.
    pub fn parse_size(text: &str) -> Result<[usize; 2], String> {
        let bad = || format!("'{text}' is not a size: expected HxW, e.g. 32x32");
        let (h, w) = text.split_once(['x', 'X']).ok_or_else(bad)?;
        let side = |v: &str| v.trim().parse::<usize>().map_err(|_| bad());
        Ok([side(h)?, side(w)?])
    }

    /// A split read by other means (e.g. [`embedded_sample`]) made as these options would have
    /// read it: both sets resized (a no-op without a size, or for images of that size).
    pub fn apply(&self, split: DataSplit) -> Result<DataSplit, DataError> {
        match self.resize {
            None => Ok(split),
            Some(size) => Ok(DataSplit {
                train: split.train.resized(size)?,
                test: split.test.resized(size)?,
            }),
        }
    }
}

/// The sub-folder a CIFAR-10 binary archive extracts to; [`open`] also looks there.
const CIFAR10_SUBFOLDER: &str = "cifar-10-batches-bin";

/// What [`open`] looks for, for its error message.
const LAYOUTS: &str = "(a) MNIST-family IDX files train-images-idx3-ubyte[.gz], \
    train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]; \
    (b) CIFAR-10 binary batches data_batch_1.bin .. data_batch_5.bin and test_batch.bin \
    (optionally batches.meta.txt), in the folder or in cifar-10-batches-bin/; \
    (c) image folders train/<class>/ and test/<class>/ holding PNG/JPEG images";

/// Opens a data-set folder in one of these layouts (tried in this order):
///
/// - (a) MNIST-family IDX: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
///   `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or with `.gz` (the raw file
///   is used when both exist); classes as [`load_idx`].
/// - (b) CIFAR-10 binary: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin`, in
///   the folder or in its `cifar-10-batches-bin/`; class names from `batches.meta.txt` if
///   present, else [`CIFAR10_CLASSES`].
/// - (c) image folders: `train/<class>/...` and `test/<class>/...` ([`load_image_folder`]);
///   the training images fix the channels and the size (the first image's), the test images
///   must match them, and the test classes must equal the training classes.
///
/// A folder holding part of a layout is an error naming what is missing; anything else is an
/// error listing what was looked for. An empty training or test set is an error; so is an
/// IDX test label beyond the training classes (the classes of IDX data come from its labels:
/// `0..=9`, or up to the largest training label).
pub fn open(path: &Path) -> Result<DataSplit, DataError> {
    open_with(path, &OpenOptions::default())
}

/// [`open`], reading images as `options` say (e.g. resized). The options are checked before
/// anything is read.
pub fn open_with(path: &Path, options: &OpenOptions) -> Result<DataSplit, DataError> {
    if let Some(size) = options.resize {
        check_resize(path, size)?;
    }
    options.apply(read_layout(path, options)?)
}

/// The split of `path` in the first layout that matches (see [`open`]).
fn read_layout(path: &Path, options: &OpenOptions) -> Result<DataSplit, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_dir() {
        return Err(DataError::UnknownLayout {
            path: path.to_path_buf(),
            looked_for: format!("a folder (this is a file) holding {LAYOUTS}"),
        });
    }

    // (a) IDX
    let idx: Vec<Option<PathBuf>> = IDX_FILES.iter().map(|b| find_idx_file(path, b)).collect();
    if idx.iter().all(Option::is_some) {
        let f: Vec<PathBuf> = idx.into_iter().flatten().collect();
        let (train, test) = rayon::join(|| load_idx(&f[0], &f[1]), || load_idx(&f[2], &f[3]));
        let (train, mut test) = (train?, test?);
        same_label_range([&f[1], &f[3]], &train, &mut test)?;
        return split(path, train, test);
    }
    if idx.iter().any(Option::is_some) {
        return Err(DataError::MissingFiles {
            path: path.to_path_buf(),
            layout: "MNIST-family IDX folder",
            missing: IDX_FILES
                .iter()
                .zip(&idx)
                .filter(|(_, f)| f.is_none())
                .map(|(b, _)| format!("{b}[.gz]"))
                .collect(),
        });
    }

    // (b) CIFAR-10
    for dir in [path.to_path_buf(), path.join(CIFAR10_SUBFOLDER)] {
        let names: Vec<&str> = CIFAR10_TRAIN_FILES
            .iter()
            .copied()
            .chain([CIFAR10_TEST_FILE])
            .collect();
        let present: Vec<bool> = names.iter().map(|n| dir.join(n).is_file()).collect();
        if present.iter().all(|&p| p) {
            let meta_file = dir.join(CIFAR10_META_FILE);
            let classes = if meta_file.is_file() {
                read_meta(&meta_file)?
            } else {
                CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect()
            };
            let train_files: Vec<PathBuf> =
                CIFAR10_TRAIN_FILES.iter().map(|n| dir.join(n)).collect();
            let test_files = [dir.join(CIFAR10_TEST_FILE)];
            let (train, test) = rayon::join(
                || load_cifar10(&train_files, classes.clone()),
                || load_cifar10(&test_files, classes.clone()),
            );
            return split(&dir, train?, test?);
        }
        if present.iter().any(|&p| p) {
            return Err(DataError::MissingFiles {
                path: dir,
                layout: "CIFAR-10 binary folder",
                missing: names
                    .iter()
                    .zip(&present)
                    .filter(|(_, p)| !**p)
                    .map(|(n, _)| n.to_string())
                    .collect(),
            });
        }
    }

    // (c) image folders
    let (train_dir, test_dir) = (path.join("train"), path.join("test"));
    match (train_dir.is_dir(), test_dir.is_dir()) {
        (true, true) => open_folders(&train_dir, &test_dir, options.resize),
        (false, false) => Err(DataError::UnknownLayout {
            path: path.to_path_buf(),
            looked_for: LAYOUTS.to_string(),
        }),
        (has_train, _) => Err(DataError::MissingFiles {
            path: path.to_path_buf(),
            layout: "image-folder layout (train/<class>/, test/<class>/)",
            missing: vec![if has_train { "test/" } else { "train/" }.to_string()],
        }),
    }
}

fn open_folders(
    train_dir: &Path,
    test_dir: &Path,
    resize: Option<[usize; 2]>,
) -> Result<DataSplit, DataError> {
    let train_classes: Vec<String> = folder::class_folders(train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let test_classes: Vec<String> = folder::class_folders(test_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if train_classes != test_classes {
        return Err(DataError::ClassMismatch {
            train: train_dir.to_path_buf(),
            test: test_dir.to_path_buf(),
            train_classes,
            test_classes,
        });
    }
    let train_rule = resize.map_or(SizeRule::First, SizeRule::Resize);
    let train = folder::load_with(train_dir, train_rule, None)?;
    let test_rule = resize.map_or_else(
        || {
            SizeRule::Require(
                [train.height, train.width],
                format!("the size of the training images in {}", train_dir.display()),
            )
        },
        SizeRule::Resize,
    );
    let test = folder::load_with(test_dir, test_rule, Some(train.channels))?;
    split(train_dir, train, test)
}

/// IDX classes come from the labels found: a test label must be one of the training classes
/// (`labels` names the training and test label files); the test set then takes the training
/// set's class list.
fn same_label_range(
    labels: [&Path; 2],
    train: &Dataset,
    test: &mut Dataset,
) -> Result<(), DataError> {
    if test.classes.len() > train.classes.len() {
        let max = |d: &Dataset| d.labels.iter().copied().max().unwrap_or(0);
        return Err(DataError::LabelRangeMismatch {
            train: labels[0].to_path_buf(),
            test: labels[1].to_path_buf(),
            train_max: max(train),
            test_max: max(test),
            train_classes: train.classes.len(),
        });
    }
    test.classes = train.classes.clone();
    Ok(())
}

/// Checks that neither set is empty and that train and test images have the same dimensions.
fn split(path: &Path, train: Dataset, test: Dataset) -> Result<DataSplit, DataError> {
    for (name, set) in [("training", &train), ("test", &test)] {
        if set.is_empty() {
            return Err(DataError::EmptySplit {
                split: name,
                from: set.source.clone(),
            });
        }
    }
    if train.image_dims() != test.image_dims() {
        return Err(DataError::InconsistentDimensions {
            path: path.to_path_buf(),
            reason: format!(
                "training images are {:?} (CxHxW) but test images are {:?}",
                train.image_dims(),
                test.image_dims()
            ),
        });
    }
    Ok(DataSplit { train, test })
}

/// The full Fashion-MNIST from [`FASHION_MNIST_DIR`] when its files are there (errors in
/// them are reported, not hidden), else the [`embedded_sample`].
pub fn default_data() -> Result<DataSplit, DataError> {
    default_data_with(&OpenOptions::default())
}

/// [`default_data`], read as `options` say.
pub fn default_data_with(options: &OpenOptions) -> Result<DataSplit, DataError> {
    let dir = Path::new(FASHION_MNIST_DIR);
    if IDX_FILES.iter().any(|b| find_idx_file(dir, b).is_some()) {
        open_with(dir, options)
    } else {
        options.apply(embedded_sample())
    }
}
