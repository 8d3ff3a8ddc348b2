//! Every bad model gets a named error: the file, the node when there is one, and the
//! problem. Each bad file is a real fixture with one thing broken.

mod common;

use std::path::{Path, PathBuf};

use common::{fixture, node_mut, proto, temp_dir, write_model};
use convnet_onnx::proto::onnx::{
    AttributeProto, ModelProto, SparseTensorProto, StringStringEntryProto, TensorProto,
    ValueInfoProto, tensor_proto::DataType as P,
};
use convnet_onnx::{ErrorKind, Limits, OnnxModel};
use prost::Message;

/// The error message of loading `model` written as `<name>/model.onnx`, and that path.
fn load_error(name: &str, model: &ModelProto) -> (PathBuf, String) {
    let path = write_model(name, model);
    let err = OnnxModel::load(&path).expect_err("the model should be refused");
    (path.clone(), err.to_string())
}

fn conv() -> ModelProto {
    proto("helper_conv.onnx")
}

fn initializer_mut<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut TensorProto {
    let g = m.graph.as_mut().unwrap();
    g.initializer.iter_mut().find(|t| t.name() == name).unwrap()
}

#[test]
fn missing_initializer_is_named_with_its_node_and_input() {
    let mut m = conv();
    m.graph
        .as_mut()
        .unwrap()
        .initializer
        .retain(|t| t.name() != "conv.weight");
    let (path, err) = load_error("missing_initializer", &m);
    assert_eq!(
        err,
        format!(
            "{}: node \"conv\" (Conv): input \"conv.weight\" is produced by no node, initializer \
             or graph input (a missing initializer?)",
            path.display()
        )
    );
}

#[test]
fn cycle_is_named_with_the_nodes_on_it_in_data_flow_order() {
    let mut m = conv();
    node_mut(&mut m, "conv").input[0] = "pool_out".into();
    let (path, err) = load_error("cycle", &m);
    assert_eq!(
        err,
        format!(
            "{}: node \"conv\" (Conv): is on a cycle (\"conv\" -> \"relu\" -> \"pool\" -> \
             \"conv\"); an ONNX graph must be acyclic",
            path.display()
        )
    );
}

#[test]
fn node_that_feeds_itself_is_a_cycle() {
    let mut m = conv();
    node_mut(&mut m, "relu").input[0] = "relu_out".into();
    let (_, err) = load_error("self_loop", &m);
    assert!(
        err.ends_with("node \"relu\" (Relu): is on a cycle (\"relu\" -> \"relu\"); an ONNX graph must be acyclic"),
        "{err}"
    );
}

#[test]
fn long_cycle_is_named_in_a_bounded_message() {
    // A ring of 1000 Relu nodes.
    let mut m = conv();
    let g = m.graph.as_mut().unwrap();
    g.node = (0..1000)
        .map(|i| convnet_onnx::proto::onnx::NodeProto {
            name: Some(format!("r{i}")),
            op_type: Some("Relu".into()),
            input: vec![format!("v{}", (i + 999) % 1000)],
            output: vec![format!("v{i}")],
            ..Default::default()
        })
        .collect();
    g.output[0].name = Some("v0".into());
    let (_, err) = load_error("long_cycle", &m);
    assert!(
        err.contains(
            "(\"r0\" -> \"r1\" -> \"r2\" -> (995 more) -> \"r998\" -> \"r999\" -> \"r0\")"
        ),
        "{err}"
    );
    assert!(err.len() < 300, "{err}");
}

#[test]
fn nodes_out_of_order_but_acyclic_are_sorted_topologically() {
    let mut m = conv();
    m.graph.as_mut().unwrap().node.reverse();
    let path = write_model("unsorted", &m);
    let model = OnnxModel::load(&path).unwrap();
    let names: Vec<&str> = model.graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv", "relu", "pool", "grouped", "gap", "flatten", "fc", "softmax"
        ]
    );
    // Each node keeps its position in the file, for errors.
    assert_eq!(model.graph.nodes[0].index, 7);
}

