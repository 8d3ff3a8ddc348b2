//! What a layer kind provides ([`Kind`]), what planning it gives ([`LayerPlan`]), and the
//! registry's rows ([`KindEntry`]).
//!
//! A kind's settings are one struct that is both what a model file holds and what the Rust
//! builder makes (`Conv2dConfig::lazy(8, [3, 3]).with_padding(Padding::Same)`). Planning a
//! layer checks it against its inputs and sizes it without drawing a weight, in a fixed
//! order that every kind shares ([`LayerKind::plan`]): the number of inputs, the sizes taken
//! from the inputs ([`Kind::resolve`]), the settings ([`Kind::check`]), the size of every
//! learnable tensor, then the output ([`Kind::output`]).

use std::any::Any;
use std::fmt;

use convnet_core::Shape;
use convnet_core::tensor::MAX_TENSOR_ELEMENTS;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{KINDS, Layer, values};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// How many inputs a layer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Arity {
    fn check(self, given: usize) -> Result<()> {
        match self {
            Arity::Exactly(n) if n != given => {
                Err(Error::model(format!("takes {n} input(s), {given} given")))
            }
            Arity::AtLeast(n) if given < n => Err(Error::model(format!(
                "takes at least {n} inputs, {given} given"
            ))),
            _ => Ok(()),
        }
    }
}

/// The sliding window of a conv or pooling layer: what its output-size formula and its
/// receptive field are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// top, bottom, left, right.
    pub pad: [usize; 4],
    /// Output sizes rounded up (pooling's `ceil_mode`), else down.
    pub ceil: bool,
}

/// Which input positions one output unit of a layer sees: how a receptive field grows
/// through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The same position of its input (element-wise layers, normalization, dropout).
    Same,
    /// A sliding window over its input.
    Window(Window),
    /// The same position of each of its inputs (a residual add): the widest of their fields.
    Join,
    /// The whole input (flatten, linear, global and adaptive pooling).
    Whole,
}

/// What a layer does to one sample: its output shape, its cost and its reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Per-sample output shape.
    pub shape: Vec<usize>,
    /// Multiply-adds counted twice (conv and linear layers; other layers count 0).
    pub flops: u64,
    pub reach: Reach,
}

impl Output {
    /// An output of `shape`, element by element ([`Reach::Same`], no FLOPs counted).
    pub fn new(shape: Vec<usize>) -> Self {
        Output {
            shape,
            flops: 0,
            reach: Reach::Same,
        }
    }
    pub fn with_flops(mut self, flops: u64) -> Self {
        self.flops = flops;
        self
    }
    pub fn with_reach(mut self, reach: Reach) -> Self {
        self.reach = reach;
        self
    }
}

/// A layer kind: its settings, as a model file writes them and as Rust builds them.
///
/// The struct is read and written with serde (unknown keys refused, defaults as serde
/// defaults); [`KindEntry::of`] puts it in the registry. Everything [`Kind::build`] checks is
/// checked before, by planning, so that no weight is drawn for a model that does not fit.
pub trait Kind:
    Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The type names model files give this kind (most kinds have one).
    const NAMES: &'static [&'static str];

    /// The kind's forms in the `convnet shape` shorthand, for its usage text; empty when
    /// its only form is a type name alone (`relu`).
    const SHORTHAND: &'static str = "";

    /// The type name of these settings (one of [`Kind::NAMES`]).
    fn name(&self) -> &'static str {
        Self::NAMES[0]
    }

    /// The settings as read under the type name `name` (one of [`Kind::NAMES`]).
    fn named(self, _name: &str) -> Self {
        self
    }

    /// How many inputs it takes.
    fn arity(&self) -> Arity {
        Arity::Exactly(1)
    }

    /// The settings with the sizes a layer takes from its per-sample input shapes filled in
    /// (`in_channels`, ...); those a file gives are checked against the inputs.
    fn resolve(&self, _inputs: &[&[usize]]) -> Result<Self> {
        Ok(self.clone())
    }

    /// Check the (resolved) settings: all that [`Kind::build`] checks, drawing nothing.
    fn check(&self) -> Result<()> {
        Ok(())
    }

    /// The shapes of the learnable tensors, by `state_dict` name (nothing is allocated).
    fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        Vec::new()
    }

    /// What the layer does to per-sample input shapes, or why they do not fit.
    fn output(&self, inputs: &[&[usize]]) -> Result<Output>;

    /// The module, its weights drawn from `rng` (PyTorch's default initialization).
    fn build(&self, rng: &mut Rng) -> Result<Layer>;

    /// The settings a `convnet shape` shorthand gives (`words`: the text split at `:`), or
    /// `None` when the words are not this kind's. By default a type name alone gives the
    /// default settings.
    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        by_type_name(words)
    }
}

