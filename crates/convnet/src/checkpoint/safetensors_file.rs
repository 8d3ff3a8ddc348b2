//! Reading safetensors files without trusting them.
//!
//! The header is parsed here rather than by the `safetensors` crate so that every error names
//! the tensor at fault, and every size a header declares (its own length, each tensor's shape
//! and byte range) is checked against the file's real length before anything is allocated
//! from it. Tensor data is read one tensor at a time, so a caller that knows which tensors it
//! wants (a model) never reads more than those.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use convnet_core::Tensor;
use safetensors::Dtype;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, Result};
use crate::names;

/// The longest header accepted. A header lists each tensor in about 100 bytes, so this is
/// room for some 80,000 tensors.
pub const MAX_HEADER_BYTES: u64 = 8 << 20;

/// The most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;

/// One tensor as the header describes it, checked against the file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the data section (after the header).
    pub begin: u64,
    pub end: u64,
}

/// An open safetensors file whose header has been read and checked.
pub struct SafetensorsFile {
    path: PathBuf,
    file: File,
    /// Where the data section starts in the file.
    data_start: u64,
    /// The tensors, in the order of their data.
    pub entries: Vec<Entry>,
}

impl SafetensorsFile {
    /// Open `path` and check its header against the file's length.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bad = |reason: String| Error::file(path, format!("not a safetensors file: {reason}"));
        if file_len < 8 {
            return Err(bad(format!(
                "{file_len} bytes, shorter than the 8-byte header length that starts one"
            )));
        }
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes)
            .map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > file_len - 8 {
            return Err(bad(format!(
                "the header is said to be {header_len} bytes long, but the file has {} after \
                 the length",
                file_len - 8
            )));
        }
        if header_len > MAX_HEADER_BYTES {
            return Err(bad(format!(
                "a header of {header_len} bytes (at most {MAX_HEADER_BYTES} are accepted)"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| Error::io(path, e))?;
        let raw = parse_header(&header).map_err(|e| bad(format!("header: {e}")))?;
        let data_len = file_len - 8 - header_len;
        let entries = check_entries(raw, data_len).map_err(|e| Error::file(path, e))?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            file,
            data_start: 8 + header_len,
            entries,
        })
    }

    /// The raw bytes of `entry` (whose size the header check has bounded by the file).
    fn bytes(&mut self, entry: &Entry) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; (entry.end - entry.begin) as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + entry.begin))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(bytes)
    }

    /// The values of `entry` as f32 (f64 rounded, int64 converted).
    pub fn read_f32(&mut self, entry: &Entry) -> Result<Tensor> {
        let bytes = self.bytes(entry)?;
        let values: Vec<f32> = match entry.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(eight(b)) as f32)
                .collect(),
            _ => bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(eight(b)) as f32)
                .collect(),
        };
        Tensor::new(entry.shape.clone(), values)
            .map_err(|e| Error::file(&self.path, format!("tensor {}: {e}", entry.name)))
    }

    /// The single value of a one-element tensor as a count (a whole number, not negative),
    /// read exactly for int64.
    pub fn read_count(&mut self, entry: &Entry) -> Result<u64> {
        let count = entry.shape.iter().product::<usize>();
        let path = self.path.clone();
        let problem = |what: String| {
            Error::file(
                &path,
                format!(
                    "tensor {} should be one whole number, not negative: {what}",
                    entry.name
                ),
            )
        };
        if count != 1 {
            return Err(problem(format!("it has {count} values")));
        }
        if entry.dtype == Dtype::I64 {
            let v = i64::from_le_bytes(eight(&self.bytes(entry)?));
            return u64::try_from(v).map_err(|_| problem(format!("it is {v}")));
        }
        let v = self.read_f32(entry)?.data()[0];
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
            Ok(v as u64)
        } else {
            Err(problem(format!("it is {v}")))
        }
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out
}

/// A header entry as written, before it is checked.
struct RawEntry {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    offsets: [u64; 2],
}

