//! Nodes that become convnet layers (or no-ops), operator by operator, with ONNX's
//! semantics.

use convnet::core::{Padding, PaddingMode};
use convnet::layers::{
    AddConfig, AvgPool2dConfig, BatchNormConfig, ClipConfig, ConcatConfig, Conv2dConfig,
    ConvTranspose2dConfig, DivConfig, EluConfig, FlattenConfig, GlobalPoolConfig,
    HardSigmoidConfig, HardSwishConfig, Interpolation, LeakyReluConfig, LinearConfig,
    MaxPool2dConfig, MulConfig, PReluConfig, PadConfig, PoolKind, ReluConfig, ResizeConfig,
    SigmoidConfig, SoftmaxConfig, SubConfig, TanhConfig,
};

use super::fold::{self, ints};
use super::naming::weight_prefix;
use super::value::{Const, Flow, Value};
use super::{Converter, SUPPORTED, unsupported};
use crate::error::{ErrorKind, Result};
use crate::node::Node;

/// Converts `node` into layers, a no-op, or a constant (`Shape`).
pub(crate) fn convert(c: &mut Converter, node: &Node) -> Result<()> {
    match node.op_type.as_str() {
        "Conv" => conv(c, node),
        "ConvTranspose" => conv_transpose(c, node),
        "Pad" => pad(c, node),
        "Resize" | "Upsample" => resize(c, node),
        "BatchNormalization" => batch_norm(c, node),
        "Relu" => simple(c, node, ReluConfig::default()),
        "Sigmoid" => simple(c, node, SigmoidConfig::default()),
        "Tanh" => simple(c, node, TanhConfig::default()),
        "HardSwish" => simple(c, node, HardSwishConfig::default()),
        "LeakyRelu" => {
            let alpha = node.float_or("alpha", 0.01)?;
            simple(
                c,
                node,
                LeakyReluConfig::default().with_negative_slope(alpha),
            )
        }
        "Elu" => {
            let alpha = node.float_or("alpha", 1.0)?;
            simple(c, node, EluConfig::new().with_alpha(alpha))
        }
        "PRelu" => prelu(c, node),
        "Clip" => clip(c, node),
        "HardSigmoid" => {
            let alpha = node.float_or("alpha", 0.2)?;
            let beta = node.float_or("beta", 0.5)?;
            simple(c, node, HardSigmoidConfig::new(alpha, beta))
        }
        "Gemm" => gemm(c, node),
        "MatMul" => matmul(c, node),
        "Flatten" => flatten(c, node),
        "Reshape" => reshape(c, node),
        "MaxPool" | "AveragePool" => pool(c, node),
        "GlobalAveragePool" => simple(c, node, GlobalPoolConfig::new(PoolKind::Avg)),
        "GlobalMaxPool" => simple(c, node, GlobalPoolConfig::new(PoolKind::Max)),
        "ReduceMean" => reduce_mean(c, node),
        "Dropout" | "Identity" => {
            let x = c.flow(node, 0)?;
            c.output(node, Value::Flow(x))
        }
        "Transpose" => transpose(c, node),
        "Add" | "Sub" | "Mul" | "Div" => binary(c, node),
        "Concat" => concat(c, node),
        "Softmax" => softmax(c, node),
        "Shape" => shape(c, node),
        op => Err(node.error(ErrorKind::UnsupportedOp {
            op: op.to_string(),
            supported: SUPPORTED.join(", "),
        })),
    }
}

/// A layer of one input and no weights.
fn simple(c: &mut Converter, node: &Node, kind: impl Into<convnet::LayerKind>) -> Result<()> {
    let x = c.flow(node, 0)?;
    c.layer(node, None, &[&x], kind)?;
    Ok(())
}

/// An attribute's non-negative integers, as sizes.
fn sizes(node: &Node, name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match node.get_ints(name)? {
        None => Ok(default.to_vec()),
        Some(v) => v
            .iter()
            .map(|&x| usize::try_from(x))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                unsupported(
                    node,
                    format!("attribute \"{name}\" {v:?} has a negative value"),
                )
            }),
    }
}

