//! The data layer: every loader on small files made here (raw and gzip), the embedded sample,
//! the full Fashion-MNIST when installed, normalization, batching and augmentation, and every
//! kind of bad data with its message.

use std::path::Path;
use std::time::Instant;

use convnet::data::{
    AUGMENT_TAG, Augment, BatchSpec, CIFAR10_CLASSES, DataError, Dataset, EpochPlan,
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, Normalization, augment_into, default_data,
    embedded_sample, load_cifar10, load_idx, load_image_folder, open,
};
use convnet::rng::Rng;

#[path = "common/data_files.rs"]
mod data_files;
use data_files::{TempDir, assert_message, first_pixels, gz, idx_images, idx_labels, p};

// ---------------------------------------------------------------------------------------
// Helpers

/// Three 2x3 images with pixels 0..18 and labels 0, 7, 3.
fn small_idx() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..18).collect();
    (idx_images(3, 2, 3, &pixels), idx_labels(&[0, 7, 3]))
}

fn save_gray(path: &Path, w: u32, h: u32, pixels: Vec<u8>) {
    image::GrayImage::from_raw(w, h, pixels)
        .unwrap()
        .save(path)
        .unwrap();
}

fn save_rgb(path: &Path, w: u32, h: u32, pixels: Vec<u8>) {
    image::RgbImage::from_raw(w, h, pixels)
        .unwrap()
        .save(path)
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// IDX

#[test]
fn idx_loads_raw_and_gzip_files_alike() {
    let dir = TempDir::new("idx-raw-gz");
    let (img, lab) = small_idx();
    let raw = load_idx(
        &dir.write("raw/images", &img),
        &dir.write("raw/labels", &lab),
    )
    .unwrap();
    assert_eq!(raw.image_dims(), [1, 2, 3]);
    assert_eq!(raw.len(), 3);
    assert_eq!(raw.pixels, (0..18).collect::<Vec<u8>>());
    assert_eq!(raw.image(1), &[6, 7, 8, 9, 10, 11]);
    assert_eq!(raw.labels, vec![0, 7, 3]);
    let digits: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(raw.classes, digits);
    assert!(raw.source.contains("images"));

    // gzip is detected by content, not by name: no .gz suffix here.
    let zipped = load_idx(
        &dir.write("gz/images", &gz(&img)),
        &dir.write("gz/labels.gz", &gz(&lab)),
    )
    .unwrap();
    assert_eq!(zipped.pixels, raw.pixels);
    assert_eq!(zipped.labels, raw.labels);
    assert_eq!(zipped.classes, raw.classes);
}

#[test]
fn idx_classes_are_fashion_names_in_a_fashion_folder_else_digits_up_to_the_largest_label() {
    let dir = TempDir::new("idx-classes");
    let (img, lab) = small_idx();
    for folder in ["My-FASHION-mnist", "FashionMNIST/raw"] {
        let d = load_idx(
            &dir.write(&format!("{folder}/i"), &img),
            &dir.write(&format!("{folder}/l"), &lab),
        )
        .unwrap();
        assert_eq!(d.classes, FASHION_MNIST_CLASSES.to_vec(), "{folder}");
    }
    let d = load_idx(
        &dir.write("letters/i", &img),
        &dir.write("letters/l", &idx_labels(&[0, 12, 3])),
    )
    .unwrap();
    assert_eq!(d.classes.len(), 13);
    assert_eq!(d.classes[12], "12");
    assert_eq!(d.class_counts()[12], 1);
}

#[test]
fn idx_truncated_image_file_is_an_error_naming_the_file_and_both_sizes() {
    let dir = TempDir::new("idx-truncated");
    let (img, lab) = small_idx();
    let labels = dir.write("labels", &lab);
    let images = dir.write("images", &img[..30]);
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    assert_message(err, &[&p(&images), "truncated", "34 bytes", "holds 30"]);

    // The same inside a gzip file: sizes are after gunzip.
    let images = dir.write("images.gz", &gz(&img[..30]));
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&images), "truncated", "34 bytes", "30", "after gunzip"],
    );

    // Shorter than the header.
    let images = dir.write("tiny", &img[..10]);
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&images), "truncated", "16-byte header"],
    );

    // A truncated label file.
    let labels = dir.write("labels-short", &lab[..9]);
    let images = dir.write("images-ok", &img);
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&labels), "truncated", "3 labels", "11 bytes", "holds 9"],
    );
}

#[test]
fn idx_file_longer_than_its_header_says_is_an_error() {
    let dir = TempDir::new("idx-long");
    let (mut img, lab) = small_idx();
    img.push(0);
    let images = dir.write("images", &img);
    let err = load_idx(&images, &dir.write("labels", &lab)).unwrap_err();
    assert_message(
        err,
        &[&p(&images), "unexpected file size", "34 bytes", "holds 35"],
    );
}

