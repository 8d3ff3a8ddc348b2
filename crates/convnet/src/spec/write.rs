//! Writing a description as a model file: the `[model]` table by hand (with a comment on
//! `input`), each layer's name, type and inputs, then its kind's settings as serde writes
//! them.

use std::fmt::Write as _;

use super::ModelSpec;
use crate::error::Result;

/// `spec` as a model file's text.
pub(super) fn model_file(spec: &ModelSpec) -> Result<String> {
    let mut out = String::new();
    out.push_str("[model]\n");
    if let Some(name) = &spec.name {
        let _ = writeln!(out, "name = {}", quote(name));
    }
    let [c, h, w] = spec.input;
    let _ = writeln!(out, "input = [{c}, {h}, {w}]  # channels, height, width");
    if !spec.extra_inputs.is_empty() {
        let inputs: Vec<String> = (spec.extra_inputs.iter())
            .map(|i| format!("{{ name = {}, shape = {:?} }}", quote(&i.name), i.shape))
            .collect();
        let _ = writeln!(out, "extra_inputs = [{}]", inputs.join(", "));
    }
    if !spec.outputs.is_empty() {
        let _ = writeln!(out, "outputs = {}", list(&spec.outputs));
    }
    if let Some(classes) = &spec.classes {
        let _ = writeln!(out, "classes = {}", list(classes));
    }
    for layer in &spec.layers {
        out.push_str("\n[[layer]]\n");
        let _ = writeln!(out, "name = {}", quote(&layer.name));
        let _ = writeln!(out, "type = {}", quote(layer.kind.type_name()));
        if let Some(inputs) = &layer.inputs {
            let _ = writeln!(out, "inputs = {}", list(inputs));
        }
        out.push_str(&layer.kind.to_toml()?);
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `["a", "b"]`.
fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}
