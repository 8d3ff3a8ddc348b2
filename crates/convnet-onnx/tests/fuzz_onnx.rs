//! Fuzz target: ONNX model files. Seeds are the real fixtures (onnx.helper, both
//! torch.onnx exporters, with external data too); every mutated copy must load or be refused,
//! never panic, in bounded time and memory. See convnet's `tests/common/fuzz.rs` for the
//! knobs (`CONVNET_FUZZ_SECONDS`, `CONVNET_FUZZ_ITERS`, `CONVNET_FUZZ_SEED`).

mod common;
#[path = "../../convnet/tests/common/fuzz.rs"]
#[allow(dead_code)] // the harness serves every target; this one uses part of it
mod fuzz;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use convnet_onnx::{Limits, OnnxModel};
use prost::Message;

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn seeds() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // One tensor large enough to stay in the file until it is read.
    seeds.push(common::with_big_initializer(16_500).encode_to_vec());
    seeds
}

/// Loads `bytes` as a model in the fixtures folder (so external data resolves to the real
/// data files) and, when it loads, reads every attribute and tensor through the accessors.
/// One input in eight goes through a file and `OnnxModel::load` (its own checks on the
/// file come first); the others are parsed from memory.
fn load(bytes: &[u8]) -> bool {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let loaded = if COUNT.fetch_add(1, Ordering::Relaxed).is_multiple_of(8) {
        let path = scratch_file();
        std::fs::write(&path, bytes).unwrap();
        OnnxModel::load(&path)
    } else {
        OnnxModel::parse(
            bytes,
            &fixtures().join("fuzz-input.onnx"),
            &Limits::default(),
        )
    };
    let Ok(model) = loaded else {
        return false;
    };
    for node in &model.graph.nodes {
        for a in &node.attributes {
            let _ = node.get_int(&a.name);
            let _ = node.get_ints(&a.name);
            let _ = node.get_floats(&a.name);
            let _ = node.get_string(&a.name);
            if let Ok(Some(t)) = node.get_tensor(&a.name) {
                let _ = (t.to_f32(), t.to_i64());
            }
        }
        let _ = node.error(convnet_onnx::ErrorKind::NoGraph).to_string();
    }
    for t in &model.graph.initializers {
        let _ = (t.to_f32(), t.to_i64());
    }
    for v in &model.graph.inputs {
        let _ = model.graph.declared(&v.name);
    }
    true
}

/// Where inputs are written for `load`: in memory when the system has a tmpfs (writing to
/// disk here takes milliseconds per file), else in the target's temporary folder.
fn scratch_file() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    dir.join(format!("convnet-fuzz-onnx-{}.onnx", std::process::id()))
}

#[test]
fn onnx_reader_never_panics_on_mutated_model_files() {
    let stats = fuzz::run("onnx", 100_000, &seeds(), load);
    let _ = std::fs::remove_file(scratch_file());
    assert!(
        stats.accepted > 0,
        "no input was accepted: the seeds are not valid models"
    );
}
