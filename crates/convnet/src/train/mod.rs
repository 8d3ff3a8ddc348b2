//! The training loop and evaluation.
//!
//! A run is reproducible from its seed: the data order of epoch `e`, the augmentation of each
//! sample and the dropout masks of step `s` are drawn from streams keyed by `(seed, e, ...)`
//! and `(seed, s, ...)`, and the kernels are deterministic for a given thread count. So a run
//! resumed from a checkpoint (which holds the weights, batch-norm statistics, optimizer state
//! and position) continues exactly as the uninterrupted run would have.

use std::sync::Arc;
use std::time::Instant;

use convnet_core::{Tensor, cross_entropy, mse_loss};
use serde::{Deserialize, Serialize};

use crate::data::{Augment, Batch, BatchSpec, DataSplit, Dataset, EpochPlan, Normalization};
use crate::error::{Error, Result};
use crate::layers::{BatchNorm, BufferMut, ForwardCtx};
use crate::model::Model;
use crate::optim::{Optimizer, Schedule};
use crate::rng::Rng;

mod config;
pub(crate) mod sync_bn;
mod workers;

pub use config::{LossKind, MAX_BATCH_SIZE, MAX_EPOCHS, SettingChange, TrainConfig};
pub use workers::{GradientLayout, Parallel, Place, Workers, shard};

/// `Err` saying why `norm` cannot normalize `channels`-channel images: another channel count,
/// a mean or std that is not finite, a std that is not positive.
pub(crate) fn check_normalization(norm: &Normalization, channels: usize) -> Result<(), String> {
    let (mean, std) = (&norm.mean, &norm.std);
    if mean.len() != channels || std.len() != channels {
        return Err(format!(
            "the normalization has mean {mean:?} and std {std:?}, one value per channel, but \
             the images have {channels} channel{}",
            if channels == 1 { "" } else { "s" }
        ));
    }
    if let Some(c) = mean.iter().chain(std).position(|v| !v.is_finite()) {
        return Err(format!(
            "the normalization's {} of channel {} is {}: mean {mean:?}, std {std:?}",
            if c < channels { "mean" } else { "std" },
            c % channels,
            if c < channels {
                mean[c]
            } else {
                std[c - channels]
            }
        ));
    }
    if let Some(c) = std.iter().position(|s| *s <= 0.0) {
        return Err(format!(
            "the normalization's std of channel {c} is {}; it divides, so it must be positive",
            std[c]
        ));
    }
    Ok(())
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// The columns of a metrics CSV, in order.
pub const METRICS_COLUMNS: [&str; 8] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "lr",
    "seconds",
    "images_per_second",
];

/// The history of a run as CSV (one row per epoch, accuracies as fractions).
pub fn metrics_csv(history: &[EpochRecord]) -> String {
    use std::fmt::Write as _;
    let mut csv = METRICS_COLUMNS.join(",");
    csv.push('\n');
    for r in history {
        let _ = writeln!(
            csv,
            "{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.3},{:.1}",
            r.epoch,
            r.train_loss,
            r.train_accuracy,
            r.test_loss,
            r.test_accuracy,
            r.lr,
            r.seconds,
            r.images_per_second
        );
    }
    csv
}

