//! Errors: what went wrong ([`ErrorKind`]), in which file and at which node ([`Error`]).

use std::fmt;
use std::path::{Path, PathBuf};

use convnet::names::shorten;

use crate::DataType;

/// A problem with an ONNX file, said once: the file, the node when there is one, and what is
/// wrong (`model.onnx: node "conv1" (Conv): attribute "pads" is floats, expected ints`).
#[derive(Debug, thiserror::Error)]
#[error("{}: {}{kind}", file.display(), node.as_ref().map(|n| format!("{n}: ")).unwrap_or_default())]
pub struct Error {
    /// The model file (or the name it was read under).
    pub file: PathBuf,
    /// The node the problem is in, when it is in one.
    pub node: Option<Box<NodeRef>>,
    /// What is wrong (boxed: results stay small on the paths that succeed).
    pub kind: Box<ErrorKind>,
}

impl Error {
    pub(crate) fn new(file: &Path, kind: ErrorKind) -> Error {
        Error {
            file: file.to_path_buf(),
            node: None,
            kind: Box::new(kind),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A node as errors name it: by name, or by position when it has none, and by operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// Its position among the graph's nodes as the file lists them.
    pub index: usize,
    pub name: String,
    pub op_type: String,
}

impl fmt::Display for NodeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Shortened: the name may be what the error is about (one too long).
        let op = shorten(&self.op_type, 60);
        if self.name.is_empty() {
            write!(f, "node #{} ({op})", self.index)
        } else {
            write!(f, "node \"{}\" ({op})", shorten(&self.name, 60))
        }
    }
}

/// What is wrong with an ONNX file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("cannot be read: {0}")]
    Read(std::io::Error),
    #[error(
        "is {bytes} bytes, over the limit of {limit} (Limits::max_file_bytes); \
         a model that large keeps its weights in external data files"
    )]
    FileTooLarge { bytes: u64, limit: u64 },
    #[error("is not a valid ONNX file: {0} (truncated, or not an ONNX model?)")]
    Malformed(String),
    #[error(
        "would take about {estimate} bytes of memory once decoded, over the limit of {limit} \
         (Limits::max_decoded_bytes)"
    )]
    DecodedTooLarge { estimate: u64, limit: u64 },
    #[error("holds no graph (is it an ONNX model?)")]
    NoGraph,
    #[error(
        "imports no opset of the default ONNX domain (opset_import has no \"\" or \"ai.onnx\")"
    )]
    NoOpset,
    #[error("{what}: {reason}")]
    NameTooLong { what: &'static str, reason: String },
    #[error("tensor \"{name}\": {problem}")]
    Tensor {
        name: String,
        problem: TensorProblem,
    },
    #[error("has no attribute \"{name}\"")]
    MissingAttribute { name: String },
    #[error("attribute \"{name}\" is {found}, expected {expected}")]
    AttributeType {
        name: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("attribute \"{name}\" is given twice")]
    AttributeTwice { name: String },
    #[error("attribute \"{name}\" holds text that is not UTF-8")]
    AttributeNotUtf8 { name: String },
    #[error(
        "input \"{input}\" is produced by no node, initializer or graph input \
         (a missing initializer?)"
    )]
    MissingInput { input: String },
    #[error("is on a cycle ({path}); an ONNX graph must be acyclic")]
    Cycle { path: String },
    #[error("value \"{name}\" has two producers: {first} and {second}; each value must have one")]
    DuplicateValue {
        name: String,
        first: String,
        second: String,
    },
    #[error("graph output \"{name}\" is produced by no node, initializer or graph input")]
    UnknownGraphOutput { name: String },
    #[error(
        "value \"{name}\" is declared with shape {declared} but its initializer has dims {dims:?}"
    )]
    ShapeMismatch {
        name: String,
        declared: String,
        dims: Vec<usize>,
    },
    #[error("value \"{name}\" is declared as {declared} but its initializer is {actual}")]
    TypeMismatch {
        name: String,
        declared: String,
        actual: DataType,
    },
    #[error("declared shape of \"{name}\" has {rank} dimensions, over the limit of {limit}")]
    RankTooLarge {
        name: String,
        rank: usize,
        limit: usize,
    },
    #[error("initializer #{index} has no name, so no node can use it")]
    UnnamedInitializer { index: usize },
    #[error("sparse initializer \"{name}\": sparse tensors are not supported")]
    SparseInitializer { name: String },
    #[error("operator {op} is not supported; supported: {supported}")]
    UnsupportedOp { op: String, supported: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InputShape(String),
    #[error("{0}")]
    Layer(String),
}

/// What is wrong with one tensor (an initializer or a tensor attribute).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorProblem {
    #[error(
        "has data type {name} ({code}), which is not supported; supported: {}",
        DataType::supported()
    )]
    UnsupportedType { code: i32, name: String },
    #[error("has a negative dimension in {dims:?}")]
    NegativeDim { dims: Vec<i64> },
    #[error("has {rank} dimensions, over the limit of {limit}")]
    RankTooLarge { rank: usize, limit: usize },
    #[error("dims {dims:?} hold more than {limit} elements (Limits::max_tensor_bytes)")]
    TooManyElements { dims: Vec<u64>, limit: u64 },
    #[error("dims {dims:?} of {data_type} need {expected} {unit}, but {field} holds {found}")]
    DataLength {
        data_type: DataType,
        dims: Vec<usize>,
        field: &'static str,
        /// "bytes" for raw_data, "values" for the typed fields.
        unit: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("has data in {field}, but its {data_type} data belongs in {expected}")]
    WrongField {
        data_type: DataType,
        field: &'static str,
        expected: &'static str,
    },
    #[error("value {value} in int32_data does not fit {data_type}")]
    ValueRange { data_type: DataType, value: i32 },
    #[error("is split into segments, which is not supported")]
    Segmented,
    #[error("the model's tensors take more than {limit} bytes together (Limits::max_tensor_bytes)")]
    TotalTooLarge { limit: u64 },
    #[error("its external data has no \"location\"")]
    ExternalNoLocation,
    #[error("its external data key \"{key}\" is \"{value}\", not a byte count")]
    ExternalKey { key: String, value: String },
    #[error(
        "its external data location \"{location}\" is refused: it {reason}; external data \
         files must lie in the model's folder"
    )]
    ExternalPathRefused {
        location: String,
        reason: &'static str,
    },
    #[error("its external data file {} cannot be opened: {reason}; keep it beside the model", path.display())]
    ExternalFileMissing { path: PathBuf, reason: String },
    #[error(
        "its external data file {} is too short: bytes {offset}..{end} are needed but it has \
         {file_len} (truncated?)",
        path.display()
    )]
    ExternalTooShort {
        path: PathBuf,
        offset: u64,
        end: u64,
        file_len: u64,
    },
    #[error("its external data \"length\" is {length} bytes, but its dims need {expected}")]
    ExternalLength { length: u64, expected: u64 },
    #[error("has data_location {value}, neither DEFAULT (0) nor EXTERNAL (1)")]
    UnknownLocation { value: i32 },
    #[error("its bytes cannot be read from the model file: {reason}")]
    ModelRead { reason: String },
    #[error("its external data file {} cannot be read: {reason}", path.display())]
    ExternalRead { path: PathBuf, reason: String },
}
