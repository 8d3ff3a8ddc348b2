//! External data: tensor bytes kept in a file beside the model (`data_location = EXTERNAL`,
//! keys `location`, `offset`, `length`), as torch.onnx.export's dynamo exporter writes them.
//!
//! The location is a path relative to the model's folder; an absolute path, a `..`, or a
//! symbolic link that leads out of the folder is refused, so a model file can only make the
//! reader open files beside it. The byte range is checked against the data file's length
//! before anything is allocated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::TensorProblem;
use crate::proto::onnx::StringStringEntryProto;

/// Where one tensor's bytes are.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    location: String,
    offset: u64,
    length: Option<u64>,
}

/// The `expected` bytes of one tensor, from the data file its `keys` name (relative to
/// `dir`, the model's folder), given to `decode` as a reader once the file is known to hold
/// them.
pub(crate) fn read<T>(
    dir: &Path,
    keys: &[StringStringEntryProto],
    expected: usize,
    decode: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<T, TensorProblem> {
    let place = place(keys)?;
    let expected = expected as u64;
    if let Some(length) = place.length.filter(|&l| l != expected) {
        return Err(TensorProblem::ExternalLength { length, expected });
    }
    let path = resolve(dir, &place.location)?;
    read_range(&path, place.offset, expected, decode)
}

/// The keys ONNX defines; others (`checksum`, ...) are ignored.
fn place(keys: &[StringStringEntryProto]) -> Result<Place, TensorProblem> {
    let get = |key: &str| {
        keys.iter()
            .rev() // the last one wins, as in protobuf
            .find(|e| e.key() == key)
            .map(|e| e.value())
    };
    let bytes = |key: &str| -> Result<Option<u64>, TensorProblem> {
        get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| TensorProblem::ExternalKey {
                    key: key.into(),
                    value: convnet::names::shorten(v, 40).into_owned(),
                })
            })
            .transpose()
    };
    Ok(Place {
        location: get("location")
            .filter(|l| !l.is_empty())
            .ok_or(TensorProblem::ExternalNoLocation)?
            .to_string(),
        offset: bytes("offset")?.unwrap_or(0),
        length: bytes("length")?,
    })
}

/// `dir/location`, refused unless it stays inside `dir`.
fn resolve(dir: &Path, location: &str) -> Result<PathBuf, TensorProblem> {
    let refuse = |reason| TensorProblem::ExternalPathRefused {
        location: convnet::names::shorten(location, 80).into_owned(),
        reason,
    };
    let relative = Path::new(location);
    for component in relative.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(refuse("is absolute")),
            Component::ParentDir => return Err(refuse("leads out of the model's folder (\"..\")")),
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    let path = dir.join(relative);
    let missing = |e: std::io::Error| TensorProblem::ExternalFileMissing {
        path: path.clone(),
        reason: e.to_string(),
    };
    // A symbolic link may still lead elsewhere: compare the real paths.
    let real = path.canonicalize().map_err(missing)?;
    let real_dir = dir.canonicalize().map_err(missing)?;
    if !real.starts_with(&real_dir) {
        return Err(refuse("leads out of the model's folder (a symbolic link)"));
    }
    Ok(path)
}

/// `length` bytes at `offset` of the file at `path`, after checking the file holds them.
fn read_range<T>(
    path: &Path,
    offset: u64,
    length: u64,
    decode: impl FnOnce(&mut dyn Read) -> std::io::Result<T>,
) -> Result<T, TensorProblem> {
    let missing = |reason: String| TensorProblem::ExternalFileMissing {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| missing(e.to_string()))?;
    let meta = file.metadata().map_err(|e| missing(e.to_string()))?;
    if !meta.is_file() {
        return Err(missing("it is not a file".into()));
    }
    let file_len = meta.len();
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(TensorProblem::ExternalTooShort {
            path: path.to_path_buf(),
            offset,
            end: offset.saturating_add(length),
            file_len,
        });
    };
    let unreadable = |e: std::io::Error| TensorProblem::ExternalRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    file.seek(SeekFrom::Start(offset)).map_err(unreadable)?;
    decode(&mut file.take(length)).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> StringStringEntryProto {
        StringStringEntryProto {
            key: Some(key.into()),
            value: Some(value.into()),
        }
    }

    #[test]
    fn keys_give_location_offset_and_length() {
        let keys = [
            entry("location", "w.bin"),
            entry("offset", "4096"),
            entry("length", "24"),
            entry("checksum", "ignored"),
        ];
        assert_eq!(
            place(&keys).unwrap(),
            Place {
                location: "w.bin".into(),
                offset: 4096,
                length: Some(24)
            }
        );
    }

    #[test]
    fn a_location_that_is_missing_or_a_count_that_is_not_a_number_is_named() {
        let err = place(&[entry("offset", "0")]).unwrap_err();
        assert!(err.to_string().contains("no \"location\""), "{err}");
        let err = place(&[entry("location", "a"), entry("offset", "-8")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "its external data key \"offset\" is \"-8\", not a byte count"
        );
    }

    #[test]
    fn absolute_and_parent_paths_are_refused_before_any_file_is_opened() {
        let dir = Path::new("/nonexistent-model-folder");
        for (location, reason) in [
            ("/etc/passwd", "is absolute"),
            ("../secret.bin", "leads out of the model's folder"),
            ("data/../../x", "leads out of the model's folder"),
        ] {
            let err = resolve(dir, location).unwrap_err().to_string();
            assert!(err.contains(reason), "{location}: {err}");
        }
    }
}