#[test]
fn initializer_whose_data_does_not_match_its_dims_is_refused() {
    let mut m = conv();
    initializer_mut(&mut m, "conv.weight").dims = vec![4, 3, 3, 4];
    let (path, err) = load_error("raw_length", &m);
    assert_eq!(
        err,
        format!(
            "{}: tensor \"conv.weight\": dims [4, 3, 3, 4] of float32 need 576 bytes, but \
             raw_data holds 432",
            path.display()
        )
    );

    let mut m = proto("helper_types.onnx");
    initializer_mut(&mut m, "f32_typed").dims = vec![2, 3];
    let (_, err) = load_error("typed_length", &m);
    assert!(
        err.ends_with(
            "tensor \"f32_typed\": dims [2, 3] of float32 need 6 values, but float_data holds 4"
        ),
        "{err}"
    );
}

#[test]
fn declared_shape_or_type_that_disagrees_with_its_initializer_is_refused() {
    let declare = |dims: &[i64], elem_type: P| {
        let mut m = conv();
        m.graph
            .as_mut()
            .unwrap()
            .input
            .push(tensor_value_info("conv.weight", elem_type, dims));
        m
    };
    let (path, err) = load_error("declared_shape", &declare(&[4, 3, 5, 5], P::Float));
    assert_eq!(
        err,
        format!(
            "{}: value \"conv.weight\" is declared with shape [4, 3, 5, 5] but its initializer \
             has dims [4, 3, 3, 3]",
            path.display()
        )
    );
    let (_, err) = load_error("declared_rank", &declare(&[4, 27], P::Float));
    assert!(err.contains("declared with shape [4, 27]"), "{err}");
    let (_, err) = load_error("declared_type", &declare(&[4, 3, 3, 3], P::Int64));
    assert!(
        err.ends_with("value \"conv.weight\" is declared as INT64 but its initializer is float32"),
        "{err}"
    );
    // The right declaration is accepted, and the weight is not a graph input then.
    let path = write_model("declared_ok", &declare(&[4, 3, 3, 3], P::Float));
    let model = OnnxModel::load(&path).unwrap();
    assert_eq!(model.graph.inputs.len(), 1);
}

/// A `ValueInfoProto` declaring a tensor of `elem_type` and fixed `dims`.
fn tensor_value_info(name: &str, elem_type: P, dims: &[i64]) -> ValueInfoProto {
    use convnet_onnx::proto::onnx::tensor_shape_proto::{Dimension, dimension};
    use convnet_onnx::proto::onnx::{TensorShapeProto, TypeProto, type_proto};
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: Some(elem_type as i32),
        shape: Some(TensorShapeProto { dim }),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn negative_and_huge_dims_are_refused_before_allocating() {
    let mut m = conv();
    initializer_mut(&mut m, "conv.bias").dims = vec![-4];
    let (_, err) = load_error("negative_dim", &m);
    assert!(
        err.ends_with("tensor \"conv.bias\": has a negative dimension in [-4]"),
        "{err}"
    );
    let mut m = conv();
    initializer_mut(&mut m, "conv.bias").dims = vec![1 << 40, 1 << 40];
    let (_, err) = load_error("huge_dims", &m);
    assert!(
        err.ends_with(
            "tensor \"conv.bias\": dims [1099511627776, 1099511627776] hold more than \
             1073741824 elements (Limits::max_tensor_bytes)"
        ),
        "{err}"
    );
    let mut m = conv();
    initializer_mut(&mut m, "conv.bias").dims = vec![1; 40];
    let (_, err) = load_error("deep_dims", &m);
    assert!(
        err.ends_with("has 40 dimensions, over the limit of 32"),
        "{err}"
    );
}

#[test]
fn every_truncation_of_a_model_file_is_refused() {
    let bytes = std::fs::read(fixture("helper_conv.onnx")).unwrap();
    let path = temp_dir("truncated").join("model.onnx");
    for len in 0..bytes.len() {
        assert!(
            OnnxModel::parse(&bytes[..len], &path, &Limits::default()).is_err(),
            "{len} bytes accepted"
        );
    }
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = OnnxModel::load(&path).unwrap_err().to_string();
    let prefix = format!("{}: is not a valid ONNX file: a field of ", path.display());
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.ends_with("(truncated, or not an ONNX model?)"), "{err}");
    std::fs::write(&path, b"").unwrap();
    let err = OnnxModel::load(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("{}: holds no graph (is it an ONNX model?)", path.display())
    );
}

