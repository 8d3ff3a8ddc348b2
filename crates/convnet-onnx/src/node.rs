//! Nodes and their attributes, with typed accessors whose errors name the node and the
//! attribute.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, NodeRef, Result};
use crate::names::check_name;
use crate::proto::onnx::{AttributeProto, NodeProto, attribute_proto::AttributeType};
use crate::tensor::{Tensor, TensorReader};

/// The value of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
    Tensors(Vec<Tensor>),
    /// A kind not read (subgraphs, sparse tensors, type protos: no CNN operator takes them),
    /// by ONNX's name for it.
    Unread(&'static str),
}

impl AttributeValue {
    /// The kind's name, as errors say it (`int`, `floats`, `graph`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            AttributeValue::Float(_) => "float",
            AttributeValue::Int(_) => "int",
            AttributeValue::String(_) => "string",
            AttributeValue::Tensor(_) => "tensor",
            AttributeValue::Floats(_) => "floats",
            AttributeValue::Ints(_) => "ints",
            AttributeValue::Strings(_) => "strings",
            AttributeValue::Tensors(_) => "tensors",
            AttributeValue::Unread(kind) => kind,
        }
    }
}

/// One attribute of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

/// One operator application: its inputs and outputs are value names (an empty name is an
/// optional input or output left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    /// The operator set's domain: `""` (or `"ai.onnx"`) for the standard operators.
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
    /// Its position among the graph's nodes as the file lists them.
    pub index: usize,
    /// The model file, so errors about this node can name it.
    pub file: Arc<Path>,
}

/// Typed accessors: `get_*` gives `None` when the attribute is absent, the bare name
/// requires it, `*_or` falls back to ONNX's default. A present attribute of another kind is
/// an error naming the node and the attribute.
impl Node {
    /// The node as errors name it.
    pub fn node_ref(&self) -> NodeRef {
        NodeRef {
            index: self.index,
            name: self.name.clone(),
            op_type: self.op_type.clone(),
        }
    }

    /// An error about this node (for the conversion's own checks too).
    pub fn error(&self, kind: ErrorKind) -> Error {
        Error {
            file: self.file.to_path_buf(),
            node: Some(Box::new(self.node_ref())),
            kind: Box::new(kind),
        }
    }

    /// The attribute called `name`, of any kind.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    fn typed<'a, T>(
        &'a self,
        name: &str,
        expected: &'static str,
        pick: impl Fn(&'a AttributeValue) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(value) = self.attribute(name) else {
            return Ok(None);
        };
        pick(value).map(Some).ok_or_else(|| {
            self.error(ErrorKind::AttributeType {
                name: name.into(),
                expected,
                found: value.kind(),
            })
        })
    }

    fn required<T>(&self, name: &str, value: Result<Option<T>>) -> Result<T> {
        value?.ok_or_else(|| self.error(ErrorKind::MissingAttribute { name: name.into() }))
    }

    pub fn get_int(&self, name: &str) -> Result<Option<i64>> {
        self.typed(name, "int", |v| match v {
            AttributeValue::Int(i) => Some(*i),
            _ => None,
        })
    }

    pub fn get_ints(&self, name: &str) -> Result<Option<&[i64]>> {
        self.typed(name, "ints", |v| match v {
            AttributeValue::Ints(i) => Some(i.as_slice()),
            _ => None,
        })
    }

    pub fn get_float(&self, name: &str) -> Result<Option<f32>> {
        self.typed(name, "float", |v| match v {
            AttributeValue::Float(f) => Some(*f),
            _ => None,
        })
    }

    pub fn get_floats(&self, name: &str) -> Result<Option<&[f32]>> {
        self.typed(name, "floats", |v| match v {
            AttributeValue::Floats(f) => Some(f.as_slice()),
            _ => None,
        })
    }

    pub fn get_string(&self, name: &str) -> Result<Option<&str>> {
        self.typed(name, "string", |v| match v {
            AttributeValue::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn get_tensor(&self, name: &str) -> Result<Option<&Tensor>> {
        self.typed(name, "tensor", |v| match v {
            AttributeValue::Tensor(t) => Some(t),
            _ => None,
        })
    }

    pub fn int(&self, name: &str) -> Result<i64> {
        self.required(name, self.get_int(name))
    }

    pub fn ints(&self, name: &str) -> Result<&[i64]> {
        self.required(name, self.get_ints(name))
    }

    pub fn float(&self, name: &str) -> Result<f32> {
        self.required(name, self.get_float(name))
    }

    pub fn floats(&self, name: &str) -> Result<&[f32]> {
        self.required(name, self.get_floats(name))
    }

    pub fn string(&self, name: &str) -> Result<&str> {
        self.required(name, self.get_string(name))
    }

    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.required(name, self.get_tensor(name))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.get_int(name)?.unwrap_or(default))
    }

    pub fn float_or(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.get_float(name)?.unwrap_or(default))
    }

    pub fn string_or<'a>(&'a self, name: &str, default: &'a str) -> Result<&'a str> {
        Ok(self.get_string(name)?.unwrap_or(default))
    }
}

