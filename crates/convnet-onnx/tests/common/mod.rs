//! Helpers shared by the convnet-onnx tests: the fixtures (made by
//! tools/gen_onnx_fixtures.py), their protobuf, and temporary folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use convnet_onnx::proto::onnx::ModelProto;
use prost::Message;

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The protobuf of a fixture, to make a bad copy of it.
pub fn proto(name: &str) -> ModelProto {
    let bytes = std::fs::read(fixture(name)).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

/// The node called `name` of `m`, to break it.
pub fn node_mut<'a>(
    m: &'a mut ModelProto,
    name: &str,
) -> &'a mut convnet_onnx::proto::onnx::NodeProto {
    let g = m.graph.as_mut().unwrap();
    g.node.iter_mut().find(|n| n.name() == name).unwrap()
}

/// A fresh empty folder under the target's temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("convnet-onnx")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `model` as `model.onnx` in a fresh folder called `name`; returns its path.
pub fn write_model(name: &str, model: &ModelProto) -> PathBuf {
    let path = temp_dir(name).join("model.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// helper_conv.onnx with one more initializer, `big`: `len` float32 values in raw_data
/// (`i as f32 * 0.5`), large enough (from 16,384 values) to stay in the file until read.
pub fn with_big_initializer(len: usize) -> ModelProto {
    use convnet_onnx::proto::onnx::{TensorProto, tensor_proto::DataType};
    let mut model = proto("helper_conv.onnx");
    let raw: Vec<u8> = (0..len)
        .flat_map(|i| (i as f32 * 0.5).to_le_bytes())
        .collect();
    model.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: Some("big".into()),
        dims: vec![len as i64],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(raw.into()),
        ..Default::default()
    });
    model
}
pub mod nets;
