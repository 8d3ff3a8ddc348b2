//! Where a run's training data came from ([`DataOrigin`], recorded in its checkpoints), so
//! that a resumed run trains on the same data and an evaluation reads it the same way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    DataError, DataSplit, EMBEDDED_SAMPLE_SOURCE, OpenOptions, default_data_with, embedded_sample,
    open_with,
};

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

/// Opens `path` ([`open_with`]), or the default data ([`default_data_with`]) without one.
pub fn open_or_default(path: Option<&Path>, options: &OpenOptions) -> Result<DataSplit, DataError> {
    match path {
        Some(p) => open_with(p, options),
        None => default_data_with(options),
    }
}

impl DataOrigin {
    /// Opens `path` ([`open_or_default`]) with images resized to `resize`, and says where the
    /// data came from. The folder is recorded by its absolute path, so what the loader
    /// reports does not depend on the folder the program runs in.
    pub fn open(
        path: Option<&Path>,
        resize: Option<[usize; 2]>,
    ) -> Result<(DataSplit, DataOrigin), DataError> {
        let folder = path
            .map(|p| std::fs::canonicalize(p).map_err(|e| DataError::io(p, e)))
            .transpose()?;
        let data = open_or_default(folder.as_deref(), &OpenOptions { resize })?;
        Ok(Self::of(folder, data, resize))
    }

    /// The embedded sample ([`embedded_sample`]) with images resized to `resize`, and where it
    /// came from.
    pub fn embedded_sample(
        resize: Option<[usize; 2]>,
    ) -> Result<(DataSplit, DataOrigin), DataError> {
        let data = OpenOptions { resize }.apply(embedded_sample())?;
        Ok(Self::of(None, data, resize))
    }

    fn of(
        folder: Option<PathBuf>,
        data: DataSplit,
        resize: Option<[usize; 2]>,
    ) -> (DataSplit, Self) {
        let origin = DataOrigin {
            folder,
            source: data.train.source.clone(),
            resize,
        };
        (data, origin)
    }

    /// The data this origin names, read as it was (resized alike): from `folder` when given,
    /// else from the recorded folder, the embedded sample (for a run that trained on it,
    /// whatever the default data is now) or the default data. Data other than what was read
    /// then is refused ([`DataError::OtherData`], naming the run's own).
    pub fn reopen(&self, folder: Option<&Path>) -> Result<(DataSplit, DataOrigin), DataError> {
        let (data, origin) = match folder.or(self.folder.as_deref()) {
            None if self.source.starts_with(EMBEDDED_SAMPLE_SOURCE) => {
                Self::embedded_sample(self.resize)?
            }
            folder => Self::open(folder, self.resize)?,
        };
        if origin.source != self.source {
            return Err(DataError::OtherData {
                trained_on: self.source.clone(),
                given: origin.source,
                folder: self.folder.clone(),
            });
        }
        Ok((data, origin))
    }
}