/// helper_external.onnx copied into a fresh folder, with its data file as `data` makes it.
fn external_copy(name: &str, data: impl FnOnce(&Path)) -> PathBuf {
    let dir = temp_dir(name);
    let model = dir.join("helper_external.onnx");
    std::fs::copy(fixture("helper_external.onnx"), &model).unwrap();
    data(&dir.join("helper_external.onnx.data"));
    model
}

#[test]
fn missing_external_data_file_is_named() {
    let model = external_copy("external_missing", |_| {});
    let err = OnnxModel::load(&model).unwrap_err().to_string();
    let data = model.with_file_name("helper_external.onnx.data");
    assert_eq!(
        err,
        format!(
            "{}: tensor \"conv.weight\": its external data file {} cannot be opened: No such \
             file or directory (os error 2); keep it beside the model",
            model.display(),
            data.display()
        )
    );
}

#[test]
fn external_data_file_too_short_is_named_with_the_bytes_needed() {
    let model = external_copy("external_short", |data| {
        let bytes = std::fs::read(fixture("helper_external.onnx.data")).unwrap();
        std::fs::write(data, &bytes[..500]).unwrap();
    });
    let err = OnnxModel::load(&model).unwrap_err().to_string();
    let data = model.with_file_name("helper_external.onnx.data");
    assert_eq!(
        err,
        format!(
            "{}: tensor \"grouped.weight\": its external data file {} is too short: bytes \
             448..736 are needed but it has 500 (truncated?)",
            model.display(),
            data.display()
        )
    );
}

fn set_external_key(m: &mut ModelProto, tensor: &str, key: &str, value: &str) {
    let t = initializer_mut(m, tensor);
    t.external_data.retain(|e| e.key() != key);
    t.external_data.push(StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value.into()),
    });
}

/// helper_external.onnx with one key changed, written beside a copy of its data file.
fn external_error(name: &str, key: &str, value: &str) -> String {
    let model = external_copy(name, |data| {
        std::fs::copy(fixture("helper_external.onnx.data"), data).unwrap();
    });
    let mut m = proto("helper_external.onnx");
    set_external_key(&mut m, "conv.weight", key, value);
    std::fs::write(&model, m.encode_to_vec()).unwrap();
    OnnxModel::load(&model).unwrap_err().to_string()
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let err = external_error("external_absolute", "location", "/etc/hostname");
    assert!(
        err.ends_with(
            "tensor \"conv.weight\": its external data location \"/etc/hostname\" is refused: \
             it is absolute; external data files must lie in the model's folder"
        ),
        "{err}"
    );
    let err = external_error(
        "external_parent",
        "location",
        "../external_absolute/helper_external.onnx.data",
    );
    assert!(
        err.contains("it leads out of the model's folder (\"..\")"),
        "{err}"
    );

    // A symbolic link inside the folder that points outside it.
    let model = external_copy("external_symlink", |data| {
        std::os::unix::fs::symlink(fixture("helper_external.onnx.data"), data).unwrap();
    });
    let err = OnnxModel::load(&model).unwrap_err().to_string();
    assert!(
        err.contains("it leads out of the model's folder (a symbolic link)"),
        "{err}"
    );
}

#[test]
fn external_data_keys_that_do_not_fit_are_named() {
    let err = external_error("external_length", "length", "400");
    assert!(
        err.ends_with("tensor \"conv.weight\": its external data \"length\" is 400 bytes, but its dims need 432"),
        "{err}"
    );
    let err = external_error("external_offset", "offset", "18446744073709551615");
    assert!(
        err.contains("is too short: bytes 18446744073709551615..18446744073709551615 are needed but it has 836"),
        "{err}"
    );
    let err = external_error("external_bad_offset", "offset", "0x10");
    assert!(
        err.ends_with("its external data key \"offset\" is \"0x10\", not a byte count"),
        "{err}"
    );
}

