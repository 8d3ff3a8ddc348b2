//! Fuzz target: CIFAR-10 binary batches (raw and gzip) and `batches.meta.txt`. Seeds are
//! records made of real images (the Fashion-MNIST sample's, padded to 32x32 and repeated over
//! three planes) and the real class-name file; each input is read as a batch file and as the
//! class-name file of an otherwise valid folder. See `common/fuzz.rs` for the knobs.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::fuzz;
use convnet::data::{CIFAR10_CLASSES, load_cifar10, open};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `n` CIFAR-10 records: sample image `i` centred in 32x32, on every plane, label `i % 10`.
fn records(n: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fashion-mnist-sample/t10k-images-idx3-ubyte.gz");
    let mut idx = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut idx)
        .unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let image = &idx[16 + i * 784..16 + (i + 1) * 784];
        out.push((i % 10) as u8);
        for _plane in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let inside = (2..30).contains(&y) && (2..30).contains(&x);
                    out.push(if inside {
                        image[(y - 2) * 28 + x - 2]
                    } else {
                        0
                    });
                }
            }
        }
    }
    out
}

/// The class names as CIFAR-10's `batches.meta.txt` holds them.
fn meta() -> Vec<u8> {
    (CIFAR10_CLASSES.join("\n") + "\n\n").into_bytes()
}

struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid CIFAR-10 folder of one record per batch.
fn folder() -> Folder {
    let dir = std::env::temp_dir().join(format!("convnet-fuzz-cifar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let record = records(1);
    for i in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{i}.bin")), &record).unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), &record).unwrap();
    Folder(dir)
}

#[test]
fn cifar_loader_never_panics_on_mutated_batches_and_class_names() {
    let batch = records(2);
    let seeds = vec![gz(&batch), batch, meta()];
    let folder = folder();
    let input = folder.0.join("input.bin");
    let meta_file = folder.0.join("batches.meta.txt");
    let classes: Vec<String> = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let stats = fuzz::run("cifar", 6_000, &seeds, |bytes| {
        fuzz::write_input(&input, bytes);
        let as_batch = load_cifar10(std::slice::from_ref(&input), classes.clone());
        fuzz::write_input(&meta_file, bytes);
        let as_meta = open(&folder.0);
        as_batch.is_ok() || as_meta.is_ok()
    });
    assert!(
        stats.accepted >= 3,
        "the seeds are valid files, yet only {} inputs were accepted",
        stats.accepted
    );
}
