//! Bad data that once crashed, hung or fooled the loaders: gzip bombs, raw files far longer
//! than their header, symbolic-link loops, huge image headers, empty splits, IDX label
//! ranges that differ, long class names, doubled error texts, oversized crop padding, and
//! `.npy` sizes. Each test is named for what broke; memory-bound tests also bound the time
//! (loosely: what they guard against took seconds to minutes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convnet::checkpoint::DataOrigin;
use convnet::data::{
    Augment, CIFAR10_MAX_RECORDS, CIFAR10_RECORD, DataError, OpenOptions, augment_into,
    load_cifar10, load_idx, load_image_folder, open, open_with,
};
use convnet::names::MAX_NAME_CHARS;
use convnet::rng::Rng;

#[path = "common/data_files.rs"]
mod data_files;
use data_files::{
    TempDir, assert_message, first_pixels, gz, gzip_bomb, idx_images, idx_labels, p,
    png_header_only,
};

/// What "fast" means for an error found from a header (the bugs took seconds or more).
const FAST: Duration = Duration::from_secs(2);

fn save_gray(path: &Path, w: u32, h: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([value]))
        .save(path)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Gzip bombs and raw files longer than their header

#[test]
fn idx_gzip_bomb_is_refused_after_inflating_what_its_header_allows() {
    let dir = TempDir::new("idx-bomb");
    // Two 2x2 images, then 4 GiB of zeros: once inflated whole before any check.
    let images = dir.write("images.gz", &gzip_bomb(&idx_images(2, 2, 2, &[1; 8]), 4096));
    let labels = dir.write("labels", &idx_labels(&[0, 1]));
    let started = Instant::now();
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(
        matches!(err, DataError::TrailingBytes { got: None, .. }),
        "{err:?}"
    );
    assert_message(
        &err,
        &[
            &p(&images),
            "2 images of 2x2",
            "needs 24 bytes",
            "holds more",
            "after gunzip",
        ],
    );
}

#[test]
fn idx_gzip_label_bomb_is_refused_after_inflating_what_its_header_allows() {
    let dir = TempDir::new("idx-label-bomb");
    let images = dir.write("images", &idx_images(1, 1, 1, &[1]));
    let labels = dir.write("labels.gz", &gzip_bomb(&idx_labels(&[3]), 4096));
    let started = Instant::now();
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert_message(
        &err,
        &[&p(&labels), "1 labels", "needs 9 bytes", "holds more"],
    );
}

#[test]
fn cifar_gzip_bomb_is_refused_after_its_record_limit() {
    let dir = TempDir::new("cifar-bomb");
    // Zero bytes are valid records (label 0, black): the bound on records stops the read.
    let bomb = dir.write("data_batch_1.bin.gz", &gzip_bomb(&[], 4096));
    let started = Instant::now();
    let err = load_cifar10(std::slice::from_ref(&bomb), vec!["x".into(); 10]).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, DataError::TooManyRecords { .. }), "{err:?}");
    assert_message(
        &err,
        &[&p(&bomb), "more than 10000 records", "after gunzip"],
    );
}

#[test]
fn raw_files_longer_than_their_header_are_refused_from_their_length_before_reading() {
    let dir = TempDir::new("raw-long");
    // 8 GiB, sparse: reading it whole took seconds and gigabytes.
    let big = 8u64 << 30;
    let images = dir.write("images", &idx_images(1, 2, 2, &[0; 4]));
    std::fs::File::options()
        .write(true)
        .open(&images)
        .unwrap()
        .set_len(big)
        .unwrap();
    let labels = dir.write("labels", &idx_labels(&[0]));
    let started = Instant::now();
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(
        matches!(err, DataError::TrailingBytes { got: Some(g), .. } if g == big),
        "{err:?}"
    );

    let batch = dir.write("data_batch_1.bin", &[]);
    let records = (CIFAR10_MAX_RECORDS + 1) as u64 * CIFAR10_RECORD as u64;
    std::fs::File::options()
        .write(true)
        .open(&batch)
        .unwrap()
        .set_len(records)
        .unwrap();
    let started = Instant::now();
    let err = load_cifar10(std::slice::from_ref(&batch), vec!["x".into(); 10]).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, DataError::TooManyRecords { gzip: false, .. }),
        "{err:?}"
    );
}

