//! How kernels split work over rayon's pool.
//!
//! - [`Split`]: run independent tasks in parallel, or, when there are fewer tasks than
//!   threads, one after the other with a multi-threaded GEMM inside each.
//! - [`sum_over_parts`]: reductions (weight gradients) where each thread sums its share of the
//!   tasks into its own partial result; partials are added in a fixed order, so the result
//!   does not depend on scheduling.
//! - [`SharedOut`]: one output written by many tasks at disjoint elements.

use std::ops::Range;

use rayon::prelude::*;

use crate::cpu::scratch::Scratch;

/// How `tasks` independent tasks run on the current pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    /// Run tasks in parallel (else sequentially).
    pub parallel_tasks: bool,
    /// Threads each GEMM may use.
    pub gemm_threads: usize,
}

impl Split {
    pub(crate) fn new(tasks: usize) -> Self {
        let threads = rayon::current_num_threads();
        if tasks >= threads || threads == 1 {
            Split {
                parallel_tasks: true,
                gemm_threads: 1,
            }
        } else {
            Split {
                parallel_tasks: false,
                gemm_threads: threads,
            }
        }
    }

    /// Run `f(task)` for every task.
    pub(crate) fn run(self, tasks: usize, f: impl Fn(usize) + Sync + Send) {
        if self.parallel_tasks {
            (0..tasks).into_par_iter().for_each(f);
        } else {
            (0..tasks).for_each(f);
        }
    }

    /// Run `f(index, chunk)` over `chunk`-sized pieces of `out`.
    pub(crate) fn run_chunks(
        self,
        out: &mut [f32],
        chunk: usize,
        f: impl Fn(usize, &mut [f32]) + Sync + Send,
    ) {
        let chunk = chunk.max(1);
        if self.parallel_tasks {
            out.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i, c));
        } else {
            out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
        }
    }
}

/// The `part`-th of `parts` near-equal contiguous ranges of `0..tasks`.
pub(crate) fn task_range(tasks: usize, parts: usize, part: usize) -> Range<usize> {
    let base = tasks / parts;
    let extra = tasks % parts;
    let start = part * base + part.min(extra);
    start..start + base + usize::from(part < extra)
}

/// `out = sum over tasks of their contributions`, where `add(tasks, acc, gemm_threads)` adds
/// the contributions of a contiguous range of tasks to the zeroed accumulator `acc` (of
/// `out.len()` elements). Deterministic for a given thread count.
pub(crate) fn sum_over_parts(
    tasks: usize,
    out: &mut [f32],
    add: impl Fn(Range<usize>, &mut [f32], usize) + Sync + Send,
) {
    let split = Split::new(tasks);
    let parts = if split.parallel_tasks {
        rayon::current_num_threads().min(tasks).max(1)
    } else {
        1
    };
    let len = out.len();
    out.fill(0.0);
    if len == 0 {
        return;
    }
    // Part 0 sums straight into `out`; the others into scratch, added afterwards in order.
    let mut partials = Scratch::zeroed((parts - 1) * len);
    let accs: Vec<&mut [f32]> = std::iter::once(&mut *out)
        .chain(partials.chunks_mut(len))
        .collect();
    let run = |(part, acc): (usize, &mut [f32])| {
        add(task_range(tasks, parts, part), acc, split.gemm_threads)
    };
    if parts > 1 {
        accs.into_par_iter().enumerate().for_each(run);
    } else {
        accs.into_iter().enumerate().for_each(run);
    }
    for part in partials.chunks(len) {
        for (a, b) in out.iter_mut().zip(part) {
            *a += *b;
        }
    }
}

/// A raw pointer to an output that tasks write at pairwise-disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(*mut f32);

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> Self {
        SharedOut(out.as_mut_ptr())
    }

    /// Over uninitialised memory, for kernels that write every element without reading it.
    pub(crate) fn from_uninit(out: &mut [std::mem::MaybeUninit<f32>]) -> Self {
        SharedOut(out.as_mut_ptr().cast())
    }

    /// Pointer to element `offset`.
    ///
    /// # Safety
    /// `offset` must be inside the slice this was made from, which must still be alive.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: promised by the caller.
        unsafe { self.0.add(offset) }
    }
}

// SAFETY: a `SharedOut` is only dereferenced by tasks that write disjoint elements, each
// use documenting why its elements are its own.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ranges_cover_every_task_once() {
        for tasks in 0..20 {
            for parts in 1..6 {
                let all: Vec<usize> = (0..parts)
                    .flat_map(|p| task_range(tasks, parts, p))
                    .collect();
                assert_eq!(all, (0..tasks).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn sum_over_parts_adds_every_task() {
        let mut out = vec![0.0f32; 3];
        sum_over_parts(10, &mut out, |range, acc, _| {
            for t in range {
                acc[t % 3] += t as f32;
            }
        });
        assert_eq!(out, [18.0, 12.0, 15.0]);
    }
}
