//! Golden tests: `linear` forward and its three gradients against PyTorch's
//! `F.linear`, with and without bias, a batch of one and larger batches, read from
//! `tests/fixtures/linear.safetensors` (made by `tools/gen_fixtures.py`).

mod common;

use common::{Fixture, Report, param_bool, param_str};
use convnet_core::{GradRequest, linear, linear_backward};

const FIXTURE: &str = "linear.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the linear fixture.
const LINEAR_CASES: usize = 7;

fn check_case(fx: &Fixture, report: &mut Report, case: &str, has_bias: bool) -> Option<()> {
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let w = report.ok(case, "weight", fx.tensor(case, "weight"))?;
    let b = report.ok(case, "bias", fx.optional_tensor(case, "bias"))?;
    if b.is_some() != has_bias {
        report.fail(
            case,
            "the `bias` parameter and the fixture's tensors disagree",
        );
        return None;
    }
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let want_gx = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    let want_gw = report.ok(case, "grad_weight", fx.tensor(case, "grad_weight"))?;
    let want_gb = report.ok(case, "grad_bias", fx.optional_tensor(case, "grad_bias"))?;
    if let Some(y) = report.ok(case, "linear", linear(&x, &w, b.as_ref())) {
        report.compare(case, "output", &y, &want_output);
    }
    let request = GradRequest {
        input: true,
        weight: true,
        bias: has_bias,
    };
    let grads = report.ok(
        case,
        "linear_backward",
        linear_backward(&grad_output, &x, &w, request),
    )?;
    match grads.grad_input {
        Some(gx) => report.compare(case, "grad_input", &gx, &want_gx),
        None => report.fail(case, "grad_input was requested but not returned"),
    }
    match grads.grad_weight {
        Some(gw) => report.compare(case, "grad_weight", &gw, &want_gw),
        None => report.fail(case, "grad_weight was requested but not returned"),
    }
    match (grads.grad_bias, want_gb) {
        (Some(gb), Some(want)) => report.compare(case, "grad_bias", &gb, &want),
        (None, None) => {}
        (got, _) => report.fail(
            case,
            format!(
                "grad_bias returned: {}, expected: {has_bias}",
                got.is_some()
            ),
        ),
    }
    Some(())
}

#[test]
fn linear_matches_pytorch_forward_and_every_gradient_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden linear");
    for (case, meta) in fx.cases() {
        match (param_str(meta, "op"), param_bool(meta, "bias")) {
            (Ok("linear"), Ok(has_bias)) => {
                check_case(&fx, &mut report, case, has_bias);
            }
            (Ok(other), Ok(_)) => report.fail(case, format!("unknown op `{other}`")),
            (Err(e), _) | (_, Err(e)) => report.fail(case, e),
        }
    }
    report.finish_all_cases(&fx, LINEAR_CASES);
}
