//! Real ONNX files (onnx.helper, and torch.onnx.export's TorchScript and dynamo exporters,
//! with and without external data) read as the `onnx` Python package reads them: the
//! fixtures and `manifest.json` come from tools/gen_onnx_fixtures.py.

mod common;

use common::fixture;
use convnet_onnx::{
    AttributeValue, DataType, Dim, OnnxModel, Producer, Tensor, TensorData, ValueInfo,
};
use serde_json::Value;

fn manifest() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixture("manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// The elements as f64, exactly (no detour through f32).
fn values(t: &Tensor) -> Vec<f64> {
    match &t.data {
        TensorData::Float(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Float16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::BFloat16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Double(v) => v.clone(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Int8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Uint8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    }
}

fn shape_json(v: &ValueInfo) -> Value {
    match &v.shape {
        None => Value::Null,
        Some(dims) => dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Value::from(*n),
                Dim::Symbolic(s) => Value::from(s.as_str()),
                Dim::Unknown => Value::Null,
            })
            .collect(),
    }
}

fn check_values(list: &[ValueInfo], expected: &Value, what: &str) {
    let expected = expected.as_array().unwrap();
    assert_eq!(list.len(), expected.len(), "{what}");
    for (v, e) in list.iter().zip(expected) {
        assert_eq!(v.name, e["name"], "{what}");
        assert_eq!(
            v.elem_type,
            e["elem_type"].as_i64().unwrap() as i32,
            "{what}"
        );
        assert_eq!(shape_json(v), e["shape"], "{what} {}", v.name);
    }
}

fn check_tensor(t: &Tensor, e: &Value) {
    assert_eq!(t.name, e["name"]);
    let dims: Vec<usize> = serde_json::from_value(e["dims"].clone()).unwrap();
    assert_eq!(t.dims, dims, "{}", t.name);
    assert_eq!(
        t.data_type().code(),
        e["data_type"].as_i64().unwrap() as i32
    );
    let v = values(t);
    assert_eq!(v.len(), t.len());
    // serde_json reads decimal text within an ulp or so of the float Python wrote.
    let first: Vec<f64> = serde_json::from_value(e["first"].clone()).unwrap();
    for (x, y) in v.iter().zip(&first) {
        assert!((x - y).abs() <= 1e-15 * y.abs(), "{}: {x} vs {y}", t.name);
    }
    // numpy sums pairwise, we sum in order: equal within rounding of f64.
    let sum: f64 = v.iter().sum();
    let want = e["sum"].as_f64().unwrap();
    assert!(
        (sum - want).abs() <= 1e-9 * (1.0 + want.abs()),
        "{}: {sum} vs {want}",
        t.name
    );
}

fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::Int(i) => Value::from(*i),
        AttributeValue::Ints(i) => Value::from(i.clone()),
        AttributeValue::Float(f) => Value::from(f64::from(*f)),
        AttributeValue::Floats(f) => f.iter().map(|&x| Value::from(f64::from(x))).collect(),
        AttributeValue::String(s) => Value::from(s.as_str()),
        AttributeValue::Strings(s) => Value::from(s.clone()),
        AttributeValue::Tensor(t) => serde_json::json!({"dims": t.dims, "values": values(t)}),
        other => panic!("unexpected attribute kind {}", other.kind()),
    }
}

fn check_model(file: &str, e: &Value) {
    let model = OnnxModel::load(fixture(file)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        model.ir_version,
        e["ir_version"].as_i64().unwrap(),
        "{file}"
    );
    assert_eq!(model.producer_name, e["producer"], "{file}");
    let opsets = e["opsets"].as_object().unwrap();
    assert_eq!(model.opsets.len(), opsets.len());
    for (domain, version) in opsets {
        assert_eq!(model.opset(domain), version.as_i64(), "{file} {domain}");
    }
    let g = &model.graph;
    check_values(&g.inputs, &e["inputs"], file);
    check_values(&g.outputs, &e["outputs"], file);
    let inits = e["initializers"].as_array().unwrap();
    assert_eq!(g.initializers.len(), inits.len(), "{file}");
    for (t, want) in g.initializers.iter().zip(inits) {
        check_tensor(t, want);
        assert_eq!(g.initializer(&t.name), Some(t));
    }
    // Every fixture lists its nodes in topological order already, which the reader keeps.
    let nodes = e["nodes"].as_array().unwrap();
    assert_eq!(g.nodes.len(), nodes.len(), "{file}");
    for (i, (node, want)) in g.nodes.iter().zip(nodes).enumerate() {
        assert_eq!(node.index, i);
        assert_eq!(node.name, want["name"], "{file}");
        assert_eq!(node.op_type, want["op_type"], "{file}");
        assert_eq!(node.domain, want["domain"], "{file}");
        assert_eq!(Value::from(node.inputs.clone()), want["inputs"], "{file}");
        assert_eq!(Value::from(node.outputs.clone()), want["outputs"], "{file}");
        let attrs = want["attributes"].as_object().unwrap();
        assert_eq!(node.attributes.len(), attrs.len(), "{file} {}", node.name);
        for a in &node.attributes {
            let got = attribute_json(&a.value);
            let expected = &attrs[&a.name];
            if let (Some(x), Some(y)) = (got.as_f64(), expected.as_f64()) {
                assert_eq!(x as f32, y as f32, "{file} {}.{}", node.name, a.name);
            } else {
                assert_eq!(&got, expected, "{file} {}.{}", node.name, a.name);
            }
        }
        for output in node.outputs.iter().filter(|o| !o.is_empty()) {
            assert_eq!(g.producer(output), Some(Producer::Node(i)));
        }
    }
}

