//! Times MPI's all-reduce (sum) on this machine, for docs/distributed.md: the reference
//! model's gradients (468,202 f32 values, one exchange per step) and an 8-byte sum (the
//! latency that each of a step's small exchanges pays: loss and counts, synchronized batch
//! norm's sums).
//!
//! ```sh
//! cargo build --release -p convnet-cli --features mpi --example mpi_allreduce
//! mpirun --allow-run-as-root --oversubscribe -np 2 target/release/examples/mpi_allreduce
//! ```

use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::traits::*;

/// The reference model's parameter count.
const GRADIENTS: usize = 468_202;
const ROUNDS: usize = 50;

fn main() {
    let universe = mpi::initialize().expect("MPI initializes");
    let world = universe.world();
    for (what, len) in [("gradients", GRADIENTS), ("one value", 1)] {
        let send = vec![1.0f32; len];
        let mut sum = vec![0.0f32; len];
        let mut seconds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS + 5 {
            world.barrier();
            let start = Instant::now();
            world.all_reduce_into(&send[..], &mut sum[..], SystemOperation::sum());
            seconds.push(start.elapsed().as_secs_f64());
        }
        seconds.drain(..5);
        seconds.sort_by(f64::total_cmp);
        if world.rank() == 0 {
            println!(
                "{} ranks, all-reduce of {what} ({:.2} MB): median {:.3} ms, best {:.3} ms",
                world.size(),
                (len * 4) as f64 / 1e6,
                seconds[ROUNDS / 2] * 1e3,
                seconds[0] * 1e3
            );
        }
    }
}
