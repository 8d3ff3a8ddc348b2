//! Golden tests: cross-entropy (label smoothing 0, 0.1, 0.3 and 1, logits of ±1e4), MSE,
//! softmax and log-softmax against PyTorch, the losses with their gradients, read from
//! `tests/fixtures/loss.safetensors` (made by `tools/gen_fixtures.py`).

mod common;

use common::{Fixture, Report, param_f32, param_str};
use convnet_core::{LossOutput, Tensor, cross_entropy, log_softmax, mse_loss, softmax};
use serde_json::Value;

const FIXTURE: &str = "loss.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the loss fixture.
const LOSS_CASES: usize = 17;

/// Compares a loss and its gradient with the fixture's `loss` (shape `[1]`) and
/// `grad_input`.
fn compare_loss(fx: &Fixture, report: &mut Report, case: &str, out: LossOutput) -> Option<()> {
    let want_loss = report.ok(case, "loss", fx.tensor(case, "loss"))?;
    let want_grad = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    let loss = Tensor::new([1], vec![out.loss]).expect("one value");
    report.compare(case, "loss", &loss, &want_loss);
    report.compare(case, "grad_input", &out.grad_input, &want_grad);
    Some(())
}

fn check_cross_entropy(fx: &Fixture, report: &mut Report, case: &str, meta: &Value) -> Option<()> {
    let smoothing = report.ok(case, "label_smoothing", param_f32(meta, "label_smoothing"))?;
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let (shape, targets) = report.ok(case, "target", fx.indices(case, "target"))?;
    if shape.len() != 1 {
        report.fail(case, format!("target has shape {shape:?}, expected 1-D"));
        return None;
    }
    let out = report.ok(
        case,
        "cross_entropy",
        cross_entropy(&x, &targets, smoothing),
    )?;
    compare_loss(fx, report, case, out)
}

fn check_mse(fx: &Fixture, report: &mut Report, case: &str) -> Option<()> {
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let t = report.ok(case, "target", fx.tensor(case, "target"))?;
    let out = report.ok(case, "mse_loss", mse_loss(&x, &t))?;
    compare_loss(fx, report, case, out)
}

fn check_softmax(fx: &Fixture, report: &mut Report, case: &str, log: bool) -> Option<()> {
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let want = report.ok(case, "output", fx.tensor(case, "output"))?;
    let y = if log { log_softmax(&x) } else { softmax(&x) };
    let y = report.ok(case, if log { "log_softmax" } else { "softmax" }, y)?;
    report.compare(case, "output", &y, &want);
    Some(())
}

#[test]
fn losses_and_softmax_match_pytorch_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden loss");
    for (case, meta) in fx.cases() {
        match param_str(meta, "op") {
            Ok("cross_entropy") => {
                check_cross_entropy(&fx, &mut report, case, meta);
            }
            Ok("mse_loss") => {
                check_mse(&fx, &mut report, case);
            }
            Ok("softmax") => {
                check_softmax(&fx, &mut report, case, false);
            }
            Ok("log_softmax") => {
                check_softmax(&fx, &mut report, case, true);
            }
            Ok(other) => report.fail(case, format!("unknown op `{other}`")),
            Err(e) => report.fail(case, e),
        }
    }
    report.finish_all_cases(&fx, LOSS_CASES);
}