/// Read what [`metrics_csv`] wrote (columns found by name; `path` is for errors).
pub fn parse_metrics_csv(text: &str, path: &std::path::Path) -> Result<Vec<EpochRecord>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| Error::file(path, "empty file; expected a metrics CSV with a header"))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            Error::file(
                path,
                format!(
                    "no '{name}' column; a metrics CSV has the columns {}",
                    METRICS_COLUMNS.join(",")
                ),
            )
        })
    };
    let idx: Vec<usize> = METRICS_COLUMNS
        .iter()
        .map(|n| column(n))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (line_no, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |k: usize| -> Result<f64> {
            let cell = cells.get(idx[k]).copied().unwrap_or("");
            cell.parse::<f64>().map_err(|_| {
                Error::file(
                    path,
                    format!(
                        "line {}: {} is '{cell}', not a number",
                        line_no + 1,
                        METRICS_COLUMNS[k]
                    ),
                )
            })
        };
        let epoch = num(0)?;
        if epoch < 0.0 || epoch.fract() != 0.0 {
            return Err(Error::file(
                path,
                format!(
                    "line {}: epoch '{epoch}' is not a whole number",
                    line_no + 1
                ),
            ));
        }
        out.push(EpochRecord {
            epoch: epoch as usize,
            train_loss: num(1)?,
            train_accuracy: num(2)?,
            test_loss: num(3)?,
            test_accuracy: num(4)?,
            lr: num(5)?,
            seconds: num(6)?,
            images_per_second: num(7)?,
        });
    }
    if out.is_empty() {
        return Err(Error::file(path, "no epochs in the file (only a header)"));
    }
    Ok(out)
}

/// Where a run is (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished.
    pub epoch: usize,
    /// Steps of the current epoch finished.
    pub step_in_epoch: usize,
    /// Optimizer steps taken in the whole run.
    pub global_step: usize,
    /// Sums over the current epoch so far (for its train loss and accuracy).
    pub epoch_loss_sum: f64,
    pub epoch_correct: usize,
    pub epoch_seen: usize,
    pub epoch_seconds: f64,
    pub best_accuracy: Option<f64>,
    pub history: Vec<EpochRecord>,
    /// How the run trains in parallel (absent: a single process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Parallel>,
}

impl TrainState {
    /// The epoch (1-based) with the best test accuracy: the latest of equals, as the run
    /// saves `best` again on a tie.
    pub fn best_epoch(&self) -> Option<usize> {
        let mut best: Option<&EpochRecord> = None;
        for r in &self.history {
            if best.is_none_or(|b| r.test_accuracy >= b.test_accuracy) {
                best = Some(r);
            }
        }
        best.map(|r| r.epoch)
    }

    /// Whether the state can be that of a run of `config`: no more epochs than it has, one
    /// record per finished epoch, numbered in order.
    pub fn check(&self, config: &TrainConfig) -> Result<(), String> {
        if self.epoch > config.epochs {
            return Err(format!(
                "the training state is at epoch {} of a run of {}",
                self.epoch, config.epochs
            ));
        }
        if self.history.len() != self.epoch {
            return Err(format!(
                "the training state has finished {} epochs but holds {} records",
                self.epoch,
                self.history.len()
            ));
        }
        if let Some(p) = self.parallel.filter(|p| p.workers < 2) {
            return Err(format!(
                "the training state says the run trains on {} workers; a run on several has \
                 at least 2 (a single process records none)",
                p.workers
            ));
        }
        if let Some((i, r)) = self
            .history
            .iter()
            .enumerate()
            .find(|(i, r)| r.epoch != i + 1)
        {
            return Err(format!(
                "record {} of the history is numbered epoch {}",
                i + 1,
                r.epoch
            ));
        }
        Ok(())
    }
}

/// Progress of one step, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct StepProgress {
    /// 0-based epoch and step.
    pub epoch: usize,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    /// Running train accuracy of the epoch.
    pub accuracy: f64,
    pub images_per_second: f64,
    pub lr: f32,
}

/// What the loop should do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now (e.g. Ctrl-C): the loop returns [`Error::Interrupted`] after `on_stop`.
    Stop,
}

/// Callbacks of the training loop: progress display, checkpoints, interruption.
pub trait TrainHooks {
    fn on_step(&mut self, _trainer: &Trainer, _progress: &StepProgress) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// After each epoch's evaluation; `trainer.state` already counts the epoch, and
    /// `trainer.is_best(record)` says whether it is the best so far.
    fn on_epoch(&mut self, _trainer: &Trainer, _record: &EpochRecord) -> Result<()> {
        Ok(())
    }
    /// Called when the loop stops early (after a `Stop`), with the state at that step.
    fn on_stop(&mut self, _trainer: &Trainer) -> Result<()> {
        Ok(())
    }
}

