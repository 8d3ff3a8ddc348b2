//! [`TrainConfig`]: everything that defines a training run, checked, and compared setting by
//! setting ([`TrainConfig::differences`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{Augment, BatchSpec};
use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerConfig, ScheduleConfig};

/// Which loss a classifier trains with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossKind {
    /// Softmax cross-entropy, with optional label smoothing.
    CrossEntropy { label_smoothing: f32 },
    /// Mean squared error against one-hot targets.
    Mse,
}

/// Everything that defines a training run (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    pub loss: LossKind,
    pub augment: Augment,
    pub seed: u64,
}

/// The most epochs a run may have (a checkpoint keeps one record per epoch).
pub const MAX_EPOCHS: usize = 10_000;

/// The largest batch (a batch is one tensor of this many images).
pub const MAX_BATCH_SIZE: usize = 1 << 20;

impl TrainConfig {
    /// The reference recipe, what `convnet train` does without options: 10 epochs of batches
    /// of 128, AdamW at 3e-3 with weight decay 5e-4 on a one-cycle schedule, cross-entropy,
    /// random horizontal flips, seed 0.
    pub fn reference() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            optimizer: OptimizerConfig::adamw(3e-3).with_weight_decay(5e-4),
            schedule: ScheduleConfig::one_cycle(3e-3),
            loss: LossKind::CrossEntropy {
                label_smoothing: 0.0,
            },
            augment: Augment {
                hflip: true,
                crop_padding: 0,
            },
            seed: 0,
        }
    }

    /// Check every setting that does not depend on the data, naming the one at fault: counts
    /// in their bounds, every number finite and in its range. ([`Trainer::new`] also checks
    /// the augmentation against the images.)
    pub fn check(&self) -> Result<()> {
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return Err(Error::config(
                "epochs",
                format!("must be from 1 to {MAX_EPOCHS}, got {}", self.epochs),
            ));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(Error::config(
                "batch_size",
                format!(
                    "must be from 1 to {MAX_BATCH_SIZE}, got {}",
                    self.batch_size
                ),
            ));
        }
        if let LossKind::CrossEntropy { label_smoothing } = self.loss
            && !(0.0..=1.0).contains(&label_smoothing)
        {
            return Err(Error::config(
                "label_smoothing",
                format!("must be in [0, 1], got {label_smoothing}"),
            ));
        }
        Optimizer::new(self.optimizer)?;
        self.schedule.check()
    }

    /// [`TrainConfig::check`], and the settings that depend on the images `[C, H, W]`.
    pub fn check_for_images(&self, dims: [usize; 3]) -> Result<()> {
        self.check()?;
        Ok(self.augment.check(dims)?)
    }

    pub(super) fn batch_spec(&self) -> BatchSpec {
        BatchSpec {
            batch_size: self.batch_size,
            shuffle: true,
            augment: self.augment,
            seed: self.seed,
        }
    }
}

/// One setting in which two configs differ ([`TrainConfig::differences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// The setting's path in the `config` of `checkpoint.json`: `epochs`, `optimizer.lr`,
    /// `schedule.kind`, ...
    pub setting: String,
    /// Its value in the first config, as `checkpoint.json` writes it.
    pub from: String,
    /// Its value in the second config.
    pub to: String,
}

impl TrainConfig {
    /// The settings in which `other` differs from `self`, sorted by name. Compared in the form
    /// `checkpoint.json` holds, so every setting is compared (a new one included) and values
    /// read as they are written there (`0.003`, not `0.003000000026077032`).
    /// Where an optimizer, schedule or loss is of another `kind`, that is one change, and
    /// only the settings both kinds have are compared besides.
    pub fn differences(&self, other: &TrainConfig) -> Vec<SettingChange> {
        let mut changes = Vec::new();
        compare("", &as_json(self), &as_json(other), &mut changes);
        changes
    }
}

/// `config` as `checkpoint.json` holds it (floats written as their shortest `f32` text).
fn as_json(config: &TrainConfig) -> Value {
    let text = serde_json::to_string(config).expect("a config serializes");
    serde_json::from_str(&text).expect("serde_json reads what it writes")
}

/// Push the changes from `a` to `b` under `path` into `changes`.
fn compare(path: &str, a: &Value, b: &Value, changes: &mut Vec<SettingChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let same_kind = x.get("kind") == y.get("kind");
            for (key, va) in x {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match y.get(key) {
                    Some(vb) => compare(&inner, va, vb, changes),
                    None if same_kind => changes.push(change(inner, va, &Value::Null)),
                    None => {}
                }
            }
        }
        _ if a != b => changes.push(change(path.to_string(), a, b)),
        _ => {}
    }
}

fn change(setting: String, from: &Value, to: &Value) -> SettingChange {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    SettingChange {
        setting,
        from: text(from),
        to: text(to),
    }
}
