//! MTCNN's PNet (facenet-pytorch's weights, exported by torch.onnx; per-channel PReLU,
//! ceil-mode max pooling, two outputs) on the astronaut photograph: its face-probability map
//! equals PyTorch's within 1e-4 (relative to its largest value) and peaks on the face.

mod common;

use convnet::core::Tensor;
use convnet::image::{Fit, read_planes};
use convnet::layers::ForwardCtx;
use convnet_onnx::ImportOptions;

/// data/astronaut.png (256x256) with each 2x2 block averaged in f32 as
/// `(((a + b) + c) + d) / 4`, scaled as facenet-pytorch does: `(x - 127.5) / 128`;
/// the input `tools/gen_onnx_nets.py --pnet` gave PyTorch.
fn astronaut_128() -> Tensor {
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/astronaut.png");
    let pixels = read_planes(std::path::Path::new(photo), [3, 256, 256], Fit::Exact).unwrap();
    let at = |c: usize, y: usize, x: usize| f32::from(pixels[(c * 256 + y) * 256 + x]);
    Tensor::from_fn([1, 3, 128, 128], |i| {
        let (c, y, x) = (i / (128 * 128), i / 128 % 128, i % 128);
        let (y, x) = (2 * y, 2 * x);
        let sum = ((at(c, y, x) + at(c, y, x + 1)) + at(c, y + 1, x)) + at(c, y + 1, x + 1);
        (sum / 4.0 - 127.5) / 128.0
    })
    .unwrap()
}

#[test]
fn mtcnn_pnet_face_map_of_the_astronaut_matches_pytorch_and_peaks_on_the_face() {
    let nets = common::fixture("nets");
    let imported =
        convnet_onnx::import_file(&nets.join("mtcnn_pnet.onnx"), &ImportOptions::default())
            .unwrap();
    let mut model = imported.into_model().unwrap();
    let (outputs, _) = model
        .forward_all(&[astronaut_128()], ForwardCtx::eval(false), &[])
        .unwrap();
    let [boxes, probabilities] = <[Tensor; 2]>::try_from(outputs).unwrap();
    assert_eq!(boxes.dims(), [1, 4, 59, 59]);
    assert_eq!(probabilities.dims(), [1, 2, 59, 59]);
    let face = &probabilities.data()[59 * 59..];
    let want = convnet::npy::read(&nets.join("mtcnn_pnet_astronaut.npy")).unwrap();
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = face
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "face map: max difference {diff} over max {scale}"
    );
    // The peak cell, as the centre of its 12x12 window in the 256x256 photo: on the face
    // (which spans about x 85..145, y 25..95).
    let peak = (0..face.len())
        .max_by(|&a, &b| face[a].total_cmp(&face[b]))
        .unwrap();
    let (x, y) = (4 * (peak % 59) + 12, 4 * (peak / 59) + 12);
    assert!(
        (85..145).contains(&x) && (25..95).contains(&y),
        "the peak {} is at ({x}, {y}), off the face",
        face[peak]
    );
}
