//! Golden tests: ReLU, LeakyReLU, ELU, tanh, sigmoid and PReLU, forward and every gradient
//! (PReLU's slope too), against PyTorch, read from `tests/fixtures/activation.safetensors`
//! (made by `tools/gen_fixtures.py`).

mod common;

use common::{Fixture, Report, param_f32, param_str};
use convnet_core::ops::activation::{
    Activation, activation, activation_backward, prelu, prelu_backward,
};
use serde_json::Value;

const FIXTURE: &str = "activation.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the activation fixture.
const ACTIVATION_CASES: usize = 12;

/// The `Activation` of an `activation` case.
fn activation_from_json(meta: &Value) -> Result<Activation, String> {
    Ok(match param_str(meta, "kind")? {
        "relu" => Activation::Relu,
        "leaky_relu" => Activation::LeakyRelu {
            negative_slope: param_f32(meta, "negative_slope")?,
        },
        "elu" => Activation::Elu {
            alpha: param_f32(meta, "alpha")?,
        },
        "tanh" => Activation::Tanh,
        "sigmoid" => Activation::Sigmoid,
        other => return Err(format!("unknown activation `{other}`")),
    })
}

fn check_activation_case(
    fx: &Fixture,
    report: &mut Report,
    case: &str,
    meta: &Value,
) -> Option<()> {
    let act = report.ok(case, "kind", activation_from_json(meta))?;
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let want_grad_input = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    let y = activation(&x, act);
    report.compare(case, "output", &y, &want_output);
    // The backward pass gets what a layer keeps: the input and its own forward output.
    let grad_input = activation_backward(&grad_output, &x, &y, act);
    if let Some(got) = report.ok(case, "backward", grad_input) {
        report.compare(case, "grad_input", &got, &want_grad_input);
    }
    Some(())
}

fn check_prelu_case(fx: &Fixture, report: &mut Report, case: &str) -> Option<()> {
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let weight = report.ok(case, "weight", fx.tensor(case, "weight"))?;
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let want_grad_input = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    let want_grad_weight = report.ok(case, "grad_weight", fx.tensor(case, "grad_weight"))?;
    if let Some(y) = report.ok(case, "prelu", prelu(&x, &weight)) {
        report.compare(case, "output", &y, &want_output);
    }
    if let Some(grads) = report.ok(
        case,
        "prelu_backward",
        prelu_backward(&grad_output, &x, &weight),
    ) {
        report.compare(case, "grad_input", &grads.grad_input, &want_grad_input);
        report.compare(case, "grad_weight", &grads.grad_weight, &want_grad_weight);
    }
    Some(())
}

#[test]
fn activations_match_pytorch_forward_and_every_gradient_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden activation");
    for (case, meta) in fx.cases() {
        match param_str(meta, "op") {
            Ok("activation") => {
                check_activation_case(&fx, &mut report, case, meta);
            }
            Ok("prelu") => {
                check_prelu_case(&fx, &mut report, case);
            }
            Ok(other) => report.fail(case, format!("unknown op `{other}`")),
            Err(e) => report.fail(case, e),
        }
    }
    report.finish_all_cases(&fx, ACTIVATION_CASES);
}
