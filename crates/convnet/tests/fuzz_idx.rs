//! Fuzz target: MNIST-family IDX files, raw and gzip. Seeds are the first images and labels of
//! the Fashion-MNIST sample in `data/`; each input is read both as the image file (with valid
//! labels) and as the label file (with valid images), through the files the loader opens. See
//! `common/fuzz.rs` for the knobs.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::fuzz;
use convnet::data::load_idx;

/// Images (and labels) taken from the sample.
const N: usize = 4;

fn sample_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fashion-mnist-sample")
        .join(name);
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The first `N` images and labels of the sample's test set, as IDX files with their header
/// counts set to `N`.
fn first_records() -> (Vec<u8>, Vec<u8>) {
    let mut images = sample_file("t10k-images-idx3-ubyte.gz");
    images.truncate(16 + N * 28 * 28);
    images[4..8].copy_from_slice(&(N as u32).to_be_bytes());
    let mut labels = sample_file("t10k-labels-idx1-ubyte.gz");
    labels.truncate(8 + N);
    labels[4..8].copy_from_slice(&(N as u32).to_be_bytes());
    (images, labels)
}

struct Files {
    dir: PathBuf,
    images: PathBuf,
    labels: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(format!("convnet-fuzz-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (images, labels) = first_records();
        let files = Files {
            images: dir.join("images"),
            labels: dir.join("labels"),
            dir,
        };
        std::fs::write(&files.images, images).unwrap();
        std::fs::write(&files.labels, labels).unwrap();
        files
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn idx_loader_never_panics_on_mutated_files() {
    let (images, labels) = first_records();
    let seeds = vec![gz(&images), images, gz(&labels), labels];
    let files = Files::new();
    let input = files.dir.join("input");
    let stats = fuzz::run("idx", 5_000, &seeds, |bytes| {
        fuzz::write_input(&input, bytes);
        let as_images = load_idx(&input, &files.labels);
        let as_labels = load_idx(&files.images, &input);
        as_images.is_ok() || as_labels.is_ok()
    });
    assert!(
        stats.accepted >= 4,
        "the seeds are valid files, yet only {} inputs were accepted",
        stats.accepted
    );
}
