//! A model: a graph of named layers, built from a [`ModelSpec`], run forward and backward.
//!
//! Nodes are kept in the order they were declared; each reads model inputs or earlier nodes,
//! so that order is a topological order. A chain is a sequence of one-input layers; an `add`
//! node joins two branches (a residual block). Any node's output can be captured by name
//! ([`Model::node_index`], [`Model::forward_capture`]) and the outputs are any nodes (the
//! last by default). Parameters and buffers are named `<node>.<local>` (`features.0.weight`,
//! `bn1.running_mean`): PyTorch's `state_dict` names when the nodes are named after the
//! PyTorch modules.

use convnet_core::{Activation, Pool2dParams, Tensor, add_in_place};

use crate::error::{Error, Result};
use crate::layers::{
    ActivationLayer, BatchNorm, Buffer, BufferMut, ForwardCtx, Layer, MaxPool2d, Param,
};
use crate::rng::Rng;
use crate::spec::ModelSpec;
pub use crate::spec::Source;

/// One named layer of a model.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// The layer's type name, as model files write it (`conv2d`, ...).
    pub kind: &'static str,
    pub layer: Layer,
    pub inputs: Vec<Source>,
    /// Per-sample output shape (no batch axis).
    pub output_shape: Vec<usize>,
}

/// What a backward pass should compute besides the gradients that lead to it.
#[derive(Debug, Clone, Default)]
pub struct BackwardRequest<'a> {
    /// The gradient w.r.t. the model's (first) input (saliency, activation maximization).
    pub input: bool,
    /// Nodes whose output gradient to return (Grad-CAM).
    pub capture: &'a [usize],
    /// Accumulate every parameter's gradient (training). Without it the pass goes only
    /// where the requested gradients lie, so layers before them are never asked.
    pub params: bool,
}

/// What a backward pass returned.
#[derive(Debug, Clone, Default)]
pub struct BackwardOutput {
    pub input: Option<Tensor>,
    /// One per requested node (`None` if the output does not depend on it).
    pub captured: Vec<Option<Tensor>>,
}

/// What [`Model::backward_observed`] calls with each node (and its index) whose backward is
/// done.
pub type NodeDone<'a> = dyn FnMut(usize, &Node) -> Result<()> + 'a;

/// A built model with its parameters.
#[derive(Debug, Clone)]
pub struct Model {
    spec: ModelSpec,
    nodes: Vec<Node>,
    /// What the model returns, in order.
    outputs: Vec<Source>,
    /// Whether each node has parameters of its own.
    has_params: Vec<bool>,
    /// Whether each node's output depends on a parameter (else its gradient is only needed
    /// when another gradient is).
    has_params_upstream: Vec<bool>,
    /// Per node, what the last forward pass ran fused into it (a batch norm): the ReLU
    /// after it, or that ReLU and the max pooling after that, whose backward is then the
    /// batch norm's (see [`Model::forward_all`]).
    fused: Vec<Fusion>,
}

/// The layers after a batch norm that a forward pass ran in its passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fusion {
    None,
    /// The ReLU after it.
    Relu,
    /// The ReLU after it and the max pooling after that.
    ReluMaxPool,
}

impl Model {
    /// Check every layer of `spec` against its inputs and draw the weights (PyTorch's
    /// default initialization) from `Rng::new(seed)`.
    pub fn from_spec(spec: &ModelSpec, seed: u64) -> Result<Model> {
        let plan = spec.plan()?;
        let mut rng = Rng::new(seed);
        let nodes: Vec<Node> = (plan.nodes.into_iter().enumerate())
            .map(|(index, node)| {
                let kind = node.layer.kind.type_name();
                let layer =
                    (node.layer.build(&mut rng)).map_err(|e| spec.layer_error(index, kind, e))?;
                Ok(Node {
                    name: node.name,
                    kind,
                    layer,
                    inputs: node.inputs,
                    output_shape: node.layer.output.shape,
                })
            })
            .collect::<Result<_>>()?;
        let has_params: Vec<bool> = nodes.iter().map(|n| !n.layer.params().is_empty()).collect();
        let mut upstream = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            upstream[i] = has_params[i]
                || node.inputs.iter().any(|s| match s {
                    Source::Input(_) => false,
                    Source::Node(j) => upstream[*j],
                });
        }
        Ok(Model {
            spec: spec.clone(),
            fused: vec![Fusion::None; nodes.len()],
            nodes,
            outputs: plan.outputs,
            has_params,
            has_params_upstream: upstream,
        })
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

