//! Data-parallel training over MPI (built with `--features mpi`): `mpirun -np N convnet
//! train ...` starts N processes, and this module is what they share, [`convnet::train::Workers`]
//! over `MPI_COMM_WORLD`.
//!
//! Gradients are summed with `MPI_Iallreduce` bucket by bucket as backward finishes each
//! layer (`--allreduce overlap`, the default), or with one `MPI_Allreduce` after backward
//! (`--allreduce blocking`). MPI is called from the thread that initialized it only (the
//! thread that trains): a call from any other thread is refused with an error. MPI's default
//! error handler aborts the whole job on a communication error, and `mpirun` ends every rank
//! when one dies, so no rank waits forever for a dead one.

use std::io::Write;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use convnet::Model;
use convnet::train::{GradientLayout, Trainer, Workers};
use convnet_core::Tensor;
use mpi::collective::SystemOperation;
use mpi::request::{Request, Scope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// A bucket of gradients summed in one exchange: 256 Ki values (1 MiB). The reference
/// model's gradients make two: its first linear layer (done early in backward, so its sum
/// overlaps every convolution's backward) and the rest.
const BUCKET_VALUES: usize = 1 << 18;

/// The options of `convnet train` that only data-parallel training has.
#[derive(Args, Clone, Copy)]
pub struct MpiArgs {
    /// Under mpirun: batch norm takes its statistics over the whole global batch (every
    /// rank's shard, as torch.nn.SyncBatchNorm) rather than each rank's shard.
    #[arg(long)]
    sync_bn: bool,
    /// Under mpirun: how gradients are summed across ranks.
    #[arg(long, value_enum, default_value_t = AllReduce::Overlap)]
    allreduce: AllReduce,
}

/// How gradients are summed across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllReduce {
    /// Each bucket of layers as soon as its backward is done, while earlier layers compute.
    Overlap,
    /// All at once after backward.
    Blocking,
}

/// This process's place in a run: with MPI when `mpirun` started it (else it trains alone,
/// as a binary built without the feature does).
pub struct Ranks {
    /// Dropping it finalizes MPI; a process that ends without that (an error) makes
    /// `mpirun` end the whole job.
    universe: Option<mpi::environment::Universe>,
    rank: usize,
    size: usize,
    args: MpiArgs,
}

/// Whether `mpirun` (Open MPI, or a PMI launcher such as MPICH's) started this process.
fn under_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

impl Ranks {
    /// Initialize MPI if `mpirun` started this process.
    pub fn start(args: MpiArgs) -> Result<Ranks> {
        let mut ranks = Ranks {
            universe: None,
            rank: 0,
            size: 1,
            args,
        };
        if under_mpirun() {
            let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
                .ok_or_else(|| anyhow::anyhow!("MPI could not be initialized"))?;
            let world = universe.world();
            (ranks.rank, ranks.size) = (world.rank() as usize, world.size() as usize);
            ranks.universe = Some(universe);
        }
        Ok(ranks)
    }

    /// Whether this process writes the run folder (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }

    /// `trainer`, training data-parallel with every rank when there are several.
    pub fn attach(&self, trainer: Trainer, train_len: usize) -> Result<Trainer> {
        if self.size < 2 {
            return Ok(trainer);
        }
        let workers = MpiWorkers {
            thread: std::thread::current().id(),
            rank: self.rank,
            size: self.size,
            sync_bn: self.args.sync_bn,
            allreduce: self.args.allreduce,
            layout: Mutex::new(None),
            buffers: Mutex::new((Vec::new(), Vec::new())),
        };
        let trainer = trainer.with_workers(std::sync::Arc::new(workers), train_len)?;
        if self.is_writer() {
            let batch = trainer.config().batch_size;
            let (least, most) = (batch / self.size, batch.div_ceil(self.size));
            eprintln!(
                "data-parallel on {} ranks: global batches of {batch} ({} images per rank), \
                 batch norm over {}, gradients summed {}",
                self.size,
                match least == most {
                    true => least.to_string(),
                    false => format!("{least} to {most}"),
                },
                if self.args.sync_bn {
                    "the global batch (--sync-bn)"
                } else {
                    "each rank's images"
                },
                match self.args.allreduce {
                    AllReduce::Overlap => "during backward",
                    AllReduce::Blocking => "after backward",
                }
            );
        }
        Ok(trainer)
    }