#[test]
fn idx_truncated_gzip_is_an_error_naming_the_file() {
    let dir = TempDir::new("idx-gz-truncated");
    let (img, lab) = small_idx();
    let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut zipped = gz(&idx_images(1, 50, 100, &big));
    zipped.truncate(zipped.len() / 2);
    let images = dir.write("images.gz", &zipped);
    let labels = dir.write("labels", &idx_labels(&[1]));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::CorruptGzip { .. }), "{err:?}");
    assert_message(err, &[&p(&images), "corrupt or truncated gzip"]);

    // Cut inside the 8-byte trailer: the data is whole but the stream is not.
    let mut zipped = gz(&img);
    zipped.truncate(zipped.len() - 3);
    let images = dir.write("images-trailer.gz", &zipped);
    let err = load_idx(&images, &dir.write("l", &lab)).unwrap_err();
    assert_message(err, &[&p(&images), "corrupt or truncated gzip"]);
}

#[test]
fn idx_corrupt_gzip_is_an_error_naming_the_file() {
    let dir = TempDir::new("idx-gz-corrupt");
    let (img, lab) = small_idx();
    let mut zipped = gz(&img);
    // Damage the CRC-32 in the trailer: the data inflates but does not check.
    let n = zipped.len();
    zipped[n - 8] ^= 0xff;
    let images = dir.write("images.gz", &zipped);
    let labels = dir.write("labels", &lab);
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&images), "corrupt or truncated gzip"],
    );
    // Garbage after the gzip header.
    let mut zipped = gz(&img);
    for b in &mut zipped[10..20] {
        *b = 0xff;
    }
    let images = dir.write("garbage.gz", &zipped);
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&images), "corrupt or truncated gzip"],
    );
}

#[test]
fn idx_wrong_magic_number_is_an_error_naming_the_file_and_both_numbers() {
    let dir = TempDir::new("idx-magic");
    let (img, lab) = small_idx();
    let images = dir.write("images", &img);
    let labels = dir.write("labels", &lab);
    // Swapped: the label file given as images.
    let err = load_idx(&labels, &images).unwrap_err();
    assert!(matches!(err, DataError::WrongMagic { .. }), "{err:?}");
    assert_message(
        err,
        &[
            &p(&labels),
            "not an IDX image file",
            "0x00000801",
            "expected 0x00000803",
            "swapped",
        ],
    );
    // A file that is not IDX at all.
    let text = dir.write("notes.txt", b"hello world, not a data set");
    assert_message(
        load_idx(&images, &text).unwrap_err(),
        &[
            &p(&text),
            "not an IDX label file",
            "0x68656c6c",
            "expected 0x00000801",
        ],
    );
}

#[test]
fn idx_image_label_count_mismatch_names_both_files_and_counts() {
    let dir = TempDir::new("idx-count");
    let (img, _) = small_idx();
    let images = dir.write("images", &img);
    let labels = dir.write("labels", &idx_labels(&[1, 2]));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { .. }), "{err:?}");
    assert_message(
        err,
        &[&p(&images), &p(&labels), "3 images", "2 labels", "mismatch"],
    );
}

#[test]
fn idx_label_out_of_range_in_a_fashion_folder_names_the_file_record_and_label() {
    let dir = TempDir::new("idx-label-range");
    let (img, _) = small_idx();
    let images = dir.write("fashion/images", &img);
    let labels = dir.write("fashion/labels", &idx_labels(&[1, 2, 10]));
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(matches!(err, DataError::LabelOutOfRange { .. }), "{err:?}");
    assert_message(
        err,
        &[
            &p(&labels),
            "label out of range",
            "record 2",
            "label 10",
            "10 classes",
        ],
    );
}

#[test]
fn idx_missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("idx-missing");
    let (img, _) = small_idx();
    let images = dir.write("images", &img);
    let labels = dir.path().join("no-such-labels");
    assert_message(
        load_idx(&images, &labels).unwrap_err(),
        &[&p(&labels), "cannot read"],
    );
}

// ---------------------------------------------------------------------------------------
// CIFAR-10

/// A CIFAR-10 record whose pixel `i` is `(seed + i) % 256`.
fn cifar_record(label: u8, seed: u32) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072u32).map(|i| ((seed + i) % 256) as u8));
    r
}

#[test]
fn cifar10_loads_records_as_rgb_planes_in_file_order_raw_and_gzip() {
    let dir = TempDir::new("cifar");
    let a = [cifar_record(3, 0), cifar_record(9, 1)].concat();
    let b = cifar_record(0, 2);
    let files = [dir.write("a.bin", &a), dir.write("b.bin.gz", &gz(&b))];
    let classes: Vec<String> = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let d = load_cifar10(&files, classes.clone()).unwrap();
    assert_eq!(d.image_dims(), [3, 32, 32]);
    assert_eq!(d.labels, vec![3, 9, 0]);
    assert_eq!(d.classes, classes);
    assert_eq!(d.image(1), &cifar_record(9, 1)[1..]);
    assert_eq!(d.image(2), &b[1..]);
    // Red plane first: pixel (c=1, y=0, x=0) is byte 1 + 1024 of the record.
    assert_eq!(d.image(0)[1024], (1024 % 256) as u8);
}