/// Decodes one node (its names checked, its attributes read); `index` is its position in the
/// file.
pub(crate) fn read_node(
    proto: NodeProto,
    index: usize,
    file: &Arc<Path>,
    tensors: &mut TensorReader,
) -> Result<Node> {
    let mut node = Node {
        name: proto.name.unwrap_or_default(),
        op_type: proto.op_type.unwrap_or_default(),
        domain: proto.domain.unwrap_or_default(),
        inputs: proto.input,
        outputs: proto.output,
        attributes: Vec::new(),
        index,
        file: file.clone(),
    };
    check_node_names(&node).map_err(|kind| node.error(kind))?;
    for attribute in proto.attribute {
        let attribute = read_attribute(attribute, tensors).map_err(|kind| node.error(kind))?;
        if node.attribute(&attribute.name).is_some() {
            return Err(node.error(ErrorKind::AttributeTwice {
                name: attribute.name,
            }));
        }
        node.attributes.push(attribute);
    }
    Ok(node)
}

fn check_node_names(node: &Node) -> Result<(), ErrorKind> {
    check_name("a node name", &node.name)?;
    check_name("an operator name", &node.op_type)?;
    check_name("an operator domain", &node.domain)?;
    for name in node.inputs.iter().chain(&node.outputs) {
        check_name("a value name", name)?;
    }
    Ok(())
}

fn read_attribute(
    proto: AttributeProto,
    tensors: &mut TensorReader,
) -> Result<Attribute, ErrorKind> {
    let name = proto.name.clone().unwrap_or_default();
    check_name("an attribute name", &name)?;
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| ErrorKind::AttributeNotUtf8 { name: name.clone() })
    };
    let value = match kind_of(&proto) {
        AttributeType::Float => AttributeValue::Float(proto.f.unwrap_or_default()),
        AttributeType::Int => AttributeValue::Int(proto.i.unwrap_or_default()),
        AttributeType::String => AttributeValue::String(text(proto.s.unwrap_or_default())?),
        AttributeType::Tensor => {
            AttributeValue::Tensor(tensors.read(proto.t.unwrap_or_default(), &name)?)
        }
        AttributeType::Floats => AttributeValue::Floats(proto.floats),
        AttributeType::Ints => AttributeValue::Ints(proto.ints),
        AttributeType::Strings => AttributeValue::Strings(
            proto
                .strings
                .into_iter()
                .map(text)
                .collect::<Result<_, _>>()?,
        ),
        AttributeType::Tensors => AttributeValue::Tensors(
            proto
                .tensors
                .into_iter()
                .map(|t| tensors.read(t, &name))
                .collect::<Result<_, _>>()?,
        ),
        AttributeType::Graph => AttributeValue::Unread("graph"),
        AttributeType::Graphs => AttributeValue::Unread("graphs"),
        AttributeType::SparseTensor => AttributeValue::Unread("sparse_tensor"),
        AttributeType::SparseTensors => AttributeValue::Unread("sparse_tensors"),
        AttributeType::TypeProto => AttributeValue::Unread("type_proto"),
        AttributeType::TypeProtos => AttributeValue::Unread("type_protos"),
        AttributeType::Undefined => AttributeValue::Unread("undefined"),
    };
    Ok(Attribute { name, value })
}

/// The attribute's declared kind or, in files old enough to leave it out, the kind of the
/// field that holds its value.
fn kind_of(p: &AttributeProto) -> AttributeType {
    let declared = AttributeType::try_from(p.r#type.unwrap_or(0)).unwrap_or_default();
    if declared != AttributeType::Undefined {
        return declared;
    }
    let present = [
        (p.f.is_some(), AttributeType::Float),
        (p.i.is_some(), AttributeType::Int),
        (p.s.is_some(), AttributeType::String),
        (p.t.is_some(), AttributeType::Tensor),
        (p.g.is_some(), AttributeType::Graph),
        (!p.floats.is_empty(), AttributeType::Floats),
        (!p.ints.is_empty(), AttributeType::Ints),
        (!p.strings.is_empty(), AttributeType::Strings),
        (!p.tensors.is_empty(), AttributeType::Tensors),
        (!p.graphs.is_empty(), AttributeType::Graphs),
    ];
    present
        .into_iter()
        .find(|(set, _)| *set)
        .map_or(AttributeType::Undefined, |(_, kind)| kind)
}
