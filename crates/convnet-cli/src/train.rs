//! `convnet train` and `convnet demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use convnet::checkpoint::{self, CheckpointMeta, DataOrigin};
use convnet::data::{self, Augment, DataSplit, OpenOptions};
use convnet::optim::{OptimizerConfig, ScheduleConfig};
use convnet::train::{
    Control, EpochRecord, LossKind, StepProgress, TrainConfig, TrainHooks, Trainer,
};
use convnet::{Error, ModelSpec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::inspect::write_png;
use crate::io::write_atomic;
use convnet::render;
use convnet::train::metrics_csv;

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
  convnet train --out runs/fashion --resume      # continue an interrupted run
  convnet train --data my-images/ --model my.toml --optimizer sgd --lr 0.05 --momentum 0.9 --nesterov

Data: a folder of MNIST-family IDX files (raw or .gz), CIFAR-10 binary batches, or image
folders train/<class>/*.png and test/<class>/*.png. Default: the full Fashion-MNIST when
installed (/usr/share/datasets/fashion-mnist), else the embedded sample.
Writes <out>/metrics.csv, <out>/curves.png, <out>/best/ and <out>/last/ (checkpoints). Ctrl-C saves <out>/last.")]
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
    /// Output folder.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
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

pub fn run(args: TrainArgs) -> Result<()> {
    let (mut trainer, data, origin) = if args.resume {
        resume(&args)?
    } else {
        let (data, origin) = open_data_recorded(args.data.as_deref(), args.resize)?;
        let spec = load_spec(args.model.as_deref())?;
        let config = args.config();
        let model = spec.build(config.seed)?;
        (Trainer::new(model, config, &data)?, data, origin)
    };
    train(&mut trainer, &data, &origin, &args.out, args.save_every)
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

fn resume(args: &TrainArgs) -> Result<(Trainer, DataSplit, DataOrigin)> {
    let ignored: Vec<String> = RUN_SETTINGS
        .iter()
        .filter(|id| args.given.iter().any(|g| g == *id))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !ignored.is_empty() {
        bail!(
            "--resume continues the run with the settings it was started with (in {}); \
             {} would be ignored: drop {}, or start a new run with another --out",
            args.out.join("last").join("checkpoint.json").display(),
            ignored.join(", "),
            if ignored.len() == 1 { "it" } else { "them" }
        );
    }
    let last = args.out.join("last");
    let ck = checkpoint::load(&last)
        .with_context(|| format!("cannot resume from {}", last.display()))?;
    let (Some(state), Some(config)) = (ck.meta.training.clone(), ck.meta.config.clone()) else {
        bail!("{} holds no training state to resume", last.display());
    };
    if state.epoch >= config.epochs {
        bail!(
            "the run in {} is finished ({} of {} epochs)",
            args.out.display(),
            state.epoch,
            config.epochs
        );
    }
    // The run's own data unless --data names other data; either way it must be the same.
    let saved = ck.meta.data.clone();
    let folder = args
        .data
        .clone()
        .or_else(|| saved.as_ref().and_then(|d| d.folder.clone()));
    let resize = saved.as_ref().and_then(|d| d.resize);
    let (data, origin) = open_data_recorded(folder.as_deref(), resize)?;
    if let Some(saved) = &saved
        && saved.source != origin.source
    {
        bail!(
            "the run in {} was trained on {}; resuming would train it on {}{}",
            args.out.display(),
            saved.source,
            origin.source,
            match &saved.folder {
                Some(f) => format!(": give --data {}", f.display()),
                None => String::new(),
            }
        );
    }
    eprintln!(
        "resuming {} at epoch {}, step {} (of {} epochs)",
        last.display(),
        state.epoch + 1,
        state.step_in_epoch,
        config.epochs
    );
    let trainer = Trainer::resume(
        ck.model,
        config,
        &data,
        ck.meta.normalization.clone(),
        state,
        &ck.optimizer_state,
    )?;
    Ok((trainer, data, origin))
}

/// Progress, checkpoints and Ctrl-C for a training run.
struct CliHooks {
    out: PathBuf,
    /// Where the data came from (for the curves' title).
    data_source: String,
    /// The same, recorded in checkpoints.
    origin: DataOrigin,
    bar: Option<ProgressBar>,
    interrupted: Arc<AtomicBool>,
    save_every: usize,
    started: Instant,
}

impl CliHooks {
    fn meta(&self, trainer: &Trainer) -> CheckpointMeta {
        CheckpointMeta {
            format: CheckpointMeta::FORMAT,
            classes: trainer.classes.clone(),
            normalization: trainer.normalization.clone(),
            training: Some(trainer.state.clone()),
            config: Some(trainer.config().clone()),
            data: Some(self.origin.clone()),
        }
    }

    fn save(&self, trainer: &Trainer, which: &str) -> Result<()> {
        let dir = self.out.join(which);
        checkpoint::save(
            &dir,
            &trainer.model,
            &self.meta(trainer),
            &trainer.optimizer().state_tensors(),
        )
        .with_context(|| format!("cannot save checkpoint {}", dir.display()))
    }

    /// `metrics.csv` and its picture `curves.png`.
    fn write_metrics(&self, trainer: &Trainer) -> Result<()> {
        let history = &trainer.state.history;
        write_atomic(
            &self.out.join("metrics.csv"),
            metrics_csv(history).as_bytes(),
        )?;
        // The picture is a convenience: failing to draw it does not stop the run.
        let name = trainer.model.spec().name.as_deref().unwrap_or("model");
        let title = format!("{name} on {}", self.data_source);
        let path = self.out.join("curves.png");
        if let Err(e) = render::curves(history, &title)
            .map_err(anyhow::Error::from)
            .and_then(|img| write_png(&path, &img))
        {
            eprintln!("warning: cannot draw {}: {e:#}", path.display());
        }
        Ok(())
    }
}

impl TrainHooks for CliHooks {
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
        if self.interrupted.load(Ordering::SeqCst) {
            return Ok(Control::Stop);
        }
        if self.save_every > 0 && trainer.state.global_step.is_multiple_of(self.save_every) {
            self.save(trainer, "last")
                .map_err(|e| Error::Model(format!("{e:#}")))?;
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
        let result = (|| -> Result<()> {
            self.save(trainer, "last")?;
            if trainer.is_best(r) {
                self.save(trainer, "best")?;
            }
            self.write_metrics(trainer)
        })();
        result.map_err(|e| Error::Model(format!("{e:#}")))
    }

    fn on_stop(&mut self, trainer: &Trainer) -> convnet::Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
        self.save(trainer, "last")
            .map_err(|e| Error::Model(format!("{e:#}")))
    }
}

/// Run `trainer` to the end, with progress, checkpoints under `out` and Ctrl-C handling.
pub fn train(
    trainer: &mut Trainer,
    data: &DataSplit,
    origin: &DataOrigin,
    out: &Path,
    save_every: usize,
) -> Result<()> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C (or one arriving before the first step) ends the process at once.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
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
        out: out.to_path_buf(),
        data_source: data.train.source.trim_end_matches(" (train)").to_string(),
        origin: origin.clone(),
        bar: None,
        interrupted,
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
            eprintln!(
                "interrupted at epoch {}, step {}: saved {}/last; continue with `convnet train --out {} --resume`",
                trainer.state.epoch + 1,
                trainer.state.step_in_epoch,
                out.display(),
                out.display()
            );
            std::process::exit(130);
        }
        Err(e @ Error::Diverged(_)) => {
            if let Some(bar) = hooks.bar.take() {
                bar.abandon();
            }
            bail!(
                "{e}; the last good checkpoint is kept in {}/last",
                out.display()
            )
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
    /// Output folder for the checkpoints.
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
}

/// Train the reference model briefly and print its test accuracy.
pub fn demo(args: DemoArgs) -> Result<()> {
    let (data, origin) = match &args.data {
        Some(p) => open_data_recorded(Some(p), args.resize)?,
        None => {
            let options = OpenOptions {
                resize: args.resize,
            };
            let data = options.apply(data::embedded_sample())?;
            let origin = DataOrigin {
                folder: None,
                source: data.train.source.clone(),
                resize: args.resize,
            };
            (data, origin)
        }
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
    let model = spec.build(config.seed)?;
    let mut trainer = Trainer::new(model, config, &data)?;
    train(&mut trainer, &data, &origin, &args.out, 0)?;
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
