//! Real CNNs imported and run, against ONNX Runtime: torchvision's ResNet-18, MobileNetV2,
//! SqueezeNet 1.1 and VGG-11 from both torch.onnx exporters. The graphs are committed
//! without their large weights; the weights are regenerated from the seeds
//! `tools/gen_onnx_nets.py` used (the same generator, bit for bit), so the logits must match
//! ONNX Runtime's within 1e-4 relative (the largest difference over the largest logit).

mod common;

use common::nets::check_net;

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