#[test]
fn cifar10_file_of_a_wrong_size_is_an_error_naming_it_and_the_record_size() {
    let dir = TempDir::new("cifar-size");
    let mut bytes = cifar_record(1, 0);
    bytes.extend_from_slice(&[0; 100]);
    let bad = dir.write("data_batch_1.bin", &bytes);
    let err = load_cifar10(std::slice::from_ref(&bad), vec!["x".into(); 10]).unwrap_err();
    assert!(matches!(err, DataError::BadRecordSize { .. }), "{err:?}");
    assert_message(err, &[&p(&bad), "3173 bytes", "multiple", "3073"]);
    let empty = dir.write("empty.bin", &[]);
    assert_message(
        load_cifar10(std::slice::from_ref(&empty), vec!["x".into(); 10]).unwrap_err(),
        &[&p(&empty), "0 bytes"],
    );
    assert!(matches!(
        load_cifar10(&[], vec![]).unwrap_err(),
        DataError::NoBatchFiles
    ));
}

#[test]
fn cifar10_label_out_of_range_names_the_file_and_record() {
    let dir = TempDir::new("cifar-label");
    let bytes = [cifar_record(1, 0), cifar_record(4, 0)].concat();
    let f = dir.write("b.bin", &bytes);
    let err = load_cifar10(std::slice::from_ref(&f), vec!["a".into(), "b".into()]).unwrap_err();
    assert_message(err, &[&p(&f), "record 1", "label 4", "2 classes"]);
}

// ---------------------------------------------------------------------------------------
// Image folders

#[test]
fn image_folder_sorts_classes_and_files_by_name_like_torchvision() {
    let dir = TempDir::new("folder-order");
    // Classes sorted by name: "cat" = 0, "dog" = 1. Files by byte order: "10" < "2",
    // then the sub-folder's files (torchvision walks folders in sorted path order).
    let put = |rel: &str, v: u8| save_gray(&dir.file(rel), 2, 2, vec![v; 4]);
    put("dog/2.png", 20);
    put("dog/10.png", 10);
    put("cat/b.png", 2);
    put("cat/a.PNG", 1);
    put("cat/sub/c.png", 3);
    put("cat/.hidden.png", 99);
    dir.write("cat/notes.txt", b"not an image");
    dir.write("cat/Thumbs.db", b"\0\0");
    std::fs::create_dir_all(dir.path().join(".ipynb_checkpoints")).unwrap();
    let d = load_image_folder(dir.path(), None, None).unwrap();
    assert_eq!(d.classes, vec!["cat", "dog"]);
    assert_eq!(d.labels, vec![0, 0, 0, 1, 1]);
    assert_eq!(first_pixels(&d), vec![1, 2, 3, 10, 20]);
    assert_eq!(d.image_dims(), [1, 2, 2]);
    assert_eq!(d.class_counts(), vec![3, 2]);
}

#[test]
fn image_folder_converts_to_the_requested_channels_as_planes() {
    let dir = TempDir::new("folder-channels");
    // A 1x2 RGB image: pixel 0 = (10, 20, 30), pixel 1 = (40, 50, 60).
    save_rgb(&dir.file("c/x.png"), 2, 1, vec![10, 20, 30, 40, 50, 60]);
    let rgb = load_image_folder(dir.path(), None, None).unwrap();
    assert_eq!(rgb.image_dims(), [3, 1, 2]);
    assert_eq!(rgb.pixels, vec![10, 40, 20, 50, 30, 60]);
    let gray = load_image_folder(dir.path(), None, Some(1)).unwrap();
    let luma = image::open(dir.path().join("c/x.png")).unwrap().to_luma8();
    assert_eq!(gray.image_dims(), [1, 1, 2]);
    assert_eq!(gray.pixels, luma.into_raw());

    let dir = TempDir::new("folder-gray-to-rgb");
    save_gray(&dir.file("c/x.png"), 2, 1, vec![7, 9]);
    let d = load_image_folder(dir.path(), None, None).unwrap();
    assert_eq!(d.channels, 1);
    let d = load_image_folder(dir.path(), None, Some(3)).unwrap();
    assert_eq!(d.pixels, vec![7, 9, 7, 9, 7, 9]);
}

#[test]
fn image_folder_resizes_every_image_to_the_given_size() {
    let dir = TempDir::new("folder-resize");
    save_gray(&dir.file("a/1.png"), 4, 4, vec![100; 16]);
    save_gray(&dir.file("a/2.png"), 5, 6, vec![200; 30]);
    let ramp: Vec<u8> = (0..16).map(|i| i * 10).collect();
    save_gray(&dir.file("b/3.png"), 4, 4, ramp.clone());
    let d = load_image_folder(dir.path(), Some([3, 2]), None).unwrap();
    assert_eq!(d.image_dims(), [1, 3, 2]);
    assert_eq!(d.image(0), &[100; 6]);
    assert_eq!(d.image(1), &[200; 6]);
    let img = image::GrayImage::from_raw(4, 4, ramp).unwrap();
    let expected = image::imageops::resize(&img, 2, 3, image::imageops::FilterType::Triangle);
    assert_eq!(d.image(2), expected.as_raw().as_slice());
}

