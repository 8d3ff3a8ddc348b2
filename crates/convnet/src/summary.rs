//! What each layer of a model does to one sample: output shape, parameters, FLOPs, receptive
//! field and jump, and the output-size formula filled in, all read from the plan
//! ([`crate::layers::LayerPlan`]): no weight is drawn and no layer kind is named here.
//!
//! FLOPs count the multiply-adds of conv and linear layers, two per multiply-add (as
//! `convnet bench` and most tools do); other layers count 0. The receptive field of a unit is
//! `r = 1 + sum_i (k_i - 1) * prod_{j<i} s_j` with `k_i` the dilated kernel; the jump is the
//! product of the strides. After a global pooling or flatten, a unit sees the whole input.

use convnet_core::geometry::{ReceptiveField, RfLayer, grow_receptive_field};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layers::{Reach, Window};
use crate::model::Model;
use crate::spec::{ModelSpec, PlannedNode, Source};

/// One layer's line of a summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub kind: &'static str,
    /// Per-sample output shape.
    pub output_shape: Vec<usize>,
    pub params: u64,
    pub flops: u64,
    /// Receptive field `[height, width]` of one output unit in input pixels (`None`: the
    /// whole input).
    pub receptive_field: Option<[usize; 2]>,
    /// Distance in input pixels between neighbouring output units.
    pub jump: Option<[usize; 2]>,
    /// The output-size formula with the numbers filled in (conv and pooling layers).
    pub formula: Option<String>,
}

/// A whole model's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Per-sample input `[C, H, W]`.
    pub input: [usize; 3],
    pub layers: Vec<LayerSummary>,
    pub total_params: u64,
    pub total_flops: u64,
    /// Values of every layer's output for one sample.
    pub activations: u64,
}

/// The output-size formula of one axis (0: height, 1: width) of `window`, its numbers filled
/// in.
fn axis_formula(window: &Window, axis: usize, input: usize, out: usize) -> String {
    let round = if window.ceil { "ceil" } else { "floor" };
    let (kernel, stride, dilation) = (
        window.kernel[axis],
        window.stride[axis],
        window.dilation[axis],
    );
    let (before, after) = (window.pad[2 * axis], window.pad[2 * axis + 1]);
    if dilation == 1 && before == after {
        format!("{round}(({input} - {kernel} + 2*{before}) / {stride}) + 1 = {out}")
    } else {
        format!(
            "{round}(({input} + {before} + {after} - {dilation}*({kernel} - 1) - 1) / {stride}) + 1 = {out}"
        )
    }
}

/// `H: ...; W: ...` (or one line when both axes are the same).
fn formula(window: &Window, input: [usize; 2], out: [usize; 2]) -> String {
    let h = axis_formula(window, 0, input[0], out[0]);
    let w = axis_formula(window, 1, input[1], out[1]);
    if h == w { h } else { format!("H: {h}; W: {w}") }
}

/// Summarize every layer of `model` (from the description it was built from).
pub fn summarize(model: &Model) -> Result<Summary> {
    summarize_spec(model.spec())
}

/// Receptive field and jump of a node's output (`None`: the whole input).
type Field = Option<ReceptiveField>;

/// Summarize every layer of `spec` without building it: shapes, parameter counts and FLOPs
/// come from the sizes alone, so no weight is allocated however large the layers are. Every
/// count is checked; one that overflows is an error naming its layer.
pub fn summarize_spec(spec: &ModelSpec) -> Result<Summary> {
    let plan = spec.plan()?;
    let input_shapes = spec.input_shapes()?;
    let mut fields: Vec<Field> = Vec::with_capacity(plan.nodes.len());
    let mut layers = Vec::with_capacity(plan.nodes.len());
    for (index, node) in plan.nodes.iter().enumerate() {
        let inputs: Vec<Field> = node
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input(_) => Some(ReceptiveField {
                    size: [1, 1],
                    jump: [1, 1],
                }),
                Source::Node(j) => fields[*j],
            })
            .collect();
        let in_shape: &[usize] = match node.inputs.first() {
            Some(Source::Node(j)) => plan.nodes[*j].output_shape(),
            Some(Source::Input(k)) => &input_shapes[*k],
            None => &spec.input,
        };
        let line = layer_line(node, in_shape, &inputs).map_err(|e| {
            Error::model(format!(
                "layer {index} ('{}', {}): {e}",
                crate::names::shorten(&node.name, 64),
                node.layer.kind.type_name()
            ))
        })?;
        fields.push(line.1);
        layers.push(line.0);
    }
    let total = |f: fn(&LayerSummary) -> u64, what: &str| {
        layers
            .iter()
            .try_fold(0u64, |acc, l| acc.checked_add(f(l)))
            .ok_or_else(|| Error::model(format!("the model's total {what} overflows")))
    };
    Ok(Summary {
        input: spec.input,
        total_params: total(|l| l.params, "parameter count")?,
        total_flops: total(|l| l.flops, "FLOP count")?,
        // Every output was bounded by the plan, so each product fits.
        activations: total(
            |l| l.output_shape.iter().product::<usize>() as u64,
            "activations",
        )?,
        layers,
    })
}