/// The default shorthand: a type name of `T` alone, with every setting at its default.
pub(crate) fn by_type_name<T: Kind>(words: &[&str]) -> Option<Result<T>> {
    match words {
        [word] => T::NAMES
            .iter()
            .find(|n| *n == word)
            .map(|name| Ok(values::fields::<T>(toml::Table::new())?.named(name))),
        _ => None,
    }
}

/// A layer checked against its inputs and sized, before any weight is drawn: what shape
/// inference and summaries read, so that they allocate nothing from a model's sizes.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    /// The settings, with the sizes taken from the inputs filled in.
    pub kind: LayerKind,
    /// The learnable tensors' shapes by `state_dict` name, each bounded.
    pub params: Vec<(&'static str, Vec<usize>)>,
    pub output: Output,
}

impl LayerPlan {
    /// How many learnable values it has.
    pub fn param_count(&self) -> u64 {
        // Each tensor was bounded when planned, so neither product nor sum overflows.
        self.params
            .iter()
            .map(|(_, dims)| dims.iter().product::<usize>() as u64)
            .sum()
    }

    /// The module, its weights drawn from `rng`.
    pub fn build(&self, rng: &mut Rng) -> Result<Layer> {
        self.kind.0.build(rng)
    }
}

/// Plan `kind` on per-sample input shapes: every check in the order every kind shares.
fn plan<T: Kind>(kind: &T, inputs: &[&[usize]]) -> Result<LayerPlan> {
    kind.arity().check(inputs.len())?;
    let resolved = kind.resolve(inputs)?;
    resolved.check()?;
    let params = resolved.param_dims();
    for (name, dims) in &params {
        Shape::new(dims.clone()).map_err(|_| {
            let values = dims
                .iter()
                .try_fold(1u128, |a, &d| a.checked_mul(d as u128))
                .map_or("more".to_string(), |v| v.to_string());
            Error::model(format!(
                "its {name} {dims:?} would hold {values} values, more than the \
                 {MAX_TENSOR_ELEMENTS} one tensor may hold"
            ))
        })?;
    }
    let output = resolved.output(inputs)?;
    Shape::new(output.shape.clone()).map_err(|_| {
        Error::model(format!(
            "its per-sample output {:?} would hold more than the {MAX_TENSOR_ELEMENTS} \
             values one tensor may hold",
            output.shape
        ))
    })?;
    Ok(LayerPlan {
        kind: resolved.into(),
        params,
        output,
    })
}

/// [`Kind`] as a trait object (implemented for every kind).
trait DynKind: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    fn plan(&self, inputs: &[&[usize]]) -> Result<LayerPlan>;
    fn build(&self, rng: &mut Rng) -> Result<Layer>;
    fn to_toml(&self) -> Result<String>;
    fn clone_box(&self) -> Box<dyn DynKind>;
    fn eq_dyn(&self, other: &dyn DynKind) -> bool;
    fn as_any(&self) -> &dyn Any;
}

impl<T: Kind> DynKind for T {
    fn name(&self) -> &'static str {
        Kind::name(self)
    }
    fn plan(&self, inputs: &[&[usize]]) -> Result<LayerPlan> {
        plan(self, inputs)
    }
    fn build(&self, rng: &mut Rng) -> Result<Layer> {
        Kind::build(self, rng)
    }
    fn to_toml(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::model(format!("{} cannot be written: {e}", Kind::name(self))))
    }
    fn clone_box(&self) -> Box<dyn DynKind> {
        Box::new(self.clone())
    }
    fn eq_dyn(&self, other: &dyn DynKind) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What a layer is, with its settings: any [`Kind`] (`Conv2dConfig`, `ReluConfig`, ...).
