//! NumPy `.npy` files (format 1.0-3.0): float32 or float64, C order, little endian — what
//! `numpy.save` writes for `np.float32` / `np.float64` arrays and
//! `tensor.numpy()` gives in PyTorch. Other dtypes, byte orders and Fortran order are refused
//! by name. Sizes are bounded: the header at [`MAX_HEADER_BYTES`], the data at what the
//! shape needs (computed without overflow), checked against the file before it is read.

use std::io::Read;
use std::path::Path;

use convnet_core::Tensor;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// The longest header read, in bytes: NumPy's own default `max_header_size`.
pub const MAX_HEADER_BYTES: usize = 10_000;

/// What a `.npy` header says.
struct Header {
    dims: Vec<usize>,
    /// Bytes per value: 4 (float32) or 8 (float64).
    width: usize,
    /// Bytes of data the header announces (checked not to overflow).
    data_len: usize,
}

/// Read a `.npy` file into a tensor (float64 values are converted to f32). The header is read
/// first and the file's length checked against it (from its metadata) before the data is
/// read, so no size in a header is allocated unchecked.
pub fn read(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut file = std::io::BufReader::new(file);
    let mut read_up_to = |n: usize| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        (&mut file)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(path, e))?;
        Ok(buf)
    };
    let mut head = read_up_to(12)?;
    let (header_len, start) = preamble(&head).map_err(|reason| Error::file(path, reason))?;
    let end = start + header_len;
    head.extend(read_up_to(end.saturating_sub(head.len()))?);
    let header = head
        .get(start..end)
        .ok_or_else(|| Error::file(path, "truncated .npy header"))?;
    let header = parse_header(header).map_err(|reason| Error::file(path, reason))?;
    if file_len != end as u64 + header.data_len as u64 {
        return Err(Error::file(
            path,
            format!(
                "shape {:?} needs {} bytes of data, the file has {}",
                header.dims,
                header.data_len,
                file_len.saturating_sub(end as u64)
            ),
        ));
    }
    // A header shorter than the 12 bytes read first leaves the start of the data in `head`.
    let mut data = head.split_off(end);
    data.extend(read_up_to(header.data_len.saturating_sub(data.len()))?);
    decode(header, &data).map_err(|reason| Error::file(path, reason))
}

/// Parse the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Tensor, String> {
    let (header_len, start) = preamble(bytes)?;
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let header = parse_header(header)?;
    decode(header, &bytes[start + header_len..])
}

/// `(header length, where the header starts)` from the magic, version and length fields
/// (`bytes` holds at least the first 12 bytes of the file, or all of a shorter one).
fn preamble(bytes: &[u8]) -> Result<(usize, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "the .npy header is {header_len} bytes long; headers longer than {MAX_HEADER_BYTES} bytes are refused (as NumPy's max_header_size)"
        ));
    }
    Ok((header_len, start))
}

/// The dtype, order and shape of a header's dict.
fn parse_header(header: &[u8]) -> Result<Header, String> {
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let fortran =
        dict_value(header, "fortran_order").ok_or("the .npy header has no 'fortran_order'")?;
    let shape = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    if fortran.trim() != "False" {
        return Err(
            "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)".into(),
        );
    }
    let width: usize = match descr.trim().trim_matches(|c| c == '\'' || c == '"') {
        "<f4" | "float32" => 4,
        "<f8" | "float64" => 8,
        other => {
            return Err(format!(
                "dtype {other} is not supported (float32 '<f4' or float64 '<f8' expected)"
            ));
        }
    };
    let dims: Vec<usize> = shape
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape entry '{s}'")))
        .collect::<Result<_, String>>()?;
    let data_len = dims
        .iter()
        .try_fold(width, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {dims:?} is too large"))?;
    Ok(Header {
        dims,
        width,
        data_len,
    })
}

/// The tensor of `data`, which must be exactly as long as `header` says.
fn decode(header: Header, data: &[u8]) -> Result<Tensor, String> {
    let Header {
        dims,
        width,
        data_len,
    } = header;
    if data.len() != data_len {
        return Err(format!(
            "shape {dims:?} needs {data_len} bytes of data, the file has {}",
            data.len()
        ));
    }
    let values: Vec<f32> = if width == 4 {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect()
    };
    Tensor::new(dims, values).map_err(|e| e.to_string())
}

/// The text of `key`'s value in a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

/// The bytes of a `.npy` file (format 1.0, float32) holding `t`.
pub fn to_bytes(t: &Tensor) -> Vec<u8> {
    let shape = match t.dims() {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.numel() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_what_numpy_writes() {
        let t = Tensor::from_fn([2, 3, 1, 2], |i| i as f32 * 0.5).unwrap();
        let bytes = to_bytes(&t);
        assert_eq!((bytes.len() - t.numel() * 4) % 64, 0);
        assert_eq!(parse(&bytes).unwrap(), t);
        // numpy.save(np.arange(3, dtype=np.float64)) header, hand-written.
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }          \n";
        npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
        npy.extend_from_slice(header.as_bytes());
        for v in [0.0f64, 1.0, 2.0] {
            npy.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(parse(&npy).unwrap().data(), &[0.0, 1.0, 2.0]);
    }

    #[test]
    fn bad_files_are_explained() {
        assert!(parse(b"hello").unwrap_err().contains("not a .npy file"));
        let t = Tensor::zeros([2, 2]).unwrap();
        let mut bytes = to_bytes(&t);
        bytes.truncate(bytes.len() - 4);
        assert!(parse(&bytes).unwrap_err().contains("needs 16 bytes"));
        let mut int = to_bytes(&t);
        let at = int.windows(3).position(|w| w == b"<f4").unwrap();
        int[at..at + 3].copy_from_slice(b"<i8");
        assert!(
            parse(&int)
                .unwrap_err()
                .contains("dtype <i8 is not supported")
        );
    }
}