/// The tensors of a header (`__metadata__` is skipped); errors name the tensor.
fn parse_header(bytes: &[u8]) -> std::result::Result<Vec<RawEntry>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let entries = de
        .deserialize_map(HeaderVisitor)
        .map_err(|e| e.to_string())?;
    // Safetensors pads the header with spaces; anything else after the JSON is an error.
    de.end().map_err(|e| e.to_string())?;
    Ok(entries)
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Vec<RawEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if name == "__metadata__" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            names::check_len(&name).map_err(|e| de::Error::custom(format!("tensor name: {e}")))?;
            let info: EntryInfo = map
                .next_value()
                .map_err(|e| de::Error::custom(format!("tensor {name}: {e}")))?;
            out.push(RawEntry {
                name,
                dtype: info.dtype,
                shape: info.shape.0,
                offsets: info.data_offsets,
            });
        }
        Ok(out)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryInfo {
    dtype: String,
    shape: Dims,
    data_offsets: [u64; 2],
}

/// A shape of at most [`MAX_RANK`] dimensions (refused as soon as it grows longer, so a
/// header cannot make a long one).
struct Dims(Vec<u64>);

impl<'de> serde::Deserialize<'de> for Dims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct DimsVisitor;
        impl<'de> Visitor<'de> for DimsVisitor {
            type Value = Dims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX_RANK} sizes")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Dims, A::Error> {
                let mut dims = Vec::new();
                while let Some(d) = seq.next_element::<u64>()? {
                    if dims.len() == MAX_RANK {
                        return Err(de::Error::custom(format!(
                            "a shape of more than {MAX_RANK} dimensions"
                        )));
                    }
                    dims.push(d);
                }
                Ok(Dims(dims))
            }
        }
        d.deserialize_seq(DimsVisitor)
    }
}

/// Check each entry's dtype, shape and byte range, and that the tensors' data follow one
/// another and fill the `data_len` bytes after the header exactly.
fn check_entries(raw: Vec<RawEntry>, data_len: u64) -> std::result::Result<Vec<Entry>, String> {
    let mut entries = raw
        .into_iter()
        .map(check_entry)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = entries.iter().find(|e| !seen.insert(e.name.as_str())) {
        return Err(format!("tensor {} is listed twice", twice.name));
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut at = 0u64;
    let mut previous: Option<&str> = None;
    for e in &entries {
        if e.begin != at {
            return Err(match previous {
                Some(p) if e.begin < at => format!(
                    "tensor {} starts at byte {} of the data, inside tensor {p} (which ends at \
                     byte {at})",
                    e.name, e.begin
                ),
                Some(p) => format!(
                    "tensor {} starts at byte {} of the data, but tensor {p} ends at byte {at}: \
                     tensors must follow one another",
                    e.name, e.begin
                ),
                None => format!(
                    "tensor {} starts at byte {} of the data; the first tensor must start at 0",
                    e.name, e.begin
                ),
            });
        }
        if e.end > data_len {
            return Err(format!(
                "tensor {} ends at byte {} of the data, but the file holds only {data_len} \
                 bytes of data (truncated?)",
                e.name, e.end
            ));
        }
        at = e.end;
        previous = Some(&e.name);
    }
    if at != data_len {
        return Err(format!(
            "the file holds {data_len} bytes of data but its tensors end at byte {at}{}",
            previous.map_or(String::new(), |p| format!(" (after tensor {p})"))
        ));
    }
    Ok(entries)
}

fn check_entry(raw: RawEntry) -> std::result::Result<Entry, String> {
    let name = raw.name;
    let (dtype, size) = match raw.dtype.as_str() {
        "F32" => (Dtype::F32, 4u64),
        "F64" => (Dtype::F64, 8),
        "I64" => (Dtype::I64, 8),
        other => {
            return Err(format!(
                "tensor {name} has dtype {other}; float32, float64 or int64 expected"
            ));
        }
    };
    let shape_text = format!("{:?}", raw.shape);
    let bytes = raw
        .shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor {name}: shape {shape_text} is too large"))?;
    let shape = raw
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("tensor {name}: shape {shape_text} is too large"))?;
    let [begin, end] = raw.offsets;
    if end < begin || end - begin != bytes {
        return Err(format!(
            "tensor {name}: data_offsets [{begin}, {end}] do not fit its shape {shape_text} of \
             {} ({bytes} bytes)",
            raw.dtype
        ));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}