#[test]
fn image_folder_reads_jpeg_files() {
    let dir = TempDir::new("folder-jpeg");
    save_rgb(&dir.file("a/x.jpg"), 8, 8, vec![128; 192]);
    save_gray(&dir.file("b/y.JPEG"), 8, 8, vec![50; 64]);
    let d = load_image_folder(dir.path(), None, Some(1)).unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.image(0).iter().all(|&v| v.abs_diff(128) <= 2));
    assert!(d.image(1).iter().all(|&v| v.abs_diff(50) <= 2));
}

#[test]
fn image_folder_corrupt_image_is_an_error_naming_the_file() {
    let dir = TempDir::new("folder-corrupt");
    save_gray(&dir.file("a/good.png"), 2, 2, vec![0; 4]);
    let bad = dir.write("a/z-bad.png", b"\x89PNG\r\n\x1a\nthis is not really a png");
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert_message(err, &[&p(&bad), "cannot decode image"]);

    // A format this reader does not decode is reported, not silently skipped.
    let dir = TempDir::new("folder-bmp");
    save_gray(&dir.file("a/good.png"), 2, 2, vec![0; 4]);
    let bmp = dir.write("a/other.bmp", b"BM....");
    assert_message(
        load_image_folder(dir.path(), None, None).unwrap_err(),
        &[&p(&bmp), "unsupported image format .bmp"],
    );
}

#[test]
fn image_folder_image_of_a_different_size_is_an_error_naming_it_and_both_sizes() {
    let dir = TempDir::new("folder-size");
    let first = dir.file("a/1.png");
    save_gray(&first, 3, 2, vec![0; 6]);
    let odd = dir.file("b/2.png");
    save_gray(&odd, 4, 4, vec![0; 16]);
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert!(matches!(err, DataError::WrongImageSize { .. }), "{err:?}");
    assert_message(
        err,
        &[&p(&odd), "wrong size", "4x4", "expected 2x3", &p(&first)],
    );
}

#[test]
fn image_folder_empty_class_folder_is_an_error_naming_it() {
    let dir = TempDir::new("folder-empty-class");
    save_gray(&dir.file("a/1.png"), 2, 2, vec![0; 4]);
    dir.write("b/readme.txt", b"no images here");
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert!(matches!(err, DataError::EmptyClass { .. }), "{err:?}");
    assert_message(err, &[&p(&dir.path().join("b")), "empty class folder"]);
}

#[test]
fn image_folder_without_class_folders_is_an_error_naming_it() {
    let dir = TempDir::new("folder-no-classes");
    save_gray(&dir.file("loose.png"), 2, 2, vec![0; 4]);
    let err = load_image_folder(dir.path(), None, None).unwrap_err();
    assert_message(err, &[&p(dir.path()), "no class folders"]);
    let missing = dir.path().join("nope");
    assert_message(
        load_image_folder(&missing, None, None).unwrap_err(),
        &[&p(&missing), "cannot read"],
    );
    assert_message(
        load_image_folder(dir.path(), None, Some(4)).unwrap_err(),
        &[&p(dir.path()), "not 4"],
    );
}

// ---------------------------------------------------------------------------------------
// open: folder layouts

#[test]
fn open_reads_an_idx_folder_raw_or_gzip() {
    let dir = TempDir::new("open-idx");
    let (img, lab) = small_idx();
    dir.write("train-images-idx3-ubyte.gz", &gz(&img));
    dir.write("train-labels-idx1-ubyte", &lab);
    dir.write("t10k-images-idx3-ubyte", &idx_images(1, 2, 3, &[5; 6]));
    dir.write("t10k-labels-idx1-ubyte.gz", &gz(&idx_labels(&[4])));
    let s = open(dir.path()).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (3, 1));
    assert_eq!(s.test.labels, vec![4]);
    assert_eq!(s.train.image_dims(), [1, 2, 3]);
}

#[test]
fn open_reads_a_cifar10_folder_with_or_without_class_names() {
    let dir = TempDir::new("open-cifar");
    let sub = "cifar-10-batches-bin";
    for i in 1..=5 {
        dir.write(&format!("{sub}/data_batch_{i}.bin"), &cifar_record(i, 0));
    }
    dir.write(&format!("{sub}/test_batch.bin"), &cifar_record(7, 0));
    let s = open(dir.path()).unwrap();
    assert_eq!(s.train.labels, vec![1, 2, 3, 4, 5]);
    assert_eq!(s.test.labels, vec![7]);
    assert_eq!(s.train.classes, CIFAR10_CLASSES.to_vec());
    let names: String = (0..10).map(|i| format!("c{i}\n")).collect::<String>() + "\n\n";
    dir.write(&format!("{sub}/batches.meta.txt"), names.as_bytes());
    let s = open(&dir.path().join(sub)).unwrap();
    assert_eq!(s.test.classes.len(), 10);
    assert_eq!(s.test.classes[9], "c9");
}