/// One planned node's summary line and the receptive field of its output, from its input
/// shape and its inputs' fields.
fn layer_line(
    node: &PlannedNode,
    in_shape: &[usize],
    inputs: &[Field],
) -> Result<(LayerSummary, Field)> {
    let output = &node.layer.output;
    let hw = |s: &[usize]| {
        [
            s.get(1).copied().unwrap_or(1),
            s.get(2).copied().unwrap_or(1),
        ]
    };
    let first = inputs.first().copied().flatten();
    let (field, formula) = match &output.reach {
        Reach::Same => (first, None),
        Reach::Whole => (None, None),
        Reach::Join => (join(inputs), None),
        Reach::Window(window) => {
            let grown = first
                .map(|rf| {
                    let layer =
                        RfLayer::new(window.kernel, window.stride).with_dilation(window.dilation);
                    grow_receptive_field(rf, layer)
                })
                .transpose()?;
            (
                grown,
                Some(formula(window, hw(in_shape), hw(&output.shape))),
            )
        }
    };
    let summary = LayerSummary {
        name: node.name.clone(),
        kind: node.layer.kind.type_name(),
        output_shape: output.shape.clone(),
        params: node.layer.param_count(),
        flops: output.flops,
        receptive_field: field.map(|f| f.size),
        jump: field.map(|f| f.jump),
        formula,
    };
    Ok((summary, field))
}

/// The field of a unit that sees the same position of each input: the widest size and jump
/// (`None` when one of them sees the whole input).
fn join(inputs: &[Field]) -> Field {
    let fields: Option<Vec<ReceptiveField>> = inputs.iter().copied().collect();
    let fields = fields?;
    let widest = |f: fn(&ReceptiveField) -> [usize; 2]| {
        [0, 1].map(|i| fields.iter().map(|rf| f(rf)[i]).max().unwrap_or(1))
    };
    Some(ReceptiveField {
        size: widest(|rf| rf.size),
        jump: widest(|rf| rf.jump),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::read_shorthand;
    use crate::spec::{parse_hwc, shorthand_model};

    fn shape_of(input: &str, layers: &[&str]) -> Summary {
        let layers: Vec<String> = layers.iter().map(|s| s.to_string()).collect();
        let spec = shorthand_model(parse_hwc(input).unwrap(), &layers).unwrap();
        let model = Model::from_spec(&spec, 0).unwrap();
        summarize(&model).unwrap()
    }

    #[test]
    fn the_docs_image_with_six_5x5_filters_and_same_padding() {
        let s = shape_of("32x32x3", &["conv:6:5x5:s1:same"]);
        let l = &s.layers[0];
        assert_eq!(l.output_shape, [6, 32, 32]);
        assert_eq!(l.params, 6 * (5 * 5 * 3 + 1));
        assert_eq!(l.flops, 2 * 6 * 32 * 32 * 75);
        assert_eq!(
            l.formula.as_deref(),
            Some("floor((32 - 5 + 2*2) / 1) + 1 = 32")
        );
        assert_eq!(l.receptive_field, Some([5, 5]));
    }

    #[test]
    fn three_stacked_3x3_see_7x7() {
        let s = shape_of(
            "32x32x1",
            &["conv:8:3x3", "relu", "conv:8:3x3", "relu", "conv:8:3x3"],
        );
        assert_eq!(s.layers[4].receptive_field, Some([7, 7]));
        assert_eq!(s.layers[4].jump, Some([1, 1]));
        assert_eq!(s.layers[4].output_shape, [8, 26, 26]);
    }

    #[test]
    fn strides_and_dilation_grow_the_field_and_jump() {
        let s = shape_of(
            "224x224x3",
            &[
                "conv:64:7x7:s2:p3",
                "pool:max:3x3:s2:p1",
                "conv:64:3x3:s1:p1:d2",
            ],
        );
        assert_eq!(s.layers[0].output_shape, [64, 112, 112]);
        assert_eq!(s.layers[1].output_shape, [64, 56, 56]);
        assert_eq!(s.layers[0].receptive_field, Some([7, 7]));
        assert_eq!(s.layers[1].receptive_field, Some([11, 11]));
        // Dilation 2: a 5-wide kernel at jump 4.
        assert_eq!(s.layers[2].receptive_field, Some([11 + 4 * 4, 11 + 4 * 4]));
        assert_eq!(s.layers[2].jump, Some([4, 4]));
        assert_eq!(s.layers[2].output_shape, [64, 54, 54]);
    }

    #[test]
    fn impossible_layers_and_bad_shorthand_are_explained() {
        let layers = vec!["conv:6:5x5".to_string()];
        let spec = shorthand_model([1, 3, 3], &layers).unwrap();
        let err = Model::from_spec(&spec, 0).unwrap_err().to_string();
        assert!(
            err.contains("kernel 5x5") && err.contains("larger than the padded input 3x3"),
            "{err}"
        );
        let err = shorthand_model([1, 8, 8], &["conv:6:3x3:q1".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 1 ('conv:6:3x3:q1')") && err.contains("unknown conv option 'q1'"),
            "{err}"
        );
        assert!(read_shorthand("pool:min:2x2").is_err());
        assert!(parse_hwc("32x32").is_ok());
        assert!(parse_hwc("32xx3").is_err());
        assert!(parse_hwc("0x32x3").is_err());
    }
}
