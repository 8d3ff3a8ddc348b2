//! Fuzz target: `.npy` tensors (`convnet run --input`). Seeds are real files as `to_bytes`
//! writes them and byte for byte as `numpy.save` writes other dtypes, byte orders, Fortran
//! order, 0-d arrays and format 2.0 (which the parser refuses by name or reads); see
//! `common/fuzz.rs` for the knobs.

mod common;

use common::fuzz;
use convnet::core::Tensor;

/// A `.npy` file exactly as NumPy 2 writes it: the header dict, 21 spaces of room for the
/// shape to grow, padded with spaces to a multiple of 64 bytes, then a newline.
fn numpy_file(version: u8, descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    header.push_str(&" ".repeat(21));
    let preamble = if version == 1 { 10 } else { 12 };
    let unpadded = preamble + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn seeds() -> Vec<Vec<u8>> {
    let t = |dims: Vec<usize>| {
        let n = dims.iter().product();
        Tensor::new(dims, (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap()
    };
    let f64s: Vec<u8> = (0..6)
        .flat_map(|i| (i as f64 * 0.25).to_le_bytes())
        .collect();
    let f32s_be: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_be_bytes()).collect();
    let f32s: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let i64s: Vec<u8> = (0..4i64).flat_map(|i| i.to_le_bytes()).collect();
    vec![
        convnet::npy::to_bytes(&t(vec![2, 1, 4, 4])),
        convnet::npy::to_bytes(&t(vec![3])),
        convnet::npy::to_bytes(&t(vec![1, 3, 2, 2])),
        numpy_file(1, "<f8", false, "(2, 3)", &f64s),
        numpy_file(1, ">f4", false, "(2, 3)", &f32s_be),
        numpy_file(1, "<f4", true, "(2, 3)", &f32s),
        numpy_file(1, "<f4", false, "()", &1.5f32.to_le_bytes()),
        numpy_file(1, "<i8", false, "(4,)", &i64s),
        numpy_file(1, "|u1", false, "(2, 2)", &[1, 2, 3, 4]),
        numpy_file(2, "<f4", false, "(6,)", &f32s),
    ]
}

#[test]
fn npy_seeds_as_numpy_writes_them_are_read_or_refused_by_name() {
    let s = seeds();
    assert_eq!(convnet::npy::parse(&s[3]).unwrap().dims(), &[2, 3]);
    assert_eq!(convnet::npy::parse(&s[6]).unwrap().data(), &[1.5]);
    assert_eq!(convnet::npy::parse(&s[9]).unwrap().data()[5], 5.0);
    for (seed, refusal) in [
        (&s[4], "dtype >f4"),
        (&s[5], "Fortran-ordered"),
        (&s[7], "dtype <i8"),
        (&s[8], "dtype |u1"),
    ] {
        let err = convnet::npy::parse(seed).unwrap_err();
        assert!(err.contains(refusal), "{err}");
    }
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
