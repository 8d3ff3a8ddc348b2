//! Fuzz target: kernels written as text (`convnet filter --kernel`, `convnet conv`): named
//! kernels with their arguments (`gaussian:2`, `box:3`), matrices (`1,0,-1; 2,0,-2; 1,0,-1`,
//! planes split by `|`) and chains of them (`--kernel A --kernel B`, here `A & B`). Every
//! accepted chain is applied to a small image, and each kernel's text reads back to the same
//! shape. (Text only: `filter::from_text`, what `--kernel` reads when it is not a file.) See
//! `common/fuzz.rs` for the knobs.

mod common;

use common::fuzz;
use convnet::core::{Conv2dParams, Padding, PaddingMode, Tensor};
use convnet::filter::{self, Filter};

const SEEDS: &[&str] = &[
    "gaussian:2",
    "gaussian:0.85:3",
    "box:3",
    "sobel",
    "sharpen & unsharp:1.5",
    "laplacian & emboss & identity",
    "1,0,-1; 2,0,-2; 1,0,-1",
    "1 2 1\n2 4 2\n1 2 1",
    "1,0;0,1 | 0,1;1,0 | 1,1;1,1",
    "0.25, -0.5; 1e3, -7 & box:2",
];

/// Parse a chain; when every kernel is accepted, check that each one's text reads back to the
/// same shape and apply the chain to a small image (zero padding, as wide as the kernel, so any
/// kernel fits).
fn check(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(filters) = text
        .split('&')
        .map(|spec| filter::from_text("kernel", spec))
        .collect::<convnet::Result<Vec<_>>>()
    else {
        return false;
    };
    let mut image = Tensor::from_fn([1, 3, 6, 7], |i| (i % 11) as f32).unwrap();
    for f in &filters {
        let k = match f {
            Filter::Kernel(k) | Filter::Magnitude(k, _) => k,
        };
        let back = filter::parse(&k.to_text()).expect("a kernel's text reads back");
        assert_eq!(
            (back.channels, back.height, back.width),
            (k.channels, k.height, k.width)
        );
        let params = Conv2dParams::builder()
            .with_padding(Padding::symmetric([k.height / 2, k.width / 2]))
            .with_padding_mode(PaddingMode::Zeros)
            .build()
            .unwrap();
        match filter::apply(&image, f, &params) {
            Ok(out) => image = out,
            // A kernel with as many planes as the image has channels turns it into one channel;
            // a later kernel of 3 planes then does not fit: refused, which is all we check.
            Err(_) => break,
        }
    }
    true
}

#[test]
fn kernel_text_never_panics_and_reads_back() {
    let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    for seed in &seeds {
        assert!(
            check(seed),
            "seed not accepted: {}",
            String::from_utf8_lossy(seed)
        );
    }
    let stats = fuzz::run("kernel_text", 60_000, &seeds, check);
    assert!(stats.accepted > 0);
}
