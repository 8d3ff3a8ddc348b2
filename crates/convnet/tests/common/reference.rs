//! The repository's files that tests read: the reference model and its PyTorch fixtures, the
//! model-file documentation's examples.

use std::path::{Path, PathBuf};

use convnet::{Model, ModelSpec};

/// The reference Fashion-MNIST model file.
pub const FASHION: &str = include_str!("../../../../models/fashion_cnn.toml");

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// A fixture of this crate's tests (`tests/fixtures/<name>`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The reference model with the PyTorch-exported weights of the interop fixture.
pub fn reference_model() -> Model {
    let spec = ModelSpec::from_toml(FASHION).unwrap();
    let mut model = Model::from_spec(&spec, 0).unwrap();
    convnet::checkpoint::load_weights(
        &mut model,
        &fixture("fashion_reference_weights.safetensors"),
    )
    .unwrap();
    model
}

/// The ```toml blocks of the model-file documentation.
pub fn doc_examples() -> Vec<String> {
    let doc = std::fs::read_to_string(repo("docs/model-files.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The largest difference between two equally long lists.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
