//! The memory a protobuf message takes once decoded, bounded from its bytes before decoding.
//!
//! prost bounds every single allocation by the length of its input, but not the sum of them:
//! an empty `AttributeProto` is 2 bytes on the wire and about a kilobyte in memory, so a
//! file of a few megabytes could make the decoder take gigabytes. [`decoded_size`] walks the
//! wire format once with the layout table generated from onnx.proto (`proto/layout.rs`) and
//! returns an upper bound on what decoding will allocate; the caller refuses the file when
//! that bound is over its limit, before prost allocates anything.
//!
//! The bound counts, per field occurrence: a message's in-memory size (twice, for a `Vec`'s
//! spare capacity), a string's or bytes' length, and a packed scalar list's largest possible
//! element count times the element's size (twice). Fields the layout does not know are
//! skipped by prost and cost nothing.

use crate::proto::layout::MESSAGES;

/// How a field lies on the wire, and what one element of it takes in memory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A nested message: its index in `MESSAGES`.
    Message(usize),
    /// A string or bytes field.
    Bytes,
    /// A varint scalar taking this many bytes in memory (bool 1, 32-bit 4, 64-bit 8).
    Varint(u64),
    /// float, fixed32, sfixed32.
    Fixed32,
    /// double, fixed64, sfixed64.
    Fixed64,
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) kind: Kind,
    pub(crate) repeated: bool,
}

impl Field {
    pub(crate) const fn one(number: u32, kind: Kind) -> Field {
        Field {
            number,
            kind,
            repeated: false,
        }
    }

    pub(crate) const fn many(number: u32, kind: Kind) -> Field {
        Field {
            number,
            kind,
            repeated: true,
        }
    }
}

/// One message type of onnx.proto.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) name: &'static str,
    /// `size_of` the generated struct.
    pub(crate) size: usize,
    pub(crate) fields: &'static [Field],
}

/// prost's own nesting limit: deeper input fails to decode, so the walk stops there too.
pub(crate) const MAX_DEPTH: usize = 100;

/// Spare capacity a growing `Vec` may hold: up to its length again.
const GROWTH: u64 = 2;

/// An upper bound, in bytes, on the heap memory that decoding `bytes` as the message
/// `MESSAGES[root]` allocates; `Err` says why the bytes are not a valid message.
pub(crate) fn decoded_size(bytes: &[u8], root: usize) -> Result<u64, String> {
    walk(bytes, root, 0)
}

fn walk(mut bytes: &[u8], message: usize, depth: usize) -> Result<u64, String> {
    if depth > MAX_DEPTH {
        return Err(format!("messages nested more than {MAX_DEPTH} deep"));
    }
    let layout = &MESSAGES[message];
    let mut cost = 0u64;
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = u32::try_from(key >> 3).map_err(|_| format!("bad field key {key}"))?;
        let wire = key & 7;
        let field = layout.fields.iter().find(|f| f.number == number);
        let field_cost = match wire {
            0 => {
                varint(&mut bytes)?;
                scalar_cost(field, wire, layout)?
            }
            1 => {
                take(&mut bytes, 8)?;
                scalar_cost(field, wire, layout)?
            }
            5 => {
                take(&mut bytes, 4)?;
                scalar_cost(field, wire, layout)?
            }
            2 => {
                let len = varint(&mut bytes)?;
                let payload = take(&mut bytes, len)?;
                delimited_cost(field, payload, depth, layout)?
            }
            _ => {
                return Err(format!(
                    "wire type {wire} (field {number} of {}) is not used by ONNX",
                    layout.name
                ));
            }
        };
        cost = cost.saturating_add(field_cost);
    }
    Ok(cost)
}

/// The cost of one varint or fixed-width occurrence (an element of an unpacked list).
fn scalar_cost(field: Option<&Field>, wire: u64, layout: &Message) -> Result<u64, String> {
    let Some(field) = field else { return Ok(0) };
    let size = match (field.kind, wire) {
        (Kind::Varint(size), 0) => size,
        (Kind::Fixed64, 1) => 8,
        (Kind::Fixed32, 5) => 4,
        _ => return Err(wrong_wire_type(field, wire, layout)),
    };
    Ok(if field.repeated { GROWTH * size } else { 0 })
}

