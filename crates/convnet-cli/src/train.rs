//! `convnet train` and `convnet demo`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use convnet::checkpoint::{DataOrigin, RunFolder};
use convnet::data::{self, Augment, DataSplit, OpenOptions};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{
    Control, EpochRecord, LossKind, StepProgress, TrainConfig, TrainHooks, TrainState, Trainer,
};
use convnet::{Error, Model, ModelSpec};
use indicatif::{ProgressBar, ProgressStyle};

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
folder (<out>/.lock holds its pid).")]
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
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    optimizer: OptimizerArg,
    /// Learning rate (the peak for one-cycle).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// SGD with Nesterov momentum.
    #[arg(long)]
    nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long, value_enum, default_value_t = ScheduleArg::OneCycle)]
    schedule: ScheduleArg,
    /// Step schedule: multiply the rate by --gamma every this many epochs.
    #[arg(long, default_value_t = 3)]
    step_epochs: usize,
    #[arg(long, default_value_t = 0.1)]
    gamma: f32,
    #[arg(long, value_enum, default_value_t = LossArg::CrossEntropy)]
    loss: LossArg,
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// Do not flip training images horizontally at random.
    #[arg(long)]
    no_hflip: bool,
    /// Random crops after padding each side by this many pixels (0: off).
    #[arg(long, default_value_t = 0)]
    crop_padding: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
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
    /// The options given on the command line (filled in by `main`), so that `--resume` can
    /// refuse settings it would otherwise ignore.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// The options that define a run: `--resume` takes them from the checkpoint.
const RUN_SETTINGS: [&str; 17] = [
    "model",
    "resize",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "step_epochs",
    "gamma",
    "loss",
    "label_smoothing",
    "no_hflip",
    "crop_padding",
    "seed",
];

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        let optimizer = match self.optimizer {
            OptimizerArg::Sgd => OptimizerConfig::Sgd {
                lr: self.lr,
                momentum: self.momentum,
                dampening: 0.0,
                weight_decay: self.weight_decay,
                nesterov: self.nesterov,
            },
            OptimizerArg::Adam => {
                OptimizerConfig::adam(self.lr).with_weight_decay(self.weight_decay)
            }
            OptimizerArg::Adamw => {
                OptimizerConfig::adamw(self.lr).with_weight_decay(self.weight_decay)
            }
        };
        let schedule = match self.schedule {
            ScheduleArg::Constant => ScheduleConfig::Constant,
            ScheduleArg::Step => ScheduleConfig::Step {
                step_epochs: self.step_epochs,
                gamma: self.gamma,
            },
            ScheduleArg::Cosine => ScheduleConfig::Cosine { eta_min: 0.0 },
            ScheduleArg::OneCycle => ScheduleConfig::one_cycle(self.lr),
        };
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer,
            schedule,
            loss: match self.loss {
                LossArg::CrossEntropy => LossKind::CrossEntropy {
                    label_smoothing: self.label_smoothing,
                },
                LossArg::Mse => LossKind::Mse,
            },
            augment: Augment {
                hflip: !self.no_hflip,
                crop_padding: self.crop_padding,
            },
            seed: self.seed,
        }
    }
}

/// Open `--data`, or the default data.
pub fn open_data(path: Option<&Path>) -> Result<DataSplit> {
    open_data_with(path, &OpenOptions::default())
}

/// Open `--data`, or the default data, read as `options` say (`--resize`).
pub fn open_data_with(path: Option<&Path>, options: &OpenOptions) -> Result<DataSplit> {
    Ok(match path {
        Some(p) => data::open_with(p, options)?,
        None => data::default_data_with(options)?,
    })
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
    if args.resume {
        return resume(&args);
    }
    // The settings are checked before any data is read, and the run folder is made only
    // once everything else is ready (an error leaves nothing behind).
    let config = args.config();
    let spec = load_spec(args.model.as_deref())?;
    config.check_for_images(spec.input)?;
    let (data, origin) = open_data_recorded(args.data.as_deref(), args.resize)?;
    let model = Model::from_spec(&spec, config.seed)?;
    let mut trainer = Trainer::new(model, config, &data)?;
    let run = new_run(args.out.as_deref(), TRAIN_OUT, "train")?;
    train(&mut trainer, &data, &origin, &run, args.save_every)
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

/// Open `--data` (or the default data), resized to `resize`, and say where it came from.
pub fn open_data_recorded(
    path: Option<&Path>,
    resize: Option<[usize; 2]>,
) -> Result<(DataSplit, DataOrigin)> {
    // Opened by its absolute path, so what the loader reports does not depend on the
    // folder the command runs in.
    let folder = match path {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .with_context(|| format!("cannot open data {}", p.display()))?,
        ),
        None => None,
    };
    let data = open_data_with(folder.as_deref(), &OpenOptions { resize })?;
    let origin = DataOrigin {
        folder,
        source: data.train.source.clone(),
        resize,
    };
    Ok((data, origin))
}

/// The embedded sample, resized to `resize`, and where it came from.
fn embedded_sample_recorded(resize: Option<[usize; 2]>) -> Result<(DataSplit, DataOrigin)> {
    let data = OpenOptions { resize }.apply(data::embedded_sample())?;
    let origin = DataOrigin {
        folder: None,
        source: data.train.source.clone(),
        resize,
    };
    Ok((data, origin))
}

fn resume(args: &TrainArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(TRAIN_OUT));
    let last = out.join("last");
    let ignored: Vec<String> = RUN_SETTINGS
        .iter()
        .filter(|id| args.given.iter().any(|g| g == *id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !ignored.is_empty() {
        bail!(
            "--resume continues the run with the settings it was started with (in {}); \
             {} would be ignored: drop {}, or start a new run with another --out",
            last.join("checkpoint.json").display(),
            ignored.join(", "),
            if ignored.len() == 1 { "it" } else { "them" }
        );
    }
    let run = RunFolder::open(&out)?;
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
    // (The library's errors name the file at fault.)
    let saved = run.load_last()?;
    if saved.is_finished() {
        eprintln!(
            "the run in {} is finished ({} of {} epochs): nothing to resume",
            out.display(),
            saved.state.epoch,
            saved.config.epochs
        );
        return Ok(());
    }
    // The run's own data unless --data names other data; either way it must be the same.
    let folder = args.data.clone().or_else(|| saved.data.folder.clone());
    let (data, origin) = match folder {
        // A run of `demo` trained on the embedded sample, whatever the default data is.
        None if saved.data.source.starts_with(data::EMBEDDED_SAMPLE_SOURCE) => {
            embedded_sample_recorded(saved.data.resize)?
        }
        folder => open_data_recorded(folder.as_deref(), saved.data.resize)?,
    };
    if saved.data.source != origin.source {
        bail!(
            "the run in {} was trained on {}; resuming would train it on {}{}",
            out.display(),
            saved.data.source,
            origin.source,
            match &saved.data.folder {
                Some(f) => format!(": give --data {}", f.display()),
                None => String::new(),
            }
        );
    }
    eprintln!(
        "resuming {} at epoch {}, step {} (of {} epochs)",
        last.display(),
        saved.state.epoch + 1,
        saved.state.step_in_epoch,
        saved.config.epochs
    );
    let mut trainer = saved
        .into_trainer(&data)
        .with_context(|| format!("cannot resume from {}", last.display()))?;
    train(&mut trainer, &data, &origin, &run, args.save_every)
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
        Some(p) => open_data_recorded(Some(p), args.resize)?,
        None => embedded_sample_recorded(args.resize)?,
    };
    let spec = ModelSpec::from_toml(FASHION_CNN)?;
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: 64,
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
