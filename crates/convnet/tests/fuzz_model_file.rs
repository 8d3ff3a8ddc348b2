//! Fuzz target: model files (TOML). Seeds are the real model files (`models/*.toml`) and the
//! examples of `docs/model-files.md`; every accepted file is also planned and summarized,
//! written back and read again, and built when its weights are small; see `common/fuzz.rs`
//! for the knobs.

mod common;

use common::fuzz;
use common::reference::{doc_examples, repo};
use convnet::summary::summarize_spec;
use convnet::{Model, ModelSpec};

/// Accepted models with at most this many parameters are also built (weights drawn): enough
/// for the reference model and the documentation's examples, small enough to stay fast.
const BUILD_PARAMS: u64 = 1 << 20;

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(repo("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.extend(doc_examples().into_iter().map(String::into_bytes));
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
    let text = spec.to_toml().expect("a model that reads is written");
    let again = ModelSpec::from_toml(&text).expect("a written model file reads back");
    assert_eq!(
        again, spec,
        "a model file written back reads as another model"
    );
    let Ok(summary) = summarize_spec(&spec) else {
        return true;
    };
    if summary.total_params <= BUILD_PARAMS {
        let model = Model::from_spec(&spec, 0).expect("a model that plans builds");
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
