//! Reading a model file: the size bounded before reading, the decoded size bounded before
//! decoding, then the tensors and the graph checked.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
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
use crate::structure::{Span, read_structure};
use crate::tensor::{InFile, TensorReader};
use crate::wire::decoded_size;

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
        let mut file = File::open(path).map_err(ErrorKind::Read).map_err(error)?;
        let len = file
            .metadata()
            .map_err(ErrorKind::Read)
            .map_err(error)?
            .len();
        let (proto, spans) = read_proto(&mut file, len, limits).map_err(error)?;
        OnnxModel::from_proto(proto, path, limits, InFile::Path(path), spans)
    }

    /// Reads a model from `bytes`, as if from the file at `path` (which names it in errors
    /// and whose folder holds its external data).
    pub fn parse(bytes: &[u8], path: &Path, limits: &Limits) -> Result<OnnxModel> {
        let len = bytes.len() as u64;
        let (proto, spans) = read_proto(&mut Cursor::new(bytes), len, limits)
            .map_err(|kind| Error::new(path, kind))?;
        OnnxModel::from_proto(proto, path, limits, InFile::Bytes(bytes), spans)
    }

    fn from_proto(
        proto: ModelProto,
        path: &Path,
        limits: &Limits,
        in_file: InFile,
        spans: Vec<Span>,
    ) -> Result<OnnxModel> {
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
            in_file,
            spans,
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

/// The protobuf of the `len`-byte model in `source`, its large tensor bytes left in the
/// source (where `Span`s say): its size is bounded before anything is read, its structure
/// read and checked for truncation without those bytes, and its decoded size bounded
/// before it is decoded.
fn read_proto(
    source: &mut (impl Read + Seek),
    len: u64,
    limits: &Limits,
) -> Result<(ModelProto, Vec<Span>), ErrorKind> {
    if len > limits.max_file_bytes {
        return Err(ErrorKind::FileTooLarge {
            bytes: len,
            limit: limits.max_file_bytes,
        });
    }
    let structure = read_structure(source, len).map_err(ErrorKind::Malformed)?;
    let estimate = decoded_size(&structure.bytes, MODEL_PROTO).map_err(ErrorKind::Malformed)?;
    if estimate > limits.max_decoded_bytes {
        return Err(ErrorKind::DecodedTooLarge {
            estimate,
            limit: limits.max_decoded_bytes,
        });
    }
    // Decoded from `Bytes`, the small tensors' raw data are slices of the structure's bytes.
    let proto = ModelProto::decode(Bytes::from(structure.bytes))
        .map_err(|e| ErrorKind::Malformed(e.to_string()))?;
    Ok((proto, structure.spans))
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
