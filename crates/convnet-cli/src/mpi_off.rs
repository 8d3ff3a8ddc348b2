//! A build without MPI (the default): every run is one process, which writes its run
//! folder. The same calls as `mpi_workers.rs`'s, so `train.rs` reads alike in both builds.

use anyhow::Result;
use convnet::train::Trainer;

/// This process alone.
pub struct Ranks;

impl Ranks {
    pub fn is_writer(&self) -> bool {
        true
    }

    pub fn attach(&self, trainer: Trainer, _train_len: usize) -> Result<Trainer> {
        Ok(trainer)
    }

    pub fn agree<T>(&self, result: Result<T>) -> Result<T> {
        result
    }

    pub fn finish(self, result: Result<()>) -> Result<()> {
        result
    }
}

/// Whether `error` was already said by another process (never, alone).
pub fn is_quiet(_error: &anyhow::Error) -> bool {
    false
}
