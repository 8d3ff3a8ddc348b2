//! Fuzz target: model files of the kinds ONNX graphs map onto (clip, hardsigmoid, concat,
//! add/sub/mul/div with broadcasting, constant, softmax, conv_transpose2d, pad, resize),
//! run. Seeds are the documentation's example of those kinds and one small file per kind;
//! every mutated file that plans within a small size is built and run forward and backward
//! on a batch of two: nothing may panic, and an output that comes back has the planned
//! shape. See `common/fuzz.rs` for the knobs.

mod common;

use common::fuzz;
use common::reference::doc_examples;
use convnet::layers::ForwardCtx;
use convnet::model::BackwardRequest;
use convnet::summary::summarize_spec;
use convnet::{Model, ModelSpec};
use convnet_core::Tensor;

/// Models whose every layer output and parameter count stays under this are run.
const RUN_VALUES: usize = 1 << 14;

/// One model file per kind, on a small input, with the second operand a constant or a
/// branch.
const SMALL: &[&str] = &[
    "type = \"clip\"\nmin = -0.5\nmax = 0.5\n",
    "type = \"hardsigmoid\"\nalpha = 0.2\n",
    "type = \"softmax\"\ndim = 2\n",
    "type = \"pad\"\npads = [1, 0, 2, 1]\nmode = \"reflect\"\n",
    "type = \"resize\"\nscale = [2.0, 1.5]\nmode = \"bilinear\"\n",
    "type = \"resize\"\nsize = [3, 5]\n",
    "type = \"conv_transpose2d\"\nout_channels = 2\nkernel = 3\nstride = 2\npadding = 1\n\
     output_padding = 1\n",
];

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = SMALL
        .iter()
        .map(|t| format!("[model]\ninput = [2, 3, 4]\n\n[[layer]]\nname = \"a\"\n{t}").into_bytes())
        .collect();
    seeds.push(
        b"[model]\ninput = [2, 3, 4]\n\n[[layer]]\nname = \"c\"\ntype = \"constant\"\n\
          shape = [2, 1, 4]\ninputs = []\n\n[[layer]]\nname = \"m\"\ntype = \"div\"\n\
          inputs = [\"input\", \"c\"]\n\n[[layer]]\nname = \"j\"\ntype = \"concat\"\n\
          dim = 3\ninputs = [\"m\", \"input\"]\n"
            .to_vec(),
    );
    let docs = doc_examples();
    seeds.push(
        docs.last()
            .expect("the kinds of imported graphs")
            .clone()
            .into_bytes(),
    );
    seeds
}

/// Parse and plan; run a small model forward and backward. `true` when it was run.
fn check(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(spec) = ModelSpec::from_toml(text) else {
        return false;
    };
    let Ok(summary) = summarize_spec(&spec) else {
        return false;
    };
    let small = |shape: &[usize]| shape.iter().product::<usize>() <= RUN_VALUES;
    if summary.total_params > RUN_VALUES as u64
        || !small(&spec.input)
        || !summary.layers.iter().all(|l| small(&l.output_shape))
    {
        return false;
    }
    let mut model = Model::from_spec(&spec, 0).expect("a model that plans builds");
    let [c, h, w] = spec.input;
    let x = Tensor::from_fn([2, c, h, w], |i| ((i * 37 % 101) as f32 / 50.0) - 1.0).unwrap();
    let Ok(y) = model.forward(&x, ForwardCtx::train(1, 0)) else {
        return true;
    };
    assert_eq!(&y.dims()[1..], model.output_shape(), "output shape");
    let g = Tensor::full(y.dims().to_vec(), 1.0).unwrap();
    let request = BackwardRequest {
        input: true,
        capture: &[],
        params: true,
    };
    let _ = model.backward_with(&g, &request);
    true
}

#[test]
fn imported_graph_kinds_never_panic_when_run_forward_and_backward() {
    let seeds = seeds();
    for seed in &seeds {
        assert!(
            check(seed),
            "seed not run: {}",
            String::from_utf8_lossy(seed)
        );
    }
    let stats = fuzz::run("onnx_layers", 30_000, &seeds, check);
    assert!(stats.accepted > 0);
}
