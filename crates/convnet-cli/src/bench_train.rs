//! `convnet bench --train MODEL`: whole training steps of a model file (forward, loss,
//! backward, optimizer step, as `convnet train` runs them with the reference recipe) in
//! images per second, and the peak memory of the process; with `--compare-torch`, the same
//! recipe under PyTorch (`tools/fashion_reference.py bench`), interleaved run by run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use convnet::Model;
use convnet::data::{Batch, BatchSpec, DataSplit, Dataset, EpochPlan};
use convnet::spec::ModelSpec;
use convnet::summary::summarize_spec;
use convnet::train::{TrainConfig, Trainer};
use serde::Deserialize;

/// The most memory a training bench may need (weights with their gradients and optimizer
/// state, and the batch's activations with their gradients), estimated before anything is
/// allocated.
const MAX_TRAIN_BYTES: u64 = 4 << 30;

/// Steps run before timing starts (first-touch page faults, scratch buffers, caches).
const WARMUP_STEPS: usize = 2;

/// The PyTorch script the comparison runs (from the current folder, else from the source
/// tree this binary was built from).
const TORCH_SCRIPT: &str = "tools/fashion_reference.py";

/// What `--train` measures.
pub struct TrainBench<'a> {
    pub model: &'a Path,
    pub batch: usize,
    pub steps: usize,
    pub repeat: usize,
    pub torch_python: Option<&'a Path>,
}

/// One timed run: images per second over the timed steps.
#[derive(Debug, Clone, Copy)]
struct Timing {
    images_per_second: f64,
}

/// What `tools/fashion_reference.py bench` prints (one JSON line).
#[derive(Deserialize)]
struct TorchReport {
    engine: String,
    images_per_second: f64,
    peak_rss_mb: Option<f64>,
}

/// The model file, checked, and its memory estimate within [`MAX_TRAIN_BYTES`].
fn load_model(path: &Path, batch: usize) -> Result<ModelSpec> {
    let spec = ModelSpec::load(path)?;
    let summary = summarize_spec(&spec)?;
    let input: u64 = spec.input.iter().map(|&d| d as u64).product();
    // Weights, gradients and two optimizer moments; per image its input and every layer's
    // output, kept for backward and with a gradient.
    let per_image = input.saturating_add(summary.activations.saturating_mul(2));
    let values = (summary.total_params.saturating_mul(4))
        .saturating_add((batch as u64).saturating_mul(per_image));
    let bytes = values.saturating_mul(4);
    anyhow::ensure!(
        bytes <= MAX_TRAIN_BYTES,
        "--batch {batch} with {} needs about {} MiB; a training bench may take at most {} MiB \
         (give a smaller --batch)",
        path.display(),
        bytes >> 20,
        MAX_TRAIN_BYTES >> 20
    );
    Ok(spec)
}

/// One batch of `batch` random images of the model's input size, with random labels, as a
/// data split the trainer accepts.
fn random_data(model: &Model, batch: usize) -> Result<DataSplit> {
    let classes = match model.output_shape() {
        &[k] if k >= 1 => k,
        other => anyhow::bail!(
            "the model outputs {other:?} per image; a training bench needs one score per class"
        ),
    };
    let [channels, height, width] = model.input_shape();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pixels = (0..batch * channels * height * width)
        .map(|_| (next() >> 56) as u8)
        .collect();
    let labels = (0..batch)
        .map(|_| (next() % classes as u64) as usize)
        .collect();
    let train = Dataset {
        channels,
        height,
        width,
        pixels,
        labels,
        classes: (0..classes).map(|k| format!("class {k}")).collect(),
        source: "random images".to_string(),
    };
    Ok(DataSplit {
        test: train.clone(),
        train,
    })
}

