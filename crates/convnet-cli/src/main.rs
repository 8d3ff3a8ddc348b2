//! `convnet`: the command-line tool. Each subcommand is a thin layer over the library; no math
//! lives here.

mod bench;
mod bench_model;
mod bench_train;
mod conv;
mod eval;
mod filter;
mod import;
mod inspect;
mod io;
#[cfg(not(feature = "mpi"))]
mod mpi_off;
#[cfg(feature = "mpi")]
mod mpi_workers;
mod predict;
mod run;
mod shape;
mod source;
mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "convnet",
    version,
    about = "A convolutional-neural-network engine: conv layers exact to PyTorch, fast on CPU"
)]
struct Cli {
    /// Worker threads (default: one per core; at most 256, or twice the cores where there are
    /// more).
    #[arg(long, global = true)]
    threads: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the reference CNN briefly on the embedded sample and print its accuracy.
    Demo(train::DemoArgs),
    /// Train a model (default: the reference recipe on Fashion-MNIST).
    Train(train::TrainArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a checkpoint.
    Eval(eval::EvalArgs),
    /// Top classes of PNG/JPEG images.
    Predict(predict::PredictArgs),
    /// Convert an ONNX model into a checkpoint folder.
    Import(import::ImportArgs),
    /// Forward pass on a .npy tensor, written to a .npy file.
    Run(run::RunArgs),
    /// Filter an image with a kernel (edges, blur, sharpen, any kernel).
    Filter(filter::FilterArgs),
    /// Convolve small literal matrices, showing every product.
    Conv(conv::ConvArgs),
    /// Output sizes, parameters, FLOPs and receptive fields of a layer list.
    Shape(shape::ShapeArgs),
    /// The layer table of a model file, with totals.
    Summary(shape::SummaryArgs),
    /// Every feature map of a layer for one image, as a picture.
    Features(inspect::FeaturesArgs),
    /// The learned kernels of a convolutional layer, as a picture.
    Kernels(inspect::KernelsArgs),
    /// Where in an image the evidence for a class lies (Grad-CAM, Grad-CAM++, saliency).
    Gradcam(inspect::GradcamArgs),
    /// The input a unit responds to most (activation maximization).
    Maximize(inspect::MaximizeArgs),
    /// Draw the loss and accuracy curves of a metrics.csv.
    Plot(inspect::PlotArgs),
    /// Time conv2d on the layers of a suite (forward and forward + backward).
    Bench(bench::BenchArgs),
}

fn main() {
    restore_default_sigpipe();
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        #[cfg(not(feature = "mpi"))]
        let quiet = mpi_off::is_quiet(&err);
        #[cfg(feature = "mpi")]
        let quiet = mpi_workers::is_quiet(&err);
        if !quiet {
            // One write, so that mpirun passes the line on whole.
            let line = format!("error: {err:#}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
        std::process::exit(1);
    }
}

/// The most worker threads: 256, or twice the cores on machines with more. Beyond, threads
/// only contend (and starting a thousand already takes seconds on two cores).
fn max_threads() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    cores.saturating_mul(2).max(256)
}

/// The worker pool: `--threads`, else `RAYON_NUM_THREADS` (which rayon would otherwise read
/// unchecked), else one per core. Checked before any thread starts.
fn start_threads(threads: Option<u64>) -> Result<()> {
    const VAR: &str = "RAYON_NUM_THREADS";
    let max = max_threads();
    let threads = match (threads, std::env::var(VAR)) {
        (Some(n), _) => {
            anyhow::ensure!(
                (1..=max).contains(&n),
                "--threads {n}: give 1 to {max} (the most worker threads on this machine)"
            );
            n
        }
        (None, Ok(text)) => {
            let n: u64 = text.trim().parse().map_err(|_| {
                anyhow::anyhow!("{VAR}='{text}' is not a number of threads (0..={max})")
            })?;
            anyhow::ensure!(
                n <= max,
                "{VAR}={n}: at most {max} worker threads on this machine (0: one per core)"
            );
            n
        }
        (None, Err(_)) => return Ok(()),
    };
    // 0 (from the variable) lets rayon use one thread per core.
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads as usize)
        .build_global()?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    start_threads(cli.threads)?;
    if matches!(
        cli.command,
        Command::Eval(_) | Command::Predict(_) | Command::Run(_)
    ) {
        // Batch after batch, the same activations: freed memory reused, not faulted in.
        convnet_core::cpu::keep_freed_memory();
    }
    match cli.command {
        Command::Demo(args) => train::demo(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Import(args) => import::run(args),
        Command::Run(args) => run::run(args),
        Command::Filter(args) => filter::run(args),
        Command::Conv(args) => conv::run(args),
        Command::Shape(args) => shape::shape(args),
        Command::Summary(args) => shape::summary(args),
        Command::Features(args) => inspect::features(args),
        Command::Kernels(args) => inspect::kernels(args),
        Command::Gradcam(args) => inspect::gradcam(args),
        Command::Maximize(args) => inspect::maximize(args),
        Command::Plot(args) => inspect::plot(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Output piped into a reader that stops early (`convnet summary --json | head`) ends the
/// process quietly, as it does for other Unix tools, instead of a panic in `println!` (Rust
/// ignores SIGPIPE by default, so every write would fail with EPIPE).
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