    /// Whether every rank succeeded at a step all of them take (`result` is this rank's). On
    /// a failure anywhere, one rank says why: rank 0 when it failed, else the first that did;
    /// the others return [`Quiet`], an error that is not printed (the job still fails).
    pub fn agree<T>(&self, result: Result<T>) -> Result<T> {
        if self.size < 2 {
            return result;
        }
        // The first failing rank, as the smallest of `rank` (failed) or `size` (succeeded).
        let mine = if result.is_err() {
            self.rank
        } else {
            self.size
        } as u64;
        let mut first = self.size as u64;
        SimpleCommunicator::world().all_reduce_into(&mine, &mut first, SystemOperation::min());
        match result {
            Ok(value) if first == self.size as u64 => Ok(value),
            Err(e) if first == self.rank as u64 => Err(Agreed(e).into()),
            _ => Err(Quiet.into()),
        }
    }

    /// End MPI with the run's `result`. An error every rank reached together (through
    /// [`Ranks::agree`], or a divergence, which every rank sees at the same step) ends MPI
    /// normally; any other is said, with the rank, and aborts the whole job (the other ranks
    /// may be waiting for this one).
    pub fn finish(mut self, result: Result<()>) -> Result<()> {
        let Some(universe) = self.universe.take() else {
            return result;
        };
        let Err(e) = result else {
            let summary = exchange_summary(self.args.allreduce);
            if let (true, Some(summary)) = (self.is_writer(), summary) {
                eprintln!("{summary}");
            }
            drop(universe);
            return Ok(());
        };
        let together = e.is::<Agreed>() || e.is::<Quiet>();
        let diverged = matches!(e.downcast_ref(), Some(convnet::Error::Diverged(_)));
        if together || (diverged && !self.is_writer()) {
            // Said before MPI ends (which waits for every rank): a rank that exits first
            // makes mpirun stop the others, maybe before they could say it.
            if e.is::<Agreed>() {
                say(&format!("error: {e:#}\n"));
            }
            drop(universe);
            return Err(Quiet.into());
        }
        say(&match self.rank {
            0 => format!("error: {e:#}\n"),
            r => format!("error (rank {r} of {}): {e:#}\n", self.size),
        });
        universe.world().abort(1)
    }
}

/// `line` on stderr in one write, so that mpirun passes it on whole.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// An error every rank agreed on, to be said by this one.
#[derive(Debug)]
pub struct Agreed(anyhow::Error);

impl std::fmt::Display for Agreed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Agreed {}

/// An error another rank has already said: the process fails without saying it again.
#[derive(Debug)]
pub struct Quiet;

impl std::fmt::Display for Quiet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another rank failed and said why")
    }
}

impl std::error::Error for Quiet {}

/// Whether `error` was already said by another rank.
pub fn is_quiet(error: &anyhow::Error) -> bool {
    error.is::<Quiet>()
}

/// Time and bytes spent summing gradients, over the run of this process.
static STATS: Stats = Stats {
    steps: AtomicU64::new(0),
    skew_ns: AtomicU64::new(0),
    wait_ns: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
};

/// Time and bytes spent summing gradients.
#[derive(Debug)]
struct Stats {
    steps: AtomicU64,
    /// Nanoseconds waited at a barrier for the slowest rank to end backward (`blocking`,
    /// which measures it apart so that `wait_ns` is the all-reduce alone).
    skew_ns: AtomicU64,
    /// Nanoseconds training waited for gradient sums (after backward, for `overlap`, which
    /// includes waiting for the slowest rank).
    wait_ns: AtomicU64,
    /// Bytes of gradients each rank contributed.
    bytes: AtomicU64,
}

