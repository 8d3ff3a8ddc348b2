//! The layer kinds ONNX graphs map onto (`clip`, `hardsigmoid`, `concat`, `add`/`sub`/
//! `mul`/`div` with broadcasting, `constant`, `softmax`, `conv_transpose2d`, `pad`,
//! `resize`): forward and every gradient equal PyTorch's (fixtures made by
//! `tools/gen_onnx_layer_fixtures.py`), finite differences agree with the backward passes,
//! model files read back equal, and bad settings are refused with a named error.
//!
//! PyTorch agreement: every value within `1e-5` of PyTorch's, relative to
//! `max(1, |PyTorch's|)` (float32 rounding of sums of a few dozen terms).
//! Finite differences: central, step `H = 1e-3`, on `L = sum(output * r)` summed in f64;
//! analytic and numeric gradients agree within `1e-2` relative to `max(|analytic|, 0.1)`, as
//! `layer_gradients.rs` (inputs keep away from kinks).

use std::collections::BTreeMap;
use std::path::PathBuf;

use convnet::checkpoint::{load_weights, weights_bytes};
use convnet::layers::{ForwardCtx, Layer, LayerKind, read_kind};
use convnet::summary::summarize_spec;
use convnet::{Model, ModelSpec};
use convnet_core::Tensor;

const PYTORCH_TOL: f32 = 1e-5;
const H: f32 = 1e-3;
const FD_TOL: f64 = 1e-2;

// ---- fixtures ----------------------------------------------------------------------------

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx_layers.safetensors")
}

/// One PyTorch case: the layer's model-file table and its tensors by local name.
struct Case {
    name: String,
    table: String,
    tensors: BTreeMap<String, Tensor>,
}

impl Case {
    fn get(&self, key: &str) -> &Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("{}: no tensor {key}", self.name))
    }

    /// `in0`, `in1`, ... (or `grad_in0`, ... with `prefix` "grad_").
    fn numbered(&self, prefix: &str) -> Vec<Tensor> {
        (0..)
            .map_while(|i| self.tensors.get(&format!("{prefix}in{i}")).cloned())
            .collect()
    }

    /// `param.<name>` or `grad.<name>`, by name.
    fn named(&self, prefix: &str) -> Vec<(String, Tensor)> {
        (self.tensors.iter())
            .filter_map(|(k, t)| Some((k.strip_prefix(prefix)?.to_string(), t.clone())))
            .collect()
    }
}

/// Every case of the fixture whose name starts with `prefix`.
fn cases(prefix: &str) -> Vec<Case> {
    let bytes = std::fs::read(fixture_path()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tables = meta.metadata().clone().unwrap();
    let all = convnet::checkpoint::read_safetensors(&fixture_path()).unwrap();
    let found: Vec<Case> = (tables.into_iter())
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, table)| {
            let tensors = (all.iter())
                .filter_map(|(k, (t, _))| {
                    let local = k.strip_prefix(&format!("{name}."))?;
                    Some((local.to_string(), t.clone()))
                })
                .collect();
            Case {
                name,
                table,
                tensors,
            }
        })
        .collect();
    assert!(!found.is_empty(), "no case {prefix}*");
    found
}

// ---- running one layer ---------------------------------------------------------------------

/// The layer kind a model file's table describes.
fn kind(table: &str) -> LayerKind {
    let mut table: toml::Table = toml::from_str(table).unwrap();
    let name = table.remove("type").unwrap();
    read_kind(name.as_str().unwrap(), table).unwrap()
}

/// `kind` planned on the per-sample shapes of `inputs` and built.
fn build(kind: &LayerKind, inputs: &[Tensor]) -> Layer {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| &t.dims()[1..]).collect();
    let plan = kind.plan(&shapes).unwrap();
    plan.build(&mut convnet::rng::Rng::new(3)).unwrap()
}

fn set_params(layer: &mut Layer, values: &[(String, Tensor)]) {
    for (name, value) in values {
        let mut params = layer.params_mut();
        let (_, p) = (params.iter_mut().find(|(n, _)| n == name))
            .unwrap_or_else(|| panic!("no parameter {name}"));
        assert_eq!(p.value.dims(), value.dims(), "{name}");
        p.value = value.clone();
    }
}

