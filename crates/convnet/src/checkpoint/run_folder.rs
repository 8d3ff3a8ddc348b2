//! Run folders: what a training run writes, kept whole through kills.
//!
//! ```text
//! <dir>/last/        the latest position (a checkpoint): the commit point of every save
//! <dir>/best/        the epoch with the best test accuracy (`last` as it was at that epoch)
//! <dir>/metrics.csv  one row per finished epoch; <dir>/curves.png draws it
//! <dir>/.lock        the pid of the process training the run, locked while it runs
//! ```
//!
//! Every save writes `last` first, and `last`'s training state holds the whole history, so
//! which epoch is best: `best`, `metrics.csv` and `curves.png` are derived from it. A kill at
//! any moment therefore loses nothing but the steps since the last save: [`RunFolder::repair`]
//! (run at every epoch end, and by a resume before anything else) brings what is derived up
//! to date with `last`. One process at a time trains a run: the lock is an `flock` on
//! `.lock`, which the system releases when the process ends, however it ends.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use convnet_core::Tensor;

use super::{
    CheckpointMeta, DataOrigin, META_FILE, MODEL_FILE, OPTIMIZER_FILE, WEIGHTS_FILE, read_meta,
    tidy, tidy_file, write_dir, write_file,
};
use crate::data::DataSplit;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::spec::ModelSpec;
use crate::train::{EpochRecord, TrainConfig, TrainState, Trainer, metrics_csv};

pub(crate) const LAST: &str = "last";
pub(crate) const BEST: &str = "best";
pub const METRICS_FILE: &str = "metrics.csv";
pub const CURVES_FILE: &str = "curves.png";
pub const LOCK_FILE: &str = ".lock";

/// How many numbered folders [`RunFolder::create_numbered`] tries before giving up.
const MAX_NUMBERED: usize = 10_000;

/// A run folder, locked by this process for as long as the value lives.
#[derive(Debug)]
pub struct RunFolder {
    dir: PathBuf,
    _lock: File,
}

/// What [`RunFolder::repair`] rewrote from `last`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    /// `best` was behind `last` (a kill after `last` was saved at the end of its best epoch).
    pub best: bool,
    /// `metrics.csv` did not hold `last`'s history.
    pub metrics: bool,
    /// Why `curves.png` could not be drawn (a picture is a convenience: the run goes on).
    pub curves_problem: Option<String>,
}

/// A run's `last` checkpoint with everything a resume needs, checked.
#[derive(Debug)]
pub struct Resumable {
    pub model: Model,
    pub meta: CheckpointMeta,
    pub config: TrainConfig,
    pub state: TrainState,
    /// Where the run's training data came from.
    pub data: DataOrigin,
    pub optimizer_state: BTreeMap<String, Tensor>,
}

impl Resumable {
    /// Whether every epoch of the run is done.
    pub fn is_finished(&self) -> bool {
        self.state.epoch >= self.config.epochs
    }

    /// The trainer that continues the run on `data` (see [`Trainer::resume`] for what it
    /// checks).
    pub fn into_trainer(self, data: &DataSplit) -> Result<Trainer> {
        Trainer::resume(
            self.model,
            self.config,
            data,
            self.meta.normalization,
            self.state,
            &self.optimizer_state,
        )
    }
}

/// Whether `dir` holds a run: anything a run writes (a checkpoint, one moved aside by a
/// save that a kill interrupted, the metrics).
pub fn holds_run(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let name = e.file_name().to_string_lossy().to_string();
        [LAST, BEST, METRICS_FILE, CURVES_FILE].contains(&name.as_str())
            || name.starts_with(".last.old")
            || name.starts_with(".best.old")
    })
}

impl RunFolder {
    /// Start a new run in `dir` (created if missing): refused if another process trains a
    /// run there (naming its pid), or if `dir` holds a run already (the error ends with
    /// `hint`, what to do instead).
    pub fn create(dir: &Path, hint: &str) -> Result<RunFolder> {
        let run = Self::lock(dir)?.map_err(|holder| in_use(dir, &holder))?;
        if holds_run(dir) {
            return Err(Error::file(dir, format!("holds a run already: {hint}")));
        }
        Ok(run)
    }

