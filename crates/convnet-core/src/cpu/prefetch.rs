//! Software prefetch: hints that bring memory into cache ahead of its use. They change no
//! result; on targets without a prefetch instruction here they do nothing.
//!
//! The conv kernels copy each task's input into a layout (and transpose `grad_output`)
//! before computing on it. Those copies read rows of a few dozen values from memory that
//! the hardware prefetchers do not run ahead of, so the core waits on each miss while it
//! could be computing. [`prefetch`] requests a region just before it is copied;
//! [`Prefetcher`] requests the next task's regions a few lines at a time during this task's
//! arithmetic, so they are in cache when that task starts.

/// Floats per cache line (64 bytes).
const LINE: usize = 64 / std::mem::size_of::<f32>();

/// Asks the CPU to bring every cache line of `data` into L1.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32]) {
    for line in data.chunks(LINE) {
        prefetch_line(line.as_ptr(), Level::L1);
    }
}

#[derive(Clone, Copy)]
enum Level {
    L1,
    L2,
}

#[inline(always)]
fn prefetch_line(ptr: *const f32, level: Level) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch neither reads nor writes memory as far as the program can see
    // (any address may be given; callers give addresses inside a live slice).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
        match level {
            Level::L1 => _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>()),
            Level::L2 => _mm_prefetch::<_MM_HINT_T1>(ptr.cast::<i8>()),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, level);
}

/// Brings up to two slices into L2 a few cache lines per [`Prefetcher::step`]: for what the
/// next task will read, spread over this task's compute loop.
pub(crate) struct Prefetcher<'a> {
    regions: [&'a [f32]; 2],
    region: usize,
    at: usize,
    per_step: usize,
}

impl<'a> Prefetcher<'a> {
    /// The lines of `regions` spread over `steps` calls of [`Prefetcher::step`].
    pub(crate) fn new(regions: [&'a [f32]; 2], steps: usize) -> Self {
        let lines: usize = regions.iter().map(|r| r.len().div_ceil(LINE)).sum();
        Prefetcher {
            regions,
            region: 0,
            at: 0,
            per_step: lines.div_ceil(steps.max(1)),
        }
    }

    /// Nothing to bring (the last task of a range).
    pub(crate) fn none() -> Self {
        Prefetcher::new([&[], &[]], 1)
    }

    /// Requests the next few lines.
    #[inline(always)]
    pub(crate) fn step(&mut self) {
        let mut left = self.per_step;
        while left > 0 && self.region < self.regions.len() {
            let Some(line) = self.regions[self.region].get(self.at) else {
                self.region += 1;
                self.at = 0;
                continue;
            };
            prefetch_line(line, Level::L2);
            self.at += LINE;
            left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of both slices is requested once, a share per step, then nothing.
    #[test]
    fn lines_are_spread_over_the_steps() {
        let data = vec![0.0f32; 100];
        // 40 values are 3 lines, 33 are 3: 6 lines over 4 steps, 2 per step.
        let mut p = Prefetcher::new([&data[..40], &data[50..83]], 4);
        assert_eq!(p.per_step, 2);
        p.step();
        assert_eq!((p.region, p.at), (0, 32));
        p.step();
        assert_eq!(
            (p.region, p.at),
            (1, 16),
            "the first slice's third line, then the second's"
        );
        p.step();
        assert_eq!((p.region, p.at), (1, 48));
        p.step();
        assert_eq!(p.region, 2, "done");
        p.step();
        assert_eq!(p.region, 2);
        assert_eq!(Prefetcher::none().per_step, 0, "nothing to request");
    }
}
