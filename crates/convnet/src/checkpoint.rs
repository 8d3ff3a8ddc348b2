//! Checkpoints: a folder with everything needed to use a model or continue its training.
//!
//! ```text
//! <dir>/model.toml            the model file
//! <dir>/weights.safetensors   parameters and buffers under PyTorch state_dict names
//! <dir>/optimizer.safetensors optimizer state (momentum buffers, Adam moments)
//! <dir>/checkpoint.json       training state, input normalization and preprocessing,
//!                             class names
//! ```
//!
//! `weights.safetensors` loads into PyTorch with `safetensors.torch.load_file` +
//! `model.load_state_dict` (and back): float32 tensors, `num_batches_tracked` as an int64
//! scalar. A checkpoint is written into a temporary folder next to `<dir>` and renamed into
//! place, so an interrupted write leaves the previous checkpoint whole.
//!
//! Loading trusts nothing in the folder: every size is checked against the file it comes
//! from before anything is allocated from it, and weights that cannot be right (not finite,
//! a negative running variance), a normalization that does not fit the model, class names
//! longer than [`crate::names::MAX_NAME_CHARS`] and training states that do not fit their
//! run are refused, naming the file and the tensor or value. The training runs that hold
//! checkpoints (`best`, `last`) are [`RunFolder`]s.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use convnet_core::Tensor;
use safetensors::{Dtype, tensor::TensorView};
use serde::{Deserialize, Serialize};

pub use crate::data::DataOrigin;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::layers::{Buffer, BufferMut};
use crate::model::Model;
use crate::names;
use crate::preprocess::Preprocessing;
use crate::spec::ModelSpec;
use crate::train::Trainer;

mod run_folder;
mod safetensors_file;

pub use run_folder::{Repair, Resumable, RunFolder, holds_run};
use safetensors_file::SafetensorsFile;

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
    #[serde(deserialize_with = "bounded_classes")]
    pub classes: Vec<String>,
    pub normalization: Normalization,
    /// Training state (absent for weights imported from elsewhere).
    pub training: Option<crate::train::TrainState>,
    pub config: Option<crate::train::TrainConfig>,
    /// Where the training data came from, so a resumed run trains on the same data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataOrigin>,
    /// How an image file becomes the model's input besides `normalization` (resize, center
    /// crop, channel order; absent: resized to the input size, RGB, as
    /// [`Preprocessing::squash`]). Imported models store it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<Preprocessing>,
}

impl CheckpointMeta {
    pub const FORMAT: u32 = 1;

    /// What a checkpoint of `trainer`'s run, trained on `data`, says.
    pub fn of(trainer: &Trainer, data: &DataOrigin) -> Self {
        CheckpointMeta {
            format: Self::FORMAT,
            classes: trainer.classes.clone(),
            normalization: trainer.normalization.clone(),
            training: Some(trainer.state.clone()),
            config: Some(trainer.config().clone()),
            data: Some(data.clone()),
            preprocessing: None,
        }
    }

    /// How images become the input of a model of `[C, H, W]` = `input`: the stored
    /// preprocessing, or what a checkpoint without one means (squashed to the input size).
    pub fn preprocessing(&self, input: [usize; 3]) -> Preprocessing {
        self.preprocessing
            .unwrap_or_else(|| Preprocessing::squash([input[1], input[2]]))
    }

    /// Whether the model is a classifier whose classes this lists: one output, of shape
    /// `[K]` (with `K` names). Models of several outputs, or of another output shape, list
    /// none.
    pub fn is_classifier(model: &Model) -> bool {
        model.outputs().len() == 1 && model.output_shape().len() == 1
    }