    /// Start a new run in the first of `base`, `base-2`, `base-3`, ... that holds no run and
    /// that no other process is using.
    pub fn create_numbered(base: &Path) -> Result<RunFolder> {
        let name = base
            .file_name()
            .ok_or_else(|| Error::file(base, "not a folder name"))?
            .to_string_lossy()
            .to_string();
        for n in 1..=MAX_NUMBERED {
            let dir = if n == 1 {
                base.to_path_buf()
            } else {
                base.with_file_name(format!("{name}-{n}"))
            };
            if holds_run(&dir) {
                continue;
            }
            if let Ok(run) = Self::lock(&dir)?
                && !holds_run(&dir)
            {
                return Ok(run);
            }
        }
        Err(Error::file(
            base,
            format!("this folder and its {MAX_NUMBERED} numbered siblings all hold runs"),
        ))
    }

    /// Open the run in `dir` to continue it: refused if another process trains it (even
    /// before that process's first save), or if it holds no run. Call [`RunFolder::repair`]
    /// next.
    pub fn open(dir: &Path) -> Result<RunFolder> {
        let no_run = || {
            Error::file(
                dir,
                "holds no run to continue (a run folder holds last/, best/ and metrics.csv)",
            )
        };
        if !dir.is_dir() {
            return Err(no_run());
        }
        let run = Self::lock(dir)?.map_err(|holder| in_use(dir, &holder))?;
        if !holds_run(dir) {
            return Err(no_run());
        }
        Ok(run)
    }

