//! `convnet filter` equals OpenCV's `cv2.filter2D` (float output) on a crop of the committed
//! photograph, for 3x3, 5x5 and 7x7 kernels in every border mode, and `--mode convolve` equals
//! `scipy.ndimage.convolve` (tools/gen_filter_fixtures.py writes the fixture).

mod common;
use common::reference::{max_abs_diff, repo};

use convnet::checkpoint::read_safetensors;
use convnet::filter::{Kernel, apply_kernel};
use convnet_core::{Conv2dParams, ConvMode, Padding, PaddingMode, Tensor};

const TOLERANCE: f32 = 1e-4;

fn filter(input: &Tensor, kernel: &Tensor, mode: PaddingMode, conv: ConvMode) -> Tensor {
    let k = kernel.dims()[0];
    let kernel = Kernel {
        name: format!("random {k}x{k}"),
        channels: 1,
        height: k,
        width: k,
        values: kernel.data().to_vec(),
    };
    let params = Conv2dParams::builder()
        .with_padding(Padding::Same)
        .with_padding_mode(mode)
        .with_mode(conv)
        .build()
        .unwrap();
    let [c, h, w] = [input.dims()[0], input.dims()[1], input.dims()[2]];
    let image = Tensor::new([1, c, h, w], input.data().to_vec()).unwrap();
    apply_kernel(&image, &kernel, &params).unwrap()
}

#[test]
fn the_fixture_input_is_a_crop_of_the_committed_photograph() {
    let fixture = read_safetensors(&repo(
        "crates/convnet/tests/fixtures/filter_opencv.safetensors",
    ))
    .unwrap();
    let input = &fixture["input"].0;
    let photo = image::open(repo("data/astronaut.png")).unwrap().to_rgb8();
    assert_eq!(photo.dimensions(), (256, 256));
    let (top, left, n) = (40, 100, 48);
    assert_eq!(input.dims(), [3, n, n]);
    for c in 0..3 {
        for y in 0..n {
            for x in 0..n {
                let pixel = photo.get_pixel((left + x) as u32, (top + y) as u32)[c];
                assert_eq!(input.data()[(c * n + y) * n + x], f32::from(pixel) / 255.0);
            }
        }
    }
}

#[test]
fn correlation_equals_cv2_filter2d_in_every_border_mode() {
    let fixture = read_safetensors(&repo(
        "crates/convnet/tests/fixtures/filter_opencv.safetensors",
    ))
    .unwrap();
    let input = &fixture["input"].0;
    let mut checked = 0;
    for k in [3, 5, 7] {
        let kernel = &fixture[&format!("kernel/{k}")].0;
        for (name, mode) in [
            ("zeros", PaddingMode::Zeros),
            ("reflect", PaddingMode::Reflect),
            ("replicate", PaddingMode::Replicate),
            ("circular", PaddingMode::Circular),
        ] {
            let want = &fixture[&format!("correlate/{k}/{name}")].0;
            let got = filter(input, kernel, mode, ConvMode::CrossCorrelation);
            assert_eq!(&got.dims()[1..], want.dims(), "{k}x{k} {name}");
            let err = max_abs_diff(got.data(), want.data());
            assert!(err <= TOLERANCE, "{k}x{k} {name}: max abs error {err}");
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

#[test]
fn convolution_equals_scipy_ndimage_convolve() {
    let fixture = read_safetensors(&repo(
        "crates/convnet/tests/fixtures/filter_opencv.safetensors",
    ))
    .unwrap();
    let input = &fixture["input"].0;
    for k in [3, 5, 7] {
        let kernel = &fixture[&format!("kernel/{k}")].0;
        let want = &fixture[&format!("convolve/{k}/zeros")].0;
        let got = filter(input, kernel, PaddingMode::Zeros, ConvMode::Convolution);
        let err = max_abs_diff(got.data(), want.data());
        assert!(err <= TOLERANCE, "{k}x{k} convolve: max abs error {err}");
        // The random kernels are not symmetric, so flipping matters: correlation differs.
        let correlated = filter(
            input,
            kernel,
            PaddingMode::Zeros,
            ConvMode::CrossCorrelation,
        );
        assert!(max_abs_diff(correlated.data(), want.data()) > 100.0 * TOLERANCE);
    }
}
