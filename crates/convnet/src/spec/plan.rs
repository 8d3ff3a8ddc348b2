//! Planning a model: every name and input resolved, every layer checked against its inputs
//! and sized ([`crate::layers::LayerKind::plan`]), no weight drawn.

use std::collections::HashMap;

use convnet_core::Shape;
use convnet_core::tensor::MAX_TENSOR_ELEMENTS;

use super::{INPUT, MAX_LAYERS, ModelSpec, Source, check_name};
use crate::error::{Error, Result};
use crate::layers::LayerPlan;
use crate::names;

/// One layer of a planned model: its name, what it reads, and what it is, sized.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    pub name: String,
    pub inputs: Vec<Source>,
    pub layer: LayerPlan,
}

impl PlannedNode {
    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.layer.output.shape
    }
}

/// A model checked and sized: its layers, and where its outputs come from.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    pub nodes: Vec<PlannedNode>,
    pub outputs: Vec<Source>,
}

/// What names a model's inputs and layers: each to its [`Source`].
#[derive(Default)]
struct Names<'a>(HashMap<&'a str, Source>);

impl<'a> Names<'a> {
    /// Add `name` for `source`, or say why it may not be.
    fn add(&mut self, name: &'a str, source: Source) -> Result<()> {
        check_name(name)?;
        match self.0.insert(name, source) {
            Some(Source::Node(_)) => Err(Error::model("a layer with this name comes earlier")),
            Some(Source::Input(_)) => Err(Error::model("a model input has this name")),
            None => Ok(()),
        }
    }

    /// What `name` refers to ([`INPUT`], another input, or a layer before `before`).
    fn get(&self, name: &str, before: usize) -> Option<Source> {
        match self.0.get(name) {
            _ if name == INPUT => Some(Source::Input(0)),
            Some(&Source::Node(j)) if j < before => Some(Source::Node(j)),
            Some(&Source::Input(k)) => Some(Source::Input(k)),
            _ => None,
        }
    }

    /// What the layer `before` reads as `name`.
    fn input_of(&self, name: &str, before: usize) -> Result<Source> {
        self.get(name, before).ok_or_else(|| {
            let others = self.0.values().any(|s| matches!(s, Source::Input(_)));
            Error::model(format!(
                "input '{}' is not an earlier layer (nor '{INPUT}'{})",
                names::shorten(name, 64),
                if others {
                    " or another model input"
                } else {
                    ""
                }
            ))
        })
    }

    /// The model output `name`.
    fn output(&self, name: &str) -> Result<Source> {
        self.get(name, usize::MAX).ok_or_else(|| {
            Error::model(format!(
                "[model]: outputs: '{}' is neither a layer nor a model input",
                names::shorten(name, 64)
            ))
        })
    }
}

impl ModelSpec {
    /// Check every layer against its inputs and size it, drawing no weights: the shapes,
    /// parameter counts and geometry a summary reads, in memory that does not grow with the
    /// model's sizes. Every input, parameter tensor and per-sample output is bounded here (at
    /// most [`MAX_TENSOR_ELEMENTS`] values), so building allocates only what was checked.
    pub fn plan(&self) -> Result<ModelPlan> {
        let inputs = self.input_shapes()?;
        if self.layers.len() > MAX_LAYERS {
            return Err(Error::model(format!(
                "{} layers are more than a model may have ({MAX_LAYERS})",
                self.layers.len()
            )));
        }
        let mut names = Names::default();
        for (k, input) in self.extra_inputs.iter().enumerate() {
            names
                .add(&input.name, Source::Input(k + 1))
                .map_err(|e| Error::model(format!("[model]: extra input: {e}")))?;
        }
        let mut nodes: Vec<PlannedNode> = Vec::with_capacity(self.layers.len());
        for (index, spec) in self.layers.iter().enumerate() {
            let context = |e: Error| self.layer_error(index, spec.kind.type_name(), e);
            names
                .add(&spec.name, Source::Node(index))
                .map_err(context)?;
            let sources: Vec<Source> = match &spec.inputs {
                None => vec![match index {
                    0 => Source::Input(0),
                    i => Source::Node(i - 1),
                }],
                Some(list) => list
                    .iter()
                    .map(|n| names.input_of(n, index).map_err(context))
                    .collect::<Result<_>>()?,
            };
            let shapes: Vec<&[usize]> = sources
                .iter()
                .map(|s| match *s {
                    Source::Input(k) => &inputs[k][..],
                    Source::Node(j) => nodes[j].output_shape(),
                })
                .collect();
            let layer = spec.kind.plan(&shapes).map_err(context)?;
            nodes.push(PlannedNode {
                name: spec.name.clone(),
                inputs: sources,
                layer,
            });
        }
        let outputs = match self.outputs.is_empty() {
            true => vec![
                nodes
                    .len()
                    .checked_sub(1)
                    .map_or(Source::Input(0), Source::Node),
            ],
            false => (self.outputs.iter())
                .map(|n| names.output(n))
                .collect::<Result<_>>()?,
        };
        Ok(ModelPlan { nodes, outputs })
    }

    /// The per-sample shapes of the model's inputs, each checked and bounded.
    pub(crate) fn input_shapes(&self) -> Result<Vec<Vec<usize>>> {
        let shapes = std::iter::once((INPUT, &self.input[..])).chain(
            self.extra_inputs
                .iter()
                .map(|i| (&i.name[..], &i.shape[..])),
        );
        shapes
            .map(|(name, shape)| {
                Shape::new(shape.to_vec())
                    .ok()
                    .filter(|_| !shape.is_empty() && !shape.contains(&0))
                    .map(|_| shape.to_vec())
                    .ok_or_else(|| {
                        Error::model(format!(
                            "model input {}{shape:?} must have sizes of at least 1 and at \
                             most {MAX_TENSOR_ELEMENTS} values in all",
                            if name == INPUT {
                                String::new()
                            } else {
                                format!("'{}' ", names::shorten(name, 64))
                            }
                        ))
                    })
            })
            .collect()
    }
}