    /// Lock `dir/.lock` (creating both): `Ok(Err(holder))` if another process holds it, with
    /// what it wrote there (its pid).
    fn lock(dir: &Path) -> Result<std::result::Result<RunFolder, String>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&mut file).take(64).read_to_string(&mut holder);
                return Ok(Err(holder.trim().to_string()));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(Ok(RunFolder {
            dir: dir.to_path_buf(),
            _lock: file,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Save `trainer`'s position as `last` (the commit point).
    pub fn save_last(&self, trainer: &Trainer, data: &DataOrigin) -> Result<()> {
        super::save(
            &self.dir.join(LAST),
            &trainer.model,
            &CheckpointMeta::of(trainer, data),
            &trainer.optimizer().state_tensors(),
        )
    }

    /// The end of an epoch as one step: `last` saved (from then on the epoch is done, whatever
    /// happens), then `best`, `metrics.csv` and `curves.png` derived from it.
    pub fn end_epoch(&self, trainer: &Trainer, data: &DataOrigin) -> Result<Repair> {
        self.save_last(trainer, data)?;
        self.repair()
    }

    /// Bring what is derived from `last` up to date with it: put back a checkpoint that a
    /// kill left moved aside and remove what else killed saves left, copy `last` to `best`
    /// when `last` ends the best epoch and `best` is not that epoch's, rewrite `metrics.csv`
    /// when it is not `last`'s history, and redraw `curves.png`.
    pub fn repair(&self) -> Result<Repair> {
        let (last, best) = (self.dir.join(LAST), self.dir.join(BEST));
        tidy(&last);
        tidy(&best);
        tidy_file(&self.dir.join(METRICS_FILE));
        tidy_file(&self.dir.join(CURVES_FILE));
        let mut repair = Repair::default();
        if !last.is_dir() {
            return Ok(repair);
        }
        let meta = read_meta(&last)?;
        let Some(state) = &meta.training else {
            return Ok(repair);
        };
        let ends_best_epoch =
            state.step_in_epoch == 0 && state.epoch > 0 && state.best_epoch() == Some(state.epoch);
        if ends_best_epoch && !at_position(&best, state) {
            copy_checkpoint(&last, &best)?;
            repair.best = true;
        }
        if !state.history.is_empty() {
            let csv = metrics_csv(&state.history);
            let path = self.dir.join(METRICS_FILE);
            if !holds(&path, csv.as_bytes()) {
                write_file(&path, csv.as_bytes())?;
                repair.metrics = true;
            }
            let title = curves_title(&last, &meta);
            repair.curves_problem = self.draw_curves(&state.history, &title).err();
        }
        Ok(repair)
    }

    fn draw_curves(&self, history: &[EpochRecord], title: &str) -> std::result::Result<(), String> {
        let path = self.dir.join(CURVES_FILE);
        let picture = crate::render::curves(history, title).map_err(|e| e.to_string())?;
        let png = crate::render::png_bytes(&path, &picture).map_err(|e| e.to_string())?;
        write_file(&path, &png).map_err(|e| e.to_string())
    }

    /// `last`, checked, with everything a resume needs: its training state and settings,
    /// where its data came from, and its optimizer state (a resume without them would not
    /// continue the run as it was, so their absence is refused, naming the file).
    pub fn load_last(&self) -> Result<Resumable> {
        Self::read_last(&self.dir)
    }

    /// [`RunFolder::load_last`] of the run in `dir`, without locking it: for the other
    /// processes of a data-parallel run, whose first process holds the lock (and has
    /// repaired the run).
    pub fn read_last(dir: &Path) -> Result<Resumable> {
        let ck = super::load(&dir.join(LAST))?;
        let meta_path = ck.dir.join(META_FILE);
        let (Some(state), Some(config)) = (ck.meta.training.clone(), ck.meta.config.clone()) else {
            return Err(Error::file(
                meta_path,
                "holds no training state to continue (the checkpoint of a model's weights only)",
            ));
        };
        let Some(data) = ck.meta.data.clone() else {
            return Err(Error::file(
                meta_path,
                "has no \"data\" field (where the run's training data came from), so a resumed \
                 run could train on other data; checkpoints written by training have one",
            ));
        };
        let optimizer = ck.dir.join(OPTIMIZER_FILE);
        if !optimizer.is_file() {
            return Err(Error::file(
                optimizer,
                "is missing: the run cannot continue as it was without its optimizer's state \
                 (momentum buffers, Adam moments)",
            ));
        }
        Ok(Resumable {
            model: ck.model,
            meta: ck.meta,
            config,
            state,
            data,
            optimizer_state: ck.optimizer_state,
        })
    }

    /// The training state `last` holds, if there is a readable one (to say what a stopped
    /// run kept).
    pub fn last_state(&self) -> Option<TrainState> {
        read_meta(&self.dir.join(LAST)).ok()?.training
    }
}

fn in_use(dir: &Path, holder: &str) -> Error {
    let who = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
        format!("process {holder}")
    } else {
        "another process".to_string()
    };
    Error::file(
        dir,
        format!(
            "is in use: {who} is training this run (one process at a time writes a run folder)"
        ),
    )
}

/// Whether the checkpoint `dir` is at `state`'s position (a missing or unreadable one is
/// not).
fn at_position(dir: &Path, state: &TrainState) -> bool {
    read_meta(dir)
        .ok()
        .and_then(|m| m.training)
        .is_some_and(|t| t.global_step == state.global_step && t.epoch == state.epoch)
}

/// Whether the file `path` holds exactly `bytes` (read only when the length matches).
fn holds(path: &Path, bytes: &[u8]) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64)
        && std::fs::read(path).is_ok_and(|b| b == bytes)
}

/// Copy the checkpoint folder `from` as `to`, atomically.
fn copy_checkpoint(from: &Path, to: &Path) -> Result<()> {
    let mut files = Vec::new();
    for name in [MODEL_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, META_FILE] {
        let path = from.join(name);
        if path.exists() {
            files.push((name, std::fs::read(&path).map_err(|e| Error::io(&path, e))?));
        }
    }
    write_dir(to, &files)
}

/// "<model> on <data>", the curves' title.
fn curves_title(last: &Path, meta: &CheckpointMeta) -> String {
    let model = ModelSpec::load(&last.join(MODEL_FILE))
        .ok()
        .and_then(|s| s.name)
        .unwrap_or_else(|| "model".to_string());
    match &meta.data {
        Some(d) => format!("{model} on {}", d.source.trim_end_matches(" (train)")),
        None => model,
    }
}
