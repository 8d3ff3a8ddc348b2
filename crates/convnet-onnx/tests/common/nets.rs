//! Real CNNs for the import tests: the seeded weights of `tools/gen_onnx_nets.py`
//! regenerated bit for bit, and outputs compared with ONNX Runtime's.

use std::io::Write;
use std::path::{Path, PathBuf};

use convnet::core::Tensor;
use convnet::layers::ForwardCtx;
use convnet_onnx::ImportOptions;

/// How far our outputs may be from ONNX Runtime's: the largest difference over the largest
/// magnitude.
pub const TOLERANCE: f32 = 1e-4;

pub fn nets() -> PathBuf {
    super::fixture("nets")
}

/// splitmix64, the generator of `tools/gen_onnx_nets.py`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Element `i` of the seeded tensor `seed`: `lo + (hi - lo) * u` in f32, `u` the top 24 bits
/// of `splitmix64(seed << 32 + i)` over 2^24.
pub fn seeded(seed: u64, n: usize, lo: f32, hi: f32) -> impl Iterator<Item = f32> {
    (0..n as u64).map(move |i| {
        let u = (splitmix64((seed << 32).wrapping_add(i)) >> 40) as f32 / (1u32 << 24) as f32;
        lo + (hi - lo) * u
    })
}

fn number(v: &serde_json::Value) -> f32 {
    v.as_f64().expect("a number") as f32
}

/// Copies `{stem}.onnx` into a fresh folder beside its regenerated external data; returns
/// the model's path and the manifest.
pub fn materialize(stem: &str) -> (PathBuf, serde_json::Value) {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(nets().join(format!("{stem}.json"))).expect("the net's manifest"),
    )
    .expect("a JSON manifest");
    let dir = super::temp_dir(&format!("nets-{stem}"));
    let model = dir.join(format!("{stem}.onnx"));
    std::fs::copy(nets().join(format!("{stem}.onnx")), &model).unwrap();
    let data = std::fs::File::create(dir.join(format!("{stem}.onnx.data"))).unwrap();
    let mut data = std::io::BufWriter::new(data);
    for entry in manifest["external"].as_array().unwrap() {
        let n = entry["len"].as_u64().unwrap() as usize;
        let seed = entry["seed"].as_u64().unwrap();
        for v in seeded(seed, n, number(&entry["lo"]), number(&entry["hi"])) {
            data.write_all(&v.to_le_bytes()).unwrap();
        }
    }
    data.flush().unwrap();
    (model, manifest)
}

/// The seeded inputs of `shape` in `[lo, hi)`.
pub fn inputs(shape: &[usize], seed: u64, [lo, hi]: [f32; 2]) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), seeded(seed, n, lo, hi).collect()).unwrap()
}

/// The model at `path` run on `x`, against ONNX Runtime's outputs in `expected`.
pub fn check(path: &Path, x: &Tensor, expected: &Path, options: &ImportOptions) {
    let imported = convnet_onnx::import_file(path, options).unwrap();
    let mut model = imported.into_model().unwrap();
    let y = model.forward(x, ForwardCtx::eval(false)).unwrap();
    let want = convnet::npy::read(expected).unwrap();
    assert_eq!(y.dims(), want.dims(), "{}: output shape", path.display());
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = y
        .data()
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{}: max |ours - ORT| {diff:.3e}, max |ORT| {scale:.3e}",
        path.display()
    );
    assert!(
        diff <= TOLERANCE * scale,
        "{}: max difference {diff} over max {scale} is beyond {TOLERANCE} relative",
        path.display()
    );
}

pub fn check_net(stem: &str) {
    let (model, manifest) = materialize(stem);
    let shape: Vec<usize> = manifest["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let range = manifest["input_range"].as_array().unwrap();
    let x = inputs(
        &shape,
        manifest["input_seed"].as_u64().unwrap(),
        [number(&range[0]), number(&range[1])],
    );
    check(
        &model,
        &x,
        &nets().join(format!("{stem}_ort.npy")),
        &ImportOptions::default(),
    );
    let _ = std::fs::remove_dir_all(model.parent().unwrap());
}
