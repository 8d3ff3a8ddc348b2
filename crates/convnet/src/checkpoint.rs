//! Checkpoints: a folder with everything needed to use a model or continue its training.
//!
//! ```text
//! <dir>/model.toml            the model file
//! <dir>/weights.safetensors   parameters and buffers under PyTorch state_dict names
//! <dir>/optimizer.safetensors optimizer state (momentum buffers, Adam moments)
//! <dir>/checkpoint.json       training state, input normalization, class names
//! ```
//!
//! `weights.safetensors` loads into PyTorch with `safetensors.torch.load_file` +
//! `model.load_state_dict` (and back): float32 tensors, `num_batches_tracked` as an int64
//! scalar. A checkpoint is written into a temporary folder next to `<dir>` and renamed into
//! place, so an interrupted write leaves the previous checkpoint whole.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use convnet_core::Tensor;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::layers::{Buffer, BufferMut};
use crate::model::Model;
use crate::spec::ModelSpec;

pub const MODEL_FILE: &str = "model.toml";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const META_FILE: &str = "checkpoint.json";

/// What a checkpoint says besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// Format version of this file.
    pub format: u32,
    pub classes: Vec<String>,
    pub normalization: Normalization,
    /// Training state (absent for weights imported from elsewhere).
    pub training: Option<crate::train::TrainState>,
    pub config: Option<crate::train::TrainConfig>,
    /// Where the training data came from, so a resumed run trains on the same data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataOrigin>,
}

/// Where a run's training data came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataOrigin {
    /// The folder the data was opened from (absolute), or `None` for the default data.
    pub folder: Option<PathBuf>,
    /// What the loader read, as it reports it (`Dataset::source` of the training split).
    pub source: String,
    /// The `[H, W]` every image was resized to when read (`OpenOptions::resize`), so that
    /// resume and evaluation read the data the same way; absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<[usize; 2]>,
}

impl CheckpointMeta {
    pub const FORMAT: u32 = 1;
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Model,
    pub meta: CheckpointMeta,
    pub optimizer_state: BTreeMap<String, Tensor>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The model's parameters and buffers as safetensors bytes.
pub fn weights_bytes(model: &Model) -> Result<Vec<u8>> {
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, p) in model.params() {
        entries.push((
            name,
            Dtype::F32,
            p.value.dims().to_vec(),
            f32_bytes(p.value.data()),
        ));
    }
    for (name, b) in model.buffers() {
        match b {
            Buffer::Tensor(t) => {
                entries.push((name, Dtype::F32, t.dims().to_vec(), f32_bytes(t.data())))
            }
            Buffer::Count(c) => entries.push((
                name,
                Dtype::I64,
                Vec::new(),
                (c as i64).to_le_bytes().to_vec(),
            )),
        }
    }
    serialize(entries, None)
}

fn tensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let entries = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                Dtype::F32,
                t.dims().to_vec(),
                f32_bytes(t.data()),
            )
        })
        .collect();
    serialize(entries, None)
}

fn serialize(
    entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(n, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::model(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, metadata).map_err(|e| Error::model(format!("safetensors: {e}")))
}

/// Every tensor of a safetensors file as f32 (f64 is converted; integer scalars as their
/// value), with its dtype.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, (Tensor, Dtype)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            other => {
                return Err(Error::file(
                    path,
                    format!(
                        "tensor {name} has dtype {other:?}; float32, float64 or int64 expected"
                    ),
                ));
            }
        };
        let shape = view.shape().to_vec();
        let tensor =
            Tensor::new(shape, values).map_err(|e| Error::file(path, format!("{name}: {e}")))?;
        out.insert(name, (tensor, view.dtype()));
    }
    Ok(out)
}

/// Copy weights from a `state_dict`-named safetensors file into `model`. Every parameter and
/// buffer must be there with its shape, and nothing else; the error lists what does not fit.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let mut tensors = read_safetensors(path)?;
    let mut problems = Vec::new();
    for (name, p) in model.params_mut() {
        match tensors.remove(&name) {
            None => problems.push(format!("missing {name} {}", p.value.shape())),
            Some((t, _)) if t.dims() != p.value.dims() => problems.push(format!(
                "{name} has shape {} in the file but {} in the model",
                t.shape(),
                p.value.shape()
            )),
            Some((t, _)) => p.value = t,
        }
    }
    for (name, b) in model.buffers_mut() {
        match (tensors.remove(&name), b) {
            (None, _) => problems.push(format!("missing buffer {name}")),
            (Some((t, _)), BufferMut::Tensor(dst)) => {
                if t.dims() == dst.dims() {
                    *dst = t;
                } else {
                    problems.push(format!(
                        "{name} has shape {} in the file but {} in the model",
                        t.shape(),
                        dst.shape()
                    ));
                }
            }
            (Some((t, _)), BufferMut::Count(dst)) => {
                if t.numel() == 1 {
                    *dst = t.data()[0].max(0.0) as u64;
                } else {
                    problems.push(format!("{name} should be a single integer"));
                }
            }
        }
    }
    problems.extend(
        tensors
            .keys()
            .map(|k| format!("unexpected {k} (not in the model)")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::file(
            path,
            format!("does not fit the model: {}", problems.join("; ")),
        ))
    }
}