/// `MPI_COMM_WORLD` as the workers of a data-parallel run.
#[derive(Debug)]
struct MpiWorkers {
    /// The thread that initialized MPI, the only one that may call it.
    thread: ThreadId,
    rank: usize,
    size: usize,
    sync_bn: bool,
    allreduce: AllReduce,
    /// The model's gradient buckets (its structure never changes during a run).
    layout: Mutex<Option<GradientLayout>>,
    /// The flat send and receive buffers of gradients, kept between steps.
    buffers: Mutex<(Vec<f32>, Vec<f32>)>,
}

impl MpiWorkers {
    /// The world communicator, from the thread MPI was initialized on.
    fn world(&self) -> convnet::Result<SimpleCommunicator> {
        if std::thread::current().id() != self.thread {
            return Err(convnet::Error::Config {
                setting: "workers",
                reason: "MPI is called from a thread other than the one that initialized it".into(),
            });
        }
        Ok(SimpleCommunicator::world())
    }

    /// Count a step's gradient exchange of `values` that made training wait `skew` for the
    /// slowest rank and `wait` for the sums.
    fn record(&self, values: usize, skew: Duration, wait: Duration) {
        let s = &STATS;
        s.steps.fetch_add(1, Ordering::Relaxed);
        s.skew_ns
            .fetch_add(skew.as_nanos() as u64, Ordering::Relaxed);
        s.wait_ns
            .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
        s.bytes.fetch_add(
            (values * std::mem::size_of::<f32>()) as u64,
            Ordering::Relaxed,
        );
    }

    /// Backward, then all gradients summed at once.
    fn backward_blocking(&self, model: &mut Model, grad: &Tensor) -> convnet::Result<()> {
        let world = self.world()?;
        model.backward(grad)?;
        let layout = GradientLayout::of(model, usize::MAX);
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let (send, sum) = &mut *buffers;
        send.resize(layout.len(), 0.0);
        sum.resize(layout.len(), 0.0);
        layout.gather(model, send);
        let start = Instant::now();
        world.barrier();
        let skew = start.elapsed();
        world.all_reduce_into(&send[..], &mut sum[..], SystemOperation::sum());
        self.record(layout.len(), skew, start.elapsed() - skew);
        layout.scatter(sum, model);
        Ok(())
    }

    /// Backward, each bucket of gradients summed (non-blocking) as soon as its last layer is
    /// done, the sums awaited at the end.
    fn backward_overlapped(&self, model: &mut Model, grad: &Tensor) -> convnet::Result<()> {
        let world = self.world()?;
        let mut layout = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let layout = layout.get_or_insert_with(|| GradientLayout::of(model, BUCKET_VALUES));
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let (send, sum) = &mut *buffers;
        send.resize(layout.len(), 0.0);
        sum.resize(layout.len(), 0.0);
        let mut waited = Instant::now();
        mpi::request::scope(|scope| -> convnet::Result<()> {
            let mut exchange = Exchange {
                sends: split(send, layout.buckets()),
                sums: split(sum, layout.buckets()),
                pending: Vec::new(),
            };
            let backward = model.backward_observed(grad, &mut |index, node| {
                if let Some(place) = layout.place(index) {
                    if let Some(values) = exchange.sends[place.bucket].as_deref_mut() {
                        GradientLayout::copy_grads(node, &mut values[place.values.clone()]);
                    }
                    if place.completes {
                        exchange.start(place.bucket, &world, scope);
                    }
                    exchange.progress();
                }
                Ok(())
            });
            // Every rank starts every bucket, in the same order, whatever backward did
            // (a bucket whose layers it skipped holds zeros).
            for bucket in 0..layout.buckets().len() {
                exchange.start(bucket, &world, scope);
            }
            waited = Instant::now();
            exchange.wait();
            backward
        })?;
        self.record(layout.len(), Duration::ZERO, waited.elapsed());
        layout.scatter(sum, model);
        Ok(())
    }
}