/// No callbacks.
pub struct NoHooks;
impl TrainHooks for NoHooks {}

/// Accuracy, loss and confusion of a model on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    pub loss: f64,
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
}

impl EvalReport {
    /// Accuracy of each class (NaN for a class with no sample).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let total: usize = row.iter().sum();
                if total == 0 {
                    f64::NAN
                } else {
                    row[i] as f64 / total as f64
                }
            })
            .collect()
    }
}

/// Index of the largest value of each row of `[N, K]` logits.
pub fn argmax_rows(logits: &Tensor) -> Vec<usize> {
    let k = logits.dims().get(1).copied().unwrap_or(1).max(1);
    logits
        .data()
        .chunks(k)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect()
}

/// The loss of a batch and its gradient w.r.t. the logits.
fn loss_and_grad(loss: LossKind, logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    match loss {
        LossKind::CrossEntropy { label_smoothing } => {
            let out = cross_entropy(logits, labels, label_smoothing)?;
            Ok((f64::from(out.loss), out.grad_input))
        }
        LossKind::Mse => {
            let k = logits.dims().get(1).copied().unwrap_or(0);
            let target = Tensor::from_fn(logits.dims().to_vec(), |i| {
                if labels[i / k.max(1)] == i % k.max(1) {
                    1.0
                } else {
                    0.0
                }
            })?;
            let out = mse_loss(logits, &target)?;
            Ok((f64::from(out.loss), out.grad_input))
        }
    }
}

/// Evaluate `model` on `data` in evaluation mode.
pub fn evaluate(
    model: &mut Model,
    data: &Dataset,
    norm: &Normalization,
    batch_size: usize,
    loss: LossKind,
) -> Result<EvalReport> {
    evaluate_on(None, model, data, norm, batch_size, loss)
}

/// The summed loss and the confusion counts of the evaluation batches `b` with
/// `b % count == rank`: worker `rank`'s share of an evaluation over `count` workers.
fn evaluate_part(
    model: &mut Model,
    data: &Dataset,
    norm: &Normalization,
    batch_size: usize,
    loss: LossKind,
    (rank, count): (usize, usize),
) -> Result<(f64, Vec<Vec<usize>>)> {
    let classes = data.classes.len();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss_sum = 0.0;
    let spec = BatchSpec {
        batch_size: batch_size.max(1),
        shuffle: false,
        augment: Augment::default(),
        seed: 0,
    };
    let plan = EpochPlan::new(data.len(), &spec, 0);
    let mut batch: Option<Batch> = None;
    for b in (rank..plan.batches()).step_by(count.max(1)) {
        let batch = match &mut batch {
            Some(existing) => {
                plan.batch_into(data, norm, b, existing);
                existing
            }
            None => batch.insert(plan.batch(data, norm, b)),
        };
        let logits = model.forward(&batch.images, ForwardCtx::eval(false))?;
        check_classes(&logits, classes)?;
        let (l, _) = loss_and_grad(loss, &logits, &batch.labels)?;
        loss_sum += l * batch.labels.len() as f64;
        for (&label, pred) in batch.labels.iter().zip(argmax_rows(&logits)) {
            confusion[label][pred] += 1;
        }
    }
    Ok((loss_sum, confusion))
}

/// The report of an evaluation of `data` from its summed loss and confusion counts.
fn report(data: &Dataset, loss_sum: f64, confusion: Vec<Vec<usize>>) -> EvalReport {
    let n = data.len().max(1) as f64;
    let correct: usize = (0..confusion.len()).map(|i| confusion[i][i]).sum();
    EvalReport {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        confusion,
        classes: data.classes.clone(),
    }
}

