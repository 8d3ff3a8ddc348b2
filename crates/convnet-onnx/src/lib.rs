//! ONNX model files, read within bounds and checked, for convnet to convert and run.
//!
//! [`OnnxModel::load`] reads a `.onnx` file: its size is bounded before it is read; its
//! protobuf structure is read without the bytes of large tensors, which stay in the file
//! until their tensor is read (so a bad graph is refused cheaply, and a good model is held
//! once, as decoded tensors); the memory that structure takes once decoded is bounded before
//! it is decoded; every tensor's dims are checked (non-negative, their product bounded,
//! matching the data) before its data is allocated; and external data (`.onnx.data` files,
//! as torch.onnx.export's dynamo exporter writes them) is read only from the model's folder
//! and only within the data file's length. The graph is checked before any tensor data is
//! read: every node input is produced by an initializer, a graph input or an earlier node,
//! every value has one producer, the nodes form a DAG (kept in topological order), and
//! declared shapes agree with the initializers they describe. Subgraphs (If/Loop bodies) and
//! sparse tensors are not read.
//!
//! Each problem is an [`Error`] naming the file, the node (name and operator) when there is
//! one, and what is wrong ([`ErrorKind`]).
//!
//! ```no_run
//! let model = convnet_onnx::OnnxModel::load("resnet18.onnx")?;
//! for node in &model.graph.nodes {
//!     if node.op_type == "Conv" {
//!         let group = node.int_or("group", 1)?;
//!         let pads = node.get_ints("pads")?.unwrap_or(&[0, 0, 0, 0]);
//!         println!("{}: group {group}, pads {pads:?}", node.name);
//!     }
//! }
//! # Ok::<(), convnet_onnx::Error>(())
//! ```
//!
//! The protobuf code is generated from `proto/onnx.proto` by `tools/gen_onnx_proto.sh` and
//! committed ([`proto`]), so building needs no protobuf compiler.

mod error;
mod external;
mod graph;
mod import;
mod limits;
mod model;
mod names;
mod node;
mod open;
pub mod proto;
mod structure;
mod tensor;
mod wire;

pub use error::{Error, ErrorKind, NodeRef, Result, TensorProblem};
pub use graph::{Dim, Graph, Producer, ValueInfo, shape_text};
pub use import::{ImportOptions, Imported, NameMap, SUPPORTED, import};
pub use limits::Limits;
pub use model::{OnnxModel, Opset};
pub use node::{Attribute, AttributeValue, Node};
pub use open::{
    IMAGENET_CLASSES, IMAGENET_MEAN, IMAGENET_RESIZE, IMAGENET_STD, default_meta, import_file,
    is_onnx, open_checkpoint,
};
pub use tensor::{DataType, Tensor, TensorData};