    /// Per-sample shape `[C, H, W]` of the (first) input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.spec.input
    }

    /// Where the model's outputs come from, in order.
    pub fn outputs(&self) -> &[Source] {
        &self.outputs
    }

    /// Per-sample shape of the (first) output.
    pub fn output_shape(&self) -> &[usize] {
        self.shape_of(self.outputs[0])
    }

    /// Per-sample shape of what `source` holds.
    fn shape_of(&self, source: Source) -> &[usize] {
        match source {
            Source::Node(j) => &self.nodes[j].output_shape,
            Source::Input(0) => &self.spec.input,
            Source::Input(k) => &self.spec.extra_inputs[k - 1].shape,
        }
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

    /// Run the model on a batch `[N, C, H, W]`: its (first) output.
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
        let (mut outputs, captured) =
            self.forward_all(std::slice::from_ref(input), ctx, capture)?;
        Ok((outputs.swap_remove(0), captured))
    }

    /// Run the model on one batch per input (in the order of [`ModelSpec::extra_inputs`],
    /// after the image input): every output, and the outputs of the nodes `capture`.
    ///
    /// A batch norm on batch statistics whose output only a ReLU reads (and which is not
    /// captured) runs with that ReLU fused into its output pass, and its backward masks the
    /// gradient itself (`convnet_core::batch_norm_train_relu`): the same values, bit for bit,
    /// with two passes over the activation fewer each way. The ReLU node keeps its output
    /// and yields it as usual. When only a max pooling reads that ReLU's output (not
    /// captured either), the pooling runs in the batch norm's passes too
    /// (`convnet_core::batch_norm_train_relu_max_pool2d`): the ReLU's output is never
    /// written, and backward takes the pooling's gradient straight to the batch norm (a
    /// backward pass that asks for the gradient at the batch norm or the ReLU has them
    /// computed again first: the same values).
    pub fn forward_all(
        &mut self,
        inputs: &[Tensor],
        ctx: ForwardCtx,
        capture: &[usize],
    ) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        self.check_inputs(inputs)?;
        let n = self.nodes.len();
        // How many more reads each output has (a model output counts as one): at its last
        // read it is handed over (moved) rather than shared, so the layer may overwrite it
        // in place.
        let mut reads_left = vec![0usize; n];
        let reads = self.nodes.iter().flat_map(|node| &node.inputs);
        for s in reads.chain(&self.outputs) {
            if let Source::Node(j) = s {
                reads_left[*j] += 1;
            }
        }
        let readers = reads_left.clone();
        let mut values: Vec<Option<Tensor>> = vec![None; n];
        let mut read = |s: Source, values: &mut Vec<Option<Tensor>>| match s {
            Source::Input(k) => Some(inputs[k].clone()),
            Source::Node(j) => {
                reads_left[j] -= 1;
                if reads_left[j] == 0 {
                    values[j].take()
                } else {
                    values[j].clone()
                }
            }
        };
        let mut captured: Vec<Option<Tensor>> = vec![None; capture.len()];
        self.fused = vec![Fusion::None; n];
        // Nodes before this one were computed with a batch norm before them.
        let mut next = 0;
        for (i, &read_by) in readers.iter().enumerate() {
            if i < next {
                continue;
            }
            let fuse = read_by == 1 && !capture.contains(&i) && self.relu_follows(i, &ctx);
            let pool = (self.max_pool_follows(i, &readers, capture)).filter(|_| fuse);
            let node = &mut self.nodes[i];
            let mut layer_inputs: Vec<Tensor> = Vec::with_capacity(node.inputs.len());
            for &s in &node.inputs {
                let value = read(s, &mut values).ok_or_else(|| {
                    Error::model(format!("{}: input {s:?} was dropped early", node.name))
                })?;
                layer_inputs.push(value);
            }
            let ctx = ForwardCtx {
                node: i as u64,
                ..ctx
            };
            let layer_error = |node: &Node, e: Error| Error::Layer {
                name: node.name.clone(),
                kind: node.kind,
                error: Box::new(e),
            };
            let fused_bn = (node.layer.downcast_mut::<BatchNorm>()).filter(|_| fuse);
            let (y, at) = match fused_bn {
                Some(bn) => {
                    let y = match &pool {
                        Some(params) => bn.forward_relu_max_pool(layer_inputs, &ctx, params),
                        None => bn.forward_relu(layer_inputs, &ctx),
                    }
                    .map_err(|e| layer_error(node, e))?;
                    // The ReLU node: its output is the batch norm's (not written when the
                    // pooling is fused too; the pooling keeps nothing then either).
                    let kept = (ctx.record && pool.is_none()).then(|| y.clone());
                    let relu = &mut self.nodes[i + 1];
                    (relu.layer.downcast_mut::<ActivationLayer>())
                        .ok_or_else(|| Error::model("expected a ReLU"))
                        .and_then(|a| a.record_fused_output(kept))
                        .map_err(|e| layer_error(relu, e))?;
                    let at = match pool {
                        Some(_) => {
                            self.fused[i] = Fusion::ReluMaxPool;
                            self.nodes[i + 2].layer.clear();
                            i + 2
                        }
                        None => {
                            self.fused[i] = Fusion::Relu;
                            i + 1
                        }
                    };
                    (y, at)
                }
                None => {
                    let y = (node.layer.forward(layer_inputs, &ctx))
                        .map_err(|e| layer_error(node, e))?;
                    (y, i)
                }
            };
            next = at + 1;
            for (slot, &c) in captured.iter_mut().zip(capture) {
                if c == at {
                    *slot = Some(y.clone());
                }
            }
            values[at] = Some(y);
        }
        let outputs = (self.outputs.iter())
            .map(|&s| {
                read(s, &mut values)
                    .ok_or_else(|| Error::model(format!("output {s:?} was dropped early")))
            })
            .collect::<Result<_>>()?;
        let captured = captured
            .into_iter()
            .zip(capture)
            .map(|(c, &i)| {
                c.ok_or_else(|| Error::model(format!("cannot capture node {i}: no such node")))
            })
            .collect::<Result<_>>()?;
        Ok((outputs, captured))
    }

    /// The batch norms (by index) that the last forward pass ran with the ReLU after them
    /// fused (see [`Model::forward_all`]), the max pooling after that or not.
    pub fn fused_relus(&self) -> Vec<usize> {
        (self.fused.iter().enumerate())
            .filter_map(|(i, &f)| (f != Fusion::None).then_some(i))
            .collect()
    }

    /// The batch norms (by index) that the last forward pass ran with the ReLU after them
    /// and the max pooling after that fused (see [`Model::forward_all`]).
    pub fn fused_max_pools(&self) -> Vec<usize> {
        (self.fused.iter().enumerate())
            .filter_map(|(i, &f)| (f == Fusion::ReluMaxPool).then_some(i))
            .collect()
    }

    /// The parameters of the max pooling at node `i + 2`, if it can run fused into the batch
    /// norm at node `i` with the ReLU at `i + 1` (which [`Model::relu_follows`] checks): it
    /// alone reads that ReLU, which is not captured (`capture`; `readers`: each node's count
    /// of readers).
    fn max_pool_follows(
        &self,
        i: usize,
        readers: &[usize],
        capture: &[usize],
    ) -> Option<Pool2dParams> {
        let next = self.nodes.get(i + 2)?;
        let pool = next.layer.downcast_ref::<MaxPool2d>()?;
        (readers[i + 1] == 1 && !capture.contains(&(i + 1)) && next.inputs == [Source::Node(i + 1)])
            .then(|| *pool.pool_params())
    }

    /// Run the max pooling fused into the batch norm at node `i` on its own again: the
    /// ReLU's output computed again, for the ReLU and the pooling to keep (the batch norm
    /// then takes the ReLU's gradient, as with the ReLU alone fused).
    fn unfuse_max_pool(&mut self, i: usize) -> Result<()> {
        let layer_error = |node: &Node, e: Error| Error::Layer {
            name: node.name.clone(),
            kind: node.kind,
            error: Box::new(e),
        };
        let node = &mut self.nodes[i];
        let y = (node.layer.downcast_mut::<BatchNorm>())
            .ok_or_else(|| Error::model("expected a batch norm"))
            .and_then(|bn| bn.unfuse_max_pool())
            .map_err(|e| layer_error(node, e))?;
        if let Some(y) = y {
            let relu = &mut self.nodes[i + 1];
            (relu.layer.downcast_mut::<ActivationLayer>())
                .ok_or_else(|| Error::model("expected a ReLU"))
                .and_then(|a| a.record_fused_output(Some(y.clone())))
                .map_err(|e| layer_error(relu, e))?;
            let pool = &mut self.nodes[i + 2];
            (pool.layer.downcast_mut::<MaxPool2d>())
                .map(|p| p.keep_input(y))
                .ok_or_else(|| layer_error(pool, Error::model("expected a max pooling")))?;
        }
        self.fused[i] = Fusion::Relu;
        Ok(())
    }

    /// Whether node `i` is a batch norm that can run the ReLU node after it fused into its
    /// forward pass in `ctx`: that ReLU reads only node `i` (whose other readers the caller
    /// rules out).
    fn relu_follows(&self, i: usize, ctx: &ForwardCtx) -> bool {
        let (Some(node), Some(next)) = (self.nodes.get(i), self.nodes.get(i + 1)) else {
            return false;
        };
        (node.layer.downcast_ref::<BatchNorm>()).is_some_and(|bn| bn.fuses_relu(ctx))
            && next.inputs == [Source::Node(i)]
            && (next.layer.downcast_ref::<ActivationLayer>())
                .is_some_and(|a| a.activation() == Activation::Relu)
    }

    /// Backward from the gradient of the loss w.r.t. the (first) output: accumulates every
    /// parameter's gradient. Needs a forward pass that recorded (training, or evaluation
    /// with `record`).
    pub fn backward(&mut self, grad_output: &Tensor) -> Result<()> {
        let request = BackwardRequest {
            params: true,
            ..BackwardRequest::default()
        };
        self.backward_with(grad_output, &request).map(|_| ())
    }

    /// [`Model::backward`], calling `done(index, node)` as soon as the backward of each node
    /// with parameters is done (its gradients are then final for this pass), so data-parallel
    /// training can start summing them across workers while earlier layers still compute.
    pub fn backward_observed(
        &mut self,
        grad_output: &Tensor,
        done: &mut NodeDone<'_>,
    ) -> Result<()> {
        let request = BackwardRequest {
            params: true,
            ..BackwardRequest::default()
        };
        match self.outputs[0] {
            Source::Node(j) => self
                .backward_inner(j, grad_output, &request, Some(done))
                .map(|_| ()),
            Source::Input(_) => Ok(()),
        }
    }

    /// Backward from the gradient w.r.t. the (first) output, computing what `request` asks
    /// for.
    pub fn backward_with(
        &mut self,
        grad_output: &Tensor,
        request: &BackwardRequest<'_>,
    ) -> Result<BackwardOutput> {
        match self.outputs[0] {
            Source::Node(j) => self.backward_from(j, grad_output, request),
            // The output is an input: its gradient is the output's.
            Source::Input(k) => Ok(BackwardOutput {
                input: (request.input && k == 0).then(|| grad_output.clone()),
                captured: vec![None; request.capture.len()],
            }),
        }
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
        self.backward_inner(start, grad, request, None)
    }

    /// [`Model::backward_from`], calling `done` after each node with parameters.
    fn backward_inner(
        &mut self,
        start: usize,
        grad: &Tensor,
        request: &BackwardRequest<'_>,
        mut done: Option<&mut NodeDone<'_>>,
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
        let needed = self.needed_gradients(request);
        // A pooling fused into a batch norm where the gradient at the batch norm's or the
        // ReLU's output is asked for, or backward starts there: the ReLU and the pooling run
        // their own backward.
        for i in 0..n {
            let asked = |j: usize| request.capture.contains(&j) || start == j;
            if self.fused[i] == Fusion::ReluMaxPool && (asked(i) || asked(i + 1)) {
                self.unfuse_max_pool(i)?;
            }
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; n];
        grads[start] = Some(grad.clone());
        // Per batch norm, the layers fused after it whose output's gradient was passed to it.
        let mut through = vec![Fusion::None; n];
        for i in (0..=start).rev() {
            let Some(g) = grads[i].take() else { continue };
            for (slot, &c) in out.captured.iter_mut().zip(request.capture) {
                if c == i {
                    *slot = Some(g.clone());
                }
            }
            // A ReLU and a pooling fused into the batch norm two nodes before: it takes the
            // pooling's gradient.
            if i > 1 && self.fused[i - 2] == Fusion::ReluMaxPool {
                if needed[i - 2] {
                    grads[i - 2] = Some(g);
                    through[i - 2] = Fusion::ReluMaxPool;
                }
                continue;
            }
            // A ReLU fused into the batch norm before it: the batch norm masks the gradient
            // (unless the gradient at its own output is wanted: then the ReLU runs its
            // backward from the output it kept, and the batch norm its plain one).
            if i > 0 && self.fused[i - 1] == Fusion::Relu && !request.capture.contains(&(i - 1)) {
                if needed[i - 1] {
                    grads[i - 1] = Some(g);
                    through[i - 1] = Fusion::Relu;
                }
                continue;
            }
            // (A batch norm with a pooling fused has the pooling's gradient here: the
            // pooling was unfused above for any other.)
            if self.fused[i] == Fusion::Relu && through[i] != Fusion::Relu {
                if let Some(bn) = self.nodes[i].layer.downcast_mut::<BatchNorm>() {
                    bn.unfuse_relu();
                }
                self.fused[i] = Fusion::None;
            }
            let node = &mut self.nodes[i];
            let need_input_grad = node.inputs.iter().any(|s| match s {
                Source::Input(k) => request.input && *k == 0,
                Source::Node(j) => needed[*j],
            });
            let wants_params = request.params && self.has_params[i];
            if !need_input_grad && !wants_params {
                continue;
            }
            let layer_error = |node: &Node, e: Error| Error::Layer {
                name: node.name.clone(),
                kind: node.kind,
                error: Box::new(e),
            };
            if !node.layer.has_backward() {
                return Err(layer_error(
                    node,
                    Error::model(
                        "runs inference only (it has no backward pass), so no gradient flows \
                         through it to the layers before it",
                    ),
                ));
            }
            let input_grads =
                (node.layer.backward(g, need_input_grad)).map_err(|e| layer_error(node, e))?;
            if let Some(done) = done.as_deref_mut()
                && wants_params
            {
                done(i, node)?;
            }
            for (s, gi) in node.inputs.clone().into_iter().zip(input_grads) {
                let Some(gi) = gi else { continue };
                let slot = match s {
                    Source::Input(0) if request.input => &mut out.input,
                    Source::Input(_) => continue,
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

    /// Whether each node's output gradient is needed: a requested gradient (a captured node,
    /// the input, or with `params` a parameter) lies upstream of it.
    fn needed_gradients(&self, request: &BackwardRequest<'_>) -> Vec<bool> {
        let n = self.nodes.len();
        let mut needed: Vec<bool> = (self.has_params_upstream.iter())
            .map(|&p| request.params && p)
            .collect();
        for &c in request.capture {
            if c < n {
                needed[c] = true;
            }
        }
        for i in 0..n {
            let reads_needed = self.nodes[i].inputs.iter().any(|s| match s {
                Source::Input(k) => request.input && *k == 0,
                Source::Node(j) => needed[*j],
            });
            needed[i] |= reads_needed;
        }
        needed
    }

    /// One batch per model input, each of its input's shape, all of the same size.
    fn check_inputs(&self, inputs: &[Tensor]) -> Result<()> {
        let count = 1 + self.spec.extra_inputs.len();
        if inputs.len() != count {
            return Err(Error::model(format!(
                "the model takes {count} input(s) (input{}), got {}",
                self.spec
                    .extra_inputs
                    .iter()
                    .map(|i| format!(", {}", i.name))
                    .collect::<String>(),
                inputs.len()
            )));
        }
        let batch = inputs[0].dims().first().copied();
        for (k, input) in inputs.iter().enumerate() {
            let want = self.shape_of(Source::Input(k));
            let dims = input.dims();
            if dims.len() != want.len() + 1
                || dims[1..] != want[..]
                || dims.first() != batch.as_ref()
            {
                let shown: Vec<String> = want.iter().map(|d| d.to_string()).collect();
                return Err(Error::model(match k {
                    0 => format!(
                        "the model takes inputs [N, {}], got {dims:?}",
                        shown.join(", ")
                    ),
                    _ => format!(
                        "the model's input '{}' is [N, {}] (N as the first input's), got {dims:?}",
                        self.spec.extra_inputs[k - 1].name,
                        shown.join(", ")
                    ),
                }));
            }
        }
        Ok(())
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
        self.fused.fill(Fusion::None);
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
