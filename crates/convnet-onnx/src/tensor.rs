//! Tensors of a model (initializers and tensor attributes): data types, and the checked
//! decoding of a `TensorProto`, inline or from an external data file.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use half::{bf16, f16};

use crate::error::{ErrorKind, TensorProblem};
use crate::external;
use crate::limits::Limits;
use crate::names::check_name;
use crate::proto::onnx::{TensorProto, tensor_proto};
use crate::structure::{IN_FILE, Span};

/// The element types read, those CNN graphs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Float,
    Float16,
    BFloat16,
    Double,
    Int64,
    Int32,
    Int8,
    Uint8,
    Bool,
}

impl DataType {
    const ALL: [DataType; 9] = [
        DataType::Float,
        DataType::Float16,
        DataType::BFloat16,
        DataType::Double,
        DataType::Int64,
        DataType::Int32,
        DataType::Int8,
        DataType::Uint8,
        DataType::Bool,
    ];

    /// The type of ONNX's `TensorProto.DataType` code, if it is one read here.
    pub fn from_code(code: i32) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// ONNX's `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        use tensor_proto::DataType as P;
        (match self {
            DataType::Float => P::Float,
            DataType::Float16 => P::Float16,
            DataType::BFloat16 => P::Bfloat16,
            DataType::Double => P::Double,
            DataType::Int64 => P::Int64,
            DataType::Int32 => P::Int32,
            DataType::Int8 => P::Int8,
            DataType::Uint8 => P::Uint8,
            DataType::Bool => P::Bool,
        }) as i32
    }

    /// Bytes per element in `raw_data` and external data (and in memory).
    pub fn size(self) -> usize {
        match self {
            DataType::Double | DataType::Int64 => 8,
            DataType::Float | DataType::Int32 => 4,
            DataType::Float16 | DataType::BFloat16 => 2,
            DataType::Int8 | DataType::Uint8 | DataType::Bool => 1,
        }
    }

    /// The name errors and summaries use (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Float => "float32",
            DataType::Float16 => "float16",
            DataType::BFloat16 => "bfloat16",
            DataType::Double => "float64",
            DataType::Int64 => "int64",
            DataType::Int32 => "int32",
            DataType::Int8 => "int8",
            DataType::Uint8 => "uint8",
            DataType::Bool => "bool",
        }
    }

    /// The supported types, for error messages.
    pub(crate) fn supported() -> String {
        let names: Vec<_> = DataType::ALL.iter().map(|t| t.name()).collect();
        names.join(", ")
    }

    /// ONNX's name for any type code, supported or not (`STRING`, `COMPLEX64`, ...).
    pub(crate) fn code_name(code: i32) -> String {
        tensor_proto::DataType::try_from(code)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's elements, in their file's type, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Float(Vec<f32>),
    Float16(Vec<f16>),
    BFloat16(Vec<bf16>),
    Double(Vec<f64>),
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Int8(Vec<i8>),
    Uint8(Vec<u8>),
    Bool(Vec<bool>),
}

