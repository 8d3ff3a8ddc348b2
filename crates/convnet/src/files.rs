//! Output files: checked before any work (so a long computation does not end in a failed
//! write), and written whole or not at all (a temporary file in the same folder, renamed into
//! place). Errors name the file once ([`Error::Write`]).

use std::path::Path;

use crate::error::{Error, Result};

/// The folder `path` will be written in, or an error if it is missing or `path` is a folder.
pub fn check_output(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::write(
            path,
            format!("folder {} does not exist", dir.display()),
        ));
    }
    if path.is_dir() {
        return Err(Error::write(path, "it is a folder; name a file"));
    }
    Ok(dir)
}

/// Write `bytes` to `path` through a temporary file in the same folder, renamed into place, so
/// a failure leaves either the old file or none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = check_output(path)?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::write(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::write(path, e.to_string()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
