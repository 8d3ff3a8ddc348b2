//! The validated graph: every value has exactly one producer, every node input is produced,
//! the nodes form a DAG and are kept in topological order, declared shapes agree with the
//! initializers they describe.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::names::check_name;
use crate::node::{Node, read_node};
use crate::proto::onnx::{
    GraphProto, NodeProto, ValueInfoProto, tensor_shape_proto::dimension, type_proto,
};
use crate::tensor::{DataType, Header, Tensor, TensorReader};

/// One dimension of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(u64),
    /// A named size (`"batch"`, `"height"`): the same name is the same size.
    Symbolic(String),
    /// No size given (or a negative one, as some exporters write for "any").
    Unknown,
}

/// A value's declared type: its element type and shape, when the file gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    /// ONNX's `TensorProto.DataType` code; 0 when not given or not a tensor.
    pub elem_type: i32,
    /// `None` when the file gives no shape (any rank).
    pub shape: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The element type, when it is one this crate reads.
    pub fn data_type(&self) -> Option<DataType> {
        DataType::from_code(self.elem_type)
    }

    /// Whether an initializer of `dims` fits the declared shape.
    fn admits(&self, dims: &[usize]) -> bool {
        self.shape.as_ref().is_none_or(|shape| {
            shape.len() == dims.len()
                && shape.iter().zip(dims).all(|(d, &n)| match d {
                    Dim::Fixed(f) => *f == n as u64,
                    Dim::Symbolic(_) | Dim::Unknown => true,
                })
        })
    }
}

/// `[batch, 3, 224, 224]`: a symbolic size by its name, `?` for an unknown one.
pub fn shape_text(dims: &[Dim]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) => s.clone(),
            Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// What produces a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// `Graph::initializers[i]`.
    Initializer(usize),
    /// `Graph::inputs[i]`.
    Input(usize),
    /// `Graph::nodes[i]` (topological position).
    Node(usize),
}

/// A model's main graph, checked.
#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    /// The inputs a caller feeds (those that are not initializers), in file order.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Declared types of intermediate values (shape inference's results, when present).
    pub value_info: Vec<ValueInfo>,
    pub initializers: Vec<Tensor>,
    /// In topological order: every node comes after the producers of its inputs.
    pub nodes: Vec<Node>,
    producers: HashMap<String, Producer>,
}

impl Graph {
    /// What produces `value`.
    pub fn producer(&self, value: &str) -> Option<Producer> {
        self.producers.get(value).copied()
    }

    pub fn initializer(&self, name: &str) -> Option<&Tensor> {
        match self.producer(name)? {
            Producer::Initializer(i) => Some(&self.initializers[i]),
            _ => None,
        }
    }

    /// The declared type of `value`: a graph input or output, or a `value_info` entry.
    pub fn declared(&self, value: &str) -> Option<&ValueInfo> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.value_info)
            .find(|v| v.name == value)
    }
}

/// Reads and checks a graph. Sparse initializers and subgraphs are not read.
pub(crate) fn read_graph(
    proto: GraphProto,
    file: &Arc<Path>,
    tensors: &mut TensorReader,
) -> Result<Graph> {
    let error = |kind| Error::new(file, kind);
    if let Some(sparse) = proto.sparse_initializer.first() {
        let name = sparse.values.as_ref().and_then(|v| v.name.clone());
        return Err(error(ErrorKind::SparseInitializer {
            name: convnet::names::shorten(&name.unwrap_or_default(), 80).into_owned(),
        }));
    }
    let limits = tensors.limits;
    let mut values = Values::default();
    // The initializers' names, types and dims first: their data is read last, once the
    // graph is known to be good.
    let headers: Vec<Header> = proto
        .initializer
        .iter()
        .map(|t| tensors.header(t, "initializer"))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    register_initializers(&headers, &mut values).map_err(error)?;
    let declared = |list: Vec<ValueInfoProto>| -> Result<Vec<ValueInfo>> {
        let list: Vec<ValueInfo> = list
            .into_iter()
            .map(|v| value_info(v, limits))
            .collect::<Result<_, _>>()
            .map_err(error)?;
        for v in &list {
            check_against_initializer(v, &values, &headers).map_err(error)?;
        }
        Ok(list)
    };
    // Inputs named like an initializer are its declaration (IR < 4 lists every weight there).
    let inputs: Vec<ValueInfo> = declared(proto.input)?
        .into_iter()
        .filter(|v| values.initializer(&v.name).is_none())
        .collect();
    let value_info = declared(proto.value_info)?;
    let outputs = declared(proto.output)?;
    for (i, v) in inputs.iter().enumerate() {
        values
            .add(&v.name, Producer::Input(i), "a graph input")
            .map_err(error)?;
    }
    let nodes = read_nodes(proto.node, file, tensors, &mut values)?;
    check_inputs_produced(&nodes, &values.producers)?;
    let nodes = topological_order(nodes, &values.producers)?;
    let mut producers = values.producers;
    for (position, node) in nodes.iter().enumerate() {
        for output in node.outputs.iter().filter(|o| !o.is_empty()) {
            producers.insert(output.clone(), Producer::Node(position));
        }
    }
    if let Some(missing) = outputs.iter().find(|o| !producers.contains_key(&o.name)) {
        return Err(error(ErrorKind::UnknownGraphOutput {
            name: missing.name.clone(),
        }));
    }
    let initializers = proto
        .initializer
        .into_iter()
        .map(|t| tensors.read(t, "initializer"))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    Ok(Graph {
        name: proto.name.unwrap_or_default(),
        inputs,
        outputs,
        value_info,
        initializers,
        nodes,
        producers,
    })
}