fn forward(layer: &mut Layer, inputs: &[Tensor]) -> Tensor {
    layer
        .forward(inputs.to_vec(), &ForwardCtx::train(1, 0))
        .unwrap()
}

fn assert_close(what: &str, ours: &Tensor, theirs: &Tensor, tol: f32) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}: shape");
    for (i, (a, b)) in ours.data().iter().zip(theirs.data()).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: ours {a}, PyTorch {b}"
        );
    }
}

/// Each case of `prefix`: forward and every gradient equal PyTorch's.
fn equals_pytorch(prefix: &str) {
    for case in cases(prefix) {
        let inputs = case.numbered("");
        let kind = kind(&case.table);
        let mut layer = build(&kind, &inputs);
        set_params(&mut layer, &case.named("param."));
        let y = forward(&mut layer, &inputs);
        assert_close(&case.name, &y, case.get("output"), PYTORCH_TOL);
        let grads = (layer.backward(case.get("grad_output").clone(), true)).unwrap();
        let want = case.numbered("grad_");
        assert_eq!(grads.len(), want.len(), "{}: gradients", case.name);
        for (i, (g, w)) in grads.iter().zip(&want).enumerate() {
            let what = format!("{}: grad_in{i}", case.name);
            assert_close(&what, g.as_ref().unwrap(), w, PYTORCH_TOL);
        }
        for (name, want) in case.named("grad.") {
            let params = layer.params();
            let (_, p) = params.iter().find(|(n, _)| *n == name).unwrap();
            assert_close(
                &format!("{}: grad.{name}", case.name),
                &p.grad,
                &want,
                PYTORCH_TOL,
            );
        }
    }
}

/// `L = sum(forward(inputs) * r)` in f64.
fn objective(layer: &mut Layer, inputs: &[Tensor], r: &[f32]) -> f64 {
    let y = forward(layer, inputs);
    (y.data().iter().zip(r))
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

fn check_close(what: &str, numeric: f64, analytic: f64) {
    let scale = analytic.abs().max(0.1);
    assert!(
        (numeric - analytic).abs() <= FD_TOL * scale,
        "{what}: numeric {numeric} vs analytic {analytic}"
    );
}

/// Finite differences agree with the backward pass of `table`'s layer at `inputs`, for
/// every input and every parameter.
fn finite_differences(table: &str, inputs: &[Tensor]) {
    let mut layer = build(&kind(table), inputs);
    let y = forward(&mut layer, inputs);
    let r = values(y.numel(), 5, -1.0, 1.0);
    let grads = (layer.backward(Tensor::new(y.dims().to_vec(), r.clone()).unwrap(), true)).unwrap();
    let analytic: Vec<(String, Vec<f32>)> = (layer.params().into_iter())
        .map(|(n, p)| (n.to_string(), p.grad.data().to_vec()))
        .collect();
    let mut xs = inputs.to_vec();
    for (k, g) in grads.iter().enumerate() {
        let g = g.as_ref().unwrap();
        for i in 0..xs[k].numel() {
            let orig = xs[k].data()[i];
            xs[k].data_mut()[i] = orig + H;
            let up = objective(&mut layer, &xs, &r);
            xs[k].data_mut()[i] = orig - H;
            let down = objective(&mut layer, &xs, &r);
            xs[k].data_mut()[i] = orig;
            check_close(
                &format!("{table}: input {k}[{i}]"),
                (up - down) / (2.0 * f64::from(H)),
                f64::from(g.data()[i]),
            );
        }
    }
    for (name, grad) in &analytic {
        for (i, &ana) in grad.iter().enumerate() {
            let bump = |layer: &mut Layer, delta: f32| {
                let mut params = layer.params_mut();
                let (_, p) = params.iter_mut().find(|(n, _)| n == name).unwrap();
                p.value.data_mut()[i] += delta;
            };
            bump(&mut layer, H);
            let up = objective(&mut layer, inputs, &r);
            bump(&mut layer, -2.0 * H);
            let down = objective(&mut layer, inputs, &r);
            bump(&mut layer, H);
            check_close(
                &format!("{table}: {name}[{i}]"),
                (up - down) / (2.0 * f64::from(H)),
                f64::from(ana),
            );
        }
    }
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = convnet::rng::Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(lo, hi)).collect()
}

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::new(dims.to_vec(), values(n, seed, -1.0, 1.0)).unwrap()
}

