//! A model file's protobuf without its large tensors' bytes: those are left in the file and
//! read when their tensor is, so a model's weights are never held twice, and a bad graph is
//! refused after reading only its structure.
//!
//! [`read_structure`] copies the protobuf field by field (with the layout table generated from
//! onnx.proto), seeking over every `TensorProto.raw_data` of at least [`LARGE`] bytes: it
//! records where those bytes lie (a [`Span`]) and marks the tensor with `data_location =
//! IN_FILE + i`, a value onnx.proto does not define (prost keeps it as a plain `i32`),
//! written after the tensor's own fields so it wins. A `data_location` other than DEFAULT or
//! EXTERNAL in the file itself is refused, so the only such marks the tensor reader sees are
//! made here. The lengths of the enclosing messages are written anew; fields onnx.proto does
//! not define are dropped (prost would skip them). A truncated file is found at any depth
//! without reading the payloads: some field runs past the end of its message.

use std::io::{BufReader, Read, Seek};

use crate::proto::layout::{MESSAGES, MODEL_PROTO, TENSOR_PROTO};
use crate::wire::{Kind, MAX_DEPTH, past_the_end, varint_from};

/// `raw_data` of at least this many bytes stays in the file until its tensor is read.
pub(crate) const LARGE: u64 = 64 << 10;

/// `data_location = IN_FILE + i`: the tensor's bytes are `spans[i]` of the model file.
pub(crate) const IN_FILE: i32 = 1 << 20;

/// `TensorProto` field numbers (onnx.proto).
const RAW_DATA: u64 = 9;
const DATA_LOCATION: u64 = 14;

/// Where a tensor's bytes lie in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// The protobuf to decode, and where the bytes it leaves out lie.
#[derive(Debug, Default)]
pub(crate) struct Structure {
    pub(crate) bytes: Vec<u8>,
    pub(crate) spans: Vec<Span>,
}

/// The structure of the `len`-byte model in `source`; `Err` says why it is malformed.
pub(crate) fn read_structure(
    source: &mut (impl Read + Seek),
    len: u64,
) -> Result<Structure, String> {
    source.rewind().map_err(|e| e.to_string())?;
    let mut reader = Reader {
        inner: BufReader::new(source),
        pos: 0,
    };
    let mut out = Structure::default();
    copy_message(
        &mut reader,
        len,
        MODEL_PROTO,
        0,
        &mut out.bytes,
        &mut out.spans,
    )?;
    Ok(out)
}

/// A buffered reader that knows its position.
struct Reader<R> {
    inner: BufReader<R>,
    pos: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn varint(&mut self) -> Result<u64, String> {
        let inner = &mut self.inner;
        let (value, n) = varint_from(|| {
            let mut byte = [0u8];
            inner.read_exact(&mut byte).ok().map(|_| byte[0])
        })?;
        self.pos += n;
        Ok(value)
    }

