//! Files in and out: outputs that are never left half-written and never replace an input or
//! each other, images read within a size bound, and small text files read within a size bound.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Write `bytes` to `path` through a temporary file in the same folder, renamed into place, so
/// a failure leaves either the old file or none. Errors name `path` (callers need not).
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

/// The folder `path` will be written in, or an error if it is missing or `path` is a folder:
/// checked before any work, so a long computation does not end in a failed write.
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
    anyhow::ensure!(
        !path.is_dir(),
        "cannot write {}: it is a folder; name a file",
        path.display()
    );
    Ok(dir)
}

/// Refuse, before any work, outputs that would replace one another or one of the command's
/// inputs (a picture written over the image it explains is never what was meant). Each path
/// comes with the option that named it, for the message.
pub fn check_distinct(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (i, (option, path)) in outputs.iter().enumerate() {
        if let Some((other, _)) = outputs[..i].iter().find(|(_, p)| same_file(p, path)) {
            anyhow::bail!(
                "{other} and {option} both name {}: one would replace the other; give them \
                 different names",
                path.display()
            );
        }
        if let Some((input, _)) = inputs.iter().find(|(_, p)| same_file(p, path)) {
            anyhow::bail!(
                "{option} {} is also the {input}: writing it would replace the input; write \
                 elsewhere",
                path.display()
            );
        }
    }
    Ok(())
}

/// Whether `a` and `b` are one file: the same inode when both exist (symbolic and hard links
/// included), else the same name in the same (canonical) folder.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => same_inode(&ma, &mb, a, b),
        (Err(_), Err(_)) => resolved(a).is_some_and(|ra| resolved(b) == Some(ra)),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(ma: &std::fs::Metadata, mb: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    (ma.dev(), ma.ino()) == (mb.dev(), mb.ino())
}

#[cfg(not(unix))]
fn same_inode(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

/// A path that does not exist yet as its canonical folder plus its name.
fn resolved(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}

/// The largest side of an image that is read, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// The most pixels an image that is read may have (64 Mi, an 8192 x 8192 picture).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// An image file (PNG or JPEG), decoded only after its header shows it within
/// [`MAX_IMAGE_SIDE`] and [`MAX_IMAGE_PIXELS`]: a small file that declares a huge picture is
/// refused before anything is allocated for it.
pub fn open_image(path: &Path) -> Result<image::DynamicImage> {
    image_header(path)?;
    let mut reader = image_reader(path)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    // 16-bit RGBA, the widest pixel the decoders produce.
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
    reader.limits(limits);
    reader.decode().map_err(|e| image_error(path, e))
}

/// An image crate error as one message: its errors print their cause and also return it as
/// their source, which `{:#}` would print twice.
fn image_error(path: &Path, e: image::ImageError) -> anyhow::Error {
    anyhow::anyhow!("cannot read image {}: {e}", path.display())
}

/// What an image file's header says: `(width, height, colour type)`; refused when larger
/// than [`open_image`] reads.
pub fn image_header(path: &Path) -> Result<(u32, u32, image::ColorType)> {
    use image::ImageDecoder;
    let mut reader = image_reader(path)?;
    // The header alone: the size is checked here, with a message that says what to do.
    reader.no_limits();
    let decoder = reader.into_decoder().map_err(|e| image_error(path, e))?;
    let ((w, h), color) = (decoder.dimensions(), decoder.color_type());
    anyhow::ensure!(
        w <= MAX_IMAGE_SIDE
            && h <= MAX_IMAGE_SIDE
            && u64::from(w) * u64::from(h) <= MAX_IMAGE_PIXELS,
        "{} is a {w}x{h} image; images may be at most {MAX_IMAGE_SIDE} pixels on a side and \
         {} megapixels: scale it down first",
        path.display(),
        MAX_IMAGE_PIXELS >> 20
    );
    Ok((w, h, color))
}

fn image_reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .with_context(|| format!("cannot read image {}", path.display()))
}

/// A text file of at most `max_bytes` (`what` says which, for the messages), refused from its
/// size before it is read.
pub fn read_text(path: &Path, what: &str, max_bytes: u64) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= max_bytes,
        "{what} {} holds {len} bytes; a {what} is at most {max_bytes} bytes",
        path.display()
    );
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_under_two_names_is_the_same_file() {
        let dir = std::env::temp_dir().join(format!("convnet-io-same-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a = dir.join("a.png");
        // Not yet written: the same name through another path.
        assert!(same_file(&a, &dir.join("sub/../a.png")));
        assert!(!same_file(&a, &dir.join("b.png")));
        std::fs::write(&a, b"x").unwrap();
        let link = dir.join("link.png");
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(&a, &link).unwrap();
        assert!(same_file(&a, &link));
        assert!(!same_file(&a, &dir.join("b.png")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
