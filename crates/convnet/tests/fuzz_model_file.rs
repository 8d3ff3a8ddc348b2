//! Fuzz target: model files (TOML). Seeds are the real model files (`models/*.toml`) and the
//! examples of `docs/model-files.md`; every accepted file is also planned and summarized,
//! written back and read again, and built when its weights are small; see `common/fuzz.rs`
//! for the knobs.

mod common;

use std::path::PathBuf;

use common::fuzz;
use convnet::ModelSpec;
use convnet::summary::summarize_spec;

/// Accepted models with at most this many parameters are also built (weights drawn): enough
/// for the reference model and the documentation's examples, small enough to stay fast.
const BUILD_PARAMS: u64 = 1 << 20;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(repo().join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let docs = std::fs::read_to_string(repo().join("docs/model-files.md")).unwrap();
    for block in docs.split("```toml\n").skip(1) {
        let end = block.find("```").expect("a closed code block");
        seeds.push(block.as_bytes()[..end].to_vec());
    }
    assert!(
        seeds.len() >= 5,
        "expected the models and the docs' examples"
    );
    seeds
}

/// Parse; for an accepted file, plan and summarize it, check that what it writes back reads
/// as the same model, and build it if it is small.
fn check(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(spec) = ModelSpec::from_toml(text) else {
        return false;
    };
    let again = ModelSpec::from_toml(&spec.to_toml()).expect("a written model file reads back");
    assert_eq!(
        again, spec,
        "a model file written back reads as another model"
    );
    let Ok(summary) = summarize_spec(&spec) else {
        return true;
    };
    if summary.total_params <= BUILD_PARAMS {
        let model = spec.build(0).expect("a model that plans builds");
        assert_eq!(model.param_count() as u64, summary.total_params);
    }
    true
}

#[test]
fn model_files_never_panic_and_plan_build_and_summarize_alike() {
    let seeds = seeds();
    for seed in &seeds {
        assert!(
            check(seed),
            "seed not accepted: {}",
            String::from_utf8_lossy(seed)
        );
    }
    let stats = fuzz::run("model_file", 8_000, &seeds, check);
    assert!(stats.accepted > 0);
}
