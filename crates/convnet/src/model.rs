//! A model: a graph of named layers, run forward and backward.
//!
//! Nodes are kept in the order they were declared; each reads the model input or earlier
//! nodes, so that order is a topological order. A chain is a sequence of one-input layers;
//! an `add` node joins two branches (a residual block). Parameters and buffers are named
//! `<node>.<local>` (`features.0.weight`, `bn1.running_mean`): PyTorch's `state_dict` names
//! when the nodes are named after the PyTorch modules.

use convnet_core::{Tensor, add_in_place};

use crate::error::{Error, Result};
use crate::layers::{Buffer, BufferMut, ForwardCtx, Layer, Module, Param};
use crate::spec::ModelSpec;

/// Where a node reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The model's input.
    Input,
    /// The output of an earlier node (by index).
    Node(usize),
}

/// One named layer of a model.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub layer: Layer,
    pub inputs: Vec<Source>,
    /// Per-sample output shape (no batch axis).
    pub output_shape: Vec<usize>,
}

/// What a backward pass should return besides the parameter gradients.
#[derive(Debug, Clone, Default)]
pub struct BackwardRequest<'a> {
    /// The gradient w.r.t. the model input (saliency, activation maximization).
    pub input: bool,
    /// Nodes whose output gradient to return (Grad-CAM).
    pub capture: &'a [usize],
}

/// What a backward pass returned.
#[derive(Debug, Clone, Default)]
pub struct BackwardOutput {
    pub input: Option<Tensor>,
    /// One per requested node (`None` if the output does not depend on it).
    pub captured: Vec<Option<Tensor>>,
}

/// A built model with its parameters.
#[derive(Debug, Clone)]
pub struct Model {
    spec: ModelSpec,
    nodes: Vec<Node>,
    /// Whether each node's output depends on a parameter (else its gradient is only needed
    /// when the input gradient is).
    has_params_upstream: Vec<bool>,
}

