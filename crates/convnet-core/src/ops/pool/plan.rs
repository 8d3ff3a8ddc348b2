//! The windows of a max or average pooling, resolved against an input shape ([`Plan`]); the
//! windows of an adaptive pooling ([`adaptive_range`]); how planes split over threads.

use num_traits::Float;

use super::params::Pool2dParams;
use crate::error::Result;
use crate::geometry::effective_kernel;
use crate::tensor::{check_elements, fmt_dims};

/// Inner-loop steps below which a call stays on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 15;

/// One spatial axis of a max or average pooling.
#[derive(Debug, Clone, Copy)]
pub(super) struct Axis {
    pub(super) input: usize,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) dilation: usize,
    /// `dilation * (kernel - 1) + 1`.
    pub(super) span: usize,
}

impl Axis {
    /// Taps of max-pool window `o`: the first in-bounds tap and the end (exclusive) of the
    /// in-bounds taps, stepping by the dilation. `first >= end` when every tap is padding.
    /// Positions are computed in padded coordinates so nothing goes negative.
    pub(super) fn max_taps(&self, o: usize) -> (usize, usize) {
        let start = o * self.stride;
        let end = start
            .saturating_add(self.span)
            .min(self.input + self.pad)
            .saturating_sub(self.pad);
        let first = if start >= self.pad {
            start - self.pad
        } else {
            // PyTorch: `while (i0 < 0) i0 += dilation;`
            let before = self.pad - start;
            before.div_ceil(self.dilation) * self.dilation - before
        };
        (first, end)
    }

    /// Average-pool window `o`: the input range `[lo, hi)` after clipping, and the window
    /// length before clipping (`min(start + k, I + p) - start`, PyTorch's `pool_size` factor).
    pub(super) fn avg_taps(&self, o: usize) -> (usize, usize, usize) {
        let start = o * self.stride;
        let end = (start + self.kernel).min(self.input + 2 * self.pad);
        let lo = start.max(self.pad) - self.pad;
        let hi = end.min(self.input + self.pad).saturating_sub(self.pad);
        (lo, hi, end.saturating_sub(start))
    }
}

/// Input range `[floor(o * input / out), ceil((o + 1) * input / out))` of adaptive window `o`.
pub(super) fn adaptive_range(o: usize, out: usize, input: usize) -> (usize, usize) {
    let (o, out, input) = (o as u128, out as u128, input as u128);
    let start = o * input / out;
    let end = ((o + 1) * input).div_ceil(out);
    (start as usize, end as usize)
}

/// A max or average pooling problem, checked against an input shape.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// Height, width.
    pub(super) axes: [Axis; 2],
    pub(super) out_hw: [usize; 2],
    pub(super) count_include_pad: bool,
    pub(super) divisor_override: Option<usize>,
}

impl Plan {
    /// A 2x2 window with stride 2, no padding and no dilation on both axes, every window
    /// whole (with `ceil_mode` a last window may hang off the input; then this is false).
    pub(super) fn is_2x2_stride_2(&self) -> bool {
        self.axes.iter().zip(self.out_hw).all(|(a, o)| {
            a.kernel == 2 && a.stride == 2 && a.pad == 0 && a.dilation == 1 && 2 * o <= a.input
        })
    }

    pub(super) fn new(
        op: &'static str,
        params: &Pool2dParams,
        [_, _, h, w]: [usize; 4],
    ) -> Result<Plan> {
        let out_hw = params.output_hw_for(op, [h, w])?;
        let axis = |i: usize, input: usize| Axis {
            input,
            kernel: params.kernel()[i],
            stride: params.stride()[i],
            pad: params.padding()[i],
            dilation: params.dilation()[i],
            // Checked in `build`.
            span: effective_kernel(params.kernel()[i], params.dilation()[i]).unwrap_or(usize::MAX),
        };
        Ok(Plan {
            axes: [axis(0, h), axis(1, w)],
            out_hw,
            count_include_pad: params.count_include_pad(),
            divisor_override: params.divisor_override(),
        })
    }

    pub(super) fn output_dims(
        &self,
        op: &'static str,
        [n, c, _, _]: [usize; 4],
    ) -> Result<[usize; 4]> {
        let dims = [n, c, self.out_hw[0], self.out_hw[1]];
        check_elements(op, "output", format!("output {}", fmt_dims(&dims)), &dims)?;
        Ok(dims)
    }

    pub(super) fn in_plane(&self) -> usize {
        self.axes[0].input * self.axes[1].input
    }

    pub(super) fn out_plane(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }

    /// Inner-loop steps for one plane (for the parallel split).
    pub(super) fn work_per_plane(&self) -> usize {
        self.out_plane()
            .saturating_mul(self.axes[0].kernel.saturating_mul(self.axes[1].kernel))
    }

    /// The divisor of an average window of `pool_size` elements before clipping and `area`
    /// after.
    pub(super) fn divisor<T: Float>(&self, pool_size: usize, area: usize) -> T {
        let d = self.divisor_override.unwrap_or(if self.count_include_pad {
            pool_size
        } else {
            area
        });
        cast(d)
    }
}

pub(super) fn cast<T: Float>(v: usize) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Planes per rayon task, so that each task has at least [`PARALLEL_MIN_WORK`] steps.
pub(super) fn planes_per_task(work_per_plane: usize) -> usize {
    PARALLEL_MIN_WORK.div_ceil(work_per_plane.max(1))
}
