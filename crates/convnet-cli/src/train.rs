//! `convnet train` and `convnet demo`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use convnet::checkpoint::RunFolder;
use convnet::data::{DataOrigin, DataSplit, OpenOptions};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{
    Control, EpochRecord, LossKind, StepProgress, TrainConfig, TrainHooks, TrainState, Trainer,
};
use convnet::{Error, Model, ModelSpec};
use indicatif::{ProgressBar, ProgressStyle};

#[cfg(not(feature = "mpi"))]
use crate::mpi_off::Ranks;
#[cfg(feature = "mpi")]
use crate::mpi_workers::Ranks;

/// The reference model, built in.
pub const FASHION_CNN: &str = include_str!("../../../models/fashion_cnn.toml");

#[derive(Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Step,
    Cosine,
    OneCycle,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LossArg {
    CrossEntropy,
    Mse,
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet train                                  # the reference recipe on Fashion-MNIST
  convnet train --model models/fashion_cnn.toml --data /usr/share/datasets/fashion-mnist \\
      --epochs 10 --batch-size 128 --optimizer adamw --lr 3e-3 --schedule one-cycle --seed 0 --out runs/fashion
  convnet train --out runs/fashion --resume      # continue an interrupted run (or a killed one)
  convnet train --data my-images/ --model my.toml --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov

Data: a folder of MNIST-family IDX files (raw or .gz), CIFAR-10 binary batches, or image
folders train/<class>/*.png and test/<class>/*.png. Default: the full Fashion-MNIST when
installed (/usr/share/datasets/fashion-mnist), else the embedded sample.
Writes <out>/metrics.csv, <out>/curves.png, <out>/best/ and <out>/last/ (checkpoints).
Ctrl-C, SIGTERM and SIGHUP save <out>/last; a kill loses only the steps since the last save.
Without --out, runs go to runs/train, or runs/train-2, -3, ... when that holds a run; an --out
that holds a run is refused (continue it with --resume). One process at a time trains a run
folder (<out>/.lock holds its pid). With --resume, the settings are the run's: options that
would change them are refused, naming each setting and both values.")]
pub struct TrainArgs {
    /// Model file (TOML); default: the built-in reference model (models/fashion_cnn.toml).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Data folder; default: Fashion-MNIST if installed, else the embedded sample.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize every image to HxW (e.g. 32x32) when reading the data.
    #[arg(long, value_name = "HxW", value_parser = OpenOptions::parse_size)]
    resize: Option<[usize; 2]>,
    /// [default: 10]
    #[arg(long)]
    epochs: Option<usize>,
    /// [default: 128]
    #[arg(long)]
    batch_size: Option<usize>,
    /// [default: adamw]
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Learning rate (the peak for one-cycle) [default: 0.003].
    #[arg(long)]
    lr: Option<f32>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    momentum: Option<f32>,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    /// [default: 0.0005]
    #[arg(long)]
    weight_decay: Option<f32>,
    /// [default: one-cycle]
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Step schedule: multiply the rate by --gamma every this many epochs [default: 3].
    #[arg(long)]
    step_epochs: Option<usize>,
    /// [default: 0.1]
    #[arg(long)]
    gamma: Option<f32>,
    /// [default: cross-entropy]
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    /// [default: 0]
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Do not flip training images horizontally at random.
    #[arg(long)]
    no_hflip: bool,
    /// Random crops after padding each side by this many pixels (0: off) [default: 0].
    #[arg(long)]
    crop_padding: Option<usize>,
    /// [default: 0]
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder [default: runs/train, numbered runs/train-2, ... when that holds a run;
    /// runs/train for --resume].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run saved in <out>/last.
    #[arg(long)]
    resume: bool,
    /// Also save <out>/last every this many steps (0: only after each epoch).
    #[arg(long, default_value_t = 100)]
    save_every: usize,
    #[cfg(feature = "mpi")]
    #[command(flatten)]
    parallel: crate::mpi_workers::MpiArgs,
}

/// SGD's momentum when `--optimizer sgd` replaces another optimizer without `--momentum`.
const DEFAULT_MOMENTUM: f32 = 0.9;
/// The step schedule's settings when `--schedule step` replaces another schedule.
const DEFAULT_STEP: ScheduleConfig = ScheduleConfig::Step {
    step_epochs: 3,
    gamma: 0.1,
};

/// `slot` replaced by `value` when one was given.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl TrainArgs {
    /// The processes of this run: every rank `mpirun` started (built with MPI), else this one.
    fn ranks(&self) -> Result<Ranks> {
        #[cfg(feature = "mpi")]
        return Ranks::start(self.parallel);
        #[cfg(not(feature = "mpi"))]
        Ok(Ranks)
    }

    /// The config these options describe over `base` (the reference recipe for a new run, the
    /// run's own for `--resume`): each option given replaces what it sets, the rest is
    /// `base`'s.
    fn config_over(&self, base: &TrainConfig) -> TrainConfig {
        let mut config = base.clone();
        set(&mut config.epochs, self.epochs);
        set(&mut config.batch_size, self.batch_size);
        set(&mut config.seed, self.seed);
        set(&mut config.augment.crop_padding, self.crop_padding);
        config.augment.hflip &= !self.no_hflip;
        config.optimizer = self.optimizer_over(base.optimizer);
        config.schedule = self.schedule_over(base.schedule, config.optimizer.lr());
        config.loss = self.loss_over(base.loss);
        config
    }

    fn optimizer_over(&self, base: OptimizerConfig) -> OptimizerConfig {
        let mut optimizer = self.optimizer.map_or(base, |kind| kind.over(base));
        match &mut optimizer {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
                ..
            } => {
                set(lr, self.lr);
                set(momentum, self.momentum);
                set(weight_decay, self.weight_decay);
                *nesterov |= self.nesterov;
            }
            OptimizerConfig::Adam {
                lr, weight_decay, ..
            }
            | OptimizerConfig::AdamW {
                lr, weight_decay, ..
            } => {
                set(lr, self.lr);
                set(weight_decay, self.weight_decay);
            }
        }
        optimizer
    }

    fn schedule_over(&self, base: ScheduleConfig, lr: f32) -> ScheduleConfig {
        let mut schedule = self.schedule.map_or(base, |kind| kind.over(base, lr));
        match &mut schedule {
            ScheduleConfig::Step { step_epochs, gamma } => {
                set(step_epochs, self.step_epochs);
                set(gamma, self.gamma);
            }
            // The peak is --lr.
            ScheduleConfig::OneCycle { max_lr, .. } => set(max_lr, self.lr),
            ScheduleConfig::Constant | ScheduleConfig::Cosine { .. } => {}
        }
        schedule
    }

    fn loss_over(&self, base: LossKind) -> LossKind {
        let mut loss = match (self.loss, base) {
            (None, loss) | (Some(LossArg::CrossEntropy), loss @ LossKind::CrossEntropy { .. }) => {
                loss
            }
            (Some(LossArg::CrossEntropy), _) => LossKind::CrossEntropy {
                label_smoothing: 0.0,
            },
            (Some(LossArg::Mse), _) => LossKind::Mse,
        };
        if let LossKind::CrossEntropy { label_smoothing } = &mut loss {
            set(label_smoothing, self.label_smoothing);
        }
        loss
    }
}

impl OptimizerArg {
    /// `base` when it is of this kind, else this kind with `base`'s rate and weight decay.
    fn over(self, base: OptimizerConfig) -> OptimizerConfig {
        let fresh = match (self, base) {
            (OptimizerArg::Sgd, OptimizerConfig::Sgd { .. })
            | (OptimizerArg::Adam, OptimizerConfig::Adam { .. })
            | (OptimizerArg::Adamw, OptimizerConfig::AdamW { .. }) => return base,
            (OptimizerArg::Sgd, _) => OptimizerConfig::sgd(base.lr(), DEFAULT_MOMENTUM),
            (OptimizerArg::Adam, _) => OptimizerConfig::adam(base.lr()),
            (OptimizerArg::Adamw, _) => OptimizerConfig::adamw(base.lr()),
        };
        let (OptimizerConfig::Sgd { weight_decay, .. }
        | OptimizerConfig::Adam { weight_decay, .. }
        | OptimizerConfig::AdamW { weight_decay, .. }) = base;
        fresh.with_weight_decay(weight_decay)
    }
}

impl ScheduleArg {
    /// `base` when it is of this kind, else this kind with its defaults (one-cycle peaks at
    /// `lr`).
    fn over(self, base: ScheduleConfig, lr: f32) -> ScheduleConfig {
        match (self, base) {
            (ScheduleArg::Constant, ScheduleConfig::Constant)
            | (ScheduleArg::Step, ScheduleConfig::Step { .. })
            | (ScheduleArg::Cosine, ScheduleConfig::Cosine { .. })
            | (ScheduleArg::OneCycle, ScheduleConfig::OneCycle { .. }) => base,
            (ScheduleArg::Constant, _) => ScheduleConfig::Constant,
            (ScheduleArg::Step, _) => DEFAULT_STEP,
            (ScheduleArg::Cosine, _) => ScheduleConfig::Cosine { eta_min: 0.0 },
            (ScheduleArg::OneCycle, _) => ScheduleConfig::one_cycle(lr),
        }
    }
}

fn load_spec(path: Option<&Path>) -> Result<ModelSpec> {
    Ok(match path {
        Some(p) => ModelSpec::load(p)?,
        None => ModelSpec::from_toml(FASHION_CNN).context("the built-in reference model")?,
    })
}

/// Where `train` writes when no --out is given (numbered when it holds a run).
const TRAIN_OUT: &str = "runs/train";
/// Where `demo` writes when no --out is given (numbered when it holds a run).
const DEMO_OUT: &str = "runs/demo";

/// The largest --save-every (any larger saves only at epoch ends, as 0 does).
const MAX_SAVE_EVERY: usize = u32::MAX as usize;

pub fn run(args: TrainArgs) -> Result<()> {
    anyhow::ensure!(
        args.save_every <= MAX_SAVE_EVERY,
        "--save-every {} is too large (at most {MAX_SAVE_EVERY}; 0 saves only after each epoch)",
        args.save_every
    );
    let ranks = args.ranks()?;
    let result = match args.resume {
        true => resume(&args, &ranks),
        false => start(&args, &ranks),
    };
    ranks.finish(result)
}

/// A new run. Under mpirun every rank prepares the same trainer, and rank 0 alone makes
/// and writes the run folder.
fn start(args: &TrainArgs, ranks: &Ranks) -> Result<()> {
    // The settings are checked before any data is read, and the run folder is made only
    // once everything else is ready (an error leaves nothing behind).
    let prepare = || -> Result<_> {
        let config = args.config_over(&TrainConfig::reference());
        let spec = load_spec(args.model.as_deref())?;
        config.check_for_images(spec.input)?;
        let (data, origin) = DataOrigin::open(args.data.as_deref(), args.resize)?;
        let model = Model::from_spec(&spec, config.seed)?;
        let trainer = ranks.attach(Trainer::new(model, config, &data)?, data.train.len())?;
        Ok((trainer, data, origin))
    };
    let (mut trainer, data, origin) = ranks.agree(prepare())?;
    let run = ranks.agree(match ranks.is_writer() {
        true => new_run(args.out.as_deref(), TRAIN_OUT, "train").map(Some),
        false => Ok(None),
    })?;
    match run {
        Some(run) => train(&mut trainer, &data, &origin, &run, args.save_every),
        None => follow(&mut trainer, &data),
    }
}

/// The run folder of a new run: `out`, which must not hold a run, or else the first of
/// `default`, `default-2`, ... that holds none (said on stderr). `verb` is the command, for
/// the suggestion.
fn new_run(out: Option<&Path>, default: &str, verb: &str) -> Result<RunFolder> {
    match out {
        Some(dir) => {
            let resume = match verb {
                "train" => format!(
                    "continue it with `convnet train --out {} --resume`, or ",
                    dir.display()
                ),
                _ => String::new(),
            };
            Ok(RunFolder::create(
                dir,
                &format!(
                    "{resume}give another --out for a new run (without --out, runs are numbered)"
                ),
            )?)
        }
        None => {
            let run = RunFolder::create_numbered(Path::new(default))?;
            if run.path() != Path::new(default) {
                eprintln!(
                    "{verb}: {default} holds another run; writing this one to {}",
                    run.path().display()
                );
            }
            Ok(run)
        }
    }
}

/// Open the run in `out` and repair it (rank 0 only under mpirun).
fn open_run(out: &Path) -> Result<RunFolder> {
    let run = RunFolder::open(out)?;
    let repair = run.repair()?;
    if repair.best || repair.metrics {
        eprintln!(
            "repaired {}: rewrote {} from last/ (a save was interrupted)",
            out.display(),
            match (repair.best, repair.metrics) {
                (true, true) => "best/ and metrics.csv",
                (true, false) => "best/",
                _ => "metrics.csv",
            }
        );
    }
    Ok(run)
}

fn resume(args: &TrainArgs, ranks: &Ranks) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(TRAIN_OUT));
    let last = out.join("last");
    let run = ranks.agree(match ranks.is_writer() {
        true => open_run(&out).map(Some),
        false => Ok(None),
    })?;
    // (The library's errors name the file at fault.)
    let saved = ranks.agree(match &run {
        Some(run) => run.load_last().map_err(Into::into),
        None => RunFolder::read_last(&out).map_err(Into::into),
    })?;
    let changes = resume_changes(args, &saved.config, saved.data.resize);
    ranks.agree(match changes.is_empty() {
        true => Ok(()),
        false => Err(anyhow::anyhow!(
            "--resume continues the run with the settings it was started with (in {}); the \
             options given would change {}: drop them, or start a new run with another --out",
            last.join("checkpoint.json").display(),
            changes.join(", ")
        )),
    })?;
    if saved.is_finished() {
        if ranks.is_writer() {
            eprintln!(
                "the run in {} is finished ({} of {} epochs): nothing to resume",
                out.display(),
                saved.state.epoch,
                saved.config.epochs
            );
        }
        return Ok(());
    }
    let position = (saved.state.epoch + 1, saved.state.step_in_epoch);
    let epochs = saved.config.epochs;
    let prepare = || -> Result<_> {
        // The run's own data unless --data names other data; either way it must be the same.
        let (data, origin) = saved
            .data
            .reopen(args.data.as_deref())
            .with_context(|| format!("cannot resume {}", out.display()))?;
        let trainer = saved
            .into_trainer(&data)
            .with_context(|| format!("cannot resume from {}", last.display()))?;
        Ok((ranks.attach(trainer, data.train.len())?, data, origin))
    };
    let (mut trainer, data, origin) = ranks.agree(prepare())?;
    match run {
        Some(run) => {
            eprintln!(
                "resuming {} at epoch {}, step {} (of {epochs} epochs)",
                last.display(),
                position.0,
                position.1,
            );
            train(&mut trainer, &data, &origin, &run, args.save_every)
        }
        None => follow(&mut trainer, &data),
    }
}

/// Run `trainer` to the end as a rank that writes nothing (rank 0 does): the same steps,
/// stopped by the same signals.
fn follow(trainer: &mut Trainer, data: &DataSplit) -> Result<()> {
    /// Stops at a signal, says nothing.
    struct Silent;
    impl TrainHooks for Silent {
        fn on_step(&mut self, _: &Trainer, _: &StepProgress) -> convnet::Result<Control> {
            Ok(match signals::received() {
                Some(_) => Control::Stop,
                None => Control::Continue,
            })
        }
    }
    signals::install();
    match trainer.run(data, &mut Silent) {
        Err(Error::Interrupted) => {
            std::process::exit(128 + signals::received().unwrap_or(libc::SIGINT))
        }
        result => Ok(result?),
    }
}

/// What the options given would change in a run of `config` whose images were resized to
/// `resize`, each as `setting from A to B`: every setting of the config they describe over
/// the run's (so an option added later is covered too), the size to resize to, and the model
/// (which the run's checkpoint holds).
fn resume_changes(
    args: &TrainArgs,
    config: &TrainConfig,
    resize: Option<[usize; 2]>,
) -> Vec<String> {
    let size = |s: Option<[usize; 2]>| s.map_or("none".to_string(), |[h, w]| format!("{h}x{w}"));
    let mut changes: Vec<String> = config
        .differences(&args.config_over(config))
        .into_iter()
        .map(|c| format!("{} from {} to {}", c.setting, c.from, c.to))
        .collect();
    if args.resize.is_some() && args.resize != resize {
        changes.push(format!(
            "--resize from {} to {}",
            size(resize),
            size(args.resize)
        ));
    }
    if let Some(model) = &args.model {
        changes.push(format!(
            "--model from the run's own (last/model.toml) to {}",
            model.display()
        ));
    }
    changes
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP stop training the same way: the step in progress
/// ends, `last` is saved, and the process exits with 128 + the signal's number. A second
/// signal ends the process at once.
mod signals {
    use std::sync::atomic::{AtomicI32, Ordering};

    static RECEIVED: AtomicI32 = AtomicI32::new(0);

    const HANDLED: [(libc::c_int, &str); 3] = [
        (libc::SIGINT, "Ctrl-C (SIGINT)"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ];

    extern "C" fn on_signal(signal: libc::c_int) {
        // Only async-signal-safe calls here: an atomic swap, and _exit.
        if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
            // SAFETY: _exit is async-signal-safe and takes any status.
            unsafe { libc::_exit(128 + signal) }
        }
    }

    pub fn install() {
        for (signal, _) in HANDLED {
            // SAFETY: the action is fully initialised (zeroed, then its handler, flags and
            // empty mask set) and `on_signal` only makes async-signal-safe calls.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    }

    /// The signal received, if one was.
    pub fn received() -> Option<libc::c_int> {
        Some(RECEIVED.load(Ordering::SeqCst)).filter(|s| *s != 0)
    }

    pub fn name(signal: libc::c_int) -> &'static str {
        HANDLED
            .iter()
            .find(|(s, _)| *s == signal)
            .map_or("a signal", |(_, name)| name)
    }
}

/// Progress, checkpoints and signals for a training run.
struct CliHooks<'a> {
    run: &'a RunFolder,
    /// Where the data came from, recorded in checkpoints.
    origin: DataOrigin,
    bar: Option<ProgressBar>,
    save_every: usize,
    started: Instant,
}

impl TrainHooks for CliHooks<'_> {
    fn on_step(&mut self, trainer: &Trainer, p: &StepProgress) -> convnet::Result<Control> {
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(p.steps as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("epoch {}/{}", p.epoch + 1, trainer.config().epochs));
            bar
        });
        bar.set_position(p.step as u64 + 1);
        bar.set_message(format!(
            "loss {:.4} acc {:.2}% {:.0} img/s",
            p.loss,
            100.0 * p.accuracy,
            p.images_per_second
        ));
        if signals::received().is_some() {
            return Ok(Control::Stop);
        }
        if self.save_every > 0 && trainer.state.global_step.is_multiple_of(self.save_every) {
            self.run.save_last(trainer, &self.origin)?;
        }
        Ok(Control::Continue)
    }

    fn on_epoch(&mut self, trainer: &Trainer, r: &EpochRecord) -> convnet::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:>2}/{}  train loss {:.4} acc {:6.2}%  test loss {:.4} acc {:6.2}%  {:6.1} s  {:6.0} img/s",
            r.epoch,
            trainer.config().epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.test_loss,
            100.0 * r.test_accuracy,
            r.seconds,
            r.images_per_second
        );
        let repair = self.run.end_epoch(trainer, &self.origin)?;
        if let Some(problem) = repair.curves_problem {
            eprintln!("warning: cannot draw the curves: {problem}");
        }
        Ok(())
    }

    fn on_stop(&mut self, trainer: &Trainer) -> convnet::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        self.run.save_last(trainer, &self.origin)
    }
}

/// Where a saved training state is, in words.
fn position(state: &TrainState) -> String {
    match (state.epoch, state.step_in_epoch) {
        (0, 0) => "the start".to_string(),
        (e, 0) => format!("the end of epoch {e}"),
        (e, s) => format!("epoch {}, step {s}", e + 1),
    }
}

/// Run `trainer` to the end, with progress, checkpoints in `run` and signal handling.
pub fn train(
    trainer: &mut Trainer,
    data: &DataSplit,
    origin: &DataOrigin,
    run: &RunFolder,
    save_every: usize,
) -> Result<()> {
    signals::install();
    let out = run.path();
    eprintln!(
        "training on {} ({} train / {} test images, {} classes), {} parameters, {} steps per epoch",
        data.train.source,
        data.train.len(),
        data.test.len(),
        trainer.classes.len(),
        trainer.model.param_count(),
        trainer.steps_per_epoch()
    );
    let mut hooks = CliHooks {
        run,
        origin: origin.clone(),
        bar: None,
        save_every,
        started: Instant::now(),
    };
    match trainer.run(data, &mut hooks) {
        Ok(()) => {
            let best = trainer.state.best_accuracy.unwrap_or(0.0);
            println!(
                "done in {:.1} s: best test accuracy {:.2}%; checkpoints in {}/best and {}/last",
                hooks.started.elapsed().as_secs_f64(),
                100.0 * best,
                out.display(),
                out.display()
            );
            Ok(())
        }
        Err(Error::Interrupted) => {
            let signal = signals::received().unwrap_or(libc::SIGINT);
            eprintln!(
                "interrupted at epoch {}, step {} by {}: saved {}/last; continue with `convnet train --out {} --resume`",
                trainer.state.epoch + 1,
                trainer.state.step_in_epoch,
                signals::name(signal),
                out.display(),
                out.display()
            );
            std::process::exit(128 + signal);
        }
        Err(e @ Error::Diverged(_)) => {
            if let Some(bar) = hooks.bar.take() {
                bar.abandon();
            }
            let kept = match run.last_state() {
                Some(state) => format!(
                    "{}/last holds the last saved state, at {} (its weights are finite; \
                     resumed with the same settings it would diverge again: start a new run \
                     with a lower --lr)",
                    out.display(),
                    position(&state)
                ),
                None => "no checkpoint was saved before it diverged".to_string(),
            };
            bail!("{e}; {kept}")
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Args)]
#[command(after_help = "Examples:
  convnet demo
  convnet demo --epochs 3
  convnet demo --data /usr/share/datasets/fashion-mnist --epochs 1")]
pub struct DemoArgs {
    /// Data folder; default: the embedded Fashion-MNIST sample (2,000 / 500 images).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize every image to HxW (e.g. 32x32) when reading the data.
    #[arg(long, value_name = "HxW", value_parser = OpenOptions::parse_size)]
    resize: Option<[usize; 2]>,
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Output folder for the checkpoints [default: runs/demo, numbered runs/demo-2, ...
    /// when that holds a run].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Train the reference model briefly and print its test accuracy.
pub fn demo(args: DemoArgs) -> Result<()> {
    let (data, origin) = match &args.data {
        Some(p) => DataOrigin::open(Some(p), args.resize)?,
        None => DataOrigin::embedded_sample(args.resize)?,
    };
    let spec = ModelSpec::from_toml(FASHION_CNN)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: 64,
        ..TrainConfig::reference()
    };
    let model = Model::from_spec(&spec, config.seed)?;
    let mut trainer = Trainer::new(model, config, &data)?;
    let run = new_run(args.out.as_deref(), DEMO_OUT, "demo")?;
    train(&mut trainer, &data, &origin, &run, 0)?;
    let last = trainer
        .state
        .history
        .last()
        .map_or(0.0, |r| r.test_accuracy);
    println!(
        "demo: the reference CNN reached {:.1}% test accuracy on {} ({} test images)",
        100.0 * last,
        data.test.source,
        data.test.len()
    );
    Ok(())
}