#[test]
fn idx_header_claiming_more_than_the_file_holds_is_refused_without_allocating_it() {
    let dir = TempDir::new("idx-claims");
    // 2^32 - 1 images of 65535x65535 pixels: sizes that once went straight to an allocation.
    let images = dir.write("images", &idx_images(u32::MAX, 65535, 65535, &[0; 4]));
    let labels = dir.write("labels", &idx_labels(&[0]));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { .. }), "{err:?}");
    let images = dir.write("images1", &idx_images(1, 65535, 65535, &[0; 4]));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(
        matches!(err, DataError::Truncated { got: 20, .. }),
        "{err:?}"
    );
    // The same in gzip: the body is read as it comes, never reserved whole.
    let images = dir.write("images1.gz", &gz(&idx_images(1, 65535, 65535, &[0; 4])));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(
        matches!(err, DataError::Truncated { got: 20, .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Image folders: links, sizes, counts

#[cfg(unix)]
fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[cfg(unix)]
#[test]
fn image_folder_with_symlink_loops_reads_each_real_folder_once() {
    let dir = TempDir::new("links");
    save_gray(&dir.path().join("a/1.png"), 2, 2, 10);
    save_gray(&dir.path().join("a/sub/2.png"), 2, 2, 20);
    // Two links to the folder itself (once: 131,073 copies of each image) and one to its
    // parent (once: a walk that never ended).
    symlink(".", &dir.path().join("a/self1"));
    symlink(".", &dir.path().join("a/self2"));
    symlink("..", &dir.path().join("a/sub/up"));
    save_gray(&dir.path().join("b/3.png"), 2, 2, 30);
    let started = Instant::now();
    let d = load_image_folder(dir.path(), None, None).unwrap();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert_eq!(d.classes, vec!["a", "b"]);
    assert_eq!(d.labels, vec![0, 0, 1]);
    assert_eq!(first_pixels(&d), vec![10, 20, 30]);
}

#[cfg(unix)]
#[test]
fn image_folder_link_to_another_class_folder_reads_it_in_this_class_too() {
    // As torchvision and `find -L`: a link to a folder not yet walked in this class is read.
    let dir = TempDir::new("cross-link");
    save_gray(&dir.path().join("a/1.png"), 2, 2, 10);
    save_gray(&dir.path().join("b/2.png"), 2, 2, 20);
    symlink("../b", &dir.path().join("a/more"));
    let d = load_image_folder(dir.path(), None, None).unwrap();
    assert_eq!(d.labels, vec![0, 0, 1]);
    assert_eq!(first_pixels(&d), vec![10, 20, 20]);
}

#[test]
fn png_header_claiming_100000x100000_is_refused_quickly() {
    let dir = TempDir::new("huge-png");
    save_gray(&dir.path().join("a/1.png"), 2, 2, 10);
    let huge = dir.write("a/2.png", &png_header_only(100_000, 100_000));
    let started = Instant::now();
    let err = load_image_folder(dir.path(), Some([2, 2]), None).unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert_message(
        &err,
        &[
            &p(&huge),
            "100000x100000 image is larger than images are read",
            "at most 16384 pixels a side",
        ],
    );

    // Within the side bound but over the pixel bound: 16000 x 16000 is 256 megapixels.
    let big = dir.write("a/2.png", &png_header_only(16_000, 16_000));
    let err = load_image_folder(dir.path(), Some([2, 2]), None).unwrap_err();
    assert_message(
        &err,
        &[&p(&big), "larger than images are read", "64 megapixels"],
    );
}

#[test]
fn image_folder_set_too_large_for_memory_is_refused_before_decoding() {
    let dir = TempDir::new("resize-huge");
    save_gray(&dir.path().join("a/1.png"), 2, 2, 10);
    save_gray(&dir.path().join("a/2.png"), 2, 2, 10);
    let err = load_image_folder(dir.path(), Some([0, 5]), None).unwrap_err();
    assert_message(
        &err,
        &[
            &p(dir.path()),
            "cannot resize images to 0x5",
            "from 1 to 16384",
        ],
    );
    let err = open_with(
        dir.path(),
        &OpenOptions {
            resize: Some([100_000, 28]),
        },
    )
    .unwrap_err();
    assert_message(&err, &[&p(dir.path()), "100000x28"]);
}

#[cfg(unix)]
#[test]
fn hard_to_read_folder_entries_are_reported_with_the_os_reason_once() {
    let dir = TempDir::new("dangling");
    save_gray(&dir.path().join("a/1.png"), 2, 2, 10);
    let link = dir.path().join("a/2.png");
    symlink("nowhere.png", &link);
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert_message(
        &err,
        &[&p(&link), "cannot read", "No such file or directory"],
    );
    assert_said_once(&err);
    assert_said_once(&convnet::Error::from(err));
}

// ---------------------------------------------------------------------------------------
// open: empty splits, label ranges, resize

fn idx_folder(dir: &TempDir, train: (&[u8], &[u8]), test: (&[u8], &[u8])) {
    let n = |l: &[u8]| l.len() as u32;
    dir.write(
        "train-images-idx3-ubyte",
        &idx_images(n(train.1), 2, 2, train.0),
    );
    dir.write("train-labels-idx1-ubyte", &idx_labels(train.1));
    dir.write(
        "t10k-images-idx3-ubyte",
        &idx_images(n(test.1), 2, 2, test.0),
    );
    dir.write("t10k-labels-idx1-ubyte", &idx_labels(test.1));
}

#[test]
fn empty_test_or_training_set_is_refused_where_data_is_opened() {
    let dir = TempDir::new("empty-test");
    idx_folder(&dir, (&[7; 8], &[0, 1]), (&[], &[]));
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::EmptySplit { split: "test", .. }),
        "{err:?}"
    );
    assert_message(
        &err,
        &[
            &p(&dir.path().join("t10k-images-idx3-ubyte")),
            "test set is empty",
        ],
    );

    let dir = TempDir::new("empty-train");
    idx_folder(&dir, (&[], &[]), (&[7; 4], &[0]));
    let err = open(dir.path()).unwrap_err();
    assert_message(
        &err,
        &[
            &p(&dir.path().join("train-images-idx3-ubyte")),
            "training set is empty",
        ],
    );
}

#[test]
fn idx_test_labels_above_the_training_labels_are_refused_naming_both_files_and_ranges() {
    let dir = TempDir::new("label-range");
    idx_folder(&dir, (&[7; 8], &[0, 9]), (&[7; 4], &[12]));
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::LabelRangeMismatch { .. }),
        "{err:?}"
    );
    assert_message(
        &err,
        &[
            &p(&dir.path().join("t10k-labels-idx1-ubyte")),
            &p(&dir.path().join("train-labels-idx1-ubyte")),
            "go up to 12",
            "classes 0..=9",
        ],
    );

    // Training labels above the test labels: the test set takes the training classes.
    let dir = TempDir::new("label-range-ok");
    idx_folder(&dir, (&[7; 8], &[0, 12]), (&[7; 4], &[3]));
    let s = open(dir.path()).unwrap();
    assert_eq!(s.test.classes, s.train.classes);
    assert_eq!(s.train.classes.len(), 13);
}

