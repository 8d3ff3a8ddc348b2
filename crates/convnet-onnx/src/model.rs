//! Reading a model file: the size bounded before reading, the decoded size bounded before
//! decoding, then the tensors and the graph checked.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use prost::bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Graph, read_graph};
use crate::limits::Limits;
use crate::names::check_name;
use crate::proto::layout::MODEL_PROTO;
use crate::proto::onnx::{ModelProto, OperatorSetIdProto};
use crate::tensor::TensorReader;
use crate::wire::{check_top_level, decoded_size};

/// An operator set the model imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opset {
    /// `""` (also written `"ai.onnx"`) for the standard operators.
    pub domain: String,
    pub version: i64,
}

/// An ONNX model, read within [`Limits`] and checked: its tensors match their dims, its
/// graph is a DAG whose every input is produced (see [`Graph`]).
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// The file it was read from.
    pub path: PathBuf,
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    pub opsets: Vec<Opset>,
    pub graph: Graph,
}

impl OnnxModel {
    /// Reads the model at `path` within the default [`Limits`]; external data files are
    /// looked up beside it.
    pub fn load(path: impl AsRef<Path>) -> Result<OnnxModel> {
        OnnxModel::load_with(path, &Limits::default())
    }

    /// [`OnnxModel::load`] within `limits`.
    pub fn load_with(path: impl AsRef<Path>, limits: &Limits) -> Result<OnnxModel> {
        let path = path.as_ref();
        let error = |kind| Error::new(path, kind);
        // Decoded from `Bytes`, the tensors' raw data are slices of the file's bytes, not
        // copies: a bad graph is refused holding the file once, a good one peaks at the file
        // and its decoded tensors.
        let bytes = read_bounded(path, limits.max_file_bytes).map_err(error)?;
        let proto = decode(Bytes::from(bytes), limits).map_err(error)?;
        OnnxModel::from_proto(proto, path, limits)
    }

    /// Reads a model from `bytes`, as if from the file at `path` (which names it in errors
    /// and whose folder holds its external data).
    pub fn parse(bytes: &[u8], path: &Path, limits: &Limits) -> Result<OnnxModel> {
        let proto =
            decode(Bytes::copy_from_slice(bytes), limits).map_err(|kind| Error::new(path, kind))?;
        OnnxModel::from_proto(proto, path, limits)
    }

    fn from_proto(proto: ModelProto, path: &Path, limits: &Limits) -> Result<OnnxModel> {
        let error = |kind| Error::new(path, kind);
        let graph = proto.graph.ok_or(ErrorKind::NoGraph).map_err(error)?;
        let opsets = opsets(&proto.opset_import).map_err(error)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tensors = TensorReader {
            dir,
            limits,
            spent: 0,
        };
        let file: Arc<Path> = Arc::from(path);
        let graph = read_graph(graph, &file, &mut tensors)?;
        Ok(OnnxModel {
            path: path.to_path_buf(),
            ir_version: proto.ir_version.unwrap_or(0),
            producer_name: proto.producer_name.unwrap_or_default(),
            producer_version: proto.producer_version.unwrap_or_default(),
            opsets,
            graph,
        })
    }

    /// The version of `domain`'s operator set the model imports (`""` and `"ai.onnx"` are the
    /// same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let key = canonical_domain(domain);
        self.opsets
            .iter()
            .find(|o| canonical_domain(&o.domain) == key)
            .map(|o| o.version)
    }

    /// The version of the standard operator set (there always is one: it is checked).
    pub fn default_opset(&self) -> i64 {
        self.opset("").unwrap_or(0)
    }
}

fn canonical_domain(domain: &str) -> &str {
    if domain == "ai.onnx" { "" } else { domain }
}

/// The whole file, refused when it is larger than `limit` (checked before reading, and
/// again while reading in case it grows) or truncated (found from its top-level fields,
/// before reading it all).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ErrorKind> {
    let mut file = File::open(path).map_err(ErrorKind::Read)?;
    let len = file.metadata().map_err(ErrorKind::Read)?.len();
    let too_large = |bytes| ErrorKind::FileTooLarge { bytes, limit };
    if len > limit {
        return Err(too_large(len));
    }
    check_top_level(&mut file, len).map_err(ErrorKind::Malformed)?;
    file.rewind().map_err(ErrorKind::Read)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ErrorKind::Read)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The protobuf message, decoded once its decoded size is known to be within the limit.
fn decode(bytes: Bytes, limits: &Limits) -> Result<ModelProto, ErrorKind> {
    let too_large = |bytes| ErrorKind::FileTooLarge {
        bytes,
        limit: limits.max_file_bytes,
    };
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    let estimate = decoded_size(&bytes, MODEL_PROTO).map_err(ErrorKind::Malformed)?;
    if estimate > limits.max_decoded_bytes {
        return Err(ErrorKind::DecodedTooLarge {
            estimate,
            limit: limits.max_decoded_bytes,
        });
    }
    ModelProto::decode(bytes).map_err(|e| ErrorKind::Malformed(e.to_string()))
}

/// The imported operator sets; the standard one must be among them.
fn opsets(imports: &[OperatorSetIdProto]) -> Result<Vec<Opset>, ErrorKind> {
    let mut opsets = Vec::with_capacity(imports.len());
    for o in imports {
        check_name("an operator set domain", o.domain())?;
        opsets.push(Opset {
            domain: o.domain().to_string(),
            version: o.version(),
        });
    }
    if !opsets
        .iter()
        .any(|o| canonical_domain(&o.domain).is_empty())
    {
        return Err(ErrorKind::NoOpset);
    }
    Ok(opsets)
}
