//! What each layer of a model does to one sample: output shape, parameters, FLOPs, receptive
//! field and jump, and the output-size formula filled in. Also the layer shorthand of
//! `convnet shape` (`conv:6:5x5:s1:same`, `pool:max:2x2`, ...).
//!
//! FLOPs count the multiply-adds of conv and linear layers, two per multiply-add (as
//! `convnet bench` and most tools do); other layers count 0. The receptive field of a unit is
//! `r = 1 + sum_i (k_i - 1) * prod_{j<i} s_j` with `k_i` the dilated kernel; the jump is the
//! product of the strides. After a global pooling or flatten, a unit sees the whole input.

use convnet_core::geometry::{ReceptiveField, RfLayer, conv2d_flops, grow_receptive_field};
use convnet_core::{Activation, Padding, Pool2dParams};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::model::{Model, Source};
use crate::spec::{LayerKind, LayerPlan, ModelSpec, PReluSlopes, PlannedNode};

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

/// The sliding window of a conv or pool layer, for writing out its output-size formula.
struct Window {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// top, bottom, left, right.
    pad: [usize; 4],
    ceil: bool,
}

impl Window {
    /// The formula of one axis (0: height, 1: width) with its numbers filled in.
    fn axis_formula(&self, axis: usize, input: usize, out: usize) -> String {
        let round = if self.ceil { "ceil" } else { "floor" };
        let (kernel, stride, dilation) =
            (self.kernel[axis], self.stride[axis], self.dilation[axis]);
        let (before, after) = (self.pad[2 * axis], self.pad[2 * axis + 1]);
        if dilation == 1 && before == after {
            format!("{round}(({input} - {kernel} + 2*{before}) / {stride}) + 1 = {out}")
        } else {
            format!(
                "{round}(({input} + {before} + {after} - {dilation}*({kernel} - 1) - 1) / {stride}) + 1 = {out}"
            )
        }
    }