/// `values` cut into the `buckets`' slices (each taken once its exchange starts).
fn split<'a>(mut values: &'a mut [f32], buckets: &[Range<usize>]) -> Vec<Option<&'a mut [f32]>> {
    let mut parts = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let (part, rest) = std::mem::take(&mut values).split_at_mut(bucket.len());
        parts.push(Some(part));
        values = rest;
    }
    parts
}

/// The buckets of one step's gradients, and their sums in flight.
struct Exchange<'a, S: Scope<'a>> {
    /// Each bucket's gradients, until its sum starts.
    sends: Vec<Option<&'a mut [f32]>>,
    /// Where each bucket's sum goes, until it starts.
    sums: Vec<Option<&'a mut [f32]>>,
    pending: Vec<Request<'a, [f32], S>>,
}

impl<'a, S: Scope<'a> + Copy> Exchange<'a, S> {
    /// Start summing `bucket` across the ranks (once; later calls do nothing).
    fn start(&mut self, bucket: usize, world: &SimpleCommunicator, scope: S) {
        if let (Some(send), Some(sum)) = (self.sends[bucket].take(), self.sums[bucket].take()) {
            let send: &'a [f32] = send;
            let op = SystemOperation::sum();
            (self.pending).push(world.immediate_all_reduce_into(scope, send, sum, op));
        }
    }

    /// Let MPI move the sums in flight on (Open MPI progresses non-blocking collectives
    /// only inside MPI calls), keeping those not yet finished.
    fn progress(&mut self) {
        let requests = std::mem::take(&mut self.pending);
        (self.pending).extend(requests.into_iter().filter_map(|r| r.test().err()));
    }

    /// Wait for every sum started.
    fn wait(self) {
        for request in self.pending {
            request.wait_without_status();
        }
    }
}

impl Workers for MpiWorkers {
    fn rank(&self) -> usize {
        self.rank
    }

    fn count(&self) -> usize {
        self.size
    }

    fn sum_f64(&self, values: &mut [f64]) -> convnet::Result<()> {
        let world = self.world()?;
        let mine = values.to_vec();
        world.all_reduce_into(&mine[..], values, SystemOperation::sum());
        Ok(())
    }

    fn sum_f32(&self, values: &mut [f32]) -> convnet::Result<()> {
        let world = self.world()?;
        let mine = values.to_vec();
        world.all_reduce_into(&mine[..], values, SystemOperation::sum());
        Ok(())
    }

    fn broadcast(&self, values: &mut [f32]) -> convnet::Result<()> {
        self.world()?.process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn sync_batch_norm(&self) -> bool {
        self.sync_bn
    }

    fn backward_summed(&self, model: &mut Model, grad: &Tensor) -> convnet::Result<()> {
        match self.allreduce {
            AllReduce::Overlap => self.backward_overlapped(model, grad),
            AllReduce::Blocking => self.backward_blocking(model, grad),
        }
    }
}

/// What the gradient exchange cost so far, per step, in words (rank 0 says it at the end of
/// a data-parallel run).
fn exchange_summary(allreduce: AllReduce) -> Option<String> {
    let steps = STATS.steps.load(Ordering::Relaxed);
    if steps == 0 {
        return None;
    }
    let per_step = |total: &AtomicU64| total.load(Ordering::Relaxed) as f64 / steps as f64;
    let (skew, wait) = (
        per_step(&STATS.skew_ns) / 1e6,
        per_step(&STATS.wait_ns) / 1e6,
    );
    let bytes = per_step(&STATS.bytes) / 1e6;
    Some(match allreduce {
        AllReduce::Blocking => format!(
            "gradient all-reduce: {bytes:.2} MB per rank per step, {wait:.2} ms per step \
             (after {skew:.2} ms waiting for the slowest rank's backward)"
        ),
        AllReduce::Overlap => format!(
            "gradient all-reduce: {bytes:.2} MB per rank per step, {wait:.2} ms per step \
             waited for after backward (the slowest rank's backward included)"
        ),
    })
}
