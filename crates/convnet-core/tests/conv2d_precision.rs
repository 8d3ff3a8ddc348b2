//! Precision of conv2d's gradients against float64, compared with PyTorch float32's on the
//! same problems: `tests/fixtures/conv2d_precision.safetensors`, made by
//! `tools/gen_precision_fixtures.py` (random problems up to 48x48 inputs, 7x7 kernels and 10
//! channels per group, with groups, strides, dilations, paddings and batches; PyTorch's
//! float64 gradients and its float32 error on each).
//!
//! Metric, the same as the script's: for a gradient `G` computed in f32 and its f64 value `T`,
//! `max_i |G_i - T_i| / max_i |T_i|`. Every path that applies to a problem must have, for
//! every gradient, at most [`FACTOR`] times PyTorch float32's error.
//!
//! Inputs are regenerated from each problem's seed by the script's generator (splitmix64, 24
//! random bits per value); their sums are checked against the script's first.

use convnet_core::{
    Conv2dAlgo, Conv2dGeometry, Conv2dParams, Padding,
    ops::conv2d::{grad_bias_into, grad_input_into, grad_weight_into, is_depthwise, is_pointwise},
};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// Ours may be at most this many times PyTorch float32's error, per problem and gradient.
const FACTOR: f64 = 2.0;

const GRADS: [&str; 3] = ["grad_input", "grad_weight", "grad_bias"];

/// `n` values of the script's generator for stream `stream` of problem `seed`: `k / 2^24` in
/// [0, 1) if `positive`, else `2 k / 2^24 - 1` in [-1, 1), for 24-bit `k` (exact in f32).
fn uniform(seed: u64, stream: u64, n: usize, positive: bool) -> Vec<f32> {
    let start = (seed << 4).wrapping_add(stream);
    (1..=n as u64)
        .map(|i| {
            let mut z = start.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let k = (z >> 40) as f32;
            if positive {
                k / 16_777_216.0
            } else {
                k / 8_388_608.0 - 1.0
            }
        })
        .collect()
}

/// `max |got - want| / max |want|`.
fn rel_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, &w)| m.max((f64::from(g) - w).abs()));
    if scale > 0.0 { err / scale } else { err }
}

struct Problem {
    name: String,
    meta: Value,
    geometry: Conv2dGeometry,
    x: Vec<f32>,
    w: Vec<f32>,
    gy: Vec<f32>,
    /// PyTorch's float64 gradients, in [`GRADS`] order.
    want: [Vec<f64>; 3],
    /// PyTorch float32's error per gradient, in [`GRADS`] order.
    torch: [f64; 3],
}

