//! File output that is never left half-written.

use std::path::Path;

use anyhow::{Context, Result};

/// Write `bytes` to `path` through a temporary file in the same folder, renamed into place, so
/// a failure leaves either the old file or none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = check_output(path)?;
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder `path` will be written in, or an error if it is missing: checked before any
/// work, so a long computation does not end in a failed write.
pub fn check_output(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    anyhow::ensure!(
        dir.is_dir(),
        "cannot write {}: folder {} does not exist",
        path.display(),
        dir.display()
    );
    Ok(dir)
}

/// An image resized (bilinear) to `h x w` as `c` planes of bytes: grayscale for `c = 1`,
/// RGB planes for `c = 3`.
pub fn image_planes(img: image::DynamicImage, [c, h, w]: [usize; 3]) -> Result<Vec<u8>> {
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
    };
    Ok(match c {
        1 => img.to_luma8().into_raw(),
        3 => {
            // Interleaved RGB to planes.
            let rgb = img.to_rgb8().into_raw();
            (0..3)
                .flat_map(|ch| rgb.iter().skip(ch).step_by(3).copied().collect::<Vec<_>>())
                .collect()
        }
        other => anyhow::bail!(
            "the model takes {other}-channel images; only 1 (grayscale) and 3 (RGB) can be read"
        ),
    })
}
