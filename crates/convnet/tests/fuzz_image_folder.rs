//! Fuzz target: image folders. Seeds are small PNG and JPEG files made from the images in
//! `data/` (a Fashion-MNIST sample image, crops of the astronaut photograph); each mutated
//! file is read in one of three folder layouts: flat, nested with symbolic-link loops, and
//! first (fixing the size) with resizing. See `common/fuzz.rs` for the knobs.

mod common;

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use common::fuzz;
use convnet::data::load_image_folder;
use image::{DynamicImage, ImageFormat};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn seeds() -> Vec<Vec<u8>> {
    let mut idx = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(data_dir().join("fashion-mnist-sample/t10k-images-idx3-ubyte.gz"))
            .unwrap(),
    )
    .read_to_end(&mut idx)
    .unwrap();
    let fashion = DynamicImage::ImageLuma8(
        image::GrayImage::from_raw(28, 28, idx[16..16 + 784].to_vec()).unwrap(),
    );
    let astronaut = image::open(data_dir().join("astronaut.png")).unwrap();
    let face = astronaut.crop_imm(200, 90, 16, 16);
    let with_alpha = DynamicImage::ImageRgba8(face.to_rgba8());
    vec![
        encode(&fashion, ImageFormat::Png),
        encode(&face, ImageFormat::Png),
        encode(&face.to_rgb8().into(), ImageFormat::Jpeg),
        encode(&fashion, ImageFormat::Jpeg),
        encode(&with_alpha, ImageFormat::Png),
    ]
}

/// Three layouts, each with a slot for the mutated file.
struct Layouts {
    root: PathBuf,
    /// (folder to load, where the input goes, resize)
    cases: Vec<(PathBuf, PathBuf, Option<[usize; 2]>)>,
}

impl Layouts {
    fn new(good: &[u8]) -> Layouts {
        let root = std::env::temp_dir().join(format!("convnet-fuzz-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let put = |rel: &str, bytes: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let link = |target: &str, rel: &str| {
            #[cfg(unix)]
            std::os::unix::fs::symlink(target, root.join(rel)).unwrap();
            #[cfg(not(unix))]
            let _ = (target, rel);
        };
        // Flat: the input is the second image of class a.
        put("flat/a/0.png", good);
        put("flat/b/0.png", good);
        // Nested, with a link to the class folder itself and one back up from a sub-folder.
        put("nested/a/0.png", good);
        put("nested/a/n1/n2/x.jpg", good);
        link(".", "nested/a/loop");
        link("..", "nested/a/n1/up");
        put("nested/b/n/0.png", good);
        // First: the input fixes the channels; every image resized.
        put("first/a/1.png", good);
        put("first/b/0.png", good);
        let cases = vec![
            (root.join("flat"), root.join("flat/a/1.png"), None),
            (root.join("nested"), root.join("nested/a/n1/n2/y.png"), None),
            (root.join("first"), root.join("first/a/0.png"), Some([8, 8])),
        ];
        Layouts { root, cases }
    }
}

impl Drop for Layouts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn image_folder_loader_never_panics_on_mutated_images_and_layouts() {
    let seeds = seeds();
    let layouts = Layouts::new(&seeds[0]);
    let stats = fuzz::run("image_folder", 2_500, &seeds, |bytes| {
        let (dir, input, resize) = &layouts.cases[bytes.len() % layouts.cases.len()];
        fuzz::write_input(input, bytes);
        load_image_folder(dir, *resize, None).is_ok()
    });
    assert!(
        stats.accepted >= 5,
        "the seeds are valid images, yet only {} inputs were accepted",
        stats.accepted
    );
}
