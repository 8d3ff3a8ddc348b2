//! Reading a model file: the `[model]` table, then each `[[layer]]` table's name, type and
//! inputs, its other keys read by its kind (`crate::layers::read_kind`).

use serde::Deserialize;

use super::{InputSpec, LayerSpec, MAX_FILE_BYTES, MAX_LAYERS, ModelSpec};
use crate::error::{Error, Result};
use crate::layers::values::{fields, shown};
use crate::layers::{read_kind, type_names};
use crate::names;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFields {
    name: Option<String>,
    input: [usize; 3],
    #[serde(default)]
    extra_inputs: Vec<InputSpec>,
    #[serde(default)]
    outputs: Vec<String>,
    classes: Option<Vec<String>>,
}

/// A model file's text (at most [`MAX_FILE_BYTES`]) as a description.
pub(super) fn model_file(text: &str) -> Result<ModelSpec> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::model(format!(
            "more than {MAX_FILE_BYTES} bytes: a model file is a few kilobytes (is this the \
             right file?)"
        )));
    }
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::model(format!("not valid TOML: {}", e.message())))?;
    parse_model(table)
}

fn parse_model(mut table: toml::Table) -> Result<ModelSpec> {
    let model = table
        .remove("model")
        .ok_or_else(|| Error::model("missing the [model] table (with `input = [C, H, W]`)"))?;
    let toml::Value::Table(model) = model else {
        return Err(Error::model("`model` must be a table: [model]"));
    };
    let model: ModelFields = fields(model).map_err(|e| Error::model(format!("[model]: {e}")))?;
    let model_names = (model.name.iter())
        .chain(model.classes.iter().flatten())
        .chain(model.extra_inputs.iter().map(|i| &i.name))
        .chain(&model.outputs);
    for name in model_names {
        names::check_len(name).map_err(|e| Error::model(format!("[model]: {e}")))?;
    }
    let layers = match table.remove("layer") {
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::model(
                "`layer` must be an array of tables: [[layer]]",
            ));
        }
        None => Vec::new(),
    };
    if layers.len() > MAX_LAYERS {
        return Err(Error::model(format!(
            "{} layers are more than a model may have ({MAX_LAYERS})",
            layers.len()
        )));
    }
    if let Some(key) = table.keys().next() {
        return Err(Error::model(format!(
            "unknown top-level key '{}' (a model file has [model] and [[layer]] tables)",
            shown(key)
        )));
    }
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_layer(index, item))
        .collect::<Result<_>>()?;
    Ok(ModelSpec {
        name: model.name,
        input: model.input,
        extra_inputs: model.extra_inputs,
        outputs: model.outputs,
        classes: model.classes,
        layers,
    })
}

fn parse_layer(index: usize, item: toml::Value) -> Result<LayerSpec> {
    let toml::Value::Table(mut table) = item else {
        return Err(Error::model(format!(
            "layer {index}: must be a table [[layer]]"
        )));
    };
    let name = match table.remove("name") {
        None => index.to_string(),
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(Error::model(format!(
                "layer {index}: name must be a string, got {}",
                shown(&v)
            )));
        }
    };
    let context = |kind: &str, e: Error| {
        Error::model(format!(
            "layer {index} ('{}', {}): {e}",
            shown(&name),
            shown(&kind)
        ))
    };
    names::check_len(&name)
        .map_err(|e| context("?", Error::model(format!("invalid name: {e}"))))?;
    let kind_name = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(v) => {
            return Err(context(
                "?",
                Error::model(format!("type must be a string, got {}", shown(&v))),
            ));
        }
        None => {
            return Err(context(
                "?",
                Error::model(format!(
                    "missing `type` (one of: {})",
                    type_names().collect::<Vec<_>>().join(", ")
                )),
            ));
        }
    };
    let inputs = match table.remove("inputs") {
        None => None,
        Some(v) => {
            let list = v.try_into::<Vec<String>>().map_err(|_| {
                context(
                    &kind_name,
                    Error::model("inputs must be a list of layer names"),
                )
            })?;
            for input in &list {
                names::check_len(input).map_err(|e| {
                    context(&kind_name, Error::model(format!("invalid input: {e}")))
                })?;
            }
            Some(list)
        }
    };
    let kind = read_kind(&kind_name, table).map_err(|e| context(&kind_name, e))?;
    Ok(LayerSpec { name, inputs, kind })
}