    /// Whether this description fits `model`: the format, the classes (one per score of a
    /// classifier's output, none for other models; names not too long), the normalization
    /// (one finite mean and positive std per input channel), the preprocessing (see
    /// [`Preprocessing::check`]), the settings and the training state.
    fn check(&self, model: &Model) -> std::result::Result<(), String> {
        if self.format != Self::FORMAT {
            return Err(format!(
                "format {} is not the supported format {}",
                self.format,
                Self::FORMAT
            ));
        }
        for (i, class) in self.classes.iter().enumerate() {
            names::check_len(class).map_err(|e| format!("class {i}: {e}"))?;
        }
        if Self::is_classifier(model) {
            if model.output_shape() != [self.classes.len()] {
                return Err(format!(
                    "{} classes are listed, but the model outputs {:?} per image",
                    self.classes.len(),
                    model.output_shape()
                ));
            }
        } else if !self.classes.is_empty() {
            return Err(format!(
                "{} classes are listed, but the model has {} outputs, the first {:?} per \
                 image: classes name the scores of a single output [K], so a model of \
                 several outputs or of other shapes lists none",
                self.classes.len(),
                model.outputs().len(),
                model.output_shape()
            ));
        }
        crate::train::check_normalization(&self.normalization, model.input_shape()[0])?;
        if let Some(p) = &self.preprocessing {
            p.check(model.input_shape())?;
        }
        if let Some(config) = &self.config {
            config.check().map_err(|e| e.to_string())?;
            if let Some(state) = &self.training {
                state.check(config)?;
            }
        }
        Ok(())
    }
}

/// The most classes a checkpoint may list (refused while reading, before a longer list is
/// allocated).
pub const MAX_CLASSES: usize = 1 << 17;

/// The largest `checkpoint.json` read (a run of [`crate::train::MAX_EPOCHS`] epochs writes
/// about 3 MB).
pub const MAX_META_BYTES: u64 = 32 << 20;

fn bounded_classes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    struct Classes;
    impl<'de> serde::de::Visitor<'de> for Classes {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {MAX_CLASSES} class names")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(name) = seq.next_element::<String>()? {
                if out.len() == MAX_CLASSES {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_CLASSES} classes"
                    )));
                }
                out.push(name);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Classes)
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The folder it was read from (a run folder's `best`, or a checkpoint moved aside).
    pub dir: PathBuf,
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
/// value), with its dtype. Errors name the file and the tensor.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, (Tensor, Dtype)>> {
    read_at_most(path, usize::MAX)
}

/// [`read_safetensors`], refusing a file of more than `max_values` values before reading them.
fn read_at_most(path: &Path, max_values: usize) -> Result<BTreeMap<String, (Tensor, Dtype)>> {
    let mut file = SafetensorsFile::open(path)?;
    let entries = std::mem::take(&mut file.entries);
    let values = entries.iter().fold(0usize, |n, e| {
        n.saturating_add(e.shape.iter().product::<usize>())
    });
    if values > max_values {
        return Err(Error::file(
            path,
            format!("holds {values} values, more than the {max_values} expected"),
        ));
    }
    entries
        .into_iter()
        .map(|e| Ok((e.name.clone(), (file.read_f32(&e)?, e.dtype))))
        .collect()
}

/// Copy weights from a `state_dict`-named safetensors file into `model`. Every parameter and
/// buffer must be there with its shape, and nothing else; the error lists what does not fit.
/// Names and shapes are compared before any data is read, so a file never makes this read
/// more than the model holds; values that cannot be right (see [`Model::check_values`]) are
/// refused, naming the tensor.
pub fn load_weights(model: &mut Model, path: &Path) -> Result<()> {
    let mut file = SafetensorsFile::open(path)?;
    let mut entries: BTreeMap<String, safetensors_file::Entry> = std::mem::take(&mut file.entries)
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let mut problems = Vec::new();
    let mut wanted = Vec::new();
    let mismatch = |name: &str, file: &[usize], model: &[usize]| {
        format!("{name} has shape {file:?} in the file but {model:?} in the model")
    };
    for (name, p) in model.params() {
        match entries.remove(&name) {
            None => problems.push(format!("missing {name} {}", p.value.shape())),
            Some(e) if e.shape != p.value.dims() => {
                problems.push(mismatch(&name, &e.shape, p.value.dims()))
            }
            Some(e) => wanted.push(e),
        }
    }
    for (name, b) in model.buffers() {
        match (entries.remove(&name), b) {
            (None, _) => problems.push(format!("missing buffer {name}")),
            (Some(e), Buffer::Tensor(t)) if e.shape != t.dims() => {
                problems.push(mismatch(&name, &e.shape, t.dims()))
            }
            (Some(e), _) => wanted.push(e),
        }
    }
    problems.extend(
        entries
            .keys()
            .map(|k| format!("unexpected {k} (not in the model)")),
    );
    if !problems.is_empty() {
        return Err(Error::file(
            path,
            format!("does not fit the model: {}", problems.join("; ")),
        ));
    }
    let mut tensors: BTreeMap<String, safetensors_file::Entry> =
        wanted.into_iter().map(|e| (e.name.clone(), e)).collect();
    for (name, p) in model.params_mut() {
        p.value = file.read_f32(&tensors[&name])?;
    }
    for (name, b) in model.buffers_mut() {
        let entry = tensors.remove(&name).expect("checked above");
        match b {
            BufferMut::Tensor(dst) => *dst = file.read_f32(&entry)?,
            BufferMut::Count(dst) => *dst = file.read_count(&entry)?,
        }
    }
    model
        .check_values()
        .map_err(|problem| Error::file(path, problem))
}