/// Time `steps` training steps on one batch (after [`WARMUP_STEPS`]), with the reference
/// recipe's optimizer, schedule (over the steps run) and loss.
fn time_ours(spec: &ModelSpec, batch: usize, steps: usize) -> Result<Timing> {
    let config = TrainConfig {
        epochs: WARMUP_STEPS + steps,
        batch_size: batch,
        ..TrainConfig::reference()
    };
    config.check_for_images(spec.input)?;
    let model = Model::from_spec(spec, config.seed)?;
    let data = random_data(&model, batch)?;
    let mut trainer = Trainer::new(model, config.clone(), &data)?;
    let spec = BatchSpec {
        batch_size: batch,
        shuffle: true,
        augment: config.augment,
        seed: config.seed,
    };
    let plan = EpochPlan::new(batch, &spec, 0);
    let images: Batch = plan.batch(&data.train, &trainer.normalization, 0);
    let step = |trainer: &mut Trainer| -> Result<()> {
        trainer.step(&images)?;
        trainer.state.global_step += 1;
        Ok(())
    };
    for _ in 0..WARMUP_STEPS {
        step(&mut trainer)?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        step(&mut trainer)?;
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    Ok(Timing {
        images_per_second: (batch * steps) as f64 / seconds,
    })
}

/// The comparison script: in the current folder, else in the source tree.
fn torch_script() -> Result<PathBuf> {
    let here = PathBuf::from(TORCH_SCRIPT);
    let built = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(TORCH_SCRIPT);
    [here, built]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!("--compare-torch: {TORCH_SCRIPT} not found (run from the repository's folder)")
        })
}

/// Run the PyTorch recipe once under `python` and read its report.
fn time_torch(
    python: &Path,
    script: &Path,
    bench: &TrainBench,
    threads: usize,
) -> Result<TorchReport> {
    let out = Command::new(python)
        .arg(script)
        .args(["bench", "--batch", &bench.batch.to_string()])
        .args(["--steps", &bench.steps.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .with_context(|| format!("--compare-torch: cannot run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "--compare-torch: {} {} failed ({}): {}",
        python.display(),
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| {
        format!(
            "--compare-torch: {} printed no report: {line:?}",
            script.display()
        )
    })
}

/// This process's peak resident set size in MB (VmHWM), where the system says it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn mb(value: Option<f64>) -> String {
    value.map_or("unknown".to_string(), |v| format!("{v:.0} MB"))
}

/// Run the training bench and print its table.
pub fn run(bench: TrainBench) -> Result<()> {
    let spec = load_model(bench.model, bench.batch)?;
    let threads = rayon::current_num_threads();
    let script = bench.torch_python.map(|_| torch_script()).transpose()?;
    println!(
        "convnet {} training steps of {} (reference recipe: AdamW, one-cycle, cross-entropy), \
         batch {}, {} step(s), {threads} thread(s), best of {} run(s)",
        env!("CARGO_PKG_VERSION"),
        bench.model.display(),
        bench.batch,
        bench.steps,
        bench.repeat
    );
    let mut ours: Option<Timing> = None;
    let mut torch: Option<TorchReport> = None;
    for _ in 0..bench.repeat {
        if let (Some(python), Some(script)) = (bench.torch_python, &script) {
            let report = time_torch(python, script, &bench, threads)?;
            if torch
                .as_ref()
                .is_none_or(|t| report.images_per_second > t.images_per_second)
            {
                torch = Some(report);
            }
        }
        let timing = time_ours(&spec, bench.batch, bench.steps)?;
        if ours.is_none_or(|t| timing.images_per_second > t.images_per_second) {
            ours = Some(timing);
        }
    }
    let ours = ours.context("--repeat is at least 1")?;
    let rss = peak_rss_mb();
    println!(
        "convnet: {:8.1} images/s  peak RSS {}",
        ours.images_per_second,
        mb(rss)
    );
    if let Some(t) = torch {
        println!(
            "{}: {:8.1} images/s  peak RSS {} (its own process; runs the reference model)",
            t.engine,
            t.images_per_second,
            mb(t.peak_rss_mb)
        );
        println!(
            "ours vs it: {:.2}x images/s (>1 is faster)",
            ours.images_per_second / t.images_per_second
        );
    }
    Ok(())
}