/// [`evaluate`], shared between `workers` when there are any: each evaluates a share of the
/// batches, and every one gets the whole report. The model must be the same on every worker.
fn evaluate_on(
    workers: Option<&dyn Workers>,
    model: &mut Model,
    data: &Dataset,
    norm: &Normalization,
    batch_size: usize,
    loss: LossKind,
) -> Result<EvalReport> {
    check_split(model, data, norm, "evaluate on")?;
    let part = workers.map_or((0, 1), |w| (w.rank(), w.count()));
    let (loss_sum, confusion) = evaluate_part(model, data, norm, batch_size, loss, part)?;
    let Some(workers) = workers else {
        return Ok(report(data, loss_sum, confusion));
    };
    let mut sums: Vec<f64> = confusion.iter().flatten().map(|&c| c as f64).collect();
    sums.push(loss_sum);
    workers.sum_f64(&mut sums)?;
    let loss_sum = sums.pop().unwrap_or(0.0);
    let k = confusion.len();
    let confusion = (sums.chunks(k.max(1)))
        .map(|row| row.iter().map(|&c| c as usize).collect())
        .collect();
    Ok(report(data, loss_sum, confusion))
}

/// Whether `model` can run on `data` normalized by `norm`: images there, of the model's
/// size and of the normalization's channels. `what` says what the data is for.
fn check_split(model: &Model, data: &Dataset, norm: &Normalization, what: &str) -> Result<()> {
    if data.is_empty() {
        return Err(Error::config(
            "data",
            format!("{} has no images to {what}", data.source),
        ));
    }
    let dims = data.image_dims();
    if dims != model.input_shape() {
        return Err(Error::model(format!(
            "the model takes images {:?} (C, H, W) but {} has {:?}",
            model.input_shape(),
            data.source,
            dims
        )));
    }
    check_normalization(norm, dims[0]).map_err(|e| Error::config("normalization", e))
}

fn check_classes(logits: &Tensor, classes: usize) -> Result<()> {
    match logits.dims() {
        [_, k] if *k == classes => Ok(()),
        dims => Err(Error::model(format!(
            "the model outputs {dims:?} per batch, but the data has {classes} classes: the \
             last layer should give [N, {classes}]"
        ))),
    }
}

/// Whether `state` is a position in a run of `config` with `steps_per_epoch` steps per epoch
/// (a state saved on other data, or edited, is refused).
fn check_position(state: &TrainState, config: &TrainConfig, steps_per_epoch: usize) -> Result<()> {
    let bad = |reason: String| Error::config("training state", reason);
    state.check(config).map_err(bad)?;
    let expected = state
        .epoch
        .checked_mul(steps_per_epoch)
        .and_then(|s| s.checked_add(state.step_in_epoch));
    if state.step_in_epoch > steps_per_epoch || expected != Some(state.global_step) {
        return Err(bad(format!(
            "epoch {}, step {} (global step {}) is not a position in a run of {steps_per_epoch} \
             steps per epoch",
            state.epoch, state.step_in_epoch, state.global_step
        )));
    }
    if state.epoch == config.epochs && state.step_in_epoch != 0 {
        return Err(bad("steps beyond the run's last epoch".into()));
    }
    Ok(())
}

/// A model being trained, with its optimizer, schedule and position.
pub struct Trainer {
    pub model: Model,
    optimizer: Optimizer,
    schedule: Schedule,
    config: TrainConfig,
    pub state: TrainState,
    pub normalization: Normalization,
    pub classes: Vec<String>,
    steps_per_epoch: usize,
    /// The processes this one trains with (`None`: it trains alone).
    workers: Option<Arc<dyn Workers>>,
}

impl Trainer {
    /// Start a run of `model` on `data` (normalization from its training set).
    pub fn new(model: Model, config: TrainConfig, data: &DataSplit) -> Result<Self> {
        let normalization = data.train.normalization();
        Self::resume(
            model,
            config,
            data,
            normalization,
            TrainState::default(),
            &Default::default(),
        )
    }

