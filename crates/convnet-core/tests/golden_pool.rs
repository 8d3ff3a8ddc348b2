//! Golden tests: max, average, adaptive and global pooling, forward (values and argmax
//! indices) and backward, against PyTorch, read from `tests/fixtures/pool.safetensors` (made
//! by `tools/gen_fixtures.py`).

mod common;

use common::{Fixture, Report, dims4, param_array, param_bool, param_opt_usize, param_str};
use convnet_core::Tensor;
use convnet_core::ops::pool::{
    MaxPool2dOutput, Pool2dParams, adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
    adaptive_max_pool2d, avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
    global_avg_pool2d_backward, global_max_pool2d, max_pool2d, max_pool2d_backward,
};
use serde_json::Value;

const FIXTURE: &str = "pool.safetensors";
/// Cases `tools/gen_fixtures.py` writes into the pool fixture.
const POOL_CASES: usize = 34;

/// The `Pool2dParams` of a `max_pool2d` or `avg_pool2d` case.
fn pool2d_params_from_json(meta: &Value) -> Result<Pool2dParams, String> {
    let op = param_str(meta, "op")?;
    let mut builder = Pool2dParams::builder(param_array(meta, "kernel")?)
        .with_stride(param_array(meta, "stride")?)
        .with_padding(param_array(meta, "padding")?)
        .with_ceil_mode(param_bool(meta, "ceil_mode")?);
    match op {
        "max_pool2d" => builder = builder.with_dilation(param_array(meta, "dilation")?),
        "avg_pool2d" => {
            builder = builder
                .with_count_include_pad(param_bool(meta, "count_include_pad")?)
                .with_divisor_override(param_opt_usize(meta, "divisor_override")?)
        }
        other => return Err(format!("`{other}` has no Pool2dParams")),
    }
    builder
        .build()
        .map_err(|e| format!("parameters rejected: {e}"))
}

/// What a pooling op computes for one case: its output, and its argmax indices for max
/// pooling.
struct Pooled {
    output: Tensor,
    indices: Option<Vec<usize>>,
}

impl From<MaxPool2dOutput> for Pooled {
    fn from(out: MaxPool2dOutput) -> Self {
        Pooled {
            output: out.output,
            indices: Some(out.indices),
        }
    }
}

impl From<Tensor> for Pooled {
    fn from(output: Tensor) -> Self {
        Pooled {
            output,
            indices: None,
        }
    }
}

fn pool_forward(op: &str, meta: &Value, x: &Tensor) -> Result<Pooled, String> {
    let e = |e: convnet_core::Error| e.to_string();
    Ok(match op {
        "max_pool2d" => max_pool2d(x, &pool2d_params_from_json(meta)?)
            .map_err(e)?
            .into(),
        "avg_pool2d" => avg_pool2d(x, &pool2d_params_from_json(meta)?)
            .map_err(e)?
            .into(),
        "adaptive_avg_pool2d" => adaptive_avg_pool2d(x, param_array(meta, "output_size")?)
            .map_err(e)?
            .into(),
        "adaptive_max_pool2d" => adaptive_max_pool2d(x, param_array(meta, "output_size")?)
            .map_err(e)?
            .into(),
        "global_avg_pool2d" => global_avg_pool2d(x).map_err(e)?.into(),
        "global_max_pool2d" => global_max_pool2d(x).map_err(e)?.into(),
        other => return Err(format!("unknown op `{other}`")),
    })
}

/// `grad_input` of a pooling op. Max pooling routes the gradient through `indices` (PyTorch's,
/// from the fixture, so this checks the backward pass independently of the forward one).
fn pool_backward(
    op: &str,
    meta: &Value,
    grad_output: &Tensor,
    indices: Option<&[usize]>,
    input_dims: [usize; 4],
) -> Result<Tensor, String> {
    let e = |e: convnet_core::Error| e.to_string();
    match op {
        "max_pool2d" | "adaptive_max_pool2d" | "global_max_pool2d" => {
            let indices = indices.ok_or("no indices for a max pooling case")?;
            max_pool2d_backward(grad_output, indices, input_dims).map_err(e)
        }
        "avg_pool2d" => {
            avg_pool2d_backward(grad_output, input_dims, &pool2d_params_from_json(meta)?).map_err(e)
        }
        "adaptive_avg_pool2d" => adaptive_avg_pool2d_backward(grad_output, input_dims).map_err(e),
        "global_avg_pool2d" => global_avg_pool2d_backward(grad_output, input_dims).map_err(e),
        other => Err(format!("unknown op `{other}`")),
    }
}

fn is_max_pool(op: &str) -> bool {
    op.contains("max")
}

fn check_pool_case(fx: &Fixture, report: &mut Report, case: &str, meta: &Value) -> Option<()> {
    let op = report.ok(case, "op", param_str(meta, "op"))?;
    let x = report.ok(case, "input", fx.tensor(case, "input"))?;
    let input_dims = report.ok(case, "input", dims4(&x))?;
    let want_output = report.ok(case, "output", fx.tensor(case, "output"))?;
    let grad_output = report.ok(case, "grad_output", fx.tensor(case, "grad_output"))?;
    let want_grad_input = report.ok(case, "grad_input", fx.tensor(case, "grad_input"))?;
    let want_indices = if is_max_pool(op) {
        let (shape, indices) = report.ok(case, "indices", fx.indices(case, "indices"))?;
        if shape != want_output.dims() {
            report.fail(
                case,
                format!(
                    "fixture indices {shape:?} do not match the output {:?}",
                    want_output.dims()
                ),
            );
        }
        Some(indices)
    } else {
        None
    };

    if let Some(got) = report.ok(case, &format!("{op} forward"), pool_forward(op, meta, &x)) {
        report.compare(case, "output", &got.output, &want_output);
        match (&got.indices, &want_indices) {
            (Some(got), Some(want)) => report.compare_indices(case, "indices", got, want),
            (None, None) => {}
            _ => report.fail(case, "indices returned for a non-max pooling or missing"),
        }
    }
    let backward = pool_backward(op, meta, &grad_output, want_indices.as_deref(), input_dims);
    if let Some(got) = report.ok(case, &format!("{op} backward"), backward) {
        report.compare(case, "grad_input", &got, &want_grad_input);
    }
    Some(())
}

#[test]
fn pooling_matches_pytorch_forward_indices_and_gradient_on_every_case() {
    let fx = Fixture::load(FIXTURE);
    let mut report = Report::new("golden pool");
    for (case, meta) in fx.cases() {
        check_pool_case(&fx, &mut report, case, meta);
    }
    report.finish_all_cases(&fx, POOL_CASES);
}