/// What [`set_crash_hook`] installs: called with the name of each crash point.
pub type CrashHook = Box<dyn Fn(&str)>;

thread_local! {
    static CRASH_HOOK: RefCell<Option<CrashHook>> = const { RefCell::new(None) };
}

/// Test support for the crash safety of saves: `hook` is called, on this thread, at each
/// point of a save where a kill would leave the files in a different state, with the point's
/// name. A hook that panics there leaves the files exactly as a kill would (nothing after
/// that point runs); the next open of the run must then repair it.
#[doc(hidden)]
pub fn set_crash_hook(hook: Option<CrashHook>) {
    CRASH_HOOK.with(|h| *h.borrow_mut() = hook);
}

fn crash_point(at: &str) {
    CRASH_HOOK.with(|h| {
        if let Some(hook) = &*h.borrow() {
            hook(at)
        }
    });
}

/// The folder `path` is in (`.` for a bare name) and its name.
fn split_path(path: &Path) -> Result<(PathBuf, String)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file or folder name"))?
        .to_string_lossy()
        .to_string();
    Ok((parent, name))
}

/// Write `files` (name, bytes) as the folder `dir`, atomically: into a temporary sibling
/// folder first, then renamed over `dir`.
fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let (parent, name) = split_path(dir)?;
    if !parent.is_dir() {
        return Err(Error::file(
            dir,
            format!(
                "cannot write a checkpoint here: folder {} does not exist",
                parent.display()
            ),
        ));
    }
    tidy(dir);
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let old = parent.join(format!(".{name}.old{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (file, bytes) in files {
            let path = tmp.join(file);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        crash_point(&format!("{name}: new files written"));
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            crash_point(&format!("{name}: previous moved aside"));
        }
        std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        crash_point(&format!("{name}: in place"));
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

/// Write `bytes` as the file `path`, atomically: into `.<name>.tmp<pid>` beside it, then
/// renamed over it. Temporary files that killed processes left are removed first.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let (parent, name) = split_path(path)?;
    tidy_file(path);
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| {
            crash_point(&format!("{name}: temporary written"));
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
        });
    match result {
        Ok(()) => crash_point(&format!("{name}: in place")),
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    result
}

/// The hidden siblings `.<name>.<kind><pid>` of the file or folder `dir` that [`write_dir`]
/// and [`write_file`] make, left by processes that no longer run (a running one may be in
/// the middle of a save).
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

/// Deal with what a killed process's [`write_dir`] of `dir` left: put back a checkpoint it had
/// moved aside ([`recover`]), then remove its temporary folders and a previous checkpoint it
/// had moved aside once the new one was in place (neither is ever read).
fn tidy(dir: &Path) {
    recover(dir);
    for stale in siblings(dir, "tmp").into_iter().chain(siblings(dir, "old")) {
        let _ = std::fs::remove_dir_all(stale);
    }
}