/// An attribute of two sizes (height, width).
fn pair(node: &Node, name: &str, default: [usize; 2]) -> Result<[usize; 2]> {
    let v = sizes(node, name, &default)?;
    <[usize; 2]>::try_from(v.as_slice()).map_err(|_| {
        unsupported(
            node,
            format!("attribute \"{name}\" is {v:?}; convnet takes 2-D (height, width) operators"),
        )
    })
}

/// The padding of a window `kernel` (dilated by `dilation`) moved by `stride` over `input`:
/// `auto_pad`, or `pads` as `[top, left, bottom, right]`.
fn padding(
    node: &Node,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> Result<[usize; 4]> {
    let auto = node.string_or("auto_pad", "NOTSET")?;
    match auto {
        "NOTSET" => {
            let p = sizes(node, "pads", &[0; 4])?;
            let [t, l, b, r] = <[usize; 4]>::try_from(p.as_slice()).map_err(|_| {
                unsupported(
                    node,
                    format!("attribute \"pads\" is {p:?}; 2-D operators take 4"),
                )
            })?;
            Ok([t, b, l, r])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut out = [0; 4];
            for a in 0..2 {
                let s = stride[a].max(1);
                let span = dilation[a]
                    .saturating_mul(kernel[a].saturating_sub(1))
                    .saturating_add(1);
                let strided = (input[a].div_ceil(s).saturating_sub(1)) * s;
                let total = strided.saturating_add(span).saturating_sub(input[a]);
                let small = total / 2;
                let (before, after) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                out[2 * a] = before;
                out[2 * a + 1] = after;
            }
            Ok(out)
        }
        other => Err(unsupported(
            node,
            format!("auto_pad \"{other}\" is not an ONNX value"),
        )),
    }
}

/// The image's `[H, W]`, for operators that need an image.
fn image(node: &Node, x: &Flow) -> Result<[usize; 2]> {
    match x.shape.as_slice() {
        [_, h, w] => Ok([*h, *w]),
        s => Err(unsupported(
            node,
            format!("needs an image [N, C, H, W], given a value of per-sample shape {s:?}"),
        )),
    }
}

/// A (transposed) convolution's 2-D weight dims, checked against `kernel_shape`.
fn conv_weight(node: &Node, w: &Const) -> Result<[usize; 4]> {
    let dims = <[usize; 4]>::try_from(w.dims.as_slice()).map_err(|_| {
        unsupported(
            node,
            format!(
                "weight has dims {:?}; convnet takes 2-D convolutions",
                w.dims
            ),
        )
    })?;
    let kernel = pair(node, "kernel_shape", [dims[2], dims[3]])?;
    if kernel != [dims[2], dims[3]] {
        return Err(unsupported(
            node,
            format!(
                "kernel_shape {kernel:?} differs from the weight's {:?}",
                [dims[2], dims[3]]
            ),
        ));
    }
    Ok(dims)
}

fn conv(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let w = c.required_constant(node, 1)?;
    let bias = c.constant(node, 2)?;
    let [out, _, kernel @ ..] = conv_weight(node, &w)?;
    let kernel = [kernel[0], kernel[1]];
    let stride = pair(node, "strides", [1, 1])?;
    let dilation = pair(node, "dilations", [1, 1])?;
    let groups = usize::try_from(node.int_or("group", 1)?)
        .map_err(|_| unsupported(node, "group is negative".into()))?;
    let [top, bottom, left, right] = padding(node, image(node, &x)?, kernel, stride, dilation)?;
    let config = Conv2dConfig::lazy(out, kernel)
        .with_stride(stride)
        .with_dilation(dilation)
        .with_groups(groups)
        .with_padding(Padding::Explicit {
            top,
            bottom,
            left,
            right,
        })
        .with_bias(bias.is_some());
    let prefix = weight_prefix(&node.inputs[1]).map(str::to_string);
    let (name, params) = c.layer(node, prefix.as_deref(), &[&x], config)?;
    let index = c.spec.layers.len() - 1;
    c.weight(node, &name, "weight", &params[0].1, w.into_f32())?;
    if let Some(b) = bias {
        c.weight(node, &name, "bias", &[out], b.into_f32())?;
    }
    c.open_bias(node, index);
    Ok(())
}

fn conv_transpose(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let w = c.required_constant(node, 1)?;
    let bias = c.constant(node, 2)?;
    let [cin, per_group, kernel @ ..] = conv_weight(node, &w)?;
    let kernel = [kernel[0], kernel[1]];
    if node.get_ints("output_shape")?.is_some() || node.string_or("auto_pad", "NOTSET")? != "NOTSET"
    {
        return Err(unsupported(
            node,
            "gives output_shape or auto_pad; convnet takes explicit pads (and output_padding)"
                .into(),
        ));
    }
    let groups = usize::try_from(node.int_or("group", 1)?)
        .map_err(|_| unsupported(node, "group is negative".into()))?;
    let [top, left, bottom, right] =
        <[usize; 4]>::try_from(sizes(node, "pads", &[0; 4])?.as_slice())
            .map_err(|_| unsupported(node, "attribute \"pads\" needs 4 values for 2-D".into()))?;
    let out = per_group.saturating_mul(groups);
    let config = ConvTranspose2dConfig {
        stride: pair(node, "strides", [1, 1])?,
        dilation: pair(node, "dilations", [1, 1])?,
        output_padding: pair(node, "output_padding", [0, 0])?,
        groups,
        bias: bias.is_some(),
        padding: Padding::Explicit {
            top,
            bottom,
            left,
            right,
        },
        ..ConvTranspose2dConfig::new([cin, out], kernel)
    };
    let prefix = weight_prefix(&node.inputs[1]).map(str::to_string);
    let (name, params) = c.layer(node, prefix.as_deref(), &[&x], config)?;
    c.weight(node, &name, "weight", &params[0].1, w.into_f32())?;
    if let Some(b) = bias {
        c.weight(node, &name, "bias", &[out], b.into_f32())?;
    }
    Ok(())
}

/// `Pad` over height and width: pads from input 1 (opset 11 on) or the attribute, the
/// constant from input 2 or `value`; `axes` (opset 18) naming the axes padded.
fn pad(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let rank = x.shape.len() + 1;
    let pads = match node.get_ints("pads")? {
        Some(p) => p.to_vec(),
        None => ints(node, &c.required_constant(node, 1)?)?.to_vec(),
    };
    let value = match node.get_float("value")? {
        Some(v) => v,
        None => c.constant(node, 2)?.map_or(Ok(0.0), |k| {
            k.to_f32()
                .first()
                .copied()
                .ok_or_else(|| unsupported(node, "its constant value is empty".into()))
        })?,
    };
    let axes: Vec<usize> = match c.constant(node, 3)? {
        Some(a) => ints(node, &a)?
            .iter()
            .map(|&a| fold::axis(node, a, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(unsupported(
            node,
            format!("pads {pads:?} do not give a begin and an end per axis"),
        ));
    }
    let mut full = vec![[0i64; 2]; rank];
    for (k, &a) in axes.iter().enumerate() {
        full[a] = [pads[k], pads[k + axes.len()]];
    }
    let image = rank == 4 && full[..2].iter().all(|p| *p == [0, 0]);
    let amounts: Option<Vec<usize>> = full[2..]
        .iter()
        .flatten()
        .map(|&p| usize::try_from(p).ok())
        .collect();
    let (Some(amounts), true) = (amounts, image) else {
        return Err(unsupported(
            node,
            format!(
                "pads {pads:?}: convnet pads the height and width of images by non-negative amounts"
            ),
        ));
    };
    let mode = match node.string_or("mode", "constant")? {
        "constant" => PaddingMode::Zeros,
        "reflect" => PaddingMode::Reflect,
        "edge" => PaddingMode::Replicate,
        "wrap" => PaddingMode::Circular,
        other => {
            return Err(unsupported(
                node,
                format!("mode \"{other}\" is not an ONNX Pad mode"),
            ));
        }
    };
    let [top, bottom, left, right] = [amounts[0], amounts[1], amounts[2], amounts[3]];
    let config = PadConfig {
        pads: [top, left, bottom, right],
        mode,
        value,
    };
    c.layer(node, None, &[&x], config)?;
    Ok(())
}

/// `Resize` (and opset 9's `Upsample`) of height and width: nearest with
/// `asymmetric` + `floor` (PyTorch's nearest), or linear with `half_pixel` /
/// `pytorch_half_pixel` or `align_corners`; by scales or to sizes.
fn resize(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let [ch, _, _] = <[usize; 3]>::try_from(x.shape.as_slice()).map_err(|_| {
        unsupported(
            node,
            format!(
                "resizes a value of per-sample shape {:?}; convnet resizes images",
                x.shape
            ),
        )
    })?;
    let (scales, sizes) = if node.op_type == "Upsample" {
        let scales = match node.get_floats("scales")? {
            Some(s) => s.to_vec(),
            None => c.required_constant(node, 1)?.to_f32(),
        };
        (Some(scales), None)
    } else {
        let scales = c
            .constant(node, 2)?
            .map(|k| k.to_f32())
            .filter(|s| !s.is_empty());
        let sizes = match c.constant(node, 3)? {
            Some(k) => Some(ints(node, &k)?.to_vec()),
            None => None,
        };
        (scales, sizes)
    };
    let config = match (scales, sizes) {
        (Some(s), None)
            if s.len() == 4 && s[0] == 1.0 && s[1] == 1.0 && s[2] > 0.0 && s[3] > 0.0 =>
        {
            ResizeConfig::by_scale([f64::from(s[2]), f64::from(s[3])])
        }
        (None, Some(z)) if z.len() == 4 && z[1] == ch as i64 && z[2] > 0 && z[3] > 0 => {
            ResizeConfig::to_size([z[2] as usize, z[3] as usize])
        }
        (scales, sizes) => {
            return Err(unsupported(
                node,
                format!(
                    "scales {scales:?}, sizes {sizes:?}: convnet resizes height and width, by positive scales or to sizes"
                ),
            ));
        }
    };
    let mode = node.string_or("mode", "nearest")?;
    let transform = node.string_or("coordinate_transformation_mode", "half_pixel")?;
    let nearest = node.string_or("nearest_mode", "round_prefer_floor")?;
    let config = match (mode, transform, nearest) {
        ("nearest", "asymmetric", "floor") => config,
        ("nearest", _, _) if node.op_type == "Upsample" => config,
        ("linear" | "bilinear", "half_pixel" | "pytorch_half_pixel", _) => {
            config.with_mode(Interpolation::Bilinear, false)
        }
        ("linear" | "bilinear", "align_corners", _) => {
            config.with_mode(Interpolation::Bilinear, true)
        }
        _ => {
            return Err(unsupported(
                node,
                format!(
                    "mode \"{mode}\" with coordinate_transformation_mode \"{transform}\" and \
                     nearest_mode \"{nearest}\": convnet resizes as PyTorch does (nearest: \
                     asymmetric + floor; linear: half_pixel or align_corners)"
                ),
            ));
        }
    };
    c.layer(node, None, &[&x], config)?;
    Ok(())
}

fn batch_norm(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    if node.int_or("training_mode", 0)? != 0 {
        return Err(unsupported(
            node,
            "is in training mode; import an inference graph".into(),
        ));
    }
    let channels = x.shape.first().copied().unwrap_or(0);
    let config = match x.shape.len() {
        3 => BatchNormConfig::new_2d(channels),
        1 | 2 => BatchNormConfig::new_1d(channels),
        _ => {
            return Err(unsupported(
                node,
                format!("normalizes a value of per-sample shape {:?}", x.shape),
            ));
        }
    };
    let config = config.with_eps(node.float_or("epsilon", 1e-5)?);
    let mut tensors = Vec::new();
    for (i, local) in [
        (1, "weight"),
        (2, "bias"),
        (3, "running_mean"),
        (4, "running_var"),
    ] {
        let t = c.required_constant(node, i)?;
        if t.len() != channels {
            return Err(unsupported(
                node,
                format!("input {i} has dims {:?}, expected [{channels}]", t.dims),
            ));
        }
        tensors.push((local, t));
    }
    let prefix = weight_prefix(&node.inputs[1]).map(str::to_string);
    let (name, _) = c.layer(node, prefix.as_deref(), &[&x], config)?;
    for (local, t) in tensors {
        c.weight(node, &name, local, &[channels], t.into_f32())?;
    }
    Ok(())
}

fn prelu(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let slope = c.required_constant(node, 1)?;
    let count = if slope.len() == 1 {
        1
    } else if slope.is_per_channel(&x.shape) {
        x.shape[0]
    } else {
        return Err(unsupported(
            node,
            format!(
                "slope dims {:?} against per-sample shape {:?}: convnet takes one slope, or \
                 one per channel ([C], [C, 1, 1])",
                slope.dims, x.shape
            ),
        ));
    };
    let prefix = weight_prefix(&node.inputs[1]).map(str::to_string);
    let (name, _) = c.layer(node, prefix.as_deref(), &[&x], PReluConfig::new(count))?;
    c.weight(node, &name, "weight", &[count], slope.into_f32())
}

/// `Clip`: bounds from inputs 1 and 2 (opset 11 on) or the `min`/`max` attributes (before);
/// a bound not given is none.
fn clip(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let mut bound = |i: usize, attr: &str, none: f32| -> Result<f32> {
        if let Some(v) = node.get_float(attr)? {
            return Ok(v);
        }
        match c.constant(node, i)? {
            None => Ok(none),
            Some(k) if k.len() == 1 => Ok(k.to_f32()[0]),
            Some(k) => Err(unsupported(
                node,
                format!("bound {attr} has dims {:?}; Clip takes one value", k.dims),
            )),
        }
    };
    let min = bound(1, "min", f32::NEG_INFINITY)?;
    let max = bound(2, "max", f32::INFINITY)?;
    c.layer(node, None, &[&x], ClipConfig::new(min, max))?;
    Ok(())
}

/// The input of a fully connected layer: `[N, F]`.
fn features(node: &Node, x: &Flow) -> Result<usize> {
    match x.shape.as_slice() {
        [f] => Ok(*f),
        s => Err(unsupported(
            node,
            format!(
                "multiplies a value of per-sample shape {s:?}; convnet takes [N, F] (flatten first)"
            ),
        )),
    }
}

fn gemm(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let b = c.required_constant(node, 1)?;
    let bias = c.constant(node, 2)?;
    if node.int_or("transA", 0)? != 0 {
        return Err(unsupported(
            node,
            "has transA = 1; convnet takes [N, F] inputs".into(),
        ));
    }
    let alpha = node.float_or("alpha", 1.0)?;
    let beta = node.float_or("beta", 1.0)?;
    let trans_b = node.int_or("transB", 0)? != 0;
    let f = features(node, &x)?;
    let weight = linear_weight(node, b, f, trans_b)?;
    let out = weight.dims[0];
    let bias = match bias {
        None => None,
        Some(b) if b.len() == out || b.len() == 1 => {
            let v = b.to_f32();
            Some(
                (0..out)
                    .map(|i| beta * v[if v.len() == 1 { 0 } else { i }])
                    .collect(),
            )
        }
        Some(b) => {
            return Err(unsupported(
                node,
                format!(
                    "bias C has dims {:?}; expected [{out}] (one per output)",
                    b.dims
                ),
            ));
        }
    };
    let weight = weight.into_f32().into_iter().map(|v| alpha * v).collect();
    linear(c, node, &x, [f, out], weight, bias)
}

fn matmul(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let b = c.required_constant(node, 1)?;
    let f = features(node, &x)?;
    let weight = linear_weight(node, b, f, false)?;
    let out = weight.dims[0];
    linear(c, node, &x, [f, out], weight.into_f32(), None)
}

/// The `[out, in]` weight of `x @ B` (or `x @ B^T`), for `in` features.
fn linear_weight(node: &Node, b: Const, f: usize, trans_b: bool) -> Result<Const> {
    match *b.dims.as_slice() {
        [_, cols] if trans_b && cols == f => Ok(b),
        [rows, cols] if !trans_b && rows == f => {
            let v = b.into_f32();
            let t = (0..cols)
                .flat_map(|j| (0..rows).map(move |i| i * cols + j))
                .map(|k| v[k])
                .collect();
            Ok(Const::floats(vec![cols, rows], t))
        }
        _ => Err(unsupported(
            node,
            format!(
                "weight has dims {:?}, which does not multiply {f} features",
                b.dims
            ),
        )),
    }
}

fn linear(
    c: &mut Converter,
    node: &Node,
    x: &Flow,
    [f, out]: [usize; 2],
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
) -> Result<()> {
    let config = LinearConfig::new(f, out).with_bias(bias.is_some());
    let prefix = weight_prefix(&node.inputs[1]).map(str::to_string);
    let (name, _) = c.layer(node, prefix.as_deref(), &[x], config)?;
    let index = c.spec.layers.len() - 1;
    c.weight(node, &name, "weight", &[out, f], weight)?;
    if let Some(b) = bias {
        c.weight(node, &name, "bias", &[out], b)?;
    }
    c.open_bias(node, index);
    Ok(())
}

/// `[N, ...]` -> `[N, F]`: a `flatten` layer (nothing when the value already is `[N, F]`).
fn flatten_to_features(c: &mut Converter, node: &Node, x: Flow) -> Result<()> {
    if x.shape.len() == 1 {
        c.output(node, Value::Flow(x))
    } else {
        c.layer(node, None, &[&x], FlattenConfig::default())?;
        Ok(())
    }
}

fn flatten(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    match node.int_or("axis", 1)? {
        1 => flatten_to_features(c, node, x),
        axis => Err(unsupported(
            node,
            format!("flattens from axis {axis}; convnet flattens from axis 1 ([N, -1])"),
        )),
    }
}

fn reshape(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let target = c.required_constant(node, 1)?;
    let mut full = vec![1];
    full.extend(&x.shape);
    let allow_zero = node.int_or("allowzero", 0)? != 0;
    let dims = fold::reshaped(node, &full, ints(node, &target)?, allow_zero)?;
    let features: usize = x.shape.iter().product();
    if dims == full {
        c.output(node, Value::Flow(x))
    } else if dims == [1, features] {
        flatten_to_features(c, node, x)
    } else {
        Err(unsupported(
            node,
            format!(
                "reshapes [N, {}] to {dims:?} (batch 1); convnet reshapes only to [N, -1]",
                x.shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

fn pool(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let kernel = pair(node, "kernel_shape", [0, 0])?;
    let stride = pair(node, "strides", [1, 1])?;
    let dilation = pair(node, "dilations", [1, 1])?;
    let ceil = node.int_or("ceil_mode", 0)? != 0;
    let [top, bottom, left, right] = padding(node, image(node, &x)?, kernel, stride, dilation)?;
    if top != bottom || left != right {
        return Err(unsupported(
            node,
            format!(
                "pads top {top}, bottom {bottom}, left {left}, right {right}; convnet's pools \
                 pad both sides of an axis alike"
            ),
        ));
    }
    if node.op_type == "MaxPool" {
        let config = MaxPool2dConfig::new(kernel)
            .with_stride(stride)
            .with_padding([top, left])
            .with_dilation(dilation)
            .with_ceil_mode(ceil);
        c.layer(node, None, &[&x], config)?;
    } else {
        if dilation != [1, 1] {
            return Err(unsupported(
                node,
                "has dilations; average pooling takes none".into(),
            ));
        }
        let config = AvgPool2dConfig::new(kernel)
            .with_stride(stride)
            .with_padding([top, left])
            .with_ceil_mode(ceil)
            .with_count_include_pad(node.int_or("count_include_pad", 0)? != 0);
        c.layer(node, None, &[&x], config)?;
    }
    Ok(())
}

fn reduce_mean(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let axes = match node.get_ints("axes")? {
        Some(a) => a.to_vec(),
        None => match c.constant(node, 1)? {
            Some(a) => ints(node, &a)?.to_vec(),
            None => vec![],
        },
    };
    let mut axes = axes
        .iter()
        .map(|&a| fold::axis(node, a, x.shape.len() + 1))
        .collect::<Result<Vec<_>>>()?;
    axes.sort_unstable();
    if x.shape.len() != 3 || axes != [2, 3] {
        return Err(unsupported(
            node,
            format!(
                "averages axes {axes:?} of [N, {:?}]; convnet averages over H and W (axes 2, 3) \
                 of an image",
                x.shape
            ),
        ));
    }
    let pool = GlobalPoolConfig::new(PoolKind::Avg);
    if node.int_or("keepdims", 1)? == 0 {
        let (pooled, _) = c.add_layer(node, None, &[&x], pool.into())?;
        c.layer(node, None, &[&pooled], FlattenConfig::default())?;
    } else {
        c.layer(node, None, &[&x], pool)?;
    }
    Ok(())
}

/// A transpose that only moves axes of size one leaves the data as it is.
fn transpose(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let mut full = vec![1];
    full.extend(&x.shape);
    let rank = full.len();
    let perm: Vec<usize> = match node.get_ints("perm")? {
        Some(p) => p
            .iter()
            .map(|&a| fold::axis(node, a, rank))
            .collect::<Result<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let moved: Vec<usize> = perm.iter().filter_map(|&a| full.get(a).copied()).collect();
    let kept: Vec<usize> = perm.iter().copied().filter(|&a| full[a] != 1).collect();
    if perm.len() == rank && moved == full && kept.windows(2).all(|w| w[0] < w[1]) {
        c.output(node, Value::Flow(x))
    } else {
        Err(unsupported(
            node,
            format!(
                "permutes [N, {:?}] by {perm:?}, which moves data; convnet keeps NCHW",
                x.shape
            ),
        ))
    }
}

/// `Add`, `Sub`, `Mul`, `Div` with ONNX's (numpy's) broadcasting; a constant operand
/// becomes a `constant` layer, except a per-channel constant added right after a layer with
/// a bias, which joins that bias.
fn binary(c: &mut Converter, node: &Node) -> Result<()> {
    let a = c.required(node, 0)?;
    let b = c.required(node, 1)?;
    let (a, b) = match (a, b) {
        (Value::Flow(x), Value::Const(k))
            if node.op_type == "Add" && c.bias_fits(node, 0, &x, &k) =>
        {
            return add_to_bias(c, node, 0, x, &k);
        }
        (Value::Const(k), Value::Flow(x))
            if node.op_type == "Add" && c.bias_fits(node, 1, &x, &k) =>
        {
            return add_to_bias(c, node, 1, x, &k);
        }
        (Value::Flow(a), Value::Flow(b)) => (a, b),
        (Value::Flow(a), Value::Const(k)) => {
            let b = c.constant_layer(node, &node.inputs[1], k, a.shape.len())?;
            (a, b)
        }
        (Value::Const(k), Value::Flow(b)) => {
            let a = c.constant_layer(node, &node.inputs[0], k, b.shape.len())?;
            (a, b)
        }
        (Value::Const(_), Value::Const(_)) => {
            return Err(unsupported(
                node,
                "computes two constants it could not fold".into(),
            ));
        }
    };
    let kind: convnet::LayerKind = match node.op_type.as_str() {
        "Add" => AddConfig::default().into(),
        "Sub" => SubConfig::default().into(),
        "Mul" => MulConfig::default().into(),
        _ => DivConfig::default().into(),
    };
    c.layer(node, None, &[&a, &b], kind)?;
    Ok(())
}

/// The axis of the batched tensor `[N, ...]` of per-sample rank `rank` that attribute
/// `axis` (negative: from the end) names; never the batch axis.
fn batched_axis(node: &Node, axis: i64, rank: usize) -> Result<usize> {
    match fold::axis(node, axis, rank + 1)? {
        0 => Err(unsupported(
            node,
            "works along the batch axis 0; convnet keeps samples apart".into(),
        )),
        a => Ok(a),
    }
}

fn concat(c: &mut Converter, node: &Node) -> Result<()> {
    let values = (0..node.inputs.len())
        .map(|i| c.required(node, i))
        .collect::<Result<Vec<_>>>()?;
    let rank = values
        .iter()
        .find_map(|v| match v {
            Value::Flow(f) => Some(f.shape.len()),
            Value::Const(_) => None,
        })
        .unwrap_or(0);
    let mut flows = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        flows.push(match v {
            Value::Flow(f) => f,
            Value::Const(k) => c.constant_layer(node, &node.inputs[i], k, rank)?,
        });
    }
    let dim = batched_axis(node, node.int("axis")?, rank)?;
    let refs: Vec<&Flow> = flows.iter().collect();
    c.layer(node, None, &refs, ConcatConfig::new(dim))?;
    Ok(())
}

/// `Softmax` along `axis` (opset 13 on: that axis, default the last; before: the values
/// flattened from `axis` on, default 1, the same when `axis` is the last one).
fn softmax(c: &mut Converter, node: &Node) -> Result<()> {
    let x = c.flow(node, 0)?;
    let rank = x.shape.len();
    let default = if c.opset >= 13 { -1 } else { 1 };
    let dim = batched_axis(node, node.int_or("axis", default)?, rank)?;
    if c.opset < 13 && dim != rank {
        return Err(unsupported(
            node,
            format!(
                "before opset 13, Softmax along axis {dim} of [N, {x:?}] spans several axes;                  convnet takes one",
                x = x.shape
            ),
        ));
    }
    c.layer(node, None, &[&x], SoftmaxConfig::new(dim))?;
    Ok(())
}

/// `x + k` where `x` is the output of a layer with a bias that nothing else reads and `k`
/// gives one value per channel (or one for all): `k` joins the bias.
/// ([`Converter::bias_fits`] said so; `i` is `x`'s input.)
fn add_to_bias(c: &mut Converter, node: &Node, i: usize, x: Flow, k: &Const) -> Result<()> {
    let index = c.bias_open.remove(&node.inputs[i]).unwrap_or_default();
    let channels = x.shape.first().copied().unwrap_or(1);
    c.add_bias(node, index, channels, &k.to_f32())?;
    c.output(node, Value::Flow(x))
}

fn shape(c: &mut Converter, node: &Node) -> Result<()> {
    let dims = match c.required(node, 0)? {
        Value::Flow(x) => {
            // The batch size is free; shapes are folded with a batch of one.
            let mut full = vec![1];
            full.extend(&x.shape);
            full
        }
        Value::Const(k) => k.dims,
    };
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(node.int_or("start", 0)?);
    let end = clamp(node.int_or("end", rank)?).max(start);
    let values: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
    c.output(node, Value::Const(Const::ints(vec![values.len()], values)))
}