#[test]
fn every_fixture_reads_as_the_onnx_package_reads_it() {
    let manifest = manifest();
    assert!(manifest.len() >= 7, "{:?}", manifest.keys());
    for (file, entry) in &manifest {
        check_model(file, entry);
    }
}

#[test]
fn both_exporters_with_and_without_external_data_give_the_same_weights() {
    let weights = |file: &str| {
        let model = OnnxModel::load(fixture(file)).unwrap();
        let mut w: Vec<(Vec<usize>, Vec<f32>)> = model
            .graph
            .initializers
            .iter()
            .filter(|t| t.data_type() == DataType::Float)
            .map(|t| (t.dims.clone(), t.to_f32()))
            .collect();
        w.sort_by(|a, b| a.partial_cmp(b).unwrap());
        w
    };
    assert_eq!(
        weights("torch_legacy.onnx"),
        weights("torch_legacy_external.onnx")
    );
    assert_eq!(
        weights("torch_dynamo.onnx"),
        weights("torch_dynamo_inline.onnx")
    );
    assert_eq!(weights("helper_conv.onnx"), weights("helper_external.onnx"));
    let m = manifest();
    assert_eq!(m["torch_dynamo.onnx"]["external_data"], true);
    assert_eq!(m["torch_dynamo_inline.onnx"]["external_data"], false);
}

#[test]
fn every_data_type_and_attribute_kind_is_read_with_its_values() {
    let model = OnnxModel::load(fixture("helper_types.onnx")).unwrap();
    let g = &model.graph;
    let t = |name: &str| g.initializer(name).unwrap();
    assert_eq!(
        t("f32_typed").data,
        TensorData::Float(vec![0.5, -1.0, 2.0, 3.25])
    );
    // float16 from raw_data and from int32_data (as bits) agree.
    assert_eq!(t("f16_raw").data, t("f16_typed").data);
    assert_eq!(t("f16_raw").data_type(), DataType::Float16);
    assert_eq!(t("bf16_typed").to_f32(), vec![1.0, -2.5, 0.15625]);
    assert_eq!(
        t("f64_typed").data,
        TensorData::Double(vec![1.0, 1e-300, -2.5])
    );
    assert_eq!(t("i64_raw").to_i64(), Some(vec![1, -2, 3]));
    assert_eq!(t("i64_raw").dims, vec![1, 3]);
    assert_eq!(t("i64_typed").to_i64(), Some(vec![-(1 << 40), 7]));
    assert_eq!(t("i32_typed").data, TensorData::Int32(vec![-5, 1 << 30]));
    assert_eq!(t("i8_typed").data, TensorData::Int8(vec![-128, 0, 127]));
    assert_eq!(t("u8_raw").data, TensorData::Uint8(vec![0, 200, 255]));
    assert_eq!(
        t("bool_typed").data,
        TensorData::Bool(vec![true, false, false, true])
    );
    assert_eq!(
        (t("scalar").dims.len(), t("scalar").to_f32()),
        (0, vec![3.5])
    );
    assert_eq!((t("empty").dims.clone(), t("empty").len()), (vec![0, 4], 0));
    assert_eq!(t("f32_typed").to_i64(), None);

    let node = g.nodes.iter().find(|n| n.op_type == "Everything").unwrap();
    assert_eq!(node.domain, "test.domain");
    assert_eq!(model.opset("test.domain"), Some(1));
    assert_eq!(model.default_opset(), 17);
    assert_eq!(node.int("an_int").unwrap(), -3);
    assert_eq!(node.ints("some_ints").unwrap(), &[1, 2, -7]);
    assert_eq!(node.float("a_float").unwrap(), 0.25);
    assert_eq!(node.floats("some_floats").unwrap(), &[1.5, -2.0]);
    assert_eq!(node.string("a_string").unwrap(), "SAME_UPPER");
    assert_eq!(
        node.attribute("some_strings"),
        Some(&AttributeValue::Strings(vec![
            "nearest".into(),
            "linear".into()
        ]))
    );
    assert_eq!(node.tensor("a_tensor").unwrap().to_i64(), Some(vec![4, 5]));
    assert_eq!(node.int_or("absent", 1).unwrap(), 1);
    assert_eq!(node.string_or("absent", "NOTSET").unwrap(), "NOTSET");
    assert_eq!(node.get_floats("absent").unwrap(), None);
    assert_eq!(node.outputs, vec!["y".to_string(), String::new()]);

    let constant = &g.nodes[0];
    assert_eq!(constant.op_type, "Constant");
    assert_eq!(constant.tensor("value").unwrap().to_f32(), vec![1.5, -0.5]);
    assert_eq!(g.producer("const"), Some(Producer::Node(0)));
    assert_eq!(g.producer("x"), Some(Producer::Input(0)));

    // Declared shapes: symbolic, unknown, and a negative size (read as unknown).
    let x = g.declared("x").unwrap();
    assert_eq!(
        x.shape,
        Some(vec![Dim::Symbolic("n".into()), Dim::Unknown, Dim::Fixed(4)])
    );
    let y = g.declared("y").unwrap();
    assert_eq!(
        y.shape,
        Some(vec![Dim::Symbolic("n".into()), Dim::Unknown, Dim::Fixed(4)])
    );
    assert_eq!(g.declared("z").unwrap().shape, None);
}

