//! `convnet bench --model X`: inference time of a whole model (an ONNX file or a checkpoint)
//! at the batch sizes asked for, on seeded inputs.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use convnet::files::write_atomic;
use convnet::layers::ForwardCtx;
use convnet::rng::Rng;
use convnet_core::Tensor;

/// The largest batch timed (a batch of 224x224 RGB images this large takes 600 MB).
pub const MAX_BATCH: usize = 1024;
/// How long each batch size is timed (after one warm-up pass), at least [`MIN_RUNS`] passes.
const TIME_PER_BATCH: Duration = Duration::from_secs(2);
const MIN_RUNS: usize = 3;

/// `1,32` as batch sizes, each 1 to [`MAX_BATCH`].
pub fn parse_batches(text: &str) -> Result<Vec<usize>> {
    let batches = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|b| (1..=MAX_BATCH).contains(b))
        })
        .collect::<Option<Vec<_>>>();
    match batches {
        Some(b) if !b.is_empty() => Ok(b),
        _ => anyhow::bail!(
            "--batch '{text}': give batch sizes of 1 to {MAX_BATCH}, comma-separated (1,32)"
        ),
    }
}

/// Times the forward pass of the model at `path` at each batch size; prints one line each,
/// or writes them to `json`.
pub fn run(path: &Path, batches: &[usize], json: Option<&Path>) -> Result<()> {
    // Each pass frees and allocates the same activations: reused, not faulted in again.
    convnet_core::cpu::keep_freed_memory();
    let mut model = crate::source::load_checkpoint(path)?.model;
    let [c, h, w] = model.input_shape();
    let mut rows = Vec::new();
    for &batch in batches {
        let elements = batch * c * h * w;
        ensure!(
            elements <= convnet_core::tensor::MAX_TENSOR_ELEMENTS,
            "--batch {batch}: {batch} inputs of {c}x{h}x{w} are more values than a tensor holds"
        );
        let mut rng = Rng::new(batch as u64);
        let x = Tensor::from_fn([batch, c, h, w], |_| rng.uniform_range(-1.0, 1.0))?;
        model.forward(&x, ForwardCtx::eval(false))?;
        let (mut best, mut runs, started) = (Duration::MAX, 0, Instant::now());
        while runs < MIN_RUNS || started.elapsed() < TIME_PER_BATCH {
            let t = Instant::now();
            model.forward(&x, ForwardCtx::eval(false))?;
            best = best.min(t.elapsed());
            runs += 1;
        }
        let ms = best.as_secs_f64() * 1e3;
        let per_second = batch as f64 / best.as_secs_f64();
        if json.is_none() {
            println!(
                "{}  batch {batch:>4}: {ms:9.2} ms  ({per_second:8.1} images/s, best of {runs})",
                path.display()
            );
        }
        rows.push(serde_json::json!({"batch": batch, "ms": ms, "images_per_second": per_second, "runs": runs}));
    }
    if let Some(json) = json {
        let out = serde_json::json!({"model": path.display().to_string(), "input": [c, h, w], "timings": rows});
        write_atomic(json, serde_json::to_string_pretty(&out)?.as_bytes())?;
        eprintln!("wrote {}", json.display());
    }
    Ok(())
}