#[test]
fn two_producers_of_one_value_are_named() {
    let mut m = conv();
    node_mut(&mut m, "grouped").output[0] = "relu_out".into();
    let (path, err) = load_error("duplicate_output", &m);
    assert_eq!(
        err,
        format!(
            "{}: node \"grouped\" (Conv): value \"relu_out\" has two producers: node \"relu\" \
             (Relu) and node \"grouped\" (Conv); each value must have one",
            path.display()
        )
    );
    let mut m = conv();
    let bias = initializer_mut(&mut m, "conv.bias").clone();
    m.graph.as_mut().unwrap().initializer.push(bias);
    let (_, err) = load_error("duplicate_initializer", &m);
    assert!(
        err.contains("value \"conv.bias\" has two producers: an initializer and an initializer"),
        "{err}"
    );
    let mut m = conv();
    initializer_mut(&mut m, "conv.bias").name = None;
    let (_, err) = load_error("unnamed_initializer", &m);
    assert!(
        err.ends_with("initializer #1 has no name, so no node can use it"),
        "{err}"
    );
}

#[test]
fn graph_output_nothing_produces_is_named() {
    let mut m = conv();
    m.graph.as_mut().unwrap().output[0].name = Some("nothing".into());
    let (path, err) = load_error("unknown_output", &m);
    assert_eq!(
        err,
        format!(
            "{}: graph output \"nothing\" is produced by no node, initializer or graph input",
            path.display()
        )
    );
}

#[test]
fn attribute_of_the_wrong_kind_or_missing_is_named_with_node_and_attribute() {
    let model = OnnxModel::load(fixture("helper_conv.onnx")).unwrap();
    let grouped = model
        .graph
        .nodes
        .iter()
        .find(|n| n.name == "grouped")
        .unwrap();
    assert_eq!(grouped.int("group").unwrap(), 2);
    let err = grouped.ints("group").unwrap_err().to_string();
    let file = fixture("helper_conv.onnx");
    assert_eq!(
        err,
        format!(
            "{}: node \"grouped\" (Conv): attribute \"group\" is int, expected ints",
            file.display()
        )
    );
    let err = grouped.string("auto_pad").unwrap_err();
    assert!(matches!(&*err.kind, ErrorKind::MissingAttribute { name } if name == "auto_pad"));
    assert_eq!(
        err.to_string(),
        format!(
            "{}: node \"grouped\" (Conv): has no attribute \"auto_pad\"",
            file.display()
        )
    );
    assert_eq!(err.node.as_ref().unwrap().op_type, "Conv");

    let mut m = conv();
    let conv_node = node_mut(&mut m, "conv");
    let pads = conv_node
        .attribute
        .iter()
        .find(|a| a.name() == "pads")
        .unwrap()
        .clone();
    node_mut(&mut m, "conv").attribute.push(pads);
    let (_, err) = load_error("attribute_twice", &m);
    assert!(
        err.ends_with("node \"conv\" (Conv): attribute \"pads\" is given twice"),
        "{err}"
    );

    let mut m = conv();
    node_mut(&mut m, "conv").attribute.push(AttributeProto {
        name: Some("note".into()),
        r#type: Some(3),
        s: Some(vec![0xff, 0xfe]),
        ..Default::default()
    });
    let (_, err) = load_error("attribute_utf8", &m);
    assert!(
        err.ends_with("attribute \"note\" holds text that is not UTF-8"),
        "{err}"
    );
}

