//! The real MobileNetV2 (`models/mobilenet_v2.onnx`, weights from tools/fetch_pretrained.py)
//! opened with no options reads photographs as torchvision's ImageNet pipeline does
//! (`Resize(256)`, `CenterCrop(224)`, `Normalize`): its class probabilities on
//! `data/chelsea.png` and `data/coffee.png` against PyTorch's on that whole pipeline
//! (`tools/gen_preprocess_fixtures.py`), and closer to them than the picture squashed to
//! 224x224 (what opening an ONNX file did before the preprocessing was stored). Skipped,
//! saying so, when the weights have not been fetched.

use std::path::{Path, PathBuf};

use convnet::core::{Tensor, softmax};
use convnet::layers::ForwardCtx;
use convnet::preprocess::{Preprocessing, read_image};
use convnet_onnx::ImportOptions;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The largest difference between two probability vectors.
fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn pretrained_mobilenet_v2_reads_photos_as_torchvision_does() {
    let model = repo("models/mobilenet_v2.onnx");
    if !model.with_extension("onnx.data").exists() {
        eprintln!(
            "skipped: {}.data is absent (python3 tools/fetch_pretrained.py fetches it)",
            model.display()
        );
        return;
    }
    let mut ck = convnet_onnx::open_checkpoint(&model, &ImportOptions::default()).unwrap();
    let dims = ck.model.input_shape();
    let stored = ck.meta.preprocessing(dims);
    assert_eq!(stored, Preprocessing::resize_and_crop(256, 224));
    let torch = convnet::npy::read(&repo(
        "crates/convnet/tests/fixtures/preprocess/mobilenet_v2_torchvision.npy",
    ))
    .unwrap();
    let mut probabilities = |path: &Path, p: &Preprocessing| -> Tensor {
        let x = read_image(path, dims, p, &ck.meta.normalization).unwrap();
        softmax(&ck.model.forward(&x.input, ForwardCtx::eval(false)).unwrap()).unwrap()
    };
    for (i, (photo, class)) in [("chelsea", 285), ("coffee", 967)].into_iter().enumerate() {
        let path = repo(&format!("data/{photo}.png"));
        let want = &torch.data()[i * 1000..(i + 1) * 1000];
        let now = probabilities(&path, &stored);
        let before = probabilities(&path, &Preprocessing::squash([224, 224]));
        let top = (0..1000)
            .max_by(|&a, &b| now.data()[a].total_cmp(&now.data()[b]))
            .unwrap();
        assert_eq!(top, class, "{photo}");
        let (d_now, d_before) = (
            max_difference(now.data(), want),
            max_difference(before.data(), want),
        );
        eprintln!(
            "{photo}: class {class} {:.4} (PyTorch {:.4}, squashed {:.4}); largest difference \
             from PyTorch's probabilities {d_now:.4} (squashed {d_before:.4})",
            now.data()[class],
            want[class],
            before.data()[class]
        );
        // Measured: chelsea 0.0065 (squashed 0.0420), coffee 0.0004 (squashed 0.0050); the
        // rest is the resize filters' arithmetic (bytes within 1 of PIL's).
        assert!(d_now < 0.01, "{photo}: {d_now}");
        assert!(d_now < d_before / 2.0, "{photo}: {d_now} vs {d_before}");
    }
}
