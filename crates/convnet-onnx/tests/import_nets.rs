//! Real CNNs imported and run, against ONNX Runtime: torchvision's ResNet-18, MobileNetV2,
//! SqueezeNet 1.1 and VGG-11 from both torch.onnx exporters, and PaddleOCR's text-direction
//! classifier (a third-party graph). The graphs are committed
//! without their large weights; the weights are regenerated from the seeds
//! `tools/gen_onnx_nets.py` used (the same generator, bit for bit), so the logits must match
//! ONNX Runtime's within 1e-4 relative (the largest difference over the largest logit).

mod common;

use common::nets::{check, check_net, inputs, nets};
use convnet_onnx::ImportOptions;

#[test]
fn resnet18_legacy_export_matches_onnx_runtime() {
    check_net("resnet18_legacy");
}

#[test]
fn resnet18_dynamo_export_matches_onnx_runtime() {
    check_net("resnet18_dynamo");
}

/// One test for both exports, so that their 530 MB of weights are never held at once.
#[test]
fn vgg11_legacy_and_dynamo_exports_match_onnx_runtime() {
    check_net("vgg11_legacy");
    check_net("vgg11_dynamo");
}

#[test]
fn mobilenet_v2_legacy_export_matches_onnx_runtime() {
    check_net("mobilenet_v2_legacy");
}

#[test]
fn mobilenet_v2_dynamo_export_matches_onnx_runtime() {
    check_net("mobilenet_v2_dynamo");
}

#[test]
fn squeezenet1_1_legacy_export_matches_onnx_runtime() {
    check_net("squeezenet1_1_legacy");
}

#[test]
fn squeezenet1_1_dynamo_export_matches_onnx_runtime() {
    check_net("squeezenet1_1_dynamo");
}

/// Paddle2ONNX's graph: hard swish and squeeze-excitation written as Add/Clip/Mul/Div with
/// broadcasting, biases as Reshape + Add, a flatten from Shape/Slice/Concat, Softmax; its
/// input size is free, given here (48x192, as PaddleOCR feeds it).
#[test]
fn rapidocr_classifier_matches_onnx_runtime() {
    let model = common::fixture("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let x = inputs(&[2, 3, 48, 192], 7, [0.0, 1.0]);
    let options = ImportOptions {
        input_shape: Some([3, 48, 192]),
    };
    check(&model, &x, &nets().join("rapidocr_cls_ort.npy"), &options);
}

/// onnx.helper's graph of the upsampling operators: Pad (reflect, constant, edge),
/// ConvTranspose (stride 2, uneven pads, output_padding, groups, dilation), Resize (nearest
/// asymmetric floor by scales, linear half_pixel to sizes, linear align_corners by scales).
#[test]
fn pad_conv_transpose_and_resize_match_onnx_runtime() {
    let model = nets().join("helper_upsampling.onnx");
    let x = inputs(&[2, 4, 7, 9], 7, [-1.0, 1.0]);
    let expected = nets().join("helper_upsampling_ort.npy");
    check(&model, &x, &expected, &ImportOptions::default());
}