/// Values in `[lo, hi]` at least `gap` away from each of `kinks`.
fn away_from(dims: &[usize], seed: u64, lo: f32, hi: f32, kinks: &[f32]) -> Tensor {
    let n = dims.iter().product();
    let v = values(n, seed, lo, hi)
        .into_iter()
        .map(|x| match kinks.iter().find(|k| (x - **k).abs() < 0.05) {
            Some(k) => k + 0.05_f32.copysign(x - k),
            None => x,
        })
        .collect();
    Tensor::new(dims.to_vec(), v).unwrap()
}

// ---- model files -----------------------------------------------------------------------------

/// A model file of one layer (`table`) on `input`, with `more` lines in `[model]`.
fn model_text(input: &str, table: &str) -> String {
    format!("[model]\ninput = {input}\n\n[[layer]]\nname = \"layer\"\n{table}")
}

/// The file reads, writes back to an equal model, and plans; the plan's output shape.
fn round_trip(text: &str) -> Vec<usize> {
    let spec = ModelSpec::from_toml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let written = spec.to_toml().unwrap();
    assert_eq!(ModelSpec::from_toml(&written).unwrap(), spec, "{written}");
    let summary = summarize_spec(&spec).unwrap();
    summary.layers.last().unwrap().output_shape.clone()
}

