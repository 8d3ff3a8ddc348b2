//! Model descriptions: what a model file says, checked and planned; `Model::from_spec` builds
//! them.
//!
//! A model file is TOML: a `[model]` table and one `[[layer]]` table per layer, in order.
//! `docs/model-files.md` documents every key with an example of every layer kind;
//! `models/fashion_cnn.toml` is the reference model. Unknown keys, unknown layer types and
//! values of the wrong kind are errors that name the layer and the key.
//!
//! Input sizes (`in_channels`, `in_features`, `num_features`) are inferred from the previous
//! layer; when a file gives them they are checked.
//!
//! The folder: reading (`parse.rs`), writing (`write.rs`), checking and sizing without
//! weights (`plan.rs`), and the layer shorthand of `convnet shape` (`shorthand.rs`). What each
//! layer kind reads, writes and checks is its own file's, in `crate::layers`.

mod parse;
mod plan;
mod shorthand;
mod write;

use std::path::Path;

pub use plan::{ModelPlan, PlannedNode};
pub use shorthand::{parse_hwc, shorthand_model};

use crate::error::{Error, Result};
use crate::layers::LayerKind;
use crate::names;

/// The name by which layers refer to the model's (first) input in `inputs`.
pub const INPUT: &str = "input";

/// The most layers a model may have: far more than any real network (ResNet-152 has about
/// 500), few enough that checking a model file stays fast.
pub const MAX_LAYERS: usize = 10_000;

/// The largest model file read, in bytes: room for [`MAX_LAYERS`] layers with every key.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Where a layer reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A model input: 0 is [`INPUT`], `k` the `k`-th of [`ModelSpec::extra_inputs`] after it.
    Input(usize),
    /// The output of an earlier layer (by index).
    Node(usize),
}

/// A whole model: its inputs, its layers in order, what it outputs, optional class names.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: Option<String>,
    /// Per-sample shape `[C, H, W]` of the model's image input, [`INPUT`].
    pub input: [usize; 3],
    /// More inputs, by name, for models that take several (most take one image).
    pub extra_inputs: Vec<InputSpec>,
    /// The layers (or inputs) whose outputs the model returns, in order; empty: the last
    /// layer's.
    pub outputs: Vec<String>,
    pub classes: Option<Vec<String>>,
    pub layers: Vec<LayerSpec>,
}

/// A further input of a model: its name (which layers' `inputs` give) and per-sample shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One layer: its name (the `state_dict` prefix of its parameters), what it reads, and what
/// it is.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    /// Names of the layers (or inputs) it reads; `None`: the previous layer.
    pub inputs: Option<Vec<String>>,
    pub kind: LayerKind,
}

impl LayerSpec {
    pub fn new(name: impl Into<String>, kind: impl Into<LayerKind>) -> Self {
        LayerSpec {
            name: name.into(),
            inputs: None,
            kind: kind.into(),
        }
    }

    /// Read the named layers (or inputs) instead of the previous one.
    pub fn with_inputs(mut self, inputs: &[&str]) -> Self {
        self.inputs = Some(inputs.iter().map(|s| s.to_string()).collect());
        self
    }
}

impl ModelSpec {
    /// A model on per-sample inputs `[C, H, W]` with no layers yet.
    pub fn new(input: [usize; 3]) -> Self {
        ModelSpec {
            name: None,
            input,
            extra_inputs: Vec::new(),
            outputs: Vec::new(),
            classes: None,
            layers: Vec::new(),
        }
    }

    /// Append a layer.
    pub fn layer(mut self, name: impl Into<String>, kind: impl Into<LayerKind>) -> Self {
        self.layers.push(LayerSpec::new(name, kind));
        self
    }

    /// Append a layer that reads the named layers (or inputs).
    pub fn layer_from(
        mut self,
        name: impl Into<String>,
        inputs: &[&str],
        kind: impl Into<LayerKind>,
    ) -> Self {
        self.layers
            .push(LayerSpec::new(name, kind).with_inputs(inputs));
        self
    }

    /// Add an input named `name` with per-sample shape `shape`.
    pub fn with_extra_input(mut self, name: impl Into<String>, shape: &[usize]) -> Self {
        self.extra_inputs.push(InputSpec {
            name: name.into(),
            shape: shape.to_vec(),
        });
        self
    }

    /// Return the outputs of the named layers (or inputs), in this order.
    pub fn with_outputs(mut self, outputs: &[&str]) -> Self {
        self.outputs = outputs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Read a model file (at most [`MAX_FILE_BYTES`]).
    pub fn load(path: &Path) -> Result<Self> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| Error::file(path, e.to_string()))
    }

    /// Parse a model file's text (at most [`MAX_FILE_BYTES`]).
    pub fn from_toml(text: &str) -> Result<Self> {
        parse::model_file(text)
    }

    /// This description as a model file. Fails only on sizes no model file can hold (an
    /// integer beyond TOML's 64-bit range), which no model that builds has.
    pub fn to_toml(&self) -> Result<String> {
        write::model_file(self)
    }

    /// `e` in the context of layer `index`, named as the model file names it.
    pub(crate) fn layer_error(&self, index: usize, kind: &str, e: Error) -> Error {
        let name = self.layers.get(index).map_or("", |l| l.name.as_str());
        Error::model(format!(
            "layer {index} ('{}', {kind}): {e}",
            names::shorten(name, 64)
        ))
    }
}

/// A layer or input name is non-empty, has no spaces, is not [`INPUT`], and is at most
/// [`names::MAX_NAME_CHARS`] long.
fn check_name(name: &str) -> Result<()> {
    names::check_len(name).map_err(|e| Error::model(format!("invalid name: {e}")))?;
    if name.is_empty() || name == INPUT || name.contains(char::is_whitespace) {
        return Err(Error::model(format!(
            "invalid name '{name}': names must be non-empty, without spaces, and not '{INPUT}'"
        )));
    }
    Ok(())
}