#[test]
fn open_reads_train_and_test_image_folders() {
    let dir = TempDir::new("open-folders");
    for split in ["train", "test"] {
        for class in ["b", "a"] {
            save_rgb(
                &dir.file(&format!("{split}/{class}/1.png")),
                3,
                2,
                vec![9; 18],
            );
        }
    }
    save_rgb(&dir.file("train/a/2.png"), 3, 2, vec![9; 18]);
    let s = open(dir.path()).unwrap();
    assert_eq!(s.train.classes, vec!["a", "b"]);
    assert_eq!((s.train.len(), s.test.len()), (3, 2));
    assert_eq!(s.test.image_dims(), [3, 2, 3]);
}

#[test]
fn open_image_folders_with_different_test_classes_is_an_error_naming_both() {
    let dir = TempDir::new("open-folder-classes");
    save_gray(&dir.file("train/a/1.png"), 2, 2, vec![0; 4]);
    save_gray(&dir.file("train/b/1.png"), 2, 2, vec![0; 4]);
    save_gray(&dir.file("test/a/1.png"), 2, 2, vec![0; 4]);
    save_gray(&dir.file("test/c/1.png"), 2, 2, vec![0; 4]);
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::ClassMismatch { .. }), "{err:?}");
    assert_message(
        err,
        &[
            &p(&dir.path().join("test")),
            &p(&dir.path().join("train")),
            "\"c\"",
            "\"b\"",
        ],
    );
}

#[test]
fn open_image_folders_with_test_images_of_another_size_is_an_error_naming_the_file() {
    let dir = TempDir::new("open-folder-size");
    save_gray(&dir.file("train/a/1.png"), 2, 2, vec![0; 4]);
    let odd = dir.file("test/a/1.png");
    save_gray(&odd, 3, 3, vec![0; 9]);
    assert_message(
        open(dir.path()).unwrap_err(),
        &[&p(&odd), "3x3", "expected 2x2", "training images"],
    );
}

#[test]
fn open_a_folder_of_no_known_layout_is_an_error_listing_what_was_looked_for() {
    let dir = TempDir::new("open-unknown");
    dir.write("readme.txt", b"nothing here");
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::UnknownLayout { .. }), "{err:?}");
    assert_message(
        err,
        &[
            &p(dir.path()),
            "no data set found",
            "train-images-idx3-ubyte[.gz]",
            "t10k-labels-idx1-ubyte[.gz]",
            "data_batch_1.bin",
            "test_batch.bin",
            "train/<class>/",
        ],
    );
    let file = dir.path().join("readme.txt");
    assert_message(open(&file).unwrap_err(), &[&p(&file), "this is a file"]);
    let missing = dir.path().join("missing");
    assert_message(open(&missing).unwrap_err(), &[&p(&missing), "cannot read"]);
}

#[test]
fn open_a_partial_layout_is_an_error_naming_the_missing_files() {
    let dir = TempDir::new("open-partial");
    let (img, lab) = small_idx();
    dir.write("train-images-idx3-ubyte.gz", &gz(&img));
    dir.write("train-labels-idx1-ubyte.gz", &gz(&lab));
    let err = open(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::MissingFiles { .. }), "{err:?}");
    assert_message(
        err,
        &[
            &p(dir.path()),
            "incomplete MNIST-family IDX",
            "t10k-images-idx3-ubyte[.gz]",
        ],
    );

    let dir = TempDir::new("open-partial-cifar");
    dir.write("data_batch_1.bin", &cifar_record(0, 0));
    assert_message(
        open(dir.path()).unwrap_err(),
        &[
            &p(dir.path()),
            "CIFAR-10",
            "data_batch_5.bin",
            "test_batch.bin",
        ],
    );

    let dir = TempDir::new("open-partial-folders");
    save_gray(&dir.file("train/a/1.png"), 2, 2, vec![0; 4]);
    assert_message(open(dir.path()).unwrap_err(), &[&p(dir.path()), "test/"]);
}

// ---------------------------------------------------------------------------------------
// The embedded sample and the full set

