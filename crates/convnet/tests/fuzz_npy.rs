//! Fuzz target: `.npy` tensors (`convnet run --input`). Seeds are real files as `to_bytes`
//! writes them and as NumPy writes other dtypes; see `common/fuzz.rs` for the knobs.

mod common;

use common::fuzz;
use convnet::core::Tensor;

fn seeds() -> Vec<Vec<u8>> {
    let t = |dims: Vec<usize>| {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap()
    };
    vec![
        convnet::npy::to_bytes(&t(vec![2, 1, 4, 4])),
        convnet::npy::to_bytes(&t(vec![3])),
        convnet::npy::to_bytes(&t(vec![1, 3, 2, 2])),
    ]
}

#[test]
fn npy_parser_never_panics_on_mutated_files() {
    let stats = fuzz::run("npy", 100_000, &seeds(), |bytes| {
        convnet::npy::parse(bytes).is_ok()
    });
    assert!(
        stats.accepted > 0,
        "no input was accepted: the seeds are not valid files"
    );
}