#[test]
fn resize_applies_to_idx_cifar_and_image_folders_alike() {
    // IDX: a 2x2 image of one value stays that value at any size.
    let dir = TempDir::new("resize-idx");
    idx_folder(&dir, (&[7; 8], &[0, 1]), (&[9; 4], &[0]));
    let options = OpenOptions {
        resize: Some([3, 5]),
    };
    let s = open_with(dir.path(), &options).unwrap();
    assert_eq!(s.train.image_dims(), [1, 3, 5]);
    assert_eq!(s.test.image(0), &[9; 15]);

    // CIFAR-10: each plane alike.
    let dir = TempDir::new("resize-cifar");
    let mut record = vec![2u8];
    record.extend([10u8; 1024].iter().chain(&[20; 1024]).chain(&[30; 1024]));
    for i in 1..=5 {
        dir.write(&format!("data_batch_{i}.bin"), &record);
    }
    dir.write("test_batch.bin", &record);
    let s = open_with(dir.path(), &options).unwrap();
    assert_eq!(s.train.image_dims(), [3, 3, 5]);
    assert_eq!(s.train.image(4), [[10; 15], [20; 15], [30; 15]].concat());

    // Image folders of several sizes: each image resized as it is decoded.
    let dir = TempDir::new("resize-folders");
    save_gray(&dir.path().join("train/a/1.png"), 4, 4, 50);
    save_gray(&dir.path().join("train/a/2.png"), 7, 3, 60);
    save_gray(&dir.path().join("test/a/1.png"), 9, 9, 70);
    assert!(matches!(
        open(dir.path()).unwrap_err(),
        DataError::WrongImageSize { .. }
    ));
    let s = open_with(dir.path(), &options).unwrap();
    assert_eq!(
        (s.train.image_dims(), s.test.image_dims()),
        ([1, 3, 5], [1, 3, 5])
    );
    assert_eq!(s.train.image(1), &[60; 15]);
}

