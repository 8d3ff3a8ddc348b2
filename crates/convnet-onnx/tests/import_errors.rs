//! What the converter refuses, and how it says so: the file, the node and the problem, once;
//! and that a graph it takes (grouped convolution with asymmetric padding, ceil-mode pooling,
//! Gemm with transB, Softmax) becomes the layers ONNX means.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{node_mut, proto, write_model};
use convnet::core::Padding;
use convnet::layers::Conv2dConfig;
use convnet_onnx::proto::onnx::{
    AttributeProto, ModelProto, NodeProto, TensorProto, attribute_proto::AttributeType,
    tensor_proto::DataType,
};
use convnet_onnx::{ImportOptions, Imported, OnnxModel, import};

/// helper_conv.onnx: conv (pads 1) -> relu -> pool (3x3, stride 2, ceil) -> grouped (group
/// 2, pads [0, 1, 1, 0]) -> gap -> flatten -> fc (Gemm, transB) -> softmax; input 3x8x8.
fn conv() -> ModelProto {
    proto("helper_conv.onnx")
}

fn ints_attribute(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int64_initializer(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![values.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn import_model(name: &str, m: &ModelProto) -> (PathBuf, Result<Imported, String>) {
    let path = write_model(name, m);
    let model = OnnxModel::load(&path).unwrap();
    let result = import(model, &ImportOptions::default()).map_err(|e| e.to_string());
    (path, result)
}

fn import_error(name: &str, m: &ModelProto) -> (PathBuf, String) {
    let (path, result) = import_model(name, m);
    (path, result.expect_err("the graph should be refused"))
}

#[test]
fn grouped_conv_with_asymmetric_pads_becomes_one_conv2d_padded_as_onnx_says() {
    let (_, imported) = import_model("helper_conv", &conv());
    let imported = imported.unwrap();
    let kinds: Vec<&str> = imported
        .spec
        .layers
        .iter()
        .map(|l| l.kind.type_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "conv2d",
            "relu",
            "max_pool2d",
            "conv2d",
            "global_avg_pool2d",
            "flatten",
            "linear",
            "softmax"
        ]
    );
    let grouped = &imported.spec.layers[3];
    assert_eq!(grouped.name, "grouped");
    let config = grouped.kind.downcast_ref::<Conv2dConfig>().unwrap();
    assert_eq!(config.groups, 2);
    assert!(!config.bias);
    // ONNX pads are [top, left, bottom, right].
    assert_eq!(
        config.padding,
        Padding::Explicit {
            top: 0,
            bottom: 1,
            left: 1,
            right: 0
        }
    );
    let model = imported.into_model().unwrap();
    assert_eq!(model.output_shape(), [5]);
}

#[test]
fn unsupported_operator_is_named_with_its_node_and_the_supported_list() {
    let mut m = conv();
    node_mut(&mut m, "relu").op_type = Some("Selu".into());
    let (path, err) = import_error("unsupported_op", &m);
    let head = format!(
        "{}: node \"relu\" (Selu): operator Selu is not supported; supported: Add, ",
        path.display()
    );
    assert!(err.starts_with(&head), "{err}");
    assert!(err.contains("Conv, ") && err.contains("Softmax"), "{err}");
}

#[test]
fn operator_of_another_domain_is_named_with_its_domain() {
    let mut m = conv();
    node_mut(&mut m, "relu").domain = Some("com.microsoft".into());
    let (_, err) = import_error("other_domain", &m);
    assert!(
        err.contains("operator com.microsoft.Relu is not supported"),
        "{err}"
    );
}

#[test]
fn pool_padded_unevenly_is_refused_naming_each_side() {
    let mut m = conv();
    node_mut(&mut m, "pool")
        .attribute
        .push(ints_attribute("pads", &[0, 0, 1, 1]));
    let (path, err) = import_error("pool_pads", &m);
    assert_eq!(
        err,
        format!(
            "{}: node \"pool\" (MaxPool): pads top 0, bottom 1, left 0, right 1; convnet's \
             pools pad both sides of an axis alike",
            path.display()
        )
    );
}

#[test]
fn reshape_other_than_a_flatten_is_refused_with_both_shapes() {
    let mut m = conv();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(int64_initializer("target", &[0, 2, 2]));
    let flatten = node_mut(&mut m, "flatten");
    flatten.op_type = Some("Reshape".into());
    flatten.attribute.clear();
    flatten.input.push("target".into());
    let (_, err) = import_error("reshape", &m);
    assert!(
        err.contains("node \"flatten\" (Reshape): reshapes [N, 4, 1, 1] to [1, 2, 2] (batch 1); convnet reshapes only to [N, -1]"),
        "{err}"
    );
}

#[test]
fn conv_weight_computed_by_the_model_is_refused() {
    let mut m = conv();
    node_mut(&mut m, "grouped").input[1] = "relu_out".into();
    let (_, err) = import_error("computed_weight", &m);
    assert!(
        err.contains(
            "node \"grouped\" (Conv): input 1 (\"relu_out\") is computed by the model; convnet \
             needs it constant"
        ),
        "{err}"
    );
}

/// Folding is bounded before it allocates: `Expand` of one value to 2^40 elements is refused
/// at once.
#[test]
fn constant_folding_to_a_huge_tensor_is_refused_in_bounded_memory() {
    let mut m = conv();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(int64_initializer("one", &[1]));
    g.initializer
        .push(int64_initializer("huge", &[1 << 20, 1 << 20]));
    g.node.insert(
        0,
        NodeProto {
            name: Some("expand".into()),
            op_type: Some("Expand".into()),
            input: vec!["one".into(), "huge".into()],
            output: vec!["expanded".into()],
            ..Default::default()
        },
    );
    let started = Instant::now();
    let (_, err) = import_error("huge_fold", &m);
    assert!(started.elapsed().as_secs() < 2);
    assert!(
        err.contains("node \"expand\" (Expand): would compute a constant of dims [1048576, 1048576] at import, over the 67108864 elements import computes"),
        "{err}"
    );
}

#[test]
fn graph_output_that_is_a_constant_is_refused() {
    let mut m = conv();
    let g = m.graph.as_mut().unwrap();
    g.output[0].name = Some("fc.bias".into());
    g.output[0].r#type = None;
    let (path, err) = import_error("constant_output", &m);
    assert_eq!(
        err,
        format!(
            "{}: graph output \"fc.bias\" is a constant or the input itself; convnet models \
             output what their layers compute",
            path.display()
        )
    );
}

#[test]
fn input_size_beyond_a_tensor_is_refused() {
    let path = write_model("huge_input", &conv());
    let options = ImportOptions {
        input_shape: Some([1 << 20, 1 << 20, 1 << 20]),
    };
    let err = import(OnnxModel::load(&path).unwrap(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input \"input\" of 1048576x1048576x1048576 (C x H x W) values per image"),
        "{err}"
    );
}

#[test]
fn resize_of_a_mode_pytorch_does_not_have_is_refused_naming_its_modes() {
    let mut m = proto("nets/helper_upsampling.onnx");
    let nearest = node_mut(&mut m, "nearest");
    nearest.attribute.retain(|a| a.name() != "mode");
    nearest.attribute.push(AttributeProto {
        name: Some("mode".into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(b"cubic".to_vec()),
        ..Default::default()
    });
    let (_, err) = import_error("resize_cubic", &m);
    assert!(
        err.contains(
            "node \"nearest\" (Resize): mode \"cubic\" with coordinate_transformation_mode \
             \"asymmetric\" and nearest_mode \"floor\": convnet resizes as PyTorch does"
        ),
        "{err}"
    );
}
