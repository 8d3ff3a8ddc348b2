//! Golden tests: conv2d forward and all three gradients against PyTorch, read from
//! `tests/fixtures/conv2d.safetensors` (made by `tools/gen_fixtures.py`). Every case runs
//! with `Conv2dAlgo::Auto` (the fast path dispatch) and `Conv2dAlgo::Reference`.

mod common;

use common::{Fixture, Report, param_array, param_bool, param_str, param_usize};
use convnet_core::{
    Conv2dAlgo, Conv2dParams, ConvMode, GradRequest, Padding, PaddingMode, Tensor,
    ops::conv2d::{conv2d_backward_with, conv2d_with},
};
use serde_json::Value;

const FIXTURE: &str = "conv2d.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the conv2d fixture.
const CONV2D_CASES: usize = 55;
const ALGOS: [Conv2dAlgo; 2] = [Conv2dAlgo::Auto, Conv2dAlgo::Reference];

/// The `Conv2dParams` a case's JSON parameters describe.
fn conv2d_params_from_json(meta: &Value) -> Result<Conv2dParams, String> {
    if param_str(meta, "op")? != "conv2d" {
        return Err(format!("not a conv2d case: {meta}"));
    }
    let padding = match param_str(meta, "padding")? {
        "valid" => Padding::Valid,
        "same" => Padding::Same,
        "explicit" => {
            let [top, bottom, left, right] = param_array::<4>(meta, "pad")?;
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        }
        other => return Err(format!("unknown padding `{other}`")),
    };
    let padding_mode = match param_str(meta, "padding_mode")? {
        "zeros" => PaddingMode::Zeros,
        "reflect" => PaddingMode::Reflect,
        "replicate" => PaddingMode::Replicate,
        "circular" => PaddingMode::Circular,
        other => return Err(format!("unknown padding_mode `{other}`")),
    };
    let mode = match param_str(meta, "mode")? {
        "cross_correlation" => ConvMode::CrossCorrelation,
        "convolution" => ConvMode::Convolution,
        other => return Err(format!("unknown mode `{other}`")),
    };
    Conv2dParams::builder()
        .with_stride(param_array(meta, "stride")?)
        .with_dilation(param_array(meta, "dilation")?)
        .with_groups(param_usize(meta, "groups")?)
        .with_padding(padding)
        .with_padding_mode(padding_mode)
        .with_mode(mode)
        .build()
        .map_err(|e| format!("parameters rejected: {e}"))
}

/// The tensors of one conv2d case.
struct Conv2dCase {
    params: Conv2dParams,
    input: Tensor,
    weight: Tensor,
    bias: Option<Tensor>,
    grad_output: Tensor,
}

fn load_conv2d_case(fx: &Fixture, case: &str) -> Result<Conv2dCase, String> {
    let meta = fx.case(case)?;
    let params = conv2d_params_from_json(meta)?;
    let bias = if param_bool(meta, "bias")? {
        Some(fx.tensor(case, "bias")?)
    } else {
        None
    };
    Ok(Conv2dCase {
        params,
        input: fx.tensor(case, "input")?,
        weight: fx.tensor(case, "weight")?,
        bias,
        grad_output: fx.tensor(case, "grad_output")?,
    })
}

/// Run one case with every algorithm, forward and backward, comparing with PyTorch.
/// Returns the `Auto` forward output (for the named tests' extra assertions).
fn check_conv2d_case(fx: &Fixture, report: &mut Report, case: &str) -> Option<Tensor> {
    let c = report.ok(case, "load", load_conv2d_case(fx, case))?;
    let want = |name: &str| fx.tensor(case, name);
    let want_output = report.ok(case, "output", want("output"))?;
    let want_grad_input = report.ok(case, "grad_input", want("grad_input"))?;
    let want_grad_weight = report.ok(case, "grad_weight", want("grad_weight"))?;
    let want_grad_bias = match c.bias {
        Some(_) => Some(report.ok(case, "grad_bias", want("grad_bias"))?),
        None => None,
    };
    let mut auto_output = None;
    for algo in ALGOS {
        let forward = conv2d_with(&c.input, &c.weight, c.bias.as_ref(), &c.params, algo);
        if let Some(y) = report.ok(case, &format!("output [{algo:?}]"), forward) {
            report.compare(case, &format!("output [{algo:?}]"), &y, &want_output);
            if algo == Conv2dAlgo::Auto {
                auto_output = Some(y);
            }
        }
        let backward = conv2d_backward_with(
            &c.grad_output,
            &c.input,
            &c.weight,
            &c.params,
            GradRequest::ALL,
            algo,
        );
        let Some(grads) = report.ok(case, &format!("backward [{algo:?}]"), backward) else {
            continue;
        };
        let pairs = [
            ("grad_input", grads.grad_input, Some(&want_grad_input)),
            ("grad_weight", grads.grad_weight, Some(&want_grad_weight)),
            ("grad_bias", grads.grad_bias, want_grad_bias.as_ref()),
        ];
        for (name, got, want) in pairs {
            let what = format!("{name} [{algo:?}]");
            match (got, want) {
                (Some(got), Some(want)) => report.compare(case, &what, &got, want),
                (None, _) => report.fail(case, format!("{what}: not computed")),
                // No bias in this case: PyTorch has no bias gradient to compare with.
                (Some(_), None) => {}
            }
        }
    }
    auto_output
}

#[test]
fn conv2d_matches_pytorch_forward_and_every_gradient_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden conv2d");
    let cases: Vec<String> = fx.cases().map(|(name, _)| name.to_string()).collect();
    for case in &cases {
        check_conv2d_case(&fx, &mut report, case);
    }
    report.finish_all_cases(&fx, CONV2D_CASES);
}

#[test]
fn doc_vertical_edge_kernel_on_the_patch_gives_minus_60_as_pytorch() {
    let fx = Fixture::load(FIXTURE);
    let case = "doc_vertical_edge";
    let patch = [10., 20., 30., 15., 25., 35., 20., 30., 40.];
    let edge = [1., 0., -1., 1., 0., -1., 1., 0., -1.];
    assert_eq!(fx.tensor(case, "input").unwrap().data(), &patch);
    assert_eq!(fx.tensor(case, "weight").unwrap().data(), &edge);
    assert_eq!(fx.tensor(case, "output").unwrap().data(), &[-60.0]);
    let mut report = Report::new("doc vertical edge");
    let y = check_conv2d_case(&fx, &mut report, case);
    report.finish();
    let y = y.expect("forward pass ran");
    assert_eq!(y.dims(), &[1, 1, 1, 1]);
    assert_eq!(y.data(), &[-60.0]);
}

#[test]
fn doc_32x32x3_image_six_5x5x3_filters_same_padding_gives_1x6x32x32_as_pytorch() {
    let fx = Fixture::load(FIXTURE);
    let case = "doc_32x32x3_six_5x5_same";
    assert_eq!(fx.tensor(case, "input").unwrap().dims(), &[1, 3, 32, 32]);
    assert_eq!(fx.tensor(case, "weight").unwrap().dims(), &[6, 3, 5, 5]);
    assert_eq!(fx.tensor(case, "output").unwrap().dims(), &[1, 6, 32, 32]);
    let mut report = Report::new("doc 32x32x3 same");
    let y = check_conv2d_case(&fx, &mut report, case);
    report.finish();
    assert_eq!(y.expect("forward pass ran").dims(), &[1, 6, 32, 32]);
}