/// Write `files` (name, bytes) as the folder `dir`, atomically: into a temporary sibling
/// folder first, then renamed over `dir`.
fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Error::file(
            dir,
            format!(
                "cannot write a checkpoint here: folder {} does not exist",
                parent.display()
            ),
        ));
    }
    let name = dir
        .file_name()
        .ok_or_else(|| Error::file(dir, "not a folder name"))?
        .to_string_lossy()
        .to_string();
    recover(dir);
    // Temporary folders of writes that a killed process left behind are never read.
    for stale in siblings(dir, "tmp") {
        let _ = std::fs::remove_dir_all(stale);
    }
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let old = parent.join(format!(".{name}.old{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (file, bytes) in files {
            let path = tmp.join(file);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if old.exists() && !dir.exists() {
            let _ = std::fs::rename(&old, dir);
        }
    }
    result
}

/// The hidden siblings `.<name>.<kind><pid>` of the folder `dir` that [`write_dir`] makes,
/// left by processes that no longer run (a running one may be in the middle of a save).
fn siblings(dir: &Path, kind: &str) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.{kind}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let file = e.file_name().to_string_lossy().to_string();
            file.strip_prefix(&prefix).is_some_and(|pid| {
                !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && process_is_gone(pid)
            })
        })
        .map(|e| e.path())
        .collect()
}

/// Whether process `pid` has ended (where `/proc` tells; elsewhere it is assumed to run, and
/// nothing it left is touched).
fn process_is_gone(pid: &str) -> bool {
    Path::new("/proc/self").exists() && !Path::new("/proc").join(pid).exists()
}

/// A process killed between the two renames of [`write_dir`] leaves the previous checkpoint
/// as `.<name>.old<pid>` and no `<name>`: put it back (before a save).
fn recover(dir: &Path) {
    if !dir.exists()
        && let Some(old) = siblings(dir, "old").into_iter().next()
    {
        let _ = std::fs::rename(old, dir);
    }
}

/// Save a checkpoint of `model` (and, for training, its optimizer state) as the folder `dir`.
pub fn save(
    dir: &Path,
    model: &Model,
    meta: &CheckpointMeta,
    optimizer_state: &[(String, Tensor)],
) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::model(format!("checkpoint.json: {e}")))?;
    write_dir(
        dir,
        &[
            (MODEL_FILE, model.spec().to_toml().into_bytes()),
            (WEIGHTS_FILE, weights_bytes(model)?),
            (OPTIMIZER_FILE, tensors_bytes(optimizer_state)?),
            (META_FILE, json),
        ],
    )
}

/// Load the checkpoint folder `dir`.
pub fn load(dir: &Path) -> Result<Checkpoint> {
    // After a kill between the two renames of a save, the checkpoint is the left-behind
    // previous one; it is read where it is (renaming is left to the next save).
    let left_behind = (!dir.exists())
        .then(|| siblings(dir, "old").into_iter().next())
        .flatten();
    let dir = left_behind.as_deref().unwrap_or(dir);
    if !dir.is_dir() {
        return Err(Error::file(dir, "no such checkpoint folder"));
    }
    let spec = ModelSpec::load(&dir.join(MODEL_FILE))?;
    let mut model = spec.build(0)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| {
        Error::file(
            &meta_path,
            format!("not a valid checkpoint description: {e}"),
        )
    })?;
    if meta.format != CheckpointMeta::FORMAT {
        return Err(Error::file(
            &meta_path,
            format!(
                "format {} is not the supported format {}",
                meta.format,
                CheckpointMeta::FORMAT
            ),
        ));
    }
    let opt_path = dir.join(OPTIMIZER_FILE);
    let optimizer_state = if opt_path.exists() {
        read_safetensors(&opt_path)?
            .into_iter()
            .map(|(k, (t, _))| (k, t))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(Checkpoint {
        model,
        meta,
        optimizer_state,
    })
}
