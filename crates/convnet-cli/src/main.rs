//! `convnet`: the command-line tool. Each subcommand is a thin layer over the library; no math
//! lives here.

mod bench;
mod eval;
mod io;
mod predict;
mod run;
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
    /// Worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
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
    /// Forward pass on a .npy tensor, written to a .npy file.
    Run(run::RunArgs),
    /// Time conv2d on the layers of a suite (forward and forward + backward).
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Err(err) = run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(threads) = cli.threads {
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    match cli.command {
        Command::Demo(args) => train::demo(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