    /// Continue a run from a checkpoint's state.
    pub fn resume(
        model: Model,
        config: TrainConfig,
        data: &DataSplit,
        normalization: Normalization,
        state: TrainState,
        optimizer_state: &std::collections::BTreeMap<String, Tensor>,
    ) -> Result<Self> {
        config.check_for_images(model.input_shape())?;
        check_split(&model, &data.train, &normalization, "train on")?;
        check_split(&model, &data.test, &normalization, "test on")?;
        let classes = data.train.classes.clone();
        if model.output_shape() != [classes.len()] {
            return Err(Error::model(format!(
                "the model outputs {:?} per image but the data has {} classes",
                model.output_shape(),
                classes.len()
            )));
        }
        let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
        let schedule = Schedule::new(
            config.schedule,
            &config.optimizer,
            steps_per_epoch,
            config.epochs,
        )?;
        check_position(&state, &config, steps_per_epoch)?;
        let mut optimizer = Optimizer::new(config.optimizer)?;
        optimizer.load_state(&model, optimizer_state, state.global_step)?;
        // Every step allocates what the last one freed: keep it rather than fault it in again.
        convnet_core::cpu::keep_freed_memory();
        Ok(Trainer {
            model,
            optimizer,
            schedule,
            config,
            state,
            normalization,
            classes,
            steps_per_epoch,
            workers: None,
        })
    }

    /// Train data-parallel with `workers`: this process takes its share of every global
    /// batch of `config.batch_size` images. Refused when the last batch of an epoch would
    /// leave a worker without images.
    pub fn with_workers(mut self, workers: Arc<dyn Workers>, train_len: usize) -> Result<Self> {
        let count = workers.count();
        let batch = self.config.batch_size;
        let last = match train_len % batch {
            0 => batch,
            rest => rest,
        };
        if last < count {
            return Err(Error::config(
                "batch_size",
                format!(
                    "{count} workers need at least {count} images in every batch, but {}: \
                     give a --batch-size of at least {count} whose last batch of the \
                     {train_len} training images is not smaller than that",
                    if batch < count {
                        format!("the batch size is {batch}")
                    } else {
                        format!("the last batch of each epoch holds {last}")
                    }
                ),
            ));
        }
        self.workers = Some(workers);
        self.check_parallel()?;
        Ok(self)
    }

    /// The processes this one trains with, if it trains data-parallel.
    pub fn workers(&self) -> Option<&dyn Workers> {
        self.workers.as_deref()
    }