impl Model {
    /// Assemble a model from nodes already checked by [`ModelSpec::build`].
    pub(crate) fn from_nodes(spec: ModelSpec, nodes: Vec<Node>) -> Self {
        let mut upstream = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            upstream[i] = !node.layer.params().is_empty()
                || node.inputs.iter().any(|s| match s {
                    Source::Input => false,
                    Source::Node(j) => upstream[*j],
                });
        }
        Model {
            spec,
            nodes,
            has_params_upstream: upstream,
        }
    }

    /// The description this model was built from (what a model file holds).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes, to run or inspect layers one by one (profiling, interpretability).
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    /// Per-sample input shape `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        self.spec.input
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.nodes
            .last()
            .map_or(&self.spec.input[..], |n| &n.output_shape)
    }

    /// Index of the node called `name`, or an error listing the names there are.
    pub fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                Error::model(format!(
                    "no layer named '{name}'; the layers are: {}",
                    names.join(", ")
                ))
            })
    }

    /// Run the model on a batch `[N, C, H, W]`.
    pub fn forward(&mut self, input: &Tensor, ctx: ForwardCtx) -> Result<Tensor> {
        Ok(self.forward_capture(input, ctx, &[])?.0)
    }

    /// Run the model and also return the outputs of the nodes `capture` (by index).
    pub fn forward_capture(
        &mut self,
        input: &Tensor,
        ctx: ForwardCtx,
        capture: &[usize],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.check_input(input)?;
        let n = self.nodes.len();
        if n == 0 {
            return Ok((input.clone(), Vec::new()));
        }
        // How many more reads each output has: at its last read it is handed over (moved)
        // rather than shared, so the layer may overwrite it in place.
        let mut reads_left = vec![0usize; n];
        for node in &self.nodes {
            for s in &node.inputs {
                if let Source::Node(j) = s {
                    reads_left[*j] += 1;
                }
            }
        }
        let mut values: Vec<Option<Tensor>> = vec![None; n];
        let mut captured: Vec<Option<Tensor>> = vec![None; capture.len()];
        for i in 0..n {
            let node = &mut self.nodes[i];
            let mut inputs: Vec<Tensor> = Vec::with_capacity(node.inputs.len());
            for s in &node.inputs {
                let value = match *s {
                    Source::Input => input.clone(),
                    Source::Node(j) => {
                        reads_left[j] -= 1;
                        let v = if reads_left[j] == 0 {
                            values[j].take()
                        } else {
                            values[j].clone()
                        };
                        v.ok_or_else(|| {
                            Error::model(format!("{}: input {j} was dropped early", node.name))
                        })?
                    }
                };
                inputs.push(value);
            }
            let ctx = ForwardCtx {
                node: i as u64,
                ..ctx
            };
            let y = node.layer.forward(inputs, &ctx).map_err(|e| Error::Layer {
                name: node.name.clone(),
                kind: node.layer.kind(),
                error: Box::new(e),
            })?;
            for (slot, &c) in captured.iter_mut().zip(capture) {
                if c == i {
                    *slot = Some(y.clone());
                }
            }
            values[i] = Some(y);
        }
        let out = values[n - 1].take().expect("the last node's output");
        let captured = captured
            .into_iter()
            .zip(capture)
            .map(|(c, &i)| {
                c.ok_or_else(|| Error::model(format!("cannot capture node {i}: no such node")))
            })
            .collect::<Result<_>>()?;
        Ok((out, captured))
    }

    /// Backward from the gradient of the loss w.r.t. the output: accumulates every
    /// parameter's gradient. Needs a forward pass that recorded (training, or evaluation
    /// with `record`).
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<()> {
        self.backward_with(grad_output, &BackwardRequest::default())
            .map(|_| ())
    }

    /// [`Model::backward`], also returning the input gradient and node-output gradients that
    /// `request` asks for.
    pub fn backward_with(
        &mut self,
        grad_output: &Tensor,
        request: &BackwardRequest<'_>,
    ) -> Result<BackwardOutput> {
        if self.nodes.is_empty() {
            return Ok(BackwardOutput {
                input: request.input.then(|| grad_output.clone()),
                captured: vec![None; request.capture.len()],
            });
        }
        self.backward_from(self.nodes.len() - 1, grad_output, request)
    }

    /// Backward from the gradient of an objective w.r.t. the output of node `start` (a unit
    /// inside the model, for activation maximization): as [`Model::backward_with`], with the
    /// nodes after `start` left out.
    pub fn backward_from(
        &mut self,
        start: usize,
        grad: &Tensor,
        request: &BackwardRequest<'_>,
    ) -> Result<BackwardOutput> {
        let n = self.nodes.len();
        if start >= n {
            return Err(Error::model(format!(
                "cannot start backward at node {start}: the model has {n} nodes"
            )));
        }
        let want = &self.nodes[start].output_shape;
        if grad.dims().len() != want.len() + 1 || grad.dims()[1..] != want[..] {
            return Err(Error::model(format!(
                "the gradient for {} has shape {:?}; its output is [N, {}]",
                self.nodes[start].name,
                grad.dims(),
                want.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut out = BackwardOutput {
            input: None,
            captured: vec![None; request.capture.len()],
        };
        // A node's output gradient is needed if a parameter or a requested gradient lies
        // upstream of it.
        let mut needed = self.has_params_upstream.clone();
        for &c in request.capture {
            if c < n {
                needed[c] = true;
            }
        }
        for i in 0..n {
            if request.input
                || self.nodes[i]
                    .inputs
                    .iter()
                    .any(|s| matches!(s, Source::Node(j) if needed[*j]))
            {
                needed[i] = true;
            }
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        grads[start] = Some(grad.clone());
        for i in (0..=start).rev() {
            let Some(g) = grads[i].take() else { continue };
            for (slot, &c) in out.captured.iter_mut().zip(request.capture) {
                if c == i {
                    *slot = Some(g.clone());
                }
            }
            let node = &mut self.nodes[i];
            let need_input_grad = node.inputs.iter().any(|s| match s {
                Source::Input => request.input,
                Source::Node(j) => needed[*j],
            });
            let input_grads =
                node.layer
                    .backward(g, need_input_grad)
                    .map_err(|e| Error::Layer {
                        name: node.name.clone(),
                        kind: node.layer.kind(),
                        error: Box::new(e),
                    })?;
            for (s, gi) in node.inputs.clone().into_iter().zip(input_grads) {
                let Some(gi) = gi else { continue };
                let slot = match s {
                    Source::Input if request.input => &mut out.input,
                    Source::Input => continue,
                    Source::Node(j) if needed[j] => &mut grads[j],
                    Source::Node(_) => continue,
                };
                match slot {
                    Some(acc) => add_in_place(acc, &gi)?,
                    None => *slot = Some(gi),
                }
            }
        }
        Ok(out)
    }

    fn check_input(&self, input: &Tensor) -> Result<()> {
        let want = self.spec.input;
        match input.dims() {
            [_, c, h, w] if [*c, *h, *w] == want => Ok(()),
            dims => Err(Error::model(format!(
                "the model takes inputs [N, {}, {}, {}], got {:?}",
                want[0], want[1], want[2], dims
            ))),
        }
    }

    /// Every parameter with its full name, in declaration order.
    pub fn params(&self) -> Vec<(String, &Param)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.layer
                    .params()
                    .into_iter()
                    .map(move |(local, p)| (format!("{}.{local}", n.name), p))
            })
            .collect()
    }

    pub fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        self.nodes
            .iter_mut()
            .flat_map(|n| {
                let name = n.name.clone();
                n.layer
                    .params_mut()
                    .into_iter()
                    .map(move |(local, p)| (format!("{name}.{local}"), p))
            })
            .collect()
    }

    /// Every buffer with its full name.
    pub fn buffers(&self) -> Vec<(String, Buffer<'_>)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.layer
                    .buffers()
                    .into_iter()
                    .map(move |(local, b)| (format!("{}.{local}", n.name), b))
            })
            .collect()
    }

    pub fn buffers_mut(&mut self) -> Vec<(String, BufferMut<'_>)> {
        self.nodes
            .iter_mut()
            .flat_map(|n| {
                let name = n.name.clone();
                n.layer
                    .buffers_mut()
                    .into_iter()
                    .map(move |(local, b)| (format!("{name}.{local}"), b))
            })
            .collect()
    }

    /// The first parameter that holds a value that is not finite, as an error naming it (a
    /// diverged update, or weights read from a file).
    pub fn check_params_finite(&self) -> Result<(), String> {
        self.params()
            .into_iter()
            .try_for_each(|(name, p)| finite(&name, p.value.data()))
    }

    /// [`Model::check_params_finite`], and the same for every buffer; a batch-norm running
    /// variance must also not be negative. Checked when weights are loaded and saved.
    pub fn check_values(&self) -> Result<(), String> {
        self.check_params_finite()?;
        for (name, buffer) in self.buffers() {
            let Buffer::Tensor(t) = buffer else { continue };
            finite(&name, t.data())?;
            if name.ends_with(".running_var")
                && let Some(i) = t.data().iter().position(|v| *v < 0.0)
            {
                return Err(format!(
                    "{name} holds a negative variance ({} at index {i})",
                    t.data()[i]
                ));
            }
        }
        Ok(())
    }

    /// Number of learnable values.
    pub fn param_count(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value.numel()).sum()
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in self.params_mut() {
            p.zero_grad();
        }
    }

    /// Drop everything recorded for backward.
    pub fn clear(&mut self) {
        for n in &mut self.nodes {
            n.layer.clear();
        }
    }
}

/// `Err` naming `name` and the first value of `values` that is NaN or infinite.
fn finite(name: &str, values: &[f32]) -> Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "{name} holds {} (at index {i} of {})",
            values[i],
            values.len()
        )),
        None => Ok(()),
    }
}