/// Every initializer as the producer of its name; each must have one.
fn register_initializers(headers: &[Header], values: &mut Values) -> Result<(), ErrorKind> {
    for (i, header) in headers.iter().enumerate() {
        if header.name.is_empty() {
            return Err(ErrorKind::UnnamedInitializer { index: i });
        }
        values.add(&header.name, Producer::Initializer(i), "an initializer")?;
    }
    Ok(())
}

/// The nodes in file order, each registered as the producer of its outputs.
fn read_nodes(
    protos: Vec<NodeProto>,
    file: &Arc<Path>,
    tensors: &mut TensorReader,
    values: &mut Values,
) -> Result<Vec<Node>> {
    let mut nodes = Vec::with_capacity(protos.len());
    for (i, proto) in protos.into_iter().enumerate() {
        let node = read_node(proto, i, file, tensors)?;
        for output in node.outputs.iter().filter(|o| !o.is_empty()) {
            let label = node.node_ref().to_string();
            values
                .add_owned(output, Producer::Node(i), label)
                .map_err(|kind| node.error(kind))?;
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// Every node input (but the optional ones left out) has a producer.
fn check_inputs_produced(nodes: &[Node], producers: &HashMap<String, Producer>) -> Result<()> {
    for node in nodes {
        let missing = node
            .inputs
            .iter()
            .find(|i| !i.is_empty() && !producers.contains_key(i.as_str()));
        if let Some(input) = missing {
            return Err(node.error(ErrorKind::MissingInput {
                input: input.clone(),
            }));
        }
    }
    Ok(())
}

/// The producer of every value, and how errors name each producer.
#[derive(Default)]
struct Values {
    producers: HashMap<String, Producer>,
    labels: HashMap<String, String>,
}

impl Values {
    fn add(&mut self, name: &str, producer: Producer, label: &str) -> Result<(), ErrorKind> {
        self.add_owned(name, producer, label.to_string())
    }

    fn add_owned(
        &mut self,
        name: &str,
        producer: Producer,
        label: String,
    ) -> Result<(), ErrorKind> {
        if let Some(first) = self.labels.get(name) {
            return Err(ErrorKind::DuplicateValue {
                name: name.to_string(),
                first: first.clone(),
                second: label,
            });
        }
        self.producers.insert(name.to_string(), producer);
        self.labels.insert(name.to_string(), label);
        Ok(())
    }

    fn initializer(&self, name: &str) -> Option<usize> {
        match self.producers.get(name)? {
            Producer::Initializer(i) => Some(*i),
            _ => None,
        }
    }
}

/// A declared value's type and shape, checked against the initializer of the same name.
fn check_against_initializer(
    v: &ValueInfo,
    values: &Values,
    initializers: &[Header],
) -> Result<(), ErrorKind> {
    let Some(i) = values.initializer(&v.name) else {
        return Ok(());
    };
    let tensor = &initializers[i];
    if v.elem_type != 0 && v.elem_type != tensor.data_type.code() {
        return Err(ErrorKind::TypeMismatch {
            name: v.name.clone(),
            declared: DataType::code_name(v.elem_type),
            actual: tensor.data_type,
        });
    }
    if !v.admits(&tensor.dims) {
        return Err(ErrorKind::ShapeMismatch {
            name: v.name.clone(),
            declared: shape_text(v.shape.as_deref().unwrap_or_default()),
            dims: tensor.dims.clone(),
        });
    }
    Ok(())
}

fn value_info(proto: ValueInfoProto, limits: &Limits) -> Result<ValueInfo, ErrorKind> {
    let name = proto.name.unwrap_or_default();
    check_name("a value name", &name)?;
    let tensor_type = match proto.r#type.and_then(|t| t.value) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => {
            return Ok(ValueInfo {
                name,
                elem_type: 0,
                shape: None,
            });
        }
    };
    let shape = match tensor_type.shape {
        None => None,
        Some(shape) if shape.dim.len() > limits.max_rank => {
            return Err(ErrorKind::RankTooLarge {
                name,
                rank: shape.dim.len(),
                limit: limits.max_rank,
            });
        }
        Some(shape) => Some(
            shape
                .dim
                .into_iter()
                .map(|d| match d.value {
                    Some(dimension::Value::DimValue(n)) => {
                        Ok(u64::try_from(n).map_or(Dim::Unknown, Dim::Fixed))
                    }
                    Some(dimension::Value::DimParam(p)) => {
                        check_name("a dimension name", &p)?;
                        Ok(Dim::Symbolic(p))
                    }
                    None => Ok(Dim::Unknown),
                })
                .collect::<Result<_, ErrorKind>>()?,
        ),
    };
    Ok(ValueInfo {
        name,
        elem_type: tensor_type.elem_type.unwrap_or(0),
        shape,
    })
}

/// The nodes in topological order, keeping the file's order wherever it already is one;
/// a cycle is an error naming the nodes on it.
fn topological_order(nodes: Vec<Node>, producers: &HashMap<String, Producer>) -> Result<Vec<Node>> {
    // For each node, the nodes producing its inputs (with repeats, one per input).
    let predecessors: Vec<Vec<usize>> = nodes
        .iter()
        .map(|node| {
            node.inputs
                .iter()
                .filter_map(|i| match producers.get(i) {
                    Some(Producer::Node(p)) => Some(*p),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut successors = vec![Vec::new(); nodes.len()];
    let mut waiting: Vec<usize> = predecessors.iter().map(Vec::len).collect();
    for (n, preds) in predecessors.iter().enumerate() {
        for &p in preds {
            successors[p].push(n);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&n| waiting[n] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(n)) = ready.pop() {
        order.push(n);
        for &s in &successors[n] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.push(Reverse(s));
            }
        }
    }
    if order.len() < nodes.len() {
        let cycle = find_cycle(&waiting, &predecessors);
        let path = describe_cycle(&cycle, &nodes);
        return Err(nodes[cycle[0]].error(ErrorKind::Cycle { path }));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|n| slots[n].take()).collect())
}

/// One cycle among the nodes left waiting, in data-flow order from its first node in the
/// file. Every waiting node has a waiting predecessor, so walking predecessors from one must
/// come back on itself.
fn find_cycle(waiting: &[usize], predecessors: &[Vec<usize>]) -> Vec<usize> {
    let start = waiting.iter().position(|&w| w > 0).unwrap_or(0);
    let mut seen_at = vec![usize::MAX; waiting.len()];
    let mut walk = Vec::new();
    let mut n = start;
    while seen_at[n] == usize::MAX {
        seen_at[n] = walk.len();
        walk.push(n);
        match predecessors[n].iter().find(|&&p| waiting[p] > 0) {
            Some(&p) => n = p,
            None => break,
        }
    }
    let from = seen_at[n].min(walk.len().saturating_sub(1));
    let mut cycle = walk.split_off(from);
    cycle.reverse();
    let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
    cycle.rotate_left(first);
    cycle
}

/// `"a" -> "b" -> "a"`, shortened when the cycle is long.
fn describe_cycle(cycle: &[usize], nodes: &[Node]) -> String {
    let label = |n: usize| match nodes[n].name.as_str() {
        "" => format!("#{n}"),
        name => format!("\"{}\"", convnet::names::shorten(name, 60)),
    };
    let mut parts: Vec<String> = if cycle.len() <= 6 {
        cycle.iter().map(|&n| label(n)).collect()
    } else {
        let mut p: Vec<String> = cycle[..3].iter().map(|&n| label(n)).collect();
        p.push(format!("({} more)", cycle.len() - 5));
        p.extend(cycle[cycle.len() - 2..].iter().map(|&n| label(n)));
        p
    };
    parts.push(label(cycle[0]));
    parts.join(" -> ")
}