    /// `H: ...; W: ...` (or one line when both axes are the same).
    fn formula(&self, input: [usize; 2], out: [usize; 2]) -> String {
        let h = self.axis_formula(0, input[0], out[0]);
        let w = self.axis_formula(1, input[1], out[1]);
        if h == w { h } else { format!("H: {h}; W: {w}") }
    }
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
    let mut fields: Vec<Field> = Vec::with_capacity(plan.len());
    let mut layers = Vec::with_capacity(plan.len());
    for (index, node) in plan.iter().enumerate() {
        let inputs: Vec<Field> = node
            .inputs
            .iter()
            .map(|s| match s {
                Source::Input => Some(ReceptiveField {
                    size: [1, 1],
                    jump: [1, 1],
                }),
                Source::Node(j) => fields[*j],
            })
            .collect();
        let in_shape: &[usize] = match node.inputs.first() {
            Some(Source::Node(j)) => &plan[*j].output_shape,
            _ => &spec.input,
        };
        let line = layer_line(node, in_shape, &inputs).map_err(|e| {
            Error::model(format!(
                "layer {index} ('{}', {}): {e}",
                crate::names::shorten(&node.name, 64),
                node.layer.kind()
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
    let out = &node.output_shape;
    let hw = |s: &[usize]| {
        [
            s.get(1).copied().unwrap_or(1),
            s.get(2).copied().unwrap_or(1),
        ]
    };
    let grow = |window: &Window| -> Result<Field> {
        inputs[0]
            .map(|rf| {
                let layer =
                    RfLayer::new(window.kernel, window.stride).with_dilation(window.dilation);
                grow_receptive_field(rf, layer)
            })
            .transpose()
            .map_err(Error::from)
    };
    let pool_line = |p: &Pool2dParams| -> Result<(Field, u64, Option<String>)> {
        let [ph, pw] = p.padding();
        let window = Window {
            kernel: p.kernel(),
            stride: p.stride(),
            dilation: p.dilation(),
            pad: [ph, ph, pw, pw],
            ceil: p.ceil_mode(),
        };
        let formula = window.formula(hw(in_shape), hw(out));
        Ok((grow(&window)?, 0, Some(formula)))
    };
    let (field, flops, formula) = match &node.layer {
        LayerPlan::Conv2d(c) => {
            let geometry = c.params()?.geometry(
                [1, c.in_channels, hw(in_shape)[0], hw(in_shape)[1]],
                c.weight_dims(),
            )?;
            let flops = conv2d_flops(
                1,
                c.in_channels,
                c.out_channels,
                geometry.out_hw,
                c.kernel,
                c.groups,
            )?;
            let window = Window {
                kernel: c.kernel,
                stride: c.stride,
                dilation: c.dilation,
                pad: geometry.pad,
                ceil: false,
            };
            (
                grow(&window)?,
                flops,
                Some(window.formula(hw(in_shape), geometry.out_hw)),
            )
        }
        LayerPlan::Linear(l) => {
            let flops = [2, l.in_features as u64, l.out_features as u64]
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::model("its FLOP count overflows"))?;
            (None, flops, None)
        }
        LayerPlan::Ready(layer) => match layer.as_ref() {
            Layer::MaxPool2d(m) => pool_line(m.pool_params())?,
            Layer::AvgPool2d(a) => pool_line(a.pool_params())?,
            Layer::GlobalPool(_) | Layer::Flatten(_) | Layer::AdaptiveAvgPool2d(_) => {
                (None, 0, None)
            }
            Layer::Add(_) => {
                let joined = match (
                    inputs.first().copied().flatten(),
                    inputs.get(1).copied().flatten(),
                ) {
                    (Some(a), Some(b)) => Some(ReceptiveField {
                        size: [0, 1].map(|i| a.size[i].max(b.size[i])),
                        jump: [0, 1].map(|i| a.jump[i].max(b.jump[i])),
                    }),
                    _ => None,
                };
                (joined, 0, None)
            }
            _ => (inputs[0], 0, None),
        },
        LayerPlan::BatchNorm(_) | LayerPlan::PRelu(_) => (inputs[0], 0, None),
    };
    let summary = LayerSummary {
        name: node.name.clone(),
        kind: node.layer.kind(),
        output_shape: out.clone(),
        params: node.layer.param_count(),
        flops,
        receptive_field: field.map(|f| f.size),
        jump: field.map(|f| f.jump),
        formula,
    };
    Ok((summary, field))
}

/// The model of a layer list in `convnet shape`'s shorthand on a per-sample input `[C, H, W]`.
pub fn shorthand_model(input: [usize; 3], layers: &[String]) -> Result<ModelSpec> {
    let mut spec = ModelSpec::new(input);
    for (i, text) in layers.iter().enumerate() {
        let kind = parse_shorthand(text)
            .map_err(|e| Error::model(format!("layer {} ('{text}'): {e}", i + 1)))?;
        spec = spec.layer((i + 1).to_string(), kind);
    }
    Ok(spec)
}

fn pair(what: &str, s: &str) -> Result<[usize; 2]> {
    let parse = |v: &str| {
        v.parse::<usize>()
            .map_err(|_| Error::model(format!("{what} '{s}' is not N or HxW")))
    };
    match s.split_once('x') {
        Some((h, w)) => Ok([parse(h)?, parse(w)?]),
        None => {
            let n = parse(s)?;
            Ok([n, n])
        }
    }
}

/// One layer in shorthand:
/// - `conv:OUT:KxK[:sS][:pP|:pT,B,L,R|:same|:valid][:dD][:gG][:nobias]`
/// - `pool:max|avg:KxK[:sS][:pP][:ceil]`, `gpool:avg|max`, `adaptive:HxW`
/// - `fc:OUT` (or `linear:OUT`), `flatten`, `bn`, `dropout[:P]`, and activations `relu`,
///   `leaky_relu`, `elu`, `tanh`, `sigmoid`, `prelu`.
pub fn parse_shorthand(text: &str) -> Result<LayerKind> {
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    let usage = || {
        Error::model(
            "expected conv:OUT:KxK[:sS][:pP|:same|:valid][:dD][:gG], pool:max|avg:KxK[:sS][:pP], \
             gpool:avg|max, adaptive:HxW, fc:OUT, flatten, bn, dropout[:P] or an activation"
                .to_string(),
        )
    };
    let options = |rest: &[&str], f: &mut dyn FnMut(&str) -> Result<()>| -> Result<()> {
        for opt in rest {
            f(opt)?;
        }
        Ok(())
    };
    match parts.as_slice() {
        ["conv", out, kernel, rest @ ..] => {
            let out: usize = out
                .parse()
                .map_err(|_| Error::model(format!("'{out}' is not a channel count")))?;
            let kernel = pair("kernel", kernel)?;
            let mut kind = LayerKind::conv2d(out, kernel);
            let LayerKind::Conv2d {
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } = &mut kind
            else {
                unreachable!("conv2d")
            };
            options(rest, &mut |opt: &str| {
                match opt {
                    "same" => *padding = Padding::Same,
                    "valid" => *padding = Padding::Valid,
                    "nobias" => *bias = false,
                    _ if opt.starts_with('s') => *stride = pair("stride", &opt[1..])?,
                    _ if opt.starts_with('d') => *dilation = pair("dilation", &opt[1..])?,
                    _ if opt.starts_with('g') => {
                        *groups = opt[1..]
                            .parse()
                            .map_err(|_| Error::model(format!("'{opt}' is not gN")))?
                    }
                    _ if opt.starts_with('p') => {
                        let v: Vec<usize> = opt[1..]
                            .split(',')
                            .map(|x| {
                                x.parse().map_err(|_| {
                                    Error::model(format!("'{opt}' is not pN or pT,B,L,R"))
                                })
                            })
                            .collect::<Result<_>>()?;
                        *padding = match v.as_slice() {
                            [p] => Padding::symmetric([*p, *p]),
                            [h, w] => Padding::symmetric([*h, *w]),
                            [t, b, l, r] => Padding::Explicit {
                                top: *t,
                                bottom: *b,
                                left: *l,
                                right: *r,
                            },
                            _ => {
                                return Err(Error::model(format!("'{opt}' is not pN or pT,B,L,R")));
                            }
                        };
                    }
                    _ => return Err(Error::model(format!("unknown conv option '{opt}'"))),
                }
                Ok(())
            })?;
            Ok(kind)
        }
        ["pool", which @ ("max" | "avg"), kernel, rest @ ..] => {
            let kernel = pair("kernel", kernel)?;
            let (mut stride, mut padding, mut ceil) = (kernel, [0, 0], false);
            options(rest, &mut |opt: &str| {
                match opt {
                    "ceil" => ceil = true,
                    _ if opt.starts_with('s') => stride = pair("stride", &opt[1..])?,
                    _ if opt.starts_with('p') => padding = pair("padding", &opt[1..])?,
                    _ => return Err(Error::model(format!("unknown pool option '{opt}'"))),
                }
                Ok(())
            })?;
            Ok(if *which == "max" {
                LayerKind::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                    dilation: [1, 1],
                    ceil_mode: ceil,
                }
            } else {
                LayerKind::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                    ceil_mode: ceil,
                    count_include_pad: true,
                    divisor_override: None,
                }
            })
        }
        ["gpool", "avg"] => Ok(LayerKind::GlobalPool(crate::layers::PoolKind::Avg)),
        ["gpool", "max"] => Ok(LayerKind::GlobalPool(crate::layers::PoolKind::Max)),
        ["adaptive", size] => Ok(LayerKind::AdaptiveAvgPool2d {
            output_size: pair("size", size)?,
        }),
        ["fc" | "linear", out] => {
            Ok(LayerKind::linear(out.parse().map_err(|_| {
                Error::model(format!("'{out}' is not a feature count"))
            })?))
        }
        ["flatten"] => Ok(LayerKind::Flatten),
        ["bn"] => Ok(LayerKind::batch_norm(true)),
        ["bn1d"] => Ok(LayerKind::batch_norm(false)),
        ["dropout"] => Ok(LayerKind::Dropout { p: 0.5 }),
        ["dropout", p] => Ok(LayerKind::Dropout {
            p: p.parse()
                .map_err(|_| Error::model(format!("'{p}' is not a probability")))?,
        }),
        ["relu"] => Ok(LayerKind::Activation(Activation::Relu)),
        ["leaky_relu"] => Ok(LayerKind::Activation(Activation::leaky_relu())),
        ["elu"] => Ok(LayerKind::Activation(Activation::elu())),
        ["tanh"] => Ok(LayerKind::Activation(Activation::Tanh)),
        ["sigmoid"] => Ok(LayerKind::Activation(Activation::Sigmoid)),
        ["prelu"] => Ok(LayerKind::PRelu {
            slopes: PReluSlopes::Count(1),
            init: 0.25,
        }),
        _ => Err(usage()),
    }
}

/// `HxWxC` (as the documentation writes image sizes) to `[C, H, W]`.
pub fn parse_hwc(text: &str) -> Result<[usize; 3]> {
    let parts: Vec<usize> = text
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::config("input", format!("'{text}' is not HxWxC (e.g. 32x32x3)")))?;
    match parts.as_slice() {
        [h, w, c] if *h > 0 && *w > 0 && *c > 0 => Ok([*c, *h, *w]),
        [h, w] if *h > 0 && *w > 0 => Ok([1, *h, *w]),
        _ => Err(Error::config(
            "input",
            format!("'{text}' is not HxWxC with sizes of at least 1 (e.g. 32x32x3)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(input: &str, layers: &[&str]) -> Summary {
        let layers: Vec<String> = layers.iter().map(|s| s.to_string()).collect();
        let model = shorthand_model(parse_hwc(input).unwrap(), &layers)
            .unwrap()
            .build(0)
            .unwrap();
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
        let err = shorthand_model([1, 3, 3], &layers)
            .unwrap()
            .build(0)
            .unwrap_err()
            .to_string();
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
        assert!(parse_shorthand("pool:min:2x2").is_err());
        assert!(parse_hwc("32x32").is_ok());
        assert!(parse_hwc("32xx3").is_err());
        assert!(parse_hwc("0x32x3").is_err());
    }
}