#[test]
fn unsupported_data_types_and_misplaced_data_are_named() {
    let mut m = conv();
    initializer_mut(&mut m, "conv.bias").data_type = Some(P::String as i32);
    let (_, err) = load_error("string_tensor", &m);
    assert!(
        err.ends_with(
            "tensor \"conv.bias\": has data type STRING (8), which is not supported; supported: \
             float32, float16, bfloat16, float64, int64, int32, int8, uint8, bool"
        ),
        "{err}"
    );
    let mut m = proto("helper_types.onnx");
    initializer_mut(&mut m, "f32_typed").int64_data = vec![1];
    let (_, err) = load_error("wrong_field", &m);
    assert!(
        err.ends_with("tensor \"f32_typed\": has data in int64_data, but its float32 data belongs in float_data"),
        "{err}"
    );
    let mut m = proto("helper_types.onnx");
    initializer_mut(&mut m, "i8_typed").int32_data = vec![-128, 200, 127];
    let (_, err) = load_error("int8_range", &m);
    assert!(
        err.ends_with("tensor \"i8_typed\": value 200 in int32_data does not fit int8"),
        "{err}"
    );
    let mut m = conv();
    m.graph
        .as_mut()
        .unwrap()
        .sparse_initializer
        .push(SparseTensorProto {
            values: Some(TensorProto {
                name: Some("sparse_w".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
    let (_, err) = load_error("sparse", &m);
    assert!(
        err.ends_with("sparse initializer \"sparse_w\": sparse tensors are not supported"),
        "{err}"
    );
}

#[test]
fn model_without_the_standard_opset_is_refused() {
    let mut m = conv();
    m.opset_import.clear();
    let (path, err) = load_error("no_opset", &m);
    assert_eq!(
        err,
        format!(
            "{}: imports no opset of the default ONNX domain (opset_import has no \"\" or \"ai.onnx\")",
            path.display()
        )
    );
}

#[test]
fn name_longer_than_the_bound_is_refused_where_it_is_read() {
    let mut m = conv();
    node_mut(&mut m, "relu").name = Some("n".repeat(300));
    let (path, err) = load_error("long_name", &m);
    assert!(
        err.contains("a node name: a name of 300 characters ('nnnnnnnnn"),
        "{err}"
    );
    assert!(err.len() < path.as_os_str().len() + 200, "{err}");
}

#[test]
fn limits_bound_the_file_and_the_total_tensor_bytes() {
    let file = fixture("helper_conv.onnx");
    let small = Limits {
        max_file_bytes: 1000,
        ..Limits::default()
    };
    let err = OnnxModel::load_with(&file, &small).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: is 1700 bytes, over the limit of 1000 (Limits::max_file_bytes); a model that \
             large keeps its weights in external data files",
            file.display()
        )
    );
    let few_tensors = Limits {
        max_tensor_bytes: 500,
        ..Limits::default()
    };
    let err = OnnxModel::load_with(&file, &few_tensors)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "tensor \"grouped.weight\": the model's tensors take more than 500 bytes together \
             (Limits::max_tensor_bytes)"
        ),
        "{err}"
    );
}

/// A length-delimited protobuf field: key, length, payload.
fn field(number: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2];
    let mut len = payload.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(payload);
    out
}

#[test]
fn file_of_empty_messages_is_refused_before_decoding() {
    // A real model followed by one more node of 3 million empty attributes (protobuf merges
    // the repeated `graph` field into the first): 6 MB on disk, gigabytes once decoded.
    let mut bytes = conv().encode_to_vec();
    let node = [0x2a, 0x00].repeat(3_000_000); // NodeProto.attribute = {}
    bytes.extend(field(7, &field(1, &node))); // ModelProto.graph.node
    let path = temp_dir("empty_messages").join("model.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let started = std::time::Instant::now();
    let err = OnnxModel::load(&path).unwrap_err();
    assert!(
        matches!(*err.kind, ErrorKind::DecodedTooLarge { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("once decoded, over the limit of 4294967296 (Limits::max_decoded_bytes)"),
        "{err}"
    );
    assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());
    // With a hundredth of the attributes it is within the limit, decodes, and the node is
    // refused for what it is.
    let mut bytes = conv().encode_to_vec();
    bytes.extend(field(7, &field(1, &[0x2a, 0x00].repeat(30_000))));
    std::fs::write(&path, &bytes).unwrap();
    let err = OnnxModel::load(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("node #8 (): attribute \"\" is given twice"),
        "{err}"
    );
}

#[test]
fn large_inline_tensor_whose_dims_do_not_match_its_bytes_is_refused() {
    let mut m = common::with_big_initializer(20_000);
    initializer_mut(&mut m, "big").dims = vec![20_001];
    let (path, err) = load_error("big_length", &m);
    assert_eq!(
        err,
        format!(
            "{}: tensor \"big\": dims [20001] of float32 need 80004 bytes, but raw_data holds 80000",
            path.display()
        )
    );
    // Cut inside the large tensor's bytes: found before they are read.
    let bytes = common::with_big_initializer(20_000).encode_to_vec();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = OnnxModel::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("is not a valid ONNX file: a field of"),
        "{err}"
    );
}
