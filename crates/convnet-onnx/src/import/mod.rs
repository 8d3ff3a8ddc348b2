//! ONNX graph -> convnet model: a [`ModelSpec`] and its weights under names kept from the
//! graph.
//!
//! The nodes are converted in topological order, each with ONNX's semantics. A node either
//! becomes convnet layers (`Conv` a `conv2d`, `Gemm` a `linear`, ...), or is computed now
//! when its inputs are constants (initializers, `Constant` nodes, the shape of a value: the
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape` chains exporters write for a flatten
//! fold away), or is a no-op (`Dropout`, `Identity`, a `Transpose` that moves only axes of
//! size one). Anything else is an error naming the operator, the node and the supported
//! operators: nothing is skipped silently.
//!
//! Shapes are fixed: the image input's `[C, H, W]` comes from the graph (or
//! [`ImportOptions::input_shape`]), so every shape is known while converting; the batch size
//! stays free.
//!
//! A layer is named after its weight's initializer (`layer1.0.conv1.weight` makes the layer
//! `layer1.0.conv1`, so the weights keep their PyTorch `state_dict` names) or after its node;
//! names convnet cannot take (empty, with spaces, taken, too long) are changed, and
//! [`Imported::names`] records every layer's node.

mod fold;
mod layers;
mod naming;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use convnet::core::Tensor as Weights;
use convnet::core::tensor::MAX_TENSOR_ELEMENTS;
use convnet::layers::{BufferMut, ConstantConfig, Conv2dConfig, LayerKind, LinearConfig};
use convnet::spec::INPUT;
use convnet::{LayerSpec, Model, ModelSpec};

use crate::error::{Error, ErrorKind, Result};
use crate::graph::Dim;
use crate::model::OnnxModel;
use crate::node::Node;
use naming::Namer;
use value::{Const, Flow, Value};

/// What the conversion may be told.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The per-sample input shape `[C, H, W]`, for graphs whose input sizes are symbolic
    /// (or to override them).
    pub input_shape: Option<[usize; 3]>,
}

/// Which ONNX node a convnet layer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMap {
    /// The convnet layer.
    pub layer: String,
    /// The ONNX node's name (empty when it has none).
    pub node: String,
    /// The ONNX value the layer outputs.
    pub output: String,
}

/// A converted model: its description, its weights by `state_dict` name, and where each
/// layer came from.
#[derive(Debug, Clone)]
pub struct Imported {
    pub spec: ModelSpec,
    /// Every parameter and buffer tensor of the model (`<layer>.weight`, ...).
    pub weights: BTreeMap<String, Weights>,
    pub names: Vec<NameMap>,
}

impl Imported {
    /// The model, built and given its weights.
    pub fn into_model(mut self) -> convnet::Result<Model> {
        let mut model = Model::from_spec(&self.spec, 0)?;
        let missing = |name: &str| convnet::Error::Model(format!("no weights for {name}"));
        for (name, param) in model.params_mut() {
            param.value = self.weights.remove(&name).ok_or_else(|| missing(&name))?;
        }
        for (name, buffer) in model.buffers_mut() {
            match buffer {
                BufferMut::Tensor(t) => {
                    *t = self.weights.remove(&name).ok_or_else(|| missing(&name))?
                }
                BufferMut::Count(_) => {}
            }
        }
        if let Some(name) = self.weights.keys().next() {
            return Err(convnet::Error::Model(format!("{name} is not in the model")));
        }
        // Shapes are set by the conversion from the layer plans; check them all the same.
        model.check_values().map_err(convnet::Error::Model)?;
        Ok(model)
    }
}

/// Converts `model` (consumed: its weights move into the result).
pub fn import(model: OnnxModel, options: &ImportOptions) -> Result<Imported> {
    let opset = model.default_opset();
    let OnnxModel { path, graph, .. } = model;
    let input = image_input(&graph, &path, options)?;
    let mut converter = Converter::new(&path, input, opset);
    let mut uses: HashMap<String, usize> = HashMap::new();
    for name in graph.nodes.iter().flat_map(|n| &n.inputs) {
        *uses.entry(name.clone()).or_default() += 1;
    }
    for output in &graph.outputs {
        *uses.entry(output.name.clone()).or_default() += 1;
    }
    converter.uses = uses;
    for tensor in graph.initializers {
        converter.pending.insert(
            tensor.name.clone(),
            Value::Const(Const::from_tensor(tensor)),
        );
    }
    let input_name = graph.inputs[0].name.clone();
    converter.define(
        &input_name,
        Value::Flow(Flow {
            source: INPUT.to_string(),
            shape: input.to_vec(),
        }),
    );
    for node in &graph.nodes {
        converter.convert(node)?;
    }
    converter.finish(graph.outputs.iter().map(|o| o.name.as_str()))
}

/// The per-sample shape of the graph's one input: `[C, H, W]` from its declared
/// `[N, C, H, W]`, or `options.input_shape`; at most [`MAX_TENSOR_ELEMENTS`] values.
fn image_input(graph: &crate::Graph, path: &Path, options: &ImportOptions) -> Result<[usize; 3]> {
    let error = |reason: String| Error::new(path, ErrorKind::InputShape(reason));
    let [input] = graph.inputs.as_slice() else {
        return Err(error(format!(
            "the graph has {} inputs; convnet imports graphs of one image input",
            graph.inputs.len()
        )));
    };
    let dims = input.shape.as_deref().unwrap_or(&[]);
    let fixed: Vec<Option<usize>> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => usize::try_from(*n).ok().filter(|&n| n > 0),
            Dim::Symbolic(_) | Dim::Unknown => None,
        })
        .collect();
    let [c, h, w] = match (options.input_shape, fixed.as_slice()) {
        (Some(shape), _) => shape,
        (None, [_, Some(c), Some(h), Some(w)]) => [*c, *h, *w],
        (None, _) => {
            return Err(error(format!(
                "input \"{}\" has shape {}; an image input [N, C, H, W] with fixed C, H, W is \
                 needed (convnet import takes --input-shape HxWxC)",
                input.name,
                crate::graph::shape_text(dims)
            )));
        }
    };
    match c.checked_mul(h).and_then(|n| n.checked_mul(w)) {
        Some(n) if n > 0 && n <= MAX_TENSOR_ELEMENTS => Ok([c, h, w]),
        _ => Err(error(format!(
            "input \"{}\" of {c}x{h}x{w} (C x H x W) values per image: give 1 to \
             {MAX_TENSOR_ELEMENTS} values",
            input.name
        ))),
    }
}

/// A planned layer's parameters: their local names and shapes.
type ParamShapes = Vec<(&'static str, Vec<usize>)>;

/// The state of a conversion.
struct Converter {
    file: PathBuf,
    /// The version of the standard operator set (some defaults depend on it).
    opset: i64,
    values: HashMap<String, Value>,
    /// Initializers not yet read by a node.
    pending: HashMap<String, Value>,
    /// How many more times each value is read (by nodes and as a graph output).
    uses: HashMap<String, usize>,
    spec: ModelSpec,
    weights: BTreeMap<String, Weights>,
    namer: Namer,
    names: Vec<NameMap>,
    /// Layers whose bias may still absorb a constant `Add` (a `MatMul`'s zero bias, a
    /// `Conv` whose output is read once): by the value they output, the layer's index.
    bias_open: HashMap<String, usize>,
}

impl Converter {
    fn new(file: &Path, input: [usize; 3], opset: i64) -> Converter {
        Converter {
            file: file.to_path_buf(),
            opset,
            values: HashMap::new(),
            pending: HashMap::new(),
            uses: HashMap::new(),
            spec: ModelSpec::new(input),
            weights: BTreeMap::new(),
            namer: Namer::default(),
            names: Vec::new(),
            bias_open: HashMap::new(),
        }
    }

    fn define(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    /// Input `i` of `node` (`None` when absent or left empty), read once: a value read for
    /// the last time is moved out.
    fn input(&mut self, node: &Node, i: usize) -> Result<Option<Value>> {
        let Some(name) = node.inputs.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        if let Some(value) = self.pending.remove(name) {
            self.values.insert(name.clone(), value);
        }
        let left = self.uses.get_mut(name).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        let value = if left == Some(0) {
            self.values.remove(name)
        } else {
            self.values.get(name).cloned()
        };
        // The graph was checked: every input has a producer, converted before this node.
        value.map(Some).ok_or_else(|| {
            node.error(ErrorKind::MissingInput {
                input: name.clone(),
            })
        })
    }

    /// Input `i`, which must be there.
    fn required(&mut self, node: &Node, i: usize) -> Result<Value> {
        self.input(node, i)?
            .ok_or_else(|| unsupported(node, format!("needs input {i}, which is not given")))
    }

    /// Input `i`, which must be computed by the model.
    fn flow(&mut self, node: &Node, i: usize) -> Result<Flow> {
        match self.required(node, i)? {
            Value::Flow(flow) => Ok(flow),
            Value::Const(_) => Err(unsupported(
                node,
                format!(
                    "input {i} (\"{}\") is a constant where convnet needs the model's data",
                    node.inputs[i]
                ),
            )),
        }
    }

    /// Input `i`, which must be a constant (a weight, a shape, an axis list).
    fn constant(&mut self, node: &Node, i: usize) -> Result<Option<Const>> {
        match self.input(node, i)? {
            None => Ok(None),
            Some(Value::Const(c)) => Ok(Some(c)),
            Some(Value::Flow(_)) => Err(unsupported(
                node,
                format!(
                    "input {i} (\"{}\") is computed by the model; convnet needs it constant \
                     (a weight or a shape known at import)",
                    node.inputs[i]
                ),
            )),
        }
    }

    fn required_constant(&mut self, node: &Node, i: usize) -> Result<Const> {
        self.constant(node, i)?
            .ok_or_else(|| unsupported(node, format!("needs input {i}, which is not given")))
    }

    /// Output 0 of `node` is `value`; further outputs must be unused.
    fn output(&mut self, node: &Node, value: Value) -> Result<()> {
        for extra in node.outputs.iter().skip(1).filter(|o| !o.is_empty()) {
            if self.uses.get(extra).copied().unwrap_or(0) > 0 {
                return Err(unsupported(
                    node,
                    format!("its output \"{extra}\" is read, which convnet cannot compute"),
                ));
            }
        }
        let name = node.outputs.first().cloned().unwrap_or_default();
        self.define(&name, value);
        Ok(())
    }

    /// Appends layer `kind` reading `inputs`, named `name` (or after the node), and makes it
    /// the node's output. Returns the layer's name and the planned shapes of its parameters.
    fn layer(
        &mut self,
        node: &Node,
        name: Option<&str>,
        inputs: &[&Flow],
        kind: impl Into<LayerKind>,
    ) -> Result<(String, ParamShapes)> {
        let (flow, params) = self.add_layer(node, name, inputs, kind.into())?;
        let name = flow.source.clone();
        self.output(node, Value::Flow(flow))?;
        Ok((name, params))
    }

    /// Appends layer `kind` reading `inputs` (a step of `node`, not yet its output); returns
    /// what it outputs and the planned shapes of its parameters.
    fn add_layer(
        &mut self,
        node: &Node,
        name: Option<&str>,
        inputs: &[&Flow],
        kind: LayerKind,
    ) -> Result<(Flow, ParamShapes)> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|f| f.shape.as_slice()).collect();
        let plan = kind
            .plan(&shapes)
            .map_err(|e| node.error(ErrorKind::Layer(e.to_string())))?;
        let name = self.namer.layer_name(name, node);
        let sources: Vec<&str> = inputs.iter().map(|f| f.source.as_str()).collect();
        self.spec
            .layers
            .push(LayerSpec::new(name.clone(), plan.kind.clone()).with_inputs(&sources));
        self.names.push(NameMap {
            layer: name.clone(),
            node: node.name.clone(),
            output: node.outputs.first().cloned().unwrap_or_default(),
        });
        let flow = Flow {
            source: name,
            shape: plan.output.shape.clone(),
        };
        Ok((flow, plan.params))
    }

    /// A `constant` layer holding `k` (named after `value`, the ONNX value it is), as an
    /// operand of `node` whose other operands have per-sample rank `rank`: its per-sample
    /// shape is `k`'s dims without a leading batch axis of 1 (ONNX aligns dims at the right,
    /// as convnet's broadcasting does).
    fn constant_layer(&mut self, node: &Node, value: &str, k: Const, rank: usize) -> Result<Flow> {
        let shape = match k.dims.as_slice() {
            [] => vec![1],
            [1, rest @ ..] if k.dims.len() > rank && !rest.is_empty() => rest.to_vec(),
            dims if dims.len() <= rank => dims.to_vec(),
            dims => {
                return Err(unsupported(
                    node,
                    format!("a constant of dims {dims:?} has more axes than the values it meets"),
                ));
            }
        };
        let kind = ConstantConfig::new(shape.clone());
        let (flow, _) = self.add_layer(node, Some(value), &[], kind.into())?;
        let layer = flow.source.clone();
        self.weight(node, &layer, "value", &shape, k.into_f32())?;
        Ok(flow)
    }

    /// Stores `values` as the layer's tensor `local` of `shape`.
    fn weight(
        &mut self,
        node: &Node,
        layer: &str,
        local: &str,
        shape: &[usize],
        values: Vec<f32>,
    ) -> Result<()> {
        let name = format!("{layer}.{local}");
        let tensor = Weights::new(shape.to_vec(), values)
            .map_err(|e| node.error(ErrorKind::Layer(format!("{name}: {e}"))))?;
        self.weights.insert(name, tensor);
        Ok(())
    }

    /// Lets a later constant `Add` join the bias of layer `index` (made from `node`), when
    /// nothing else reads its output.
    fn open_bias(&mut self, node: &Node, index: usize) {
        let Some(output) = node.outputs.first() else {
            return;
        };
        if self.uses.get(output) == Some(&1) {
            self.bias_open.insert(output.clone(), index);
        }
    }

    /// Whether constant `k` added to `x` (input `i` of `node`) can join the bias of the
    /// layer that outputs `x`: that layer takes one, nothing else reads `x`, and `k` gives
    /// one value, or one per channel.
    fn bias_fits(&self, node: &Node, i: usize, x: &Flow, k: &Const) -> bool {
        self.bias_open.contains_key(&node.inputs[i]) && (k.len() == 1 || k.is_per_channel(&x.shape))
    }

    /// Adds `values` (one, or one per channel) to the bias of layer `index` (a `conv2d` or
    /// `linear` of `channels` outputs), giving it one if it has none.
    fn add_bias(
        &mut self,
        node: &Node,
        index: usize,
        channels: usize,
        values: &[f32],
    ) -> Result<()> {
        let layer = &mut self.spec.layers[index];
        let key = format!("{}.bias", layer.name);
        if !self.weights.contains_key(&key) {
            let kind = &layer.kind;
            layer.kind = if let Some(conv) = kind.downcast_ref::<Conv2dConfig>() {
                conv.with_bias(true).into()
            } else if let Some(linear) = kind.downcast_ref::<LinearConfig>() {
                linear.with_bias(true).into()
            } else {
                return Err(unsupported(
                    node,
                    "adds a bias to a layer that has none".into(),
                ));
            };
            let zeros = Weights::zeros([channels])
                .map_err(|e| node.error(ErrorKind::Layer(e.to_string())))?;
            self.weights.insert(key.clone(), zeros);
        }
        let bias = self.weights.get_mut(&key).map(|b| b.data_mut());
        for (i, b) in bias.into_iter().flatten().enumerate() {
            *b += values[if values.len() == 1 { 0 } else { i }];
        }
        Ok(())
    }

    fn convert(&mut self, node: &Node) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(node.error(ErrorKind::UnsupportedOp {
                op: format!("{}.{}", node.domain, node.op_type),
                supported: SUPPORTED.join(", "),
            }));
        }
        // A node whose inputs are all constants is computed now, when it can be.
        let constant = if node.op_type == "CastLike" {
            self.is_constant(node.inputs.first().map_or("", String::as_str))
        } else {
            self.all_constant(node)
        };
        if fold::foldable(&node.op_type) && constant {
            return fold::fold(self, node);
        }
        layers::convert(self, node)
    }

    fn all_constant(&self, node: &Node) -> bool {
        node.inputs
            .iter()
            .filter(|n| !n.is_empty())
            .all(|n| self.is_constant(n))
    }

    fn is_constant(&self, value: &str) -> bool {
        matches!(
            self.values.get(value).or_else(|| self.pending.get(value)),
            Some(Value::Const(_))
        )
    }

    /// The spec, with the graph's outputs as the model's outputs.
    fn finish<'a>(mut self, outputs: impl Iterator<Item = &'a str>) -> Result<Imported> {
        let mut sources = Vec::new();
        for output in outputs {
            let value = self.values.get(output).or_else(|| self.pending.get(output));
            match value {
                Some(Value::Flow(flow)) if flow.source != INPUT => {
                    sources.push(flow.source.clone())
                }
                _ => {
                    return Err(Error::new(
                        &self.file,
                        ErrorKind::Unsupported(format!(
                            "graph output \"{output}\" is a constant or the input itself; \
                             convnet models output what their layers compute"
                        )),
                    ));
                }
            }
        }
        let last = self.spec.layers.last().map(|l| l.name.clone());
        if !(sources.len() == 1 && Some(&sources[0]) == last.as_ref()) {
            self.spec.outputs = sources;
        }
        self.spec.name = None;
        self.spec
            .plan()
            .map_err(|e| Error::new(&self.file, ErrorKind::Layer(e.to_string())))?;
        Ok(Imported {
            spec: self.spec,
            weights: self.weights,
            names: self.names,
        })
    }
}

/// A node that convnet cannot map as it is used, and why.
pub(crate) fn unsupported(node: &Node, reason: String) -> Error {
    node.error(ErrorKind::Unsupported(reason))
}

/// The operators the converter knows, as its errors list them.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "CastLike",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Elu",
    "Expand (of constants)",
    "Flatten",
    "Gather (of constants)",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "PRelu",
    "Pad",
    "ReduceMean (over H, W)",
    "Relu",
    "Reshape (to [N, -1])",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice (of constants)",
    "Softmax",
    "Squeeze (of constants)",
    "Sub",
    "Tanh",
    "Transpose (moving axes of size 1)",
    "Unsqueeze (of constants)",
    "Upsample",
];
