//! What each layer of a model does to one sample: output shape, parameters, FLOPs, receptive
//! field and jump, and the output-size formula filled in. Also the layer shorthand of
//! `convnet shape` (`conv:6:5x5:s1:same`, `pool:max:2x2`, ...).
//!
//! FLOPs count the multiply-adds of conv and linear layers, two per multiply-add (as
//! `convnet bench` and most tools do); other layers count 0. The receptive field of a unit is
//! `r = 1 + sum_i (k_i - 1) * prod_{j<i} s_j` with `k_i` the dilated kernel; the jump is the
//! product of the strides. After a global pooling or flatten, a unit sees the whole input.

use convnet_core::{Padding, geometry::effective_kernel};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::layers::{Layer, Module};
use crate::model::{Model, Source};
use crate::spec::{LayerKind, ModelSpec, PReluSlopes};
use convnet_core::Activation;

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

/// Summarize every layer of `model`.
pub fn summarize(model: &Model) -> Result<Summary> {
    let input = model.input_shape();
    // Receptive field and jump of each node's output (None: the whole input).
    let mut fields: Vec<Option<([usize; 2], [usize; 2])>> = Vec::new();
    let mut layers = Vec::new();
    for node in model.nodes() {
        let in_field = |s: &Source, fields: &Vec<Option<([usize; 2], [usize; 2])>>| match s {
            Source::Input => Some(([1, 1], [1, 1])),
            Source::Node(j) => fields[*j],
        };
        let inputs: Vec<Option<([usize; 2], [usize; 2])>> =
            node.inputs.iter().map(|s| in_field(s, &fields)).collect();
        let in_shape: &[usize] = match node.inputs.first() {
            Some(Source::Node(j)) => &model.nodes()[*j].output_shape,
            _ => &input,
        };
        let grow = |field: Option<([usize; 2], [usize; 2])>,
                    kernel: [usize; 2],
                    stride: [usize; 2],
                    dilation: [usize; 2]| {
            field.map(|(rf, jump)| {
                let k = [0, 1].map(|a| effective_kernel(kernel[a], dilation[a]).unwrap_or(1));
                (
                    [0, 1].map(|a| rf[a] + (k[a] - 1) * jump[a]),
                    [0, 1].map(|a| jump[a] * stride[a]),
                )
            })
        };
        let out = &node.output_shape;
        let hw = |s: &[usize]| {
            [
                s.get(1).copied().unwrap_or(1),
                s.get(2).copied().unwrap_or(1),
            ]
        };
        let (field, flops, formula_text) = match &node.layer {
            Layer::Conv2d(conv) => {
                let c = conv.config();
                let geometry = conv.conv_params().geometry(
                    [1, c.in_channels, hw(in_shape)[0], hw(in_shape)[1]],
                    c.weight_dims(),
                )?;
                let flops = convnet_core::geometry::conv2d_flops(
                    1,
                    c.in_channels,
                    c.out_channels,
                    geometry.out_hw,
                    c.kernel,
                    c.groups,
                )?;
                (
                    grow(inputs[0], c.kernel, c.stride, c.dilation),
                    flops,
                    Some(
                        Window {
                            kernel: c.kernel,
                            stride: c.stride,
                            dilation: c.dilation,
                            pad: geometry.pad,
                            ceil: false,
                        }
                        .formula(hw(in_shape), geometry.out_hw),
                    ),
                )
            }
            Layer::MaxPool2d(_) | Layer::AvgPool2d(_) => {
                let p = match &node.layer {
                    Layer::MaxPool2d(m) => *m.pool_params(),
                    Layer::AvgPool2d(a) => *a.pool_params(),
                    _ => unreachable!("matched above"),
                };
                let [ph, pw] = p.padding();
                (
                    grow(inputs[0], p.kernel(), p.stride(), p.dilation()),
                    0,
                    Some(
                        Window {
                            kernel: p.kernel(),
                            stride: p.stride(),
                            dilation: p.dilation(),
                            pad: [ph, ph, pw, pw],
                            ceil: p.ceil_mode(),
                        }
                        .formula(hw(in_shape), hw(out)),
                    ),
                )
            }
            Layer::Linear(l) => (
                None,
                2 * l.config().in_features as u64 * l.config().out_features as u64,
                None,
            ),
            Layer::GlobalPool(_) | Layer::Flatten(_) | Layer::AdaptiveAvgPool2d(_) => {
                (None, 0, None)
            }
            Layer::Add(_) => {
                let joined = match (
                    inputs.first().copied().flatten(),
                    inputs.get(1).copied().flatten(),
                ) {
                    (Some((ra, ja)), Some((rb, jb))) => Some((
                        [0, 1].map(|a| ra[a].max(rb[a])),
                        [0, 1].map(|a| ja[a].max(jb[a])),
                    )),
                    _ => None,
                };
                (joined, 0, None)
            }
            Layer::BatchNorm(_) | Layer::Activation(_) | Layer::PRelu(_) | Layer::Dropout(_) => {
                (inputs[0], 0, None)
            }
        };
        let params = node
            .layer
            .params()
            .iter()
            .map(|(_, p)| p.value.numel() as u64)
            .sum();
        fields.push(field);
        layers.push(LayerSummary {
            name: node.name.clone(),
            kind: node.layer.kind(),
            output_shape: out.clone(),
            params,
            flops,
            receptive_field: field.map(|f| f.0),
            jump: field.map(|f| f.1),
            formula: formula_text,
        });
    }
    Ok(Summary {
        input,
        total_params: layers.iter().map(|l| l.params).sum(),
        total_flops: layers.iter().map(|l| l.flops).sum(),
        activations: layers
            .iter()
            .map(|l| l.output_shape.iter().product::<usize>() as u64)
            .sum(),
        layers,
    })
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
