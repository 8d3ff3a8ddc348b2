//! `convnet::image`: one bound for every image read (checked from the header), one conversion
//! to planes shared by data sets and model inputs, and planes back to pictures at 8 and 16 bits.

use std::path::Path;

use convnet::data::load_image_folder;
use convnet::image::{
    Color, Fit, Header, ImageError, MAX_PIXELS, MAX_SIDE, decode, from_planes, output_format,
    pixel_values, read_header, read_planes, save,
};

#[path = "common/data_files.rs"]
mod data_files;
use data_files::{TempDir, png_header_only};

fn save_rgba(path: &Path, [w, h]: [u32; 2]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x * 13) as u8, (y * 17) as u8, ((x + y) * 5) as u8, 128])
    })
    .save(path)
    .unwrap();
}

#[test]
fn one_image_reads_alike_as_a_data_set_and_as_a_model_input() {
    let dir = TempDir::new("image-alike");
    let path = dir.file("a/0.png");
    save_rgba(&path, [20, 14]);
    for channels in [1, 3] {
        let set = load_image_folder(dir.path(), Some([8, 8]), Some(channels)).unwrap();
        let planes = read_planes(&path, [channels, 8, 8], Fit::Resize).unwrap();
        assert_eq!(set.pixels, planes, "{channels} channels");
    }
}

#[test]
fn an_image_of_another_size_is_refused_from_its_header_unless_resized() {
    let dir = TempDir::new("image-exact");
    let path = dir.file("rgb.png");
    save_rgba(&path, [20, 14]);
    let err = read_planes(&path, [1, 28, 28], Fit::Exact).unwrap_err();
    assert!(matches!(err, ImageError::WrongSize { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("rgb.png is a 20x14 RGB image")
            && text.contains("28x28 grayscale")
            && text.contains("--resize"),
        "{text}"
    );
    // Its own size: read, RGB to luma without being told.
    assert_eq!(
        read_planes(&path, [1, 14, 20], Fit::Exact).unwrap().len(),
        14 * 20
    );
    let err = read_planes(&path, [2, 14, 20], Fit::Resize).unwrap_err();
    assert!(err.to_string().contains("2-channel"), "{err}");
}

#[test]
fn headers_larger_than_images_are_read_are_refused_before_decoding() {
    let dir = TempDir::new("image-bounds");
    let side = MAX_SIDE + 1;
    // Over the side bound; over the pixel bound within the side bound.
    let pixels_over = (MAX_PIXELS / u64::from(MAX_SIDE) + 1) as u32;
    for (w, h) in [(side, 1), (100_000, 100_000), (MAX_SIDE, pixels_over)] {
        let path = dir.write("big.png", &png_header_only(w, h));
        let err = read_header(&path).unwrap_err();
        assert!(
            matches!(err, ImageError::TooLarge { width, height, .. } if (width, height) == (w, h)),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("a {w}x{h} image is larger than images are read"))
                && text.contains("at most 16384 pixels a side and 64 megapixels"),
            "{text}"
        );
        assert!(matches!(decode(&path), Err(ImageError::TooLarge { .. })));
    }
    // At the bound: the header is accepted; the missing data is a decoding error.
    let path = dir.write("edge.png", &png_header_only(MAX_SIDE, 4096));
    assert_eq!(
        read_header(&path).unwrap(),
        Header {
            width: MAX_SIDE,
            height: 4096,
            color: Color::Rgb,
            bits: 8
        }
    );
    assert!(matches!(decode(&path), Err(ImageError::Decode { .. })));
}

#[test]
fn a_missing_file_is_named_with_the_system_reason() {
    let err = read_header(Path::new("no/such.png")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read image no/such.png: No such file or directory (os error 2)"
    );
}

#[test]
fn planes_come_back_from_a_picture_at_8_and_16_bits() {
    let dir = TempDir::new("image-planes");
    let gray: Vec<u16> = (0..12).map(|v| v * 5000).collect();
    let rgb: Vec<u16> = (0..36).map(|v| v * 7).collect();
    for (pixels, dims, bits) in [
        (&gray, [1, 3, 4], 16),
        (&rgb, [3, 3, 4], 8),
        (&rgb, [3, 3, 4], 16),
    ] {
        let img = from_planes(pixels, dims, bits).unwrap();
        let path = dir.file(&format!("p{}-{bits}.png", dims[0]));
        save(&path, &img).unwrap();
        let back = decode(&path).unwrap();
        let (values, max) = pixel_values(&back).unwrap();
        assert_eq!(values.dims(), [1, dims[0], 3, 4]);
        assert_eq!(max, if bits == 16 { 65535.0 } else { 255.0 });
        let expected: Vec<f32> = pixels.iter().map(|&v| f32::from(v)).collect();
        assert_eq!(
            values.data(),
            expected.as_slice(),
            "{dims:?} at {bits} bits"
        );
    }
    assert!(from_planes(&gray, [2, 2, 3], 8).is_err());
    assert!(from_planes(&gray, [1, 5, 5], 8).is_err());
}

#[test]
fn outputs_are_png_or_jpeg_by_their_extension() {
    let jpeg16 = output_format(Path::new("x.jpg"), 16).unwrap_err();
    assert!(jpeg16.to_string().contains("JPEG holds 8 bits"), "{jpeg16}");
    assert!(output_format(Path::new("x.JPEG"), 8).is_ok());
    assert!(output_format(Path::new("x.png"), 16).is_ok());
    let bmp = output_format(Path::new("x.bmp"), 8).unwrap_err();
    assert!(bmp.to_string().contains("write .png or .jpg"), "{bmp}");
    let none = output_format(Path::new("x"), 8).unwrap_err();
    assert!(
        none.to_string().contains("unknown image extension"),
        "{none}"
    );
}
