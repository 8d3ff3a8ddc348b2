//! Golden tests: batch norm against PyTorch's `F.batch_norm`, read from
//! `tests/fixtures/batch_norm.safetensors` (made by `tools/gen_fixtures.py`).
//!
//! Training mode (`[N, C]`, `[N, C, L]`, `[N, C, H, W]`, with and without weight and bias,
//! several `eps`): the output, the batch statistics (`mean`, `invstd`, and `var_unbiased`,
//! which PyTorch blends into `running_var`) and every gradient. Evaluation mode: the output
//! and every gradient.

mod common;

use common::{Fixture, Report, param_bool, param_f32, param_str};
use convnet_core::{
    BatchNormGrads, Tensor, batch_norm_backward, batch_norm_eval, batch_norm_eval_backward,
    batch_norm_train,
};
use serde_json::Value;

const FIXTURE: &str = "batch_norm.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the batch-norm fixture.
const BATCH_NORM_CASES: usize = 20;

/// The affine parameters of a case, checked against its `weight` / `bias` flags.
fn affine(
    fx: &Fixture,
    report: &mut Report,
    case: &str,
    meta: &Value,
) -> Option<(Option<Tensor>, Option<Tensor>)> {
    let weight = report.ok(case, "weight", fx.optional_tensor(case, "weight"))?;
    let bias = report.ok(case, "bias", fx.optional_tensor(case, "bias"))?;
    let flags = (
        report.ok(case, "weight flag", param_bool(meta, "weight"))?,
        report.ok(case, "bias flag", param_bool(meta, "bias"))?,
    );
    if flags != (weight.is_some(), bias.is_some()) {
        report.fail(
            case,
            "the weight/bias parameters and the fixture's tensors disagree",
        );
        return None;
    }
    Some((weight, bias))
}

/// Compares every gradient: `grad_input` always; `grad_weight` and `grad_bias` present
/// exactly when a weight was given (the fixture then has both).
fn compare_grads(
    fx: &Fixture,
    report: &mut Report,
    case: &str,
    grads: BatchNormGrads,
    has_weight: bool,
) -> Option<()> {
    let want_gx = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    report.compare(case, "grad_input", &grads.grad_input, &want_gx);
    let want_gw = report.ok(case, "grad_weight", fx.optional_tensor(case, "grad_weight"))?;
    let want_gb = report.ok(case, "grad_bias", fx.optional_tensor(case, "grad_bias"))?;
    for (what, got, want) in [
        ("grad_weight", grads.grad_weight, want_gw),
        ("grad_bias", grads.grad_bias, want_gb),
    ] {
        match (got, want) {
            (Some(got), Some(want)) if has_weight => report.compare(case, what, &got, &want),
            (None, None) if !has_weight => {}
            (got, want) => report.fail(
                case,
                format!(
                    "{what}: returned {}, in the fixture {}, weight given {has_weight}",
                    got.is_some(),
                    want.is_some()
                ),
            ),
        }
    }
    Some(())
}

fn check_train_case(fx: &Fixture, report: &mut Report, case: &str, meta: &Value) -> Option<()> {
    let eps = report.ok(case, "eps", param_f32(meta, "eps"))?;
    let (weight, bias) = affine(fx, report, case, meta)?;
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let want_mean = report.ok(case, "mean", fx.tensor(case, "mean"))?;
    let want_invstd = report.ok(case, "invstd", fx.tensor(case, "invstd"))?;
    let want_var = report.ok(case, "var_unbiased", fx.tensor(case, "var_unbiased"))?;
    let bn = report.ok(
        case,
        "batch_norm_train",
        batch_norm_train(&x, weight.as_ref(), bias.as_ref(), eps),
    )?;
    report.compare(case, "output", &bn.output, &want_output);
    report.compare(case, "mean", &bn.mean, &want_mean);
    report.compare(case, "invstd", &bn.invstd, &want_invstd);
    report.compare(case, "var_unbiased", &bn.var_unbiased, &want_var);
    // The backward pass gets what a layer keeps: the input and its own batch statistics.
    let grads = report.ok(
        case,
        "batch_norm_backward",
        batch_norm_backward(&grad_output, &x, &bn.mean, &bn.invstd, weight.as_ref()),
    )?;
    compare_grads(fx, report, case, grads, weight.is_some())
}

fn check_eval_case(fx: &Fixture, report: &mut Report, case: &str, meta: &Value) -> Option<()> {
    let eps = report.ok(case, "eps", param_f32(meta, "eps"))?;
    let (weight, bias) = affine(fx, report, case, meta)?;
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let rm = report.ok(case, "running_mean", fx.tensor(case, "running_mean"))?;
    let rv = report.ok(case, "running_var", fx.tensor(case, "running_var"))?;
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let forward = batch_norm_eval(&x, &rm, &rv, weight.as_ref(), bias.as_ref(), eps);
    if let Some(y) = report.ok(case, "batch_norm_eval", forward) {
        report.compare(case, "output", &y, &want_output);
    }
    let grads = report.ok(
        case,
        "batch_norm_eval_backward",
        batch_norm_eval_backward(&grad_output, &x, &rm, &rv, weight.as_ref(), eps),
    )?;
    compare_grads(fx, report, case, grads, weight.is_some())
}

#[test]
fn batch_norm_matches_pytorch_statistics_output_and_every_gradient_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden batch_norm");
    for (case, meta) in fx.cases() {
        match param_str(meta, "op") {
            Ok("batch_norm_train") => {
                check_train_case(&fx, &mut report, case, meta);
            }
            Ok("batch_norm_eval") => {
                check_eval_case(&fx, &mut report, case, meta);
            }
            Ok(other) => report.fail(case, format!("unknown op `{other}`")),
            Err(e) => report.fail(case, e),
        }
    }
    report.finish_all_cases(&fx, BATCH_NORM_CASES);
}