fn usize_of(meta: &Value, key: &str) -> usize {
    meta[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` missing in {meta}")) as usize
}

fn pair(meta: &Value, key: &str) -> [usize; 2] {
    let v = &meta[key];
    [0, 1].map(|i| {
        v[i].as_u64()
            .unwrap_or_else(|| panic!("`{key}` missing in {meta}")) as usize
    })
}

fn f64_tensor(st: &SafeTensors, name: &str) -> Vec<f64> {
    let view = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    assert_eq!(view.dtype(), Dtype::F64, "{name} must be float64");
    view.data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn load_problems() -> Vec<Problem> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/conv2d_precision.safetensors"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!("cannot read {path}: {e} (regenerate with tools/gen_precision_fixtures.py)")
    });
    let (_, header) = SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors file");
    let mut problems: Vec<Problem> = header
        .metadata()
        .iter()
        .flatten()
        .map(|(name, json)| {
            let meta: Value = serde_json::from_str(json).expect("problem JSON");
            let (n, groups) = (usize_of(&meta, "batch"), usize_of(&meta, "groups"));
            let (cg, kg) = (
                usize_of(&meta, "in_per_group"),
                usize_of(&meta, "out_per_group"),
            );
            let ([h, w], [kh, kw], pad) =
                (pair(&meta, "hw"), pair(&meta, "kernel"), pair(&meta, "pad"));
            let params = Conv2dParams::builder()
                .with_stride(pair(&meta, "stride"))
                .with_dilation(pair(&meta, "dilation"))
                .with_groups(groups)
                .with_padding(Padding::Explicit {
                    top: pad[0],
                    bottom: pad[0],
                    left: pad[1],
                    right: pad[1],
                })
                .build()
                .expect("parameters");
            let geometry = params
                .geometry([n, groups * cg, h, w], [groups * kg, cg, kh, kw])
                .expect("geometry");
            let seed = meta["seed"].as_u64().expect("seed");
            let positive = |key: &str| meta[key].as_bool().expect(key);
            let len = |dims: [usize; 4]| dims.iter().product();
            let x = uniform(
                seed,
                0,
                len(geometry.input_dims()),
                positive("positive_input"),
            );
            let w = uniform(seed, 1, len(geometry.weight_dims()), false);
            let gy = uniform(
                seed,
                2,
                len(geometry.output_dims()),
                positive("positive_grad_output"),
            );
            for (key, values) in [("input", &x), ("weight", &w), ("grad_output", &gy)] {
                let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
                let want = meta["checksum"][key].as_f64().expect("checksum");
                assert!(
                    (sum - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{name}: regenerated {key} differs from the script's (sum {sum} vs {want})"
                );
            }
            let want = GRADS.map(|g| f64_tensor(&st, &format!("{name}.{g}")));
            let torch = GRADS.map(|g| meta["torch_f32_error"][g].as_f64().expect(g));
            Problem {
                name: name.clone(),
                meta,
                geometry,
                x,
                w,
                gy,
                want,
                torch,
            }
        })
        .collect();
    problems.sort_by(|a, b| a.name.cmp(&b.name));
    problems
}

/// Our gradients of `p` by `algo`, in [`GRADS`] order.
fn our_grads(p: &Problem, algo: Conv2dAlgo) -> [Vec<f32>; 3] {
    let g = &p.geometry;
    let mut gx = vec![f32::NAN; p.x.len()];
    let mut gw = vec![f32::NAN; p.w.len()];
    let mut gb = vec![f32::NAN; g.out_channels];
    grad_input_into(&p.gy, &p.w, &mut gx, g, algo).unwrap();
    grad_weight_into(&p.gy, &p.x, &mut gw, g, algo).unwrap();
    grad_bias_into(&p.gy, &mut gb, g.output_dims());
    [gx, gw, gb]
}

#[test]
fn every_gradient_is_within_twice_pytorch_float32_error_against_float64() {
    let problems = load_problems();
    assert_eq!(problems.len(), 20, "problems in the fixture");

    let mut failures = Vec::new();
    println!("problem  path        grad         ours      pytorch   ratio");
    for p in &problems {
        let g = &p.geometry;
        let mut algos = vec![Conv2dAlgo::Auto, Conv2dAlgo::Direct, Conv2dAlgo::Im2col];
        if is_depthwise(g) {
            algos.push(Conv2dAlgo::Depthwise);
        }
        if is_pointwise(g) {
            algos.push(Conv2dAlgo::Pointwise);
        }
        if g.kernel == [3, 3] && g.stride == [1, 1] && g.dilation == [1, 1] && g.groups == 1 {
            algos.push(Conv2dAlgo::Winograd);
        }
        for algo in algos {
            let got = our_grads(p, algo);
            for (i, grad) in GRADS.iter().enumerate() {
                let ours = rel_error(&got[i], &p.want[i]);
                let torch = p.torch[i];
                println!(
                    "{:8} {:11} {:12} {ours:9.2e} {torch:9.2e} {:7.2}",
                    p.name,
                    format!("{algo:?}"),
                    grad,
                    if torch > 0.0 { ours / torch } else { ours }
                );
                if ours > FACTOR * torch {
                    failures.push(format!(
                        "{} ({}) {algo:?} {grad}: error {ours:.3e} > {FACTOR} x PyTorch's {torch:.3e}",
                        p.name, p.meta
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