#[test]
fn rgb_images_resized_plane_by_plane_equal_the_image_crates_rgb_resize() {
    let dir = TempDir::new("resize-rgb");
    let img = image::RgbImage::from_fn(7, 5, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 50) as u8, ((x * y * 13) % 256) as u8])
    });
    let path = dir.path().join("c/x.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(&path).unwrap();
    let d = load_image_folder(dir.path(), Some([3, 4]), None).unwrap();
    let expected = image::imageops::resize(&img, 4, 3, image::imageops::FilterType::Triangle);
    let planes: Vec<u8> = (0..3)
        .flat_map(|c| expected.pixels().map(move |p| p.0[c]))
        .collect();
    assert_eq!(d.pixels, planes);
}

#[test]
fn image_size_error_suggests_the_resize_option_that_exists() {
    let dir = TempDir::new("size-hint");
    save_gray(&dir.path().join("a/1.png"), 4, 3, 50);
    save_gray(&dir.path().join("a/2.png"), 5, 5, 60);
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert_message(&err, &["--resize 3x4", "OpenOptions::resize"]);
    assert_eq!(OpenOptions::parse_size("3x4"), Ok([3, 4]));
    assert!(OpenOptions::parse_size("3by4").unwrap_err().contains("HxW"));
}

#[test]
fn old_checkpoints_without_a_resize_still_load_their_data_origin() {
    let origin: DataOrigin =
        serde_json::from_str(r#"{"folder": "/data/x", "source": "/data/x/a"}"#).unwrap();
    assert_eq!(origin.resize, None);
    let text = serde_json::to_string(&DataOrigin {
        resize: Some([32, 30]),
        ..origin
    })
    .unwrap();
    assert!(text.contains("\"resize\":[32,30]"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Class names

fn cifar_folder(dir: &TempDir, meta: &[u8]) -> PathBuf {
    let record = [vec![1u8], vec![0; 3072]].concat();
    for i in 1..=5 {
        dir.write(&format!("data_batch_{i}.bin"), &record);
    }
    dir.write("test_batch.bin", &record);
    dir.write("batches.meta.txt", meta)
}

#[test]
fn class_name_longer_than_the_bound_in_batches_meta_is_refused_naming_file_and_line() {
    let dir = TempDir::new("meta-long");
    let long = "n".repeat(MAX_NAME_CHARS + 1);
    let meta = cifar_folder(&dir, format!("airplane\n\n{long}\ncat\n").as_bytes());
    let err = open(dir.path()).unwrap_err();
    assert!(
        matches!(err, DataError::ClassNames { line: Some(3), .. }),
        "{err:?}"
    );
    assert_message(&err, &[&p(&meta), "line 3", "257 characters"]);
    // At the bound, accepted.
    let ok = "n".repeat(MAX_NAME_CHARS);
    cifar_folder(&dir, format!("{ok}\nb\n").as_bytes());
    assert_eq!(open(dir.path()).unwrap().train.classes[0], ok);
}

#[test]
fn batches_meta_size_and_line_count_are_bounded() {
    let dir = TempDir::new("meta-size");
    let meta = cifar_folder(&dir, &vec![b'a'; (1 << 20) + 1]);
    assert_message(
        open(dir.path()).unwrap_err(),
        &[&p(&meta), "more than 1048576 bytes"],
    );
    cifar_folder(&dir, "\n".repeat(1025).as_bytes());
    assert_message(
        open(dir.path()).unwrap_err(),
        &[&p(&meta), "more than 1024 lines"],
    );
    let names: String = (0..257).map(|i| format!("c{i}\n")).collect();
    cifar_folder(&dir, names.as_bytes());
    assert_message(
        open(dir.path()).unwrap_err(),
        &[&p(&meta), "line 257", "more than 256 class names"],
    );
}

// ---------------------------------------------------------------------------------------
// Errors said once

/// No error in `err`'s chain of sources prints its source's text (anyhow's `{:#}` prints
/// each message of the chain, so that text would be printed twice).
fn assert_said_once(err: &(dyn std::error::Error + 'static)) {
    let mut current = err;
    while let Some(source) = current.source() {
        let (outer, inner) = (current.to_string(), source.to_string());
        assert!(
            !outer.contains(&inner),
            "{outer:?} contains its source's text {inner:?}"
        );
        current = source;
    }
}

#[test]
fn data_errors_say_the_underlying_reason_once() {
    let dir = TempDir::new("said-once");
    let missing = dir.path().join("missing");
    let err = open(&missing).unwrap_err();
    assert_message(&err, &[&p(&missing), "No such file or directory"]);
    assert_eq!(
        err.to_string().matches("No such file or directory").count(),
        1
    );
    assert_said_once(&err);
    assert_said_once(&convnet::Error::from(err));

    let labels = dir.write("labels", &idx_labels(&[0]));
    let err = load_idx(&missing, &labels).unwrap_err();
    assert_said_once(&err);
    let mut corrupt = gz(&idx_images(1, 1, 1, &[0]));
    corrupt.truncate(corrupt.len() - 3);
    let images = dir.write("images.gz", &corrupt);
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::CorruptGzip { .. }), "{err:?}");
    assert_said_once(&err);
}

// ---------------------------------------------------------------------------------------
// Augmentation

#[test]
fn crop_padding_not_smaller_than_the_images_is_refused_by_augment_check() {
    let aug = |crop_padding| Augment {
        hflip: true,
        crop_padding,
    };
    assert!(aug(0).check([1, 28, 28]).is_ok());
    assert!(aug(27).check([1, 28, 28]).is_ok());
    for p in [28, 1_000_000, usize::MAX] {
        let err = aug(p).check([1, 28, 28]).unwrap_err();
        assert!(matches!(err, DataError::Augment { .. }), "{err:?}");
        assert_message(
            &err,
            &[&format!("crop padding {p}"), "28x28", "from 0 to 27"],
        );
    }
    // The narrower side bounds it.
    assert!(aug(5).check([3, 32, 5]).is_err());
    // Even unchecked, a huge padding crops zeros rather than panicking.
    let image = [9u8; 4];
    let mut out = [1u8; 4];
    augment_into(
        &image,
        [1, 2, 2],
        aug(usize::MAX),
        &mut Rng::new(0),
        &mut out,
    );
    assert_eq!(out, [0; 4]);
}

// ---------------------------------------------------------------------------------------
// .npy

fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn npy_shape_whose_byte_count_overflows_is_refused() {
    // 2^61 float64 values: 2^64 bytes, which wrapped to 0 and matched an empty body.
    let bytes = npy(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }\n",
        &[],
    );
    let err = convnet::npy::parse(&bytes).unwrap_err();
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn npy_file_is_checked_against_its_header_before_its_data_is_read() {
    let dir = TempDir::new("npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
    let path = dir.write("x.npy", &npy(header, &[0; 8]));
    assert_eq!(convnet::npy::read(&path).unwrap().dims(), &[2]);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let started = Instant::now();
    let err = convnet::npy::read(&path).unwrap_err().to_string();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(
        err.contains(&p(&path)) && err.contains("needs 8 bytes"),
        "{err}"
    );
    // A header over NumPy's bound is refused before it is read.
    let mut long = b"\x93NUMPY\x02\x00".to_vec();
    long.extend_from_slice(&u32::MAX.to_le_bytes());
    let path = dir.write("long.npy", &long);
    let err = convnet::npy::read(&path).unwrap_err().to_string();
    assert!(err.contains("headers longer than 10000 bytes"), "{err}");
}

#[test]
fn resize_to_more_than_memory_holds_is_refused_before_allocating() {
    // 2000 images of 16384x16384: 537 GB.
    let started = Instant::now();
    let err = convnet::data::embedded_sample()
        .train
        .resized([16_384, 16_384])
        .unwrap_err();
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(matches!(err, DataError::OutOfMemory { .. }), "{err:?}");
    assert_message(
        &err,
        &["2000 images of 1x16384x16384", "536870912000 bytes"],
    );
}