/// Remove the temporary files that killed processes' [`write_file`] of `path` left.
fn tidy_file(path: &Path) {
    for stale in siblings(path, "tmp") {
        let _ = std::fs::remove_file(stale);
    }
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
/// Weights that are not finite are refused (a checkpoint is always one a run can go on
/// from).
pub fn save(
    dir: &Path,
    model: &Model,
    meta: &CheckpointMeta,
    optimizer_state: &[(String, Tensor)],
) -> Result<()> {
    model.check_values().map_err(|problem| {
        Error::file(
            dir,
            format!("not saved: {problem} (a checkpoint holds only finite weights)"),
        )
    })?;
    let json = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::model(format!("checkpoint.json: {e}")))?;
    write_dir(
        dir,
        &[
            (MODEL_FILE, model.spec().to_toml()?.into_bytes()),
            (WEIGHTS_FILE, weights_bytes(model)?),
            (OPTIMIZER_FILE, tensors_bytes(optimizer_state)?),
            (META_FILE, json),
        ],
    )
}

/// The checkpoint folder that `path` names: itself when it holds checkpoint files, its
/// `best` checkpoint when it is a run folder, or (after a kill between the two renames of a
/// save) the previous checkpoint left beside it. Anything else is an error saying what a
/// checkpoint folder holds.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let holds_checkpoint = |dir: &Path| {
        [MODEL_FILE, WEIGHTS_FILE, META_FILE]
            .iter()
            .any(|f| dir.join(f).exists())
    };
    if !path.exists() {
        return siblings(path, "old")
            .into_iter()
            .next()
            .ok_or_else(|| Error::file(path, "no such checkpoint folder"));
    }
    if !path.is_dir() {
        return Err(Error::file(
            path,
            format!(
                "not a checkpoint folder (a folder holding {MODEL_FILE}, {WEIGHTS_FILE} and \
                 {META_FILE})"
            ),
        ));
    }
    if holds_checkpoint(path) {
        return Ok(path.to_path_buf());
    }
    let best = path.join(run_folder::BEST);
    if best.exists() || !siblings(&best, "old").is_empty() {
        return resolve(&best);
    }
    let hint = if path.join(run_folder::LAST).is_dir() {
        format!(
            "; it is a run folder with no best/ yet (no epoch has finished): give {}",
            path.join(run_folder::LAST).display()
        )
    } else {
        String::new()
    };
    Err(Error::file(
        path,
        format!(
            "not a checkpoint: a checkpoint folder holds {MODEL_FILE}, {WEIGHTS_FILE} and \
             {META_FILE}, a run folder (what train writes) holds best/ and last/{hint}"
        ),
    ))
}

/// `checkpoint.json` of the checkpoint folder `dir`, read in bounded memory and parsed (not
/// yet checked against a model).
pub(crate) fn read_meta(dir: &Path) -> Result<CheckpointMeta> {
    let path = dir.join(META_FILE);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut text = Vec::new();
    file.take(MAX_META_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(&path, e))?;
    if text.len() as u64 > MAX_META_BYTES {
        return Err(Error::file(
            &path,
            format!("larger than the {MAX_META_BYTES} bytes a checkpoint description may have"),
        ));
    }
    serde_json::from_slice(&text)
        .map_err(|e| Error::file(&path, format!("not a valid checkpoint description: {e}")))
}

/// Load the checkpoint that `path` names (see [`resolve`]: a checkpoint folder or a run
/// folder), checked whole: see the module documentation for what is refused.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let dir = resolve(path)?;
    let spec = ModelSpec::load(&dir.join(MODEL_FILE))?;
    let mut model = Model::from_spec(&spec, 0)?;
    load_weights(&mut model, &dir.join(WEIGHTS_FILE))?;
    let meta = read_meta(&dir)?;
    meta.check(&model)
        .map_err(|problem| Error::file(dir.join(META_FILE), problem))?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let optimizer_state = if opt_path.exists() {
        // At most two moments per parameter value and a step count per parameter.
        let params = model.params();
        let most = params.iter().map(|(_, p)| p.value.numel()).sum::<usize>() * 2 + params.len();
        read_at_most(&opt_path, most)?
            .into_iter()
            .map(|(k, (t, _))| (k, t))
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(Checkpoint {
        dir,
        model,
        meta,
        optimizer_state,
    })
}