    /// Whether this process writes checkpoints and metrics: worker 0, or a process that
    /// trains alone.
    pub fn is_writer(&self) -> bool {
        self.workers().is_none_or(|w| w.rank() == 0)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Whether `record` has the best test accuracy of the run so far.
    pub fn is_best(&self, record: &EpochRecord) -> bool {
        self.state.best_epoch() == Some(record.epoch)
    }

    /// One optimizer step on a batch; returns the batch loss and how many were right.
    ///
    /// Training data-parallel, `batch` is this worker's shard of the global batch, and the
    /// loss and count returned are the global batch's (the same on every worker).
    pub fn step(&mut self, batch: &Batch) -> Result<(f64, usize)> {
        self.model.zero_grad();
        let sync = (self.workers.as_ref()).filter(|w| w.sync_batch_norm());
        let ctx = ForwardCtx::train(self.dropout_seed(), self.state.global_step as u64)
            .with_sync_batch_norm(sync);
        let logits = self.model.forward(&batch.images, ctx)?;
        check_classes(&logits, self.classes.len())?;
        let (loss, mut grad) = loss_and_grad(self.config.loss, &logits, &batch.labels)?;
        let correct = argmax_rows(&logits)
            .iter()
            .zip(&batch.labels)
            .filter(|(p, l)| p == l)
            .count();
        let (loss, correct) = match self.workers() {
            Some(workers) => global_loss(workers, loss, correct, &mut grad)?,
            None => (loss, correct),
        };
        if !loss.is_finite() {
            return Err(Error::Diverged(format!(
                "the loss became {loss} at epoch {}, step {} (try a lower learning rate)",
                self.state.epoch + 1,
                self.state.step_in_epoch + 1
            )));
        }
        match &self.workers {
            Some(workers) => workers.backward_summed(&mut self.model, &grad)?,
            None => self.model.backward(&grad)?,
        }
        let (lr, momentum) = self.schedule.at(self.state.global_step);
        self.optimizer.step(&mut self.model, lr, momentum);
        self.model.clear();
        // Caught here, the step is never counted (nor saved by a hook).
        self.model.check_params_finite().map_err(|problem| {
            Error::Diverged(format!(
                "after epoch {}, step {}, {problem} (try a lower learning rate)",
                self.state.epoch + 1,
                self.state.step_in_epoch + 1
            ))
        })?;
        Ok((loss, correct))
    }

    /// The seed of dropout masks: the run's, and one of its own for each worker but the
    /// first (else every worker would draw the same masks for its shard).
    fn dropout_seed(&self) -> u64 {
        match self.workers().map_or(0, |w| w.rank()) {
            0 => self.config.seed,
            rank => Rng::stream(self.config.seed, &[WORKER_DROPOUT, rank as u64]).next_u64(),
        }
    }

    /// Check that the run may continue as it trains now ([`Parallel`]), and record that
    /// (nothing to check before its first step).
    fn check_parallel(&mut self) -> Result<()> {
        let now = Parallel::of(self.workers());
        if self.state.global_step == 0 {
            self.state.parallel = now;
            return Ok(());
        }
        let has_batch_norm =
            (self.model.nodes().iter()).any(|n| n.layer.downcast_ref::<BatchNorm>().is_some());
        workers::check_resume(
            self.state.parallel,
            now,
            has_batch_norm,
            self.config.batch_size,
        )?;
        self.state.parallel = now;
        Ok(())
    }

    /// Evaluate on `data` (shared between the workers when there are any).
    fn evaluate(&mut self, data: &Dataset, batch_size: usize) -> Result<EvalReport> {
        let workers = self.workers.as_deref();
        if let Some(workers) = workers.filter(|w| !w.sync_batch_norm()) {
            // Each worker's running statistics are of its own shards: worker 0's are the
            // model's, as PyTorch's DistributedDataParallel broadcasts them.
            broadcast_buffers(workers, &mut self.model)?;
        }
        let (norm, loss) = (&self.normalization, self.config.loss);
        evaluate_on(workers, &mut self.model, data, norm, batch_size, loss)
    }

    /// Train until `config.epochs` epochs are done (continuing from `state`), evaluating on
    /// the test set after each epoch.
    pub fn run(&mut self, data: &DataSplit, hooks: &mut dyn TrainHooks) -> Result<()> {
        self.check_parallel()?;
        let spec = self.config.batch_spec();
        let eval_batch = self.config.batch_size.max(256);
        let part = self.workers().map_or((0, 1), |w| (w.rank(), w.count()));
        while self.state.epoch < self.config.epochs {
            let epoch = self.state.epoch;
            let plan = EpochPlan::new(data.train.len(), &spec, epoch as u64);
            let steps = plan.batches();
            let start = Instant::now();
            let seconds_before = self.state.epoch_seconds;
            let seen_before = self.state.epoch_seen;
            let norm = self.normalization.clone();
            // The next batch is prepared on another thread while this one trains.
            let mut next: Option<Batch> = (self.state.step_in_epoch < steps)
                .then(|| prepare(&plan, &data.train, &norm, self.state.step_in_epoch, part));
            while self.state.step_in_epoch < steps {
                let b = self.state.step_in_epoch;
                let batch = next.take().expect("prepared");
                let (result, prepared) = std::thread::scope(|scope| {
                    let ahead = (b + 1 < steps)
                        .then(|| scope.spawn(|| prepare(&plan, &data.train, &norm, b + 1, part)));
                    let result = self.step(&batch);
                    (
                        result,
                        ahead.map(|h| h.join().expect("batch preparation panicked")),
                    )
                });
                next = prepared;
                let (loss, correct) = result?;
                let n = plan.positions(b).len();
                self.state.epoch_loss_sum += loss * n as f64;
                self.state.epoch_correct += correct;
                self.state.epoch_seen += n;
                self.state.step_in_epoch += 1;
                self.state.global_step += 1;
                let elapsed = seconds_before + start.elapsed().as_secs_f64();
                self.state.epoch_seconds = elapsed;
                let progress = StepProgress {
                    epoch,
                    step: b,
                    steps,
                    loss,
                    accuracy: self.state.epoch_correct as f64 / self.state.epoch_seen as f64,
                    images_per_second: (self.state.epoch_seen - seen_before) as f64
                        / start.elapsed().as_secs_f64().max(1e-9),
                    lr: self.schedule.at(self.state.global_step - 1).0,
                };
                if hooks.on_step(self, &progress)? == Control::Stop {
                    hooks.on_stop(self)?;
                    return Err(Error::Interrupted);
                }
            }
            let seconds = self.state.epoch_seconds;
            let test = self.evaluate(&data.test, eval_batch)?;
            let seen = self.state.epoch_seen.max(1) as f64;
            let record = EpochRecord {
                epoch: epoch + 1,
                train_loss: self.state.epoch_loss_sum / seen,
                train_accuracy: self.state.epoch_correct as f64 / seen,
                test_loss: test.loss,
                test_accuracy: test.accuracy,
                lr: f64::from(self.schedule.at(self.state.global_step.saturating_sub(1)).0),
                seconds,
                images_per_second: seen / seconds.max(1e-9),
            };
            self.state.history.push(record.clone());
            self.state.epoch += 1;
            self.state.step_in_epoch = 0;
            self.state.epoch_loss_sum = 0.0;
            self.state.epoch_correct = 0;
            self.state.epoch_seen = 0;
            self.state.epoch_seconds = 0.0;
            if self
                .state
                .best_accuracy
                .is_none_or(|b| record.test_accuracy > b)
            {
                self.state.best_accuracy = Some(record.test_accuracy);
            }
            hooks.on_epoch(self, &record)?;
        }
        Ok(())
    }
}

/// Stream tag of the dropout seeds of workers other than the first.
const WORKER_DROPOUT: u64 = 0x574f_524b;

/// Batch `b` of `plan`, or worker `rank`'s shard of it when `count` workers train.
fn prepare(
    plan: &EpochPlan,
    data: &Dataset,
    norm: &Normalization,
    b: usize,
    (rank, count): (usize, usize),
) -> Batch {
    match count {
        1 => plan.batch(data, norm, b),
        _ => plan.shard(data, norm, b, (rank, count)),
    }
}

/// The loss and the count of right answers of the global batch, from this worker's (mean
/// `loss` and `correct` of its shard); `grad`, the gradient of its shard's mean loss, is
/// scaled by the shard's share of the batch, so that the sum of the workers' parameter
/// gradients is the gradient of the global batch's mean loss.
fn global_loss(
    workers: &dyn Workers,
    loss: f64,
    correct: usize,
    grad: &mut Tensor,
) -> Result<(f64, usize)> {
    let n = grad.dims().first().copied().unwrap_or(0) as f64;
    let mut sums = [loss * n, correct as f64, n];
    workers.sum_f64(&mut sums)?;
    let [loss_sum, correct, total] = sums;
    let share = (n / total) as f32;
    grad.data_mut().iter_mut().for_each(|g| *g *= share);
    Ok((loss_sum / total, correct as usize))
}

/// Worker 0's buffers (batch-norm running statistics) on every worker.
fn broadcast_buffers(workers: &dyn Workers, model: &mut Model) -> Result<()> {
    for (_, buffer) in model.buffers_mut() {
        if let BufferMut::Tensor(t) = buffer {
            workers.broadcast(t.data_mut())?;
        }
    }
    Ok(())
}
