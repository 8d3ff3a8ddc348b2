//! Data-set files for the data tests (the library's and the binary's): IDX and gzip bytes,
//! gzip bombs, and a temp folder removed on drop. Included with `#[path]` by each test file
//! that uses it.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("convnet-data-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `rel` under the folder, its parent folders created.
    pub fn file(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.file(rel);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An IDX image file of `n` images of `h` x `w` pixels.
pub fn idx_images(n: u32, h: u32, w: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x803, n, h, w] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

/// An IDX label file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x801, labels.len() as u32] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(labels);
    b
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A gzip file of `head` followed by `zeros_mib` MiB of zeros, made of concatenated gzip
/// members (one member of 16 MiB of zeros repeated), which `gunzip` reads as one stream: a
/// few kilobytes per 16 MiB inflated.
pub fn gzip_bomb(head: &[u8], zeros_mib: usize) -> Vec<u8> {
    let mut out = gz(head);
    let member = gz(&vec![0u8; 16 << 20]);
    for _ in 0..zeros_mib / 16 {
        out.extend_from_slice(&member);
    }
    out
}

/// The first pixel of every image, in order (which image went where).
pub fn first_pixels(d: &convnet::data::Dataset) -> Vec<u8> {
    (0..d.len()).map(|i| d.image(i)[0]).collect()
}

/// Asserts that `err`'s message contains every one of `parts`.
pub fn assert_message(err: impl std::fmt::Display, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

/// A path as messages print it.
pub fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A PNG whose header says `w` x `h` pixels, with a few bytes of image data.
pub fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}