/// The error of reading and building `text`, as printed.
fn model_error(text: &str) -> String {
    match ModelSpec::from_toml(text).and_then(|spec| Model::from_spec(&spec, 0)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{text:?} does not contain {part:?}");
}

// ---- clip and hardsigmoid -------------------------------------------------------------------

#[test]
fn clip_equals_torch_clamp_with_no_gradient_on_the_bounds() {
    equals_pytorch("clip_");
}

#[test]
fn hardsigmoid_equals_pytorch_and_onnx_alpha() {
    equals_pytorch("hardsigmoid");
}

#[test]
fn clip_and_hardsigmoid_gradients_agree_with_finite_differences() {
    let x = away_from(&[2, 3, 4], 1, -5.0, 8.0, &[0.0, 6.0]);
    finite_differences("type = \"clip\"\nmin = 0.0\nmax = 6.0\n", &[x]);
    let x = away_from(&[2, 3, 4], 2, -5.0, 5.0, &[-3.0, 3.0]);
    finite_differences("type = \"hardsigmoid\"\n", &[x]);
    let x = away_from(&[2, 3, 4], 3, -5.0, 5.0, &[-2.5, 2.5]);
    finite_differences("type = \"hardsigmoid\"\nalpha = 0.2\n", &[x]);
}

#[test]
fn clip_and_hardsigmoid_read_back_equal_with_infinite_bounds() {
    for table in [
        "type = \"clip\"\n",
        "type = \"clip\"\nmin = -inf\nmax = 6\n",
        "type = \"clip\"\nmin = 0.1\n",
        "type = \"hardsigmoid\"\n",
        "type = \"hardsigmoid\"\nalpha = 0.2\nbeta = 0.25\n",
    ] {
        assert_eq!(round_trip(&model_text("[2, 3, 3]", table)), [2, 3, 3]);
    }
}

#[test]
fn clip_with_min_above_max_is_refused_naming_both() {
    let err = model_error(&model_text(
        "[1, 2, 2]",
        "type = \"clip\"\nmin = 6\nmax = 0\n",
    ));
    assert_contains(&err, "clip needs min <= max, got min = 6 and max = 0");
    let err = model_error(&model_text("[1, 2, 2]", "type = \"clip\"\nmin = nan\n"));
    assert_contains(
        &err,
        "min: expected a number (inf and -inf allowed), got nan",
    );
    let err = model_error(&model_text(
        "[1, 2, 2]",
        "type = \"hardsigmoid\"\nalpha = inf\n",
    ));
    assert_contains(&err, "alpha: expected a finite number, got inf");
}

// ---- concat ----------------------------------------------------------------------------------

#[test]
fn concat_equals_torch_cat_along_channels_features_and_width() {
    equals_pytorch("concat_");
}

#[test]
fn concat_gradients_agree_with_finite_differences() {
    let inputs = [tensor(&[2, 2, 3, 2], 1), tensor(&[2, 1, 3, 2], 2)];
    finite_differences("type = \"concat\"\n", &inputs);
    let inputs = [tensor(&[2, 2, 3, 1], 3), tensor(&[2, 2, 3, 2], 4)];
    finite_differences("type = \"concat\"\ndim = 3\n", &inputs);
}

/// A model on `[3, 4, 4]` images with a second input `other` of per-sample shape `other`,
/// and the layer `table` reading both.
fn two_input_model(other: &str, table: &str) -> String {
    format!(
        "[model]\ninput = [3, 4, 4]\nextra_inputs = [{{ name = \"other\", shape = {other} }}]\n\n\
         [[layer]]\nname = \"layer\"\ninputs = [\"input\", \"other\"]\n{table}"
    )
}

#[test]
fn concat_reads_back_equal_and_plans_its_joined_shape() {
    let text = two_input_model("[5, 4, 4]", "type = \"concat\"\n");
    assert_eq!(round_trip(&text), [8, 4, 4]);
    let text = two_input_model("[3, 4, 1]", "type = \"concat\"\ndim = 3\n");
    assert_eq!(round_trip(&text), [3, 4, 5]);
}

#[test]
fn concat_of_inputs_with_different_heights_is_refused_naming_both_shapes() {
    let err = model_error(&two_input_model("[2, 5, 4]", "type = \"concat\"\n"));
    assert_contains(
        &err,
        "concat along dim 1 needs inputs that agree on every other axis, but input 0 has \
         per-sample shape [3, 4, 4] and input 1 has [2, 5, 4]",
    );
    let err = model_error(&two_input_model(
        "[3, 4, 4]",
        "type = \"concat\"\ndim = 0\n",
    ));
    assert_contains(&err, "concat cannot join along the batch axis 0");
    let err = model_error(&two_input_model(
        "[3, 4, 4]",
        "type = \"concat\"\ndim = 4\n",
    ));
    assert_contains(
        &err,
        "concat along dim 4 needs inputs [N, ...] of more than 4 axes",
    );
}

// ---- add, sub, mul, div with broadcasting ------------------------------------------------------

#[test]
fn binary_ops_equal_pytorch_with_every_broadcast_pattern() {
    for op in ["add_", "sub_", "mul_", "div_"] {
        equals_pytorch(op);
    }
}

#[test]
fn binary_op_gradients_agree_with_finite_differences_over_broadcast_axes() {
    let shapes: [(&[usize], &[usize]); 4] = [
        (&[2, 2, 3], &[2, 2, 3]),
        (&[2, 2, 3], &[1, 2, 1]),
        (&[2, 1, 3], &[1, 2, 1]),
        (&[2, 2, 3], &[2, 3]),
    ];
    for op in ["add", "sub", "mul", "div"] {
        for (k, (a, b)) in shapes.iter().enumerate() {
            let a = tensor(a, 10 + k as u64);
            let b = away_from(b, 20 + k as u64, 0.5, 1.5, &[]);
            finite_differences(&format!("type = \"{op}\"\n"), &[a, b]);
        }
    }
}

#[test]
fn binary_ops_read_back_equal_and_plan_the_broadcast_shape() {
    for op in ["add", "sub", "mul", "div"] {
        let table = format!("type = \"{op}\"\n");
        assert_eq!(round_trip(&two_input_model("[3, 1, 1]", &table)), [3, 4, 4]);
        assert_eq!(round_trip(&two_input_model("[4]", &table)), [3, 4, 4]);
    }
}

#[test]
fn binary_op_of_shapes_that_do_not_broadcast_is_refused_naming_both_shapes() {
    let err = model_error(&two_input_model("[2, 4, 4]", "type = \"mul\"\n"));
    assert_contains(
        &err,
        "layer 0 ('layer', mul): broadcast: shapes [3, 4, 4] and [2, 4, 4] do not broadcast",
    );
    let err = model_error(&two_input_model("[3]", "type = \"add\"\n"));
    assert_contains(&err, "shapes [3, 4, 4] and [3] do not broadcast");
}

// ---- constant ----------------------------------------------------------------------------------

/// `x * scale + shift`, `scale` and `shift` constants of per-sample shapes `[3, 1, 1]` and
/// `[4]`.
const AFFINE: &str = "[model]\ninput = [3, 2, 4]\n\n\
    [[layer]]\nname = \"scale\"\ntype = \"constant\"\nshape = [3, 1, 1]\ninputs = []\n\n\
    [[layer]]\nname = \"scaled\"\ntype = \"mul\"\ninputs = [\"input\", \"scale\"]\n\n\
    [[layer]]\nname = \"shift\"\ntype = \"constant\"\nshape = [4]\ninputs = []\n\n\
    [[layer]]\nname = \"out\"\ntype = \"add\"\ninputs = [\"scaled\", \"shift\"]\n";

#[test]
fn constant_operands_broadcast_over_the_batch_and_round_trip_through_the_weights_file() {
    assert_eq!(round_trip(AFFINE), [3, 2, 4]);
    let spec = ModelSpec::from_toml(AFFINE).unwrap();
    let mut model = Model::from_spec(&spec, 0).unwrap();
    let names: Vec<String> = model.buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["scale.value", "shift.value"]);
    assert_eq!(model.param_count(), 0, "constants are not trained");
    let dir = std::env::temp_dir().join(format!("onnx_layers_constant_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("weights.safetensors");
    // Values written by another model of the same file, read into this one.
    let mut source = Model::from_spec(&spec, 0).unwrap();
    for (name, buffer) in source.buffers_mut() {
        let convnet::layers::BufferMut::Tensor(t) = buffer else {
            panic!("{name}")
        };
        let base = if name == "scale.value" { 1.0 } else { 10.0 };
        for (i, v) in t.data_mut().iter_mut().enumerate() {
            *v = base * (i + 1) as f32;
        }
    }
    std::fs::write(&file, weights_bytes(&source).unwrap()).unwrap();
    load_weights(&mut model, &file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let x = tensor(&[2, 3, 2, 4], 7);
    let y = model.forward(&x, ForwardCtx::eval(true)).unwrap();
    assert_eq!(y.dims(), [2, 3, 2, 4]);
    for (i, (&y, &x)) in y.data().iter().zip(x.data()).enumerate() {
        let (c, w) = ((i / 8) % 3, i % 4);
        let want = x * (c + 1) as f32 + 10.0 * (w + 1) as f32;
        assert!(
            (y - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{i}: {y} vs {want}"
        );
    }
    // The gradient reaches the input through the constant's operation.
    let g = Tensor::full(y.dims().to_vec(), 1.0).unwrap();
    let request = convnet::model::BackwardRequest {
        input: true,
        ..Default::default()
    };
    let gx = model.backward_with(&g, &request).unwrap().input.unwrap();
    assert_eq!(
        &gx.data()[..9],
        &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    );
}

#[test]
fn constant_settings_that_cannot_be_built_are_refused_with_named_errors() {
    let with = |table: &str| model_text("[1, 2, 2]", table);
    let err = model_error(&with("type = \"constant\"\nshape = [3]\n"));
    assert_contains(&err, "takes 0 input(s), 1 given");
    let err = model_error(&with("type = \"constant\"\nshape = [3, 0]\ninputs = []\n"));
    assert_contains(&err, "a constant's sizes must be at least 1, got [3, 0]");
    let err = model_error(&with(
        "type = \"constant\"\nshape = [65536, 65536, 2]\ninputs = []\n",
    ));
    assert_contains(
        &err,
        "its per-sample output [65536, 65536, 2] would hold more than",
    );
}

// ---- softmax ---------------------------------------------------------------------------------

#[test]
fn softmax_equals_pytorch_along_channels_features_and_the_last_axis() {
    equals_pytorch("softmax_");
}

#[test]
fn softmax_gradients_agree_with_finite_differences() {
    finite_differences("type = \"softmax\"\n", &[tensor(&[2, 3, 2, 2], 1)]);
    finite_differences("type = \"softmax\"\ndim = 2\n", &[tensor(&[2, 2, 4], 2)]);
}

#[test]
fn softmax_reads_back_equal_and_bad_axes_are_refused() {
    assert_eq!(
        round_trip(&model_text("[3, 2, 2]", "type = \"softmax\"\ndim = 3\n")),
        [3, 2, 2]
    );
    let err = model_error(&model_text("[3, 2, 2]", "type = \"softmax\"\ndim = 0\n"));
    assert_contains(&err, "softmax across the batch axis 0 mixes samples");
    let err = model_error(&model_text("[3, 2, 2]", "type = \"softmax\"\ndim = 4\n"));
    assert_contains(
        &err,
        "softmax along dim 4 needs inputs [N, ...] of more than 4 axes",
    );
}

// ---- conv_transpose2d --------------------------------------------------------------------------

#[test]
fn conv_transpose2d_equals_pytorch_with_stride_padding_output_padding_groups_and_dilation() {
    equals_pytorch("conv_transpose_");
}

#[test]
fn conv_transpose2d_gradients_agree_with_finite_differences() {
    let table = "type = \"conv_transpose2d\"\nout_channels = 4\nkernel = [2, 3]\nstride = 2\n\
                 padding = [1, 0, 0, 1]\noutput_padding = [1, 0]\ngroups = 2\n";
    finite_differences(table, &[tensor(&[2, 2, 3, 2], 1)]);
    let table = "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 2\ndilation = 2\n\
                 bias = false\n";
    finite_differences(table, &[tensor(&[1, 3, 2, 3], 2)]);
}

#[test]
fn conv_transpose2d_reads_back_equal_and_plans_its_output_size() {
    let table = "type = \"conv_transpose2d\"\nout_channels = 6\nkernel = 3\nstride = 2\n\
                 padding = 1\noutput_padding = 1\n";
    let text = model_text("[4, 5, 7]", table);
    assert_eq!(round_trip(&text), [6, 10, 14]);
    let spec = ModelSpec::from_toml(&text).unwrap();
    let summary = summarize_spec(&spec).unwrap();
    assert_eq!(summary.layers[0].params, 4 * 6 * 9 + 6);
}

#[test]
fn conv_transpose2d_settings_that_cannot_work_are_refused_with_named_errors() {
    let with = |table: &str| model_text("[4, 5, 5]", table);
    let err = model_error(&with(
        "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 3\nstride = 2\noutput_padding = 2\n",
    ));
    assert_contains(
        &err,
        "output_padding: must be smaller than the stride [2, 2] on each axis",
    );
    let err = model_error(&with(
        "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 3\npadding = \"same\"\n",
    ));
    assert_contains(&err, "conv_transpose2d takes amounts");
    let err = model_error(&with(
        "type = \"conv_transpose2d\"\nout_channels = 3\nkernel = 3\ngroups = 2\n",
    ));
    assert_contains(&err, "that groups = 2 divides, got 4 -> 3");
    let err = model_error(&with(
        "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 1\npadding = 3\n",
    ));
    assert_contains(&err, "leaves no output");
}

#[test]
fn conv_transpose2d_with_a_huge_stride_is_refused_before_allocating() {
    let err = model_error(&model_text(
        "[4, 5, 5]",
        "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 3\nstride = 1000000000\n",
    ));
    assert_contains(
        &err,
        "layer 0 ('layer', conv_transpose2d): conv_transpose2d: stride too large: the output \
         [2, 4000000003, 4000000003] would hold 32000000048000000018 values, more than the \
         2147483648 one tensor may hold",
    );
}

// ---- pad ---------------------------------------------------------------------------------------

#[test]
fn pad_equals_f_pad_in_every_mode() {
    equals_pytorch("pad_");
}

#[test]
fn pad_gradients_agree_with_finite_differences() {
    for mode in ["constant", "reflect", "replicate", "circular"] {
        let table = format!("type = \"pad\"\npads = [2, 1, 0, 2]\nmode = \"{mode}\"\n");
        finite_differences(&table, &[tensor(&[1, 2, 3, 3], 1)]);
    }
}

#[test]
fn pad_reads_back_equal_and_refuses_amounts_its_mode_cannot_take() {
    let table = "type = \"pad\"\npads = [1, 2, 3, 4]\nmode = \"replicate\"\n";
    assert_eq!(round_trip(&model_text("[2, 3, 3]", table)), [2, 7, 9]);
    let table = "type = \"pad\"\npads = [1, 0, 1, 0]\nvalue = -1.5\n";
    assert_eq!(round_trip(&model_text("[2, 3, 3]", table)), [2, 5, 3]);
    let err = model_error(&model_text(
        "[2, 3, 3]",
        "type = \"pad\"\npads = [3, 0, 0, 0]\nmode = \"reflect\"\n",
    ));
    assert_contains(
        &err,
        "pad: invalid pads: Reflect padding of [top 3, bottom 0, left 0, right 0] does not fit a 3x3 plane",
    );
    let err = model_error(&model_text(
        "[2, 3, 3]",
        "type = \"pad\"\npads = [1, 1, 1, 1]\nmode = \"reflect\"\nvalue = 2\n",
    ));
    assert_contains(&err, "a border value is for mode = \"constant\" only");
    let err = model_error(&model_text(
        "[2, 3, 3]",
        "type = \"pad\"\npads = [1, 1, 1, 1]\nmode = \"mirror\"\n",
    ));
    assert_contains(
        &err,
        "mode = \"mirror\" is not one of: constant, reflect, replicate, circular",
    );
}

#[test]
fn pad_beyond_the_tensor_bound_is_refused_before_allocating() {
    let err = model_error(&model_text(
        "[2, 3, 3]",
        "type = \"pad\"\npads = [100000, 100000, 100000, 100000]\n",
    ));
    assert_contains(
        &err,
        "pad: pads too large: the padded output [1, 2, 200003, 200003] would hold",
    );
}

// ---- resize ------------------------------------------------------------------------------------

#[test]
fn resize_equals_f_interpolate_nearest_and_bilinear_by_scale_and_size() {
    equals_pytorch("resize_");
}

#[test]
fn resize_gradients_agree_with_finite_differences() {
    for table in [
        "type = \"resize\"\nscale = [2.0, 3.0]\n",
        "type = \"resize\"\nsize = [5, 2]\n",
        "type = \"resize\"\nsize = [5, 7]\nmode = \"bilinear\"\n",
        "type = \"resize\"\nsize = [2, 5]\nmode = \"bilinear\"\nalign_corners = true\n",
        "type = \"resize\"\nscale = [1.5, 0.5]\nmode = \"bilinear\"\n",
    ] {
        finite_differences(table, &[tensor(&[1, 2, 3, 4], 1)]);
    }
}

#[test]
fn resize_reads_back_equal_and_plans_its_output_size() {
    let with = |table: &str| round_trip(&model_text("[3, 4, 5]", table));
    assert_eq!(with("type = \"resize\"\nscale = [2, 1.5]\n"), [3, 8, 7]);
    assert_eq!(
        with("type = \"resize\"\nsize = [3, 9]\nmode = \"bilinear\"\n"),
        [3, 3, 9]
    );
    assert_eq!(
        with("type = \"resize\"\nsize = [3, 9]\nmode = \"bilinear\"\nalign_corners = true\n"),
        [3, 3, 9]
    );
}

#[test]
fn resize_with_a_zero_scale_or_a_size_beyond_the_bound_is_refused_naming_the_setting() {
    let with = |table: &str| model_error(&model_text("[3, 4, 5]", table));
    assert_contains(
        &with("type = \"resize\"\nscale = [0, 2]\n"),
        "resize: invalid scale: must be finite and above 0, got [0.0, 2.0]",
    );
    assert_contains(
        &with("type = \"resize\"\nscale = [0.1, 2]\n"),
        "each side must be at least 1",
    );
    assert_contains(
        &with("type = \"resize\"\nsize = [0, 2]\n"),
        "resize: invalid size: must be at least 1x1, got 0x2",
    );
    assert_contains(
        &with("type = \"resize\"\nsize = [100000, 100000]\n"),
        "resize: size too large: the output [3, 100000, 100000] would hold 30000000000 values",
    );
    assert_contains(
        &with("type = \"resize\"\nscale = [1e12, 1e12]\n"),
        "resize: scale too large",
    );
    assert_contains(
        &with("type = \"resize\"\nscale = [2, 2]\nsize = [8, 8]\n"),
        "resize needs exactly one of scale = [h, w] and size = [h, w]",
    );
    assert_contains(
        &with("type = \"resize\"\nsize = [8, 8]\nalign_corners = true\n"),
        "align_corners: is for mode = \"bilinear\" only",
    );
}
