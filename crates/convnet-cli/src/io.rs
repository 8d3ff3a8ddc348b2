//! Files named on the command line: outputs that never replace an input or each other, and
//! small text files read within a size bound. (Outputs are checked and written whole by
//! `convnet::files`, images read by `convnet::image`.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