#[test]
fn embedded_sample_has_2000_train_and_500_test_images_balanced_over_10_classes() {
    let s = embedded_sample();
    assert_eq!((s.train.len(), s.test.len()), (2000, 500));
    assert_eq!(s.train.class_counts(), vec![200; 10]);
    assert_eq!(s.test.class_counts(), vec![50; 10]);
    assert_eq!(s.train.image_dims(), [1, 28, 28]);
    assert_eq!(s.test.image_dims(), [1, 28, 28]);
    assert_eq!(s.train.classes, FASHION_MNIST_CLASSES.to_vec());
    assert!(s.train.source.contains("embedded Fashion-MNIST sample"));
    // Real images: not blank, with the usual mean brightness of Fashion-MNIST.
    let norm = s.train.normalization();
    assert!((norm.mean[0] - 0.286).abs() < 0.03, "{norm:?}");
    assert!((norm.std[0] - 0.353).abs() < 0.03, "{norm:?}");
}

/// The one test that depends on the machine: skipped (with a note) without the full set.
#[test]
fn full_fashion_mnist_loads_60000_and_10000_images_when_installed() {
    let dir = Path::new(FASHION_MNIST_DIR);
    if !dir.join("train-images-idx3-ubyte.gz").is_file()
        && !dir.join("train-images-idx3-ubyte").is_file()
    {
        println!("note: {FASHION_MNIST_DIR} is absent; full Fashion-MNIST test skipped");
        let s = default_data().unwrap();
        assert_eq!(s.train.len(), 2000, "default_data falls back to the sample");
        return;
    }
    let t = Instant::now();
    let s = open(dir).unwrap();
    let load = t.elapsed();
    println!("full Fashion-MNIST (train + test, in parallel) loaded in {load:?}");
    let t = Instant::now();
    let train = load_idx(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    println!(
        "training set alone (60000 images) loaded in {:?}",
        t.elapsed()
    );
    assert_eq!(train.len(), 60_000);
    assert_eq!((s.train.len(), s.test.len()), (60_000, 10_000));
    assert_eq!(s.train.class_counts(), vec![6000; 10]);
    assert_eq!(s.test.class_counts(), vec![1000; 10]);
    assert_eq!(s.train.image_dims(), [1, 28, 28]);
    assert_eq!(s.train.classes, FASHION_MNIST_CLASSES.to_vec());
    let t = Instant::now();
    let norm = s.train.normalization();
    println!(
        "normalization of 60000 images in {:?}: {norm:?}",
        t.elapsed()
    );
    // The published statistics of the Fashion-MNIST training set.
    assert!((norm.mean[0] - 0.2860).abs() < 1e-4, "{norm:?}");
    assert!((norm.std[0] - 0.3530).abs() < 1e-4, "{norm:?}");
    assert_eq!(default_data().unwrap().train.len(), 60_000);
}

// ---------------------------------------------------------------------------------------
// Normalization

fn two_channel_set() -> Dataset {
    // 2 images of 2 channels x 1 x 2.
    Dataset {
        channels: 2,
        height: 1,
        width: 2,
        pixels: vec![0, 255, 10, 20, 51, 102, 30, 40],
        labels: vec![0, 1],
        classes: vec!["a".into(), "b".into()],
        source: "test".into(),
    }
}

#[test]
fn normalization_is_the_per_channel_mean_and_population_std_of_pixels_over_255() {
    let d = two_channel_set();
    let n = d.normalization();
    let stats = |vals: &[f64]| {
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
        (m as f32, v.sqrt() as f32)
    };
    let c0: Vec<f64> = [0.0, 255.0, 51.0, 102.0]
        .iter()
        .map(|v| v / 255.0)
        .collect();
    let c1: Vec<f64> = [10.0, 20.0, 30.0, 40.0].iter().map(|v| v / 255.0).collect();
    let (m0, s0) = stats(&c0);
    let (m1, s1) = stats(&c1);
    assert_eq!(n.mean, vec![m0, m1]);
    assert_eq!(n.std, vec![s0, s1]);
    // A constant channel gets std 1, so apply stays finite.
    let flat = Dataset {
        pixels: vec![7; 8],
        ..two_channel_set()
    };
    assert_eq!(flat.normalization().std, vec![1.0, 1.0]);
}

#[test]
fn normalization_apply_is_pixel_over_255_minus_mean_over_std_per_channel() {
    let norm = Normalization {
        mean: vec![0.5, 0.25],
        std: vec![0.5, 2.0],
    };
    let pixels = [0u8, 255, 51, 102];
    let mut out = [0f32; 4];
    norm.apply(&pixels, &mut out);
    let expected = [
        (0.0 / 255.0 - 0.5) / 0.5,
        (255.0 / 255.0 - 0.5) / 0.5,
        (51.0f32 / 255.0 - 0.25) / 2.0,
        (102.0f32 / 255.0 - 0.25) / 2.0,
    ];
    assert_eq!(out, expected);
    assert_eq!(out[0], -1.0);
    assert_eq!(out[1], 1.0);
    // Round-trips through JSON (checkpoints save it).
    let json = serde_json::to_string(&norm).unwrap();
    assert_eq!(serde_json::from_str::<Normalization>(&json).unwrap(), norm);
}

#[test]
fn subset_takes_images_and_labels_at_the_given_indices() {
    let d = two_channel_set();
    let s = d.subset(&[1, 1, 0]);
    assert_eq!(s.len(), 3);
    assert_eq!(s.labels, vec![1, 1, 0]);
    assert_eq!(s.image(0), d.image(1));
    assert_eq!(s.image(2), d.image(0));
    assert_eq!(s.classes, d.classes);
}

// ---------------------------------------------------------------------------------------
// Batching

fn spec(batch_size: usize, shuffle: bool, augment: Augment) -> BatchSpec {
    BatchSpec {
        batch_size,
        shuffle,
        augment,
        seed: 42,
    }
}

const BOTH: Augment = Augment {
    hflip: true,
    crop_padding: 2,
};

fn sample_train() -> Dataset {
    embedded_sample()
        .train
        .subset(&(0..300).collect::<Vec<_>>())
}

#[test]
fn epoch_plan_with_the_same_seed_and_epoch_gives_the_same_batches() {
    let d = sample_train();
    let norm = d.normalization();
    let s = spec(32, true, BOTH);
    let (a, b) = (
        EpochPlan::new(d.len(), &s, 3),
        EpochPlan::new(d.len(), &s, 3),
    );
    assert_eq!(a, b);
    for i in 0..a.batches() {
        let (x, y) = (a.batch(&d, &norm, i), b.batch(&d, &norm, i));
        assert_eq!(x.images, y.images);
        assert_eq!((x.labels, x.indices), (y.labels, y.indices));
    }
}

#[test]
fn epoch_plan_order_is_a_permutation_that_changes_with_the_epoch_and_seed() {
    let s = spec(10, true, Augment::default());
    let e0 = EpochPlan::new(100, &s, 0);
    let e1 = EpochPlan::new(100, &s, 1);
    assert_ne!(e0.order(), e1.order());
    let mut sorted = e0.order().to_vec();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    let other_seed = EpochPlan::new(100, &BatchSpec { seed: 43, ..s }, 0);
    assert_ne!(e0.order(), other_seed.order());
    // Without shuffle: dataset order, every epoch.
    let plain = EpochPlan::new(100, &spec(10, false, Augment::default()), 5);
    assert_eq!(plain.order(), (0..100).collect::<Vec<_>>().as_slice());
}

#[test]
fn epoch_plan_has_ceil_len_over_batch_size_batches_and_a_smaller_last_one() {
    let d = two_channel_set().subset(&[0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    let norm = d.normalization();
    let plan = EpochPlan::new(10, &spec(4, false, Augment::default()), 0);
    assert_eq!(plan.batches(), 3);
    let sizes: Vec<usize> = (0..3).map(|b| plan.batch(&d, &norm, b).len()).collect();
    assert_eq!(sizes, vec![4, 4, 2]);
    let last = plan.batch(&d, &norm, 2);
    assert_eq!(last.images.dims(), &[2, 2, 1, 2]);
    assert_eq!(last.indices, vec![8, 9]);
    assert_eq!(last.labels, vec![0, 1]);
    let mut expected = vec![0f32; 4];
    norm.apply(d.image(9), &mut expected);
    assert_eq!(&last.images.data()[4..], expected.as_slice());
    assert_eq!(EpochPlan::new(8, &spec(4, true, BOTH), 0).batches(), 2);
    assert_eq!(EpochPlan::new(0, &spec(4, true, BOTH), 0).batches(), 0);
}

#[test]
fn batch_5_built_alone_equals_batch_5_built_after_batches_0_to_4() {
    let d = sample_train();
    let norm = d.normalization();
    let s = spec(16, true, BOTH);
    let plan = EpochPlan::new(d.len(), &s, 7);
    let mut reused = Default::default();
    for b in 0..5 {
        plan.batch_into(&d, &norm, b, &mut reused);
    }
    plan.batch_into(&d, &norm, 5, &mut reused);
    // A fresh plan, as a resumed run would make.
    let alone = EpochPlan::new(d.len(), &s, 7).batch(&d, &norm, 5);
    assert_eq!(alone.images, reused.images);
    assert_eq!(alone.indices, reused.indices);
    assert_eq!(alone.labels, reused.labels);
}

#[test]
fn batch_built_on_one_thread_equals_batch_built_on_several() {
    let d = sample_train();
    let norm = d.normalization();
    let plan = EpochPlan::new(d.len(), &spec(128, true, BOTH), 2);
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| plan.batch(&d, &norm, 1))
    };
    let (one, four) = (on(1), on(4));
    assert_eq!(one.images, four.images);
    assert_eq!(one.indices, four.indices);
}

#[test]
fn hflip_mirrors_every_row_when_the_sample_stream_draws_below_one_half() {
    // One 2-channel 2x3 image.
    let image = [1u8, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16];
    let mirrored = [3u8, 2, 1, 6, 5, 4, 13, 12, 11, 16, 15, 14];
    let aug = Augment {
        hflip: true,
        crop_padding: 0,
    };
    let (mut flips, mut keeps) = (0, 0);
    for k in 0..64u64 {
        let key = [AUGMENT_TAG, 0, k];
        let flip = Rng::stream(9, &key).uniform() < 0.5;
        let mut out = [0u8; 12];
        augment_into(&image, [2, 2, 3], aug, &mut Rng::stream(9, &key), &mut out);
        if flip {
            assert_eq!(out, mirrored, "k = {k}");
            flips += 1;
        } else {
            assert_eq!(out, image, "k = {k}");
            keeps += 1;
        }
    }
    assert!(flips > 15 && keeps > 15, "{flips} flips, {keeps} kept");
}

/// The nine 3x3 windows of the 3x3 image 1..=9 zero-padded by 1, by (top, left).
const WINDOWS: [[[u8; 9]; 3]; 3] = [
    [
        [0, 0, 0, 0, 1, 2, 0, 4, 5],
        [0, 0, 0, 1, 2, 3, 4, 5, 6],
        [0, 0, 0, 2, 3, 0, 5, 6, 0],
    ],
    [
        [0, 1, 2, 0, 4, 5, 0, 7, 8],
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
        [2, 3, 0, 5, 6, 0, 8, 9, 0],
    ],
    [
        [0, 4, 5, 0, 7, 8, 0, 0, 0],
        [4, 5, 6, 7, 8, 9, 0, 0, 0],
        [5, 6, 0, 8, 9, 0, 0, 0, 0],
    ],
];

#[test]
fn crop_takes_the_drawn_window_of_the_zero_padded_image_then_flip_mirrors_it() {
    let image: [u8; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    let mut seen = [[false; 3]; 3];
    for k in 0..200u64 {
        let key = [AUGMENT_TAG, 4, k];
        let mut r = Rng::stream(1, &key);
        let (top, left) = (r.below(3) as usize, r.below(3) as usize);
        let flip = r.uniform() < 0.5;
        let crop_only = Augment {
            hflip: false,
            crop_padding: 1,
        };
        let mut out = [0u8; 9];
        augment_into(
            &image,
            [1, 3, 3],
            crop_only,
            &mut Rng::stream(1, &key),
            &mut out,
        );
        assert_eq!(out, WINDOWS[top][left], "k = {k}");
        seen[top][left] = true;

        let both = Augment {
            hflip: true,
            crop_padding: 1,
        };
        augment_into(&image, [1, 3, 3], both, &mut Rng::stream(1, &key), &mut out);
        let mut expected = WINDOWS[top][left];
        if flip {
            for row in expected.chunks_mut(3) {
                row.reverse();
            }
        }
        assert_eq!(out, expected, "k = {k}");
    }
    assert_eq!(seen, [[true; 3]; 3], "every window is drawn");
}

#[test]
fn crop_padding_is_raw_zero_before_normalization_in_batches() {
    // One 1x3x3 image; the batch of sample k uses the stream (seed, AUGMENT_TAG, epoch, k).
    let d = Dataset {
        channels: 1,
        height: 3,
        width: 3,
        pixels: (1..=9).collect(),
        labels: vec![0],
        classes: vec!["x".into()],
        source: "test".into(),
    };
    let norm = Normalization {
        mean: vec![0.5],
        std: vec![0.25],
    };
    let aug = Augment {
        hflip: false,
        crop_padding: 1,
    };
    for epoch in 0..20 {
        let s = spec(1, true, aug);
        let plan = EpochPlan::new(1, &s, epoch);
        let batch = plan.batch(&d, &norm, 0);
        let mut r = Rng::stream(s.seed, &[AUGMENT_TAG, epoch, 0]);
        let (top, left) = (r.below(3) as usize, r.below(3) as usize);
        let window = WINDOWS[top][left];
        let mut expected = [0f32; 9];
        norm.apply(&window, &mut expected);
        assert_eq!(batch.images.data(), expected.as_slice());
        for (v, w) in batch.images.data().iter().zip(window) {
            if w == 0 {
                assert_eq!(*v, -2.0, "padding is (0 - 0.5) / 0.25");
            }
        }
    }
}

#[test]
fn a_128_image_batch_of_28x28_images_builds_in_well_under_a_millisecond_per_image() {
    let d = embedded_sample().train;
    let norm = d.normalization();
    for (name, aug) in [("plain", Augment::default()), ("hflip + crop 2", BOTH)] {
        let plan = EpochPlan::new(d.len(), &spec(128, true, aug), 0);
        let mut batch = Default::default();
        plan.batch_into(&d, &norm, 0, &mut batch);
        let reps = 50;
        let t = Instant::now();
        for i in 0..reps {
            plan.batch_into(&d, &norm, i % plan.batches(), &mut batch);
        }
        let per_batch = t.elapsed() / reps as u32;
        println!("128-image batch ({name}): {per_batch:?}");
        assert!(per_batch.as_secs_f64() < 0.128 * 0.1, "{per_batch:?}");
    }
}
