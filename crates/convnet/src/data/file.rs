//! Reading a whole file, gunzipping it when it starts with the gzip magic bytes.

use std::io::Read;
use std::path::Path;

use super::DataError;

/// The bytes of a file, decompressed when gzip.
pub(crate) struct Contents {
    pub bytes: Vec<u8>,
    /// Whether the file was gzip (so sizes in messages are after gunzip).
    pub gzip: bool,
}

/// Reads `path` whole; gzip files (detected by the magic bytes `1f 8b`, not by the name) are
/// decompressed (several concatenated gzip members are read as one stream, as `gunzip` does).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Contents, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !is_gzip(&raw) {
        return Ok(Contents {
            bytes: raw,
            gzip: false,
        });
    }
    Ok(Contents {
        bytes: gunzip(path, &raw)?,
        gzip: true,
    })
}

pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Decompresses gzip data; `path` is only for messages.
pub(crate) fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>, DataError> {
    // The trailer's ISIZE (size mod 2^32 of the last member) is a good capacity hint. It is
    // capped at 16 times the compressed size (data sets compress far less than that; more
    // only costs a reallocation) so a corrupt trailer cannot make us reserve gigabytes.
    let hint = match raw.len() {
        n if n >= 18 => u32::from_le_bytes([raw[n - 4], raw[n - 3], raw[n - 2], raw[n - 1]]),
        _ => 0,
    } as usize;
    let cap = hint.min(raw.len().saturating_mul(16));
    let mut out = Vec::with_capacity(cap);
    flate2::bufread::MultiGzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| DataError::CorruptGzip {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(out)
}
