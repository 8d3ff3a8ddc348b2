//! Every verb that reads an image reads it through one bounded decoder: a file whose header
//! declares a picture larger than images are read is refused at once, naming the size and
//! the bound, by `filter` as by `predict` and the picture verbs.

use std::time::Duration;

mod common;
use common::{convnet, error, run_within, temp_dir};

#[path = "../../convnet/tests/common/data_files.rs"]
mod data_files;
use data_files::png_header_only;

#[test]
fn filter_refuses_an_image_larger_than_images_are_read_from_its_header() {
    let dir = temp_dir("filter-huge");
    let huge = dir.join("huge.png");
    std::fs::write(&huge, png_header_only(100_000, 100_000)).unwrap();
    let out = dir.join("out.png");
    let err = error(run_within(
        convnet()
            .arg("filter")
            .arg(&huge)
            .arg("-o")
            .arg(&out)
            .args(["--kernel", "sobel"]),
        Duration::from_secs(20),
    ));
    assert!(
        err.contains("huge.png: a 100000x100000 image is larger than images are read")
            && err.contains("at most 16384 pixels a side and 64 megapixels")
            && err.contains("scale it down"),
        "{err}"
    );
    assert!(!out.exists());
}