    /// Appends the next `n` bytes to `out` (`n` within the file, checked by the caller).
    fn copy(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let copied =
            std::io::copy(&mut (&mut self.inner).take(n), out).map_err(|e| e.to_string())?;
        if copied < n {
            return Err("the file ended while it was read (did it change?)".into());
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let n_signed = i64::try_from(n).map_err(|_| past_the_end(n, 0))?;
        // Within the buffer this moves no file offset; a large field is one real seek.
        self.inner
            .seek_relative(n_signed)
            .map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Copies the fields of `MESSAGES[message]` up to the file position `end` into `out`, and
/// the spans of the tensor bytes it leaves in the file into `spans`.
fn copy_message<R: Read + Seek>(
    r: &mut Reader<R>,
    end: u64,
    message: usize,
    depth: usize,
    out: &mut Vec<u8>,
    spans: &mut Vec<Span>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("messages nested more than {MAX_DEPTH} deep"));
    }
    let layout = &MESSAGES[message];
    let tensor = message == TENSOR_PROTO;
    // The span this tensor's bytes were left in, when they were.
    let mut left_in_file = None;
    while r.pos < end {
        let key = r.varint()?;
        let number = key >> 3;
        let field = layout.fields.iter().find(|f| u64::from(f.number) == number);
        let keep = field.is_some();
        match key & 7 {
            0 => {
                let value = r.varint()?;
                if tensor && number == DATA_LOCATION && value > 1 {
                    return Err(format!(
                        "a tensor's data_location is {value}, neither DEFAULT (0) nor EXTERNAL (1)"
                    ));
                }
                if keep {
                    put_varint(out, key);
                    put_varint(out, value);
                }
            }
            wire @ (1 | 5) => {
                let n = if wire == 1 { 8 } else { 4 };
                if r.pos + n > end {
                    return Err(past_the_end(n, end - r.pos));
                }
                if keep {
                    put_varint(out, key);
                    r.copy(n, out)?;
                } else {
                    r.skip(n)?;
                }
            }
            2 => {
                let len = r.varint()?;
                let field_end = r.pos.checked_add(len).filter(|&e| e <= end);
                let field_end =
                    field_end.ok_or_else(|| past_the_end(len, end.saturating_sub(r.pos)))?;
                if tensor && number == RAW_DATA {
                    left_in_file = None;
                    if len >= LARGE {
                        left_in_file = Some(spans.len());
                        spans.push(Span { offset: r.pos, len });
                        r.skip(len)?;
                        continue;
                    }
                }
                match field.map(|f| f.kind) {
                    None => r.skip(len)?,
                    Some(Kind::Message(child)) => {
                        let mut sub = Vec::new();
                        copy_message(r, field_end, child, depth + 1, &mut sub, spans)?;
                        put_varint(out, key);
                        put_varint(out, sub.len() as u64);
                        out.extend_from_slice(&sub);
                    }
                    Some(_) => {
                        put_varint(out, key);
                        put_varint(out, len);
                        r.copy(len, out)?;
                    }
                }
            }
            wire => {
                return Err(format!(
                    "wire type {wire} (field {number} of {}) is not used by ONNX",
                    layout.name
                ));
            }
        }
        if r.pos > end {
            return Err(format!(
                "a field of {} runs past the end of its message",
                layout.name
            ));
        }
    }
    if let Some(i) = left_in_file {
        put_varint(out, DATA_LOCATION << 3);
        put_varint(out, (IN_FILE as u64) + i as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::onnx::{GraphProto, ModelProto, TensorProto};
    use prost::Message;
    use std::io::Cursor;

    fn model(raw: &[usize]) -> ModelProto {
        let tensor = |i: usize, n: usize| TensorProto {
            name: Some(format!("t{i}")),
            raw_data: Some(vec![i as u8; n].into()),
            ..Default::default()
        };
        ModelProto {
            ir_version: Some(8),
            graph: Some(GraphProto {
                name: Some("g".into()),
                initializer: raw.iter().enumerate().map(|(i, &n)| tensor(i, n)).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn large_raw_data_is_left_in_the_file_and_marked() {
        let m = model(&[10, LARGE as usize, 3 * LARGE as usize]);
        let bytes = m.encode_to_vec();
        let s = read_structure(&mut Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(s.spans.len(), 2);
        assert!(s.bytes.len() < 200, "{}", s.bytes.len());
        let decoded = ModelProto::decode(s.bytes.as_slice()).unwrap();
        let inits = &decoded.graph.as_ref().unwrap().initializer;
        assert_eq!(inits[0].raw_data.as_deref(), Some(&[0u8; 10][..]));
        for (i, t) in inits.iter().enumerate().skip(1) {
            assert_eq!(t.raw_data, None);
            assert_eq!(t.data_location, Some(IN_FILE + i as i32 - 1));
            let span = s.spans[i - 1];
            let data = &bytes[span.offset as usize..(span.offset + span.len) as usize];
            assert!(data.iter().all(|&b| b == i as u8));
        }
        // Everything else is as it was.
        let mut back = decoded.clone();
        back.graph = m.graph.clone();
        assert_eq!(back, m);
    }

    #[test]
    fn truncation_at_any_depth_is_found_without_the_payloads() {
        let bytes = model(&[10, LARGE as usize]).encode_to_vec();
        for cut in [1, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            let err = read_structure(&mut Cursor::new(&bytes[..cut]), cut as u64).unwrap_err();
            assert!(
                err.contains("past the end") || err.contains("ends inside"),
                "{cut}: {err}"
            );
        }
    }

    #[test]
    fn a_data_location_the_file_sets_beyond_external_is_refused() {
        let mut m = model(&[4]);
        m.graph.as_mut().unwrap().initializer[0].data_location = Some(IN_FILE);
        let bytes = m.encode_to_vec();
        let err = read_structure(&mut Cursor::new(&bytes), bytes.len() as u64).unwrap_err();
        assert!(
            err.contains("neither DEFAULT (0) nor EXTERNAL (1)"),
            "{err}"
        );
    }
}