/// One tensor of a model, its dims checked against its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn data_type(&self) -> DataType {
        match &self.data {
            TensorData::Float(_) => DataType::Float,
            TensorData::Float16(_) => DataType::Float16,
            TensorData::BFloat16(_) => DataType::BFloat16,
            TensorData::Double(_) => DataType::Double,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Bool(_) => DataType::Bool,
        }
    }

    /// The number of elements (the product of the dims; 1 for a scalar).
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32` (weights, whatever type they were stored in).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            TensorData::Float(v) => v.clone(),
            TensorData::Float16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BFloat16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::Double(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::Uint8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// The elements as `i64` (shapes, axes, pads), or `None` for a floating-point tensor.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            TensorData::Int64(v) => v.clone(),
            TensorData::Int32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::Int8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::Uint8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => return None,
        })
    }
}

/// A tensor's name, type and dims, checked.
pub(crate) struct Header {
    pub(crate) name: String,
    pub(crate) data_type: DataType,
    pub(crate) dims: Vec<usize>,
}

/// How errors call a tensor: by its name, or by what holds it when it has none.
fn label(name: &str, fallback: &str) -> String {
    if name.is_empty() { fallback } else { name }.to_string()
}

/// Where the model's own bytes are, for the tensor bytes left in the file
/// (see `structure.rs`).
pub(crate) enum InFile<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
}

impl InFile<'_> {
    /// The bytes of `span`, given to `decode` as a reader.
    fn read<T>(
        &self,
        span: Span,
        decode: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
    ) -> Result<T, TensorProblem> {
        let problem = |e: std::io::Error| TensorProblem::ModelRead {
            reason: e.to_string(),
        };
        match self {
            InFile::Path(path) => {
                let mut file = File::open(path).map_err(problem)?;
                file.seek(SeekFrom::Start(span.offset)).map_err(problem)?;
                let mut bytes = file.take(span.len);
                let value = decode(&mut bytes).map_err(problem)?;
                Ok(value)
            }
            InFile::Bytes(all) => {
                let range = usize::try_from(span.offset).ok().and_then(|start| {
                    let end = start.checked_add(usize::try_from(span.len).ok()?)?;
                    all.get(start..end)
                });
                let mut bytes = range.ok_or_else(|| TensorProblem::ModelRead {
                    reason: "the bytes lie past its end".into(),
                })?;
                decode(&mut bytes).map_err(problem)
            }
        }
    }
}

/// Reads the tensors of one model: checks each against the limits, keeps the running total,
/// and finds external data beside the model file.
pub(crate) struct TensorReader<'a> {
    /// The folder external data locations are relative to.
    pub(crate) dir: &'a Path,
    pub(crate) limits: &'a Limits,
    /// Bytes of tensor data read so far.
    pub(crate) spent: u64,
    /// The model's own bytes, and where in them the large tensors' bytes lie.
    pub(crate) in_file: InFile<'a>,
    pub(crate) spans: Vec<Span>,
}

impl TensorReader<'_> {
    /// Decodes `proto`; a tensor with no name of its own is called `fallback` in errors.
    pub(crate) fn read(&mut self, proto: TensorProto, fallback: &str) -> Result<Tensor, ErrorKind> {
        let Header {
            name,
            data_type,
            dims,
        } = self.header(&proto, fallback)?;
        let data = self
            .data(proto, data_type, &dims)
            .map_err(|problem| ErrorKind::Tensor {
                name: label(&name, fallback),
                problem,
            })?;
        Ok(Tensor { name, dims, data })
    }

    /// The name, type and dims of `proto`, checked, without reading its data.
    pub(crate) fn header(&self, proto: &TensorProto, fallback: &str) -> Result<Header, ErrorKind> {
        let name = proto.name().to_string();
        check_name("a tensor name", &name)?;
        let problem = |problem| ErrorKind::Tensor {
            name: label(&name, fallback),
            problem,
        };
        let code = proto.data_type.unwrap_or(0);
        let data_type = DataType::from_code(code).ok_or_else(|| {
            problem(TensorProblem::UnsupportedType {
                code,
                name: DataType::code_name(code),
            })
        })?;
        let dims = self.check_dims(&proto.dims, data_type).map_err(problem)?;
        if proto.segment.is_some() {
            return Err(problem(TensorProblem::Segmented));
        }
        Ok(Header {
            name,
            data_type,
            dims,
        })
    }

    /// The data of a tensor whose header is checked: counted against the limit, then read.
    fn data(
        &mut self,
        proto: TensorProto,
        data_type: DataType,
        dims: &[usize],
    ) -> Result<TensorData, TensorProblem> {
        let len: usize = dims.iter().product();
        self.spend(len as u64 * data_type.size() as u64)?;
        let bytes = len * data_type.size();
        let decode = |reader: &mut dyn Read| read_le(reader, data_type, len);
        match proto.data_location {
            None | Some(0) => inline_data(proto, data_type, dims),
            Some(1) => external::read(self.dir, &proto.external_data, bytes, decode),
            Some(mark) if mark >= IN_FILE => {
                let span = usize::try_from(mark - IN_FILE)
                    .ok()
                    .and_then(|i| self.spans.get(i).copied())
                    .ok_or(TensorProblem::UnknownLocation { value: mark })?;
                if span.len != bytes as u64 {
                    return Err(TensorProblem::DataLength {
                        data_type,
                        dims: dims.to_vec(),
                        field: "raw_data",
                        unit: "bytes",
                        expected: bytes,
                        found: span.len as usize,
                    });
                }
                self.in_file.read(span, decode)
            }
            Some(value) => Err(TensorProblem::UnknownLocation { value }),
        }
    }

    /// Dims non-negative, not too many, and their product within the limits.
    fn check_dims(&self, dims: &[i64], data_type: DataType) -> Result<Vec<usize>, TensorProblem> {
        if dims.len() > self.limits.max_rank {
            return Err(TensorProblem::RankTooLarge {
                rank: dims.len(),
                limit: self.limits.max_rank,
            });
        }
        let unsigned: Vec<u64> = dims
            .iter()
            .map(|&d| u64::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| TensorProblem::NegativeDim {
                dims: dims.to_vec(),
            })?;
        let limit = self.limits.max_tensor_bytes / data_type.size() as u64;
        let product = unsigned
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&p| p <= limit));
        match product {
            Some(_) => Ok(unsigned.iter().map(|&d| d as usize).collect()),
            None => Err(TensorProblem::TooManyElements {
                dims: unsigned,
                limit,
            }),
        }
    }

    /// Counts `bytes` against the total the model's tensors may take.
    fn spend(&mut self, bytes: u64) -> Result<(), TensorProblem> {
        let limit = self.limits.max_tensor_bytes;
        match self.spent.checked_add(bytes).filter(|&t| t <= limit) {
            Some(total) => {
                self.spent = total;
                Ok(())
            }
            None => Err(TensorProblem::TotalTooLarge { limit }),
        }
    }
}

/// The data kept in the file itself: `raw_data`, or the typed field of `data_type`.
fn inline_data(
    proto: TensorProto,
    data_type: DataType,
    dims: &[usize],
) -> Result<TensorData, TensorProblem> {
    let len: usize = dims.iter().product();
    let fields = TypedFields::of(&proto);
    let (field, found) = match &proto.raw_data {
        Some(raw) => ("raw_data", raw.len()),
        None => (
            typed_field(data_type),
            fields.len_of(typed_field(data_type)),
        ),
    };
    if let Some(other) = fields.others(field) {
        return Err(TensorProblem::WrongField {
            data_type,
            field: other,
            expected: field,
        });
    }
    let (unit, expected) = match field {
        "raw_data" => ("bytes", len * data_type.size()),
        _ => ("values", len),
    };
    if found != expected {
        return Err(TensorProblem::DataLength {
            data_type,
            dims: dims.to_vec(),
            field,
            unit,
            expected,
            found,
        });
    }
    if let Some(raw) = &proto.raw_data {
        return Ok(from_raw(raw, data_type));
    }
    from_typed(proto, data_type)
}

/// The typed field ONNX keeps `data_type` in when `raw_data` is not used.
fn typed_field(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Float => "float_data",
        DataType::Double => "double_data",
        DataType::Int64 => "int64_data",
        _ => "int32_data",
    }
}

/// The lengths of a tensor's typed data fields.
struct TypedFields([(&'static str, usize); 4]);

impl TypedFields {
    fn of(p: &TensorProto) -> TypedFields {
        TypedFields([
            ("float_data", p.float_data.len()),
            ("double_data", p.double_data.len()),
            ("int64_data", p.int64_data.len()),
            ("int32_data", p.int32_data.len()),
        ])
    }

    fn len_of(&self, field: &str) -> usize {
        self.0.iter().find(|(f, _)| *f == field).map_or(0, |f| f.1)
    }

    /// A non-empty field other than `field`: data where it does not belong.
    fn others(&self, field: &str) -> Option<&'static str> {
        self.0
            .iter()
            .find(|(f, len)| *f != field && *len > 0)
            .map(|f| f.0)
    }
}

/// Little-endian elements of `data_type` (the length already checked).
fn from_raw(raw: &[u8], data_type: DataType) -> TensorData {
    let mut data = TensorData::with_capacity(data_type, raw.len() / data_type.size());
    data.extend_le(raw);
    data
}

/// `len` little-endian elements of `data_type` from `reader`, converted a block at a time so
/// only the decoded tensor is held, not its bytes as well.
fn read_le(reader: &mut dyn Read, data_type: DataType, len: usize) -> std::io::Result<TensorData> {
    const BLOCK: usize = 1 << 20; // a multiple of every element size
    let mut data = TensorData::with_capacity(data_type, len);
    let mut block = vec![0u8; BLOCK.min(len * data_type.size())];
    let mut left = len * data_type.size();
    while left > 0 {
        let n = left.min(BLOCK);
        reader.read_exact(&mut block[..n])?;
        data.extend_le(&block[..n]);
        left -= n;
    }
    Ok(data)
}

impl TensorData {
    /// No elements yet, room for `len`.
    fn with_capacity(data_type: DataType, len: usize) -> TensorData {
        match data_type {
            DataType::Float => TensorData::Float(Vec::with_capacity(len)),
            DataType::Float16 => TensorData::Float16(Vec::with_capacity(len)),
            DataType::BFloat16 => TensorData::BFloat16(Vec::with_capacity(len)),
            DataType::Double => TensorData::Double(Vec::with_capacity(len)),
            DataType::Int64 => TensorData::Int64(Vec::with_capacity(len)),
            DataType::Int32 => TensorData::Int32(Vec::with_capacity(len)),
            DataType::Int8 => TensorData::Int8(Vec::with_capacity(len)),
            DataType::Uint8 => TensorData::Uint8(Vec::with_capacity(len)),
            DataType::Bool => TensorData::Bool(Vec::with_capacity(len)),
        }
    }

    /// Appends the little-endian elements in `raw` (a whole number of them).
    fn extend_le(&mut self, raw: &[u8]) {
        fn le<const N: usize, T>(v: &mut Vec<T>, raw: &[u8], f: impl Fn([u8; N]) -> T) {
            v.extend(
                raw.chunks_exact(N)
                    .map(|c| f(c.try_into().expect("chunks of N bytes"))),
            );
        }
        match self {
            TensorData::Float(v) => le(v, raw, f32::from_le_bytes),
            TensorData::Float16(v) => le(v, raw, f16::from_le_bytes),
            TensorData::BFloat16(v) => le(v, raw, bf16::from_le_bytes),
            TensorData::Double(v) => le(v, raw, f64::from_le_bytes),
            TensorData::Int64(v) => le(v, raw, i64::from_le_bytes),
            TensorData::Int32(v) => le(v, raw, i32::from_le_bytes),
            TensorData::Int8(v) => le(v, raw, i8::from_le_bytes),
            TensorData::Uint8(v) => v.extend_from_slice(raw),
            TensorData::Bool(v) => v.extend(raw.iter().map(|&b| b != 0)),
        }
    }
}

/// The typed field's elements (the length already checked); the narrow types that ONNX
/// widens into `int32_data` are checked to fit.
fn from_typed(proto: TensorProto, data_type: DataType) -> Result<TensorData, TensorProblem> {
    fn narrow<T: TryFrom<i32>>(
        values: &[i32],
        data_type: DataType,
    ) -> Result<Vec<T>, TensorProblem> {
        values
            .iter()
            .map(|&v| {
                T::try_from(v).map_err(|_| TensorProblem::ValueRange {
                    data_type,
                    value: v,
                })
            })
            .collect()
    }
    let ints = &proto.int32_data;
    Ok(match data_type {
        DataType::Float => TensorData::Float(proto.float_data),
        DataType::Double => TensorData::Double(proto.double_data),
        DataType::Int64 => TensorData::Int64(proto.int64_data),
        DataType::Int32 => TensorData::Int32(proto.int32_data),
        DataType::Int8 => TensorData::Int8(narrow(ints, data_type)?),
        DataType::Uint8 => TensorData::Uint8(narrow(ints, data_type)?),
        DataType::Bool => TensorData::Bool(
            narrow::<u8>(ints, data_type)?
                .into_iter()
                .map(|b| b != 0)
                .collect(),
        ),
        // Half-precision values travel as their 16 bits.
        DataType::Float16 => TensorData::Float16(
            narrow::<u16>(ints, data_type)?
                .into_iter()
                .map(f16::from_bits)
                .collect(),
        ),
        DataType::BFloat16 => TensorData::BFloat16(
            narrow::<u16>(ints, data_type)?
                .into_iter()
                .map(bf16::from_bits)
                .collect(),
        ),
    })
}
