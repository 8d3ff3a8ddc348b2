//! The Fashion-MNIST sample compiled into the binary: 2000 training images (200 per class)
//! and 500 test images (50 per class), 28x28 grayscale, the first images of each class in
//! file order of the full set. Made by `tools/make_sample.py`; files under
//! `data/fashion-mnist-sample/` (see `data/README.md`).

use std::path::Path;

use super::file::DataFile;
use super::idx::{IdxClasses, read_idx_pair};
use super::{DataSplit, Dataset};

/// The `source` of the embedded sample's data sets (followed by " (train)" or " (test)").
pub const EMBEDDED_SAMPLE_SOURCE: &str = "embedded Fashion-MNIST sample";

const TRAIN_IMAGES: &[u8] =
    include_bytes!("../../../../data/fashion-mnist-sample/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] =
    include_bytes!("../../../../data/fashion-mnist-sample/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] =
    include_bytes!("../../../../data/fashion-mnist-sample/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] =
    include_bytes!("../../../../data/fashion-mnist-sample/t10k-labels-idx1-ubyte.gz");

fn decode(images: &'static [u8], labels: &'static [u8], part: &str) -> Dataset {
    let name = |file: &str| Path::new(EMBEDDED_SAMPLE_SOURCE).join(file);
    let (images_path, labels_path) = match part {
        "train" => (
            name("train-images-idx3-ubyte.gz"),
            name("train-labels-idx1-ubyte.gz"),
        ),
        _ => (
            name("t10k-images-idx3-ubyte.gz"),
            name("t10k-labels-idx1-ubyte.gz"),
        ),
    };
    let parsed = DataFile::from_static(&images_path, images).and_then(|img| {
        let lab = DataFile::from_static(&labels_path, labels)?;
        read_idx_pair(
            img,
            lab,
            IdxClasses::Fashion,
            format!("{EMBEDDED_SAMPLE_SOURCE} ({part})"),
        )
    });
    // The bytes are compiled in and checked by the tests: they cannot fail to decode.
    parsed.unwrap_or_else(|e| panic!("the embedded Fashion-MNIST sample is corrupt: {e}"))
}

/// The embedded Fashion-MNIST sample (decoded on each call, a few milliseconds).
pub fn embedded_sample() -> DataSplit {
    let (train, test) = rayon::join(
        || decode(TRAIN_IMAGES, TRAIN_LABELS, "train"),
        || decode(TEST_IMAGES, TEST_LABELS, "test"),
    );
    DataSplit { train, test }
}
