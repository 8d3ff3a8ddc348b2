//! Fuzz target: ONNX files through the converter. Seeds are the real fixtures (onnx.helper,
//! both torch.onnx exporters, PaddleOCR's classifier); every mutated copy that loads must be
//! converted and built or refused, never panic, in bounded time and memory. See convnet's
//! `tests/common/fuzz.rs` for the knobs (`CONVNET_FUZZ_SECONDS`, `CONVNET_FUZZ_ITERS`,
//! `CONVNET_FUZZ_SEED`).

mod common;
#[path = "../../convnet/tests/common/fuzz.rs"]
#[allow(dead_code)] // the harness serves every target; this one uses part of it
mod fuzz;

use convnet_onnx::{ImportOptions, Limits, OnnxModel, import};

fn seeds() -> Vec<Vec<u8>> {
    let dir = common::fixture("");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    files.push(dir.join("third_party/ch_ppocr_mobile_v2.0_cls_infer.onnx"));
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Parses `bytes` as a model in the fixtures folder (so external data resolves), converts it
/// (the free input size of PaddleOCR's classifier given) and builds the model.
fn convert(bytes: &[u8]) -> bool {
    let path = common::fixture("fuzz-input.onnx");
    let Ok(model) = OnnxModel::parse(bytes, &path, &Limits::default()) else {
        return false;
    };
    let options = ImportOptions {
        input_shape: Some([3, 48, 64]),
    };
    let fixed = import(model.clone(), &ImportOptions::default());
    let imported = fixed.or_else(|_| import(model, &options));
    imported.is_ok_and(|i| i.into_model().is_ok())
}

#[test]
fn onnx_converter_never_panics_on_mutated_model_files() {
    let stats = fuzz::run("onnx-import", 10_000, &seeds(), convert);
    assert!(
        stats.accepted > 0,
        "no input was converted: the target tests nothing"
    );
}