pub struct LayerKind(Box<dyn DynKind>);

impl LayerKind {
    /// The type name a model file uses.
    pub fn type_name(&self) -> &'static str {
        self.0.name()
    }

    /// Check the layer against its per-sample input shapes and size it, drawing no weight.
    pub fn plan(&self, inputs: &[&[usize]]) -> Result<LayerPlan> {
        self.0.plan(inputs)
    }

    /// The settings as the kind `T`, if they are one.
    pub fn downcast_ref<T: Kind>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// The settings as the lines of a model file's `[[layer]]` table (`key = value`).
    pub(crate) fn to_toml(&self) -> Result<String> {
        self.0.to_toml()
    }
}

impl<T: Kind> From<T> for LayerKind {
    fn from(kind: T) -> Self {
        LayerKind(Box::new(kind))
    }
}

impl Clone for LayerKind {
    fn clone(&self) -> Self {
        LayerKind(self.0.clone_box())
    }
}

impl PartialEq for LayerKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_dyn(other.0.as_ref())
    }
}

impl fmt::Debug for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One row of the registry ([`KINDS`]): a kind's type names and how it is read.
pub struct KindEntry {
    names: &'static [&'static str],
    shorthand_usage: &'static str,
    read: fn(&str, toml::Table) -> Result<LayerKind>,
    shorthand: fn(&[&str]) -> Option<Result<LayerKind>>,
}

impl KindEntry {
    /// The row of the kind `T`.
    pub const fn of<T: Kind>() -> Self {
        KindEntry {
            names: T::NAMES,
            shorthand_usage: T::SHORTHAND,
            read: read::<T>,
            shorthand: shorthand::<T>,
        }
    }
}

fn read<T: Kind>(name: &str, table: toml::Table) -> Result<LayerKind> {
    Ok(values::fields::<T>(table)?.named(name).into())
}

fn shorthand<T: Kind>(words: &[&str]) -> Option<Result<LayerKind>> {
    T::shorthand(words).map(|kind| kind.map(Into::into))
}

/// Every type name a model file may give, in the registry's order.
pub fn type_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().flat_map(|entry| entry.names.iter().copied())
}

/// The layer a model file's `[[layer]]` table describes: the kind named `name`, its settings
/// read from `table` (the table without `name`, `type` and `inputs`).
pub fn read_kind(name: &str, table: toml::Table) -> Result<LayerKind> {
    let entry = KINDS
        .iter()
        .find(|entry| entry.names.contains(&name))
        .ok_or_else(|| {
            Error::model(format!(
                "unknown layer type '{}' (one of: {})",
                values::shown(&name),
                type_names().collect::<Vec<_>>().join(", ")
            ))
        })?;
    (entry.read)(name, table)
}

/// The layer a `convnet shape` shorthand describes (`conv:6:5x5:s1:same`, `relu`, ...).
pub fn read_shorthand(text: &str) -> Result<LayerKind> {
    let words: Vec<&str> = text.split(':').map(str::trim).collect();
    KINDS
        .iter()
        .find_map(|entry| (entry.shorthand)(&words))
        .unwrap_or_else(|| Err(shorthand_usage()))
}

/// The shorthand's forms: each kind's, then the type names that need no settings.
fn shorthand_usage() -> Error {
    let forms = KINDS
        .iter()
        .map(|e| e.shorthand_usage)
        .filter(|u| !u.is_empty());
    let bare = KINDS.iter().flat_map(|e| {
        e.names
            .iter()
            .copied()
            .filter(|name| (e.read)(name, toml::Table::new()).is_ok())
    });
    Error::model(format!(
        "expected {}, or a layer type that needs no settings: {}",
        forms.collect::<Vec<_>>().join(", "),
        bare.collect::<Vec<_>>().join(", ")
    ))
}