/// The cost of one length-delimited occurrence: a message, a string, or a packed list.
fn delimited_cost(
    field: Option<&Field>,
    payload: &[u8],
    depth: usize,
    layout: &Message,
) -> Result<u64, String> {
    let Some(field) = field else { return Ok(0) };
    let len = payload.len() as u64;
    Ok(match field.kind {
        Kind::Message(child) => {
            let own = GROWTH * MESSAGES[child].size as u64;
            own.saturating_add(walk(payload, child, depth + 1)?)
        }
        Kind::Bytes => len + GROWTH * size_of::<Vec<u8>>() as u64,
        // A packed list: every element takes at least one byte on the wire.
        Kind::Varint(size) if field.repeated => GROWTH * size * len,
        Kind::Fixed32 | Kind::Fixed64 if field.repeated => GROWTH * len,
        _ => return Err(wrong_wire_type(field, 2, layout)),
    })
}

fn wrong_wire_type(field: &Field, wire: u64, layout: &Message) -> String {
    format!(
        "field {} of {} has wire type {wire}, which does not fit its type",
        field.number, layout.name
    )
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    varint_from(|| {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        Some(byte)
    })
    .map(|(value, _)| value)
}

/// A varint read byte by byte from `next`, and how many bytes it took.
pub(crate) fn varint_from(mut next: impl FnMut() -> Option<u8>) -> Result<(u64, u64), String> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = next().ok_or("the data ends inside a number")?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err("a number longer than 10 bytes".into())
}

pub(crate) fn past_the_end(len: u64, left: u64) -> String {
    format!("a field of {len} bytes runs past the end of the data ({left} bytes left)")
}

fn take<'a>(bytes: &mut &'a [u8], len: u64) -> Result<&'a [u8], String> {
    match usize::try_from(len) {
        Ok(len) if len <= bytes.len() => {
            let (head, rest) = bytes.split_at(len);
            *bytes = rest;
            Ok(head)
        }
        _ => Err(past_the_end(len, bytes.len() as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::layout::MODEL_PROTO;
    use crate::proto::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto};
    use prost::Message as _;

    /// A model whose graph holds `nodes` nodes of `attributes` empty attributes each.
    fn model_with_empty_attributes(nodes: usize, attributes: usize) -> Vec<u8> {
        let node = NodeProto {
            attribute: vec![AttributeProto::default(); attributes],
            ..Default::default()
        };
        ModelProto {
            graph: Some(GraphProto {
                node: vec![node; nodes],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn empty_messages_are_counted_at_their_size_in_memory() {
        let bytes = model_with_empty_attributes(1, 1000);
        let estimate = decoded_size(&bytes, MODEL_PROTO).unwrap();
        // 2 bytes each on the wire, a whole AttributeProto each in memory.
        assert!(bytes.len() < 2100, "{}", bytes.len());
        assert!(
            estimate >= 1000 * size_of::<AttributeProto>() as u64,
            "{estimate}"
        );
    }

    #[test]
    fn the_estimate_bounds_what_prost_keeps() {
        let bytes = model_with_empty_attributes(3, 7);
        let estimate = decoded_size(&bytes, MODEL_PROTO).unwrap();
        let kept = 3 * size_of::<NodeProto>() + 21 * size_of::<AttributeProto>();
        assert!(estimate >= kept as u64, "{estimate} < {kept}");
        ModelProto::decode(bytes.as_slice()).unwrap();
    }

    #[test]
    fn truncated_and_malformed_input_is_refused_with_a_reason() {
        let bytes = model_with_empty_attributes(2, 2);
        let err = decoded_size(&bytes[..bytes.len() - 1], MODEL_PROTO).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
        let err = decoded_size(&[0x0b], MODEL_PROTO).unwrap_err();
        assert!(err.contains("wire type 3"), "{err}");
        let err = decoded_size(&[0x08, 0xff], MODEL_PROTO).unwrap_err();
        assert!(err.contains("ends inside a number"), "{err}");
    }

    #[test]
    fn nesting_deeper_than_prost_allows_is_refused() {
        // GraphProto.node (1) -> NodeProto.attribute (5) -> AttributeProto.g (6) -> ...
        let mut graph = GraphProto::default();
        for _ in 0..40 {
            graph = GraphProto {
                node: vec![NodeProto {
                    attribute: vec![AttributeProto {
                        g: Some(graph),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
        }
        let bytes = ModelProto {
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec();
        let err = decoded_size(&bytes, MODEL_PROTO).unwrap_err();
        assert!(err.contains("nested more than 100 deep"), "{err}");
    }
}