#[test]
fn dynamo_exports_keep_value_info_and_state_dict_names() {
    let model = OnnxModel::load(fixture("torch_dynamo.onnx")).unwrap();
    assert!(model.default_opset() >= 18, "{}", model.default_opset());
    let g = &model.graph;
    assert!(g.initializer("conv.weight").is_some());
    assert!(g.initializer("fc.bias").is_some());
    assert_eq!(
        g.inputs[0].shape.as_ref().unwrap()[0],
        Dim::Symbolic("batch".into())
    );
    assert!(!g.value_info.is_empty());
    let conv = &g.nodes[0];
    assert_eq!(conv.op_type, "Conv");
    assert_eq!(conv.ints("pads").unwrap(), &[1, 1, 1, 1]);
}

#[test]
fn paddle_classifier_from_another_exporter_reads_with_its_constant_weights() {
    // Numbers as the onnx package reads them (see fixtures/third_party/README.md).
    let model =
        OnnxModel::load(fixture("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    assert_eq!(
        (
            model.ir_version,
            model.default_opset(),
            model.producer_name.as_str()
        ),
        (7, 11, "PaddlePaddle")
    );
    let g = &model.graph;
    assert_eq!(g.nodes.len(), 566);
    assert!(g.initializers.is_empty());
    let count = |op: &str| g.nodes.iter().filter(|n| n.op_type == op).count();
    assert_eq!(
        [
            count("Constant"),
            count("Conv"),
            count("BatchNormalization"),
            count("HardSigmoid")
        ],
        [308, 53, 35, 9]
    );
    let grouped = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Conv" && n.int_or("group", 1).unwrap() > 1);
    assert_eq!(grouped.count(), 11);
    let hard_sigmoid = g.nodes.iter().find(|n| n.op_type == "HardSigmoid").unwrap();
    assert_eq!(hard_sigmoid.float("alpha").unwrap(), 0.2);
    // -1 (Paddle's "any") reads as unknown, "?" as a symbolic size.
    let x = &g.inputs[0];
    let question = || Dim::Symbolic("?".into());
    assert_eq!(
        x.shape,
        Some(vec![Dim::Unknown, Dim::Fixed(3), question(), question()])
    );
    assert_eq!(g.outputs[0].shape, Some(vec![Dim::Unknown, Dim::Fixed(2)]));
    // The weights: float32 Constant tensors kept in float_data.
    let constants: Vec<&Tensor> = g
        .nodes
        .iter()
        .filter(|n| n.op_type == "Constant")
        .map(|n| n.tensor("value").unwrap())
        .collect();
    let floats: Vec<&&Tensor> = constants
        .iter()
        .filter(|t| t.data_type() == DataType::Float)
        .collect();
    assert_eq!(floats.len(), 285);
    assert_eq!(constants.iter().map(|t| t.len()).sum::<usize>(), 133_777);
    let sum: f64 = floats.iter().flat_map(|t| values(t)).sum();
    assert!((sum - 8405.357471160509).abs() < 1e-9 * 8405.0, "{sum}");
}

#[test]
fn large_inline_tensors_are_read_from_the_file_when_their_tensor_is() {
    use prost::Message;
    let len = 20_000; // 80 KB: left in the file while the graph is read
    let model = common::with_big_initializer(len);
    let path = common::write_model("big_inline", &model);
    let expected: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
    let loaded = OnnxModel::load(&path).unwrap();
    assert_eq!(
        loaded.graph.initializer("big").unwrap().data,
        TensorData::Float(expected.clone())
    );
    let bytes = model.encode_to_vec();
    let parsed = OnnxModel::parse(&bytes, &path, &convnet_onnx::Limits::default()).unwrap();
    assert_eq!(
        parsed.graph.initializer("big").unwrap().data,
        TensorData::Float(expected)
    );
    assert_eq!(parsed.graph.initializers, loaded.graph.initializers);
}
