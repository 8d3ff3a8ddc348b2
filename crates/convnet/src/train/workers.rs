//! Data-parallel training: what the training loop asks of a group of worker processes, and
//! how a global batch is split between them.
//!
//! The library holds no transport: a [`Workers`] implementation (the CLI's MPI module) sums
//! values across the processes. Every worker runs the same loop on the same global batches
//! (the order a single process uses); worker `r` of `n` takes its slice of each
//! ([`shard`]), scales its loss gradient by its share of the batch, and the parameter
//! gradients are summed across workers before the optimizer step, so the step is the
//! single-process step on the global batch (up to the order of float additions), and every
//! worker holds the same weights after it.

use std::fmt;
use std::ops::Range;

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Model, Node};

/// The processes training one model together, seen from one of them.
///
/// Every method that communicates is collective: every worker calls it, in the same order,
/// with buffers of the same length.
pub trait Workers: fmt::Debug + Send + Sync {
    /// This worker's index, from 0 (the one that writes checkpoints and metrics).
    fn rank(&self) -> usize;
    /// How many workers train (at least 1).
    fn count(&self) -> usize;
    /// Replace `values` by their element-wise sum over the workers (the same on every worker).
    fn sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// [`Workers::sum_f64`] for gradients.
    fn sum_f32(&self, values: &mut [f32]) -> Result<()>;
    /// Replace `values` by worker 0's.
    fn broadcast(&self, values: &mut [f32]) -> Result<()>;
    /// Whether batch norm computes its statistics over the whole global batch (every
    /// worker's shard, as `torch.nn.SyncBatchNorm`) rather than over each worker's shard (as
    /// PyTorch's DistributedDataParallel does by default).
    fn sync_batch_norm(&self) -> bool;

    /// Run `model`'s backward pass from `grad` (the gradient of this worker's share of the
    /// loss) and leave in every parameter's gradient its sum over the workers. This default
    /// sums all gradients at once after the pass; an implementation may start summing a
    /// layer's gradients as soon as its backward is done ([`GradientLayout`]).
    fn backward_summed(&self, model: &mut Model, grad: &Tensor) -> Result<()> {
        model.backward(grad)?;
        let layout = GradientLayout::of(model, usize::MAX);
        let mut flat = vec![0.0; layout.len()];
        layout.gather(model, &mut flat);
        self.sum_f32(&mut flat)?;
        layout.scatter(&flat, model);
        Ok(())
    }
}

/// What a run records of how it was trained in parallel (in its checkpoints), so a resume
/// can refuse to change what the updates depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parallel {
    /// How many worker processes trained.
    pub workers: usize,
    /// Whether batch norm used the statistics of the whole global batch.
    pub sync_batch_norm: bool,
}

impl Parallel {
    /// What `workers` train with (`None` for a single process).
    pub fn of(workers: Option<&dyn Workers>) -> Option<Parallel> {
        workers.filter(|w| w.count() > 1).map(|w| Parallel {
            workers: w.count(),
            sync_batch_norm: w.sync_batch_norm(),
        })
    }

    fn describe(parallel: Option<Parallel>) -> String {
        match parallel {
            None => "a single process".to_string(),
            Some(p) => format!(
                "{} workers{}",
                p.workers,
                if p.sync_batch_norm {
                    " with --sync-bn"
                } else {
                    ""
                }
            ),
        }
    }
}

/// Whether a run trained as `saved` (`None` for a run not started yet, or trained by a single
/// process) may continue as `now`, for a model that `has_batch_norm` and a global batch of
/// `batch_size`. The global batch is the same whatever the number of
/// workers, so the updates are the same unless batch norm computes its statistics per
/// worker: then each worker's shard (`batch_size / workers`) is what the statistics are
/// taken over, and another number of workers (or switching `--sync-bn`) would change them.
pub(crate) fn check_resume(
    saved: Option<Parallel>,
    now: Option<Parallel>,
    has_batch_norm: bool,
    batch_size: usize,
) -> Result<()> {
    if saved == now {
        return Ok(());
    }
    let shard = |p: Option<Parallel>| match p {
        Some(Parallel {
            workers,
            sync_batch_norm: false,
        }) => batch_size.div_ceil(workers),
        _ => batch_size,
    };
    if !has_batch_norm || shard(saved) == shard(now) {
        return Ok(());
    }
    Err(Error::config(
        "workers",
        format!(
            "the run was trained on {} and is resumed on {}: the global batch stays {batch_size} \
             images, but batch norm takes its statistics over {} images per step there and \
             would take them over {} here; resume it as it was trained (the same number of \
             workers{})",
            Parallel::describe(saved),
            Parallel::describe(now),
            shard(saved),
            shard(now),
            if saved.is_some_and(|p| p.sync_batch_norm) {
                ", with --sync-bn"
            } else {
                ", without --sync-bn"
            }
        ),
    ))
}

/// The positions of a global batch of `len` images that worker `rank` of `count` takes: a
/// contiguous slice, the sizes differing by at most one.
pub fn shard(len: usize, rank: usize, count: usize) -> Range<usize> {
    let at = |r: usize| len * r / count.max(1);
    at(rank)..at(rank + 1)
}

/// Where each parameter's gradient lies in one flat buffer, in the order backward finishes
/// them (the last node first), cut into buckets of about `bucket` values that each end at a
/// node's end: so a bucket can be summed across workers as soon as its last node's
/// backward is done.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientLayout {
    /// Every node with parameters, the last node first.
    places: Vec<Place>,
    /// The values of each bucket.
    buckets: Vec<Range<usize>>,
}

/// Where the gradients of one node lie in a [`GradientLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The node's index in its model.
    pub node: usize,
    /// Its bucket, and where in that bucket its values are.
    pub bucket: usize,
    pub values: Range<usize>,
    /// Whether it is the bucket's last node (the bucket is ready once it is done).
    pub completes: bool,
}

impl GradientLayout {
    /// The layout of `model`'s gradients in buckets of at least `bucket` values (the last one
    /// may be smaller).
    pub fn of(model: &Model, bucket: usize) -> GradientLayout {
        let mut layout = GradientLayout {
            places: Vec::new(),
            buckets: Vec::new(),
        };
        let mut start = 0;
        let mut at = 0;
        for (i, node) in model.nodes().iter().enumerate().rev() {
            let len: usize = node
                .layer
                .params()
                .iter()
                .map(|(_, p)| p.grad.numel())
                .sum();
            if len == 0 {
                continue;
            }
            layout.places.push(Place {
                node: i,
                bucket: layout.buckets.len(),
                values: at - start..at - start + len,
                completes: false,
            });
            at += len;
            if at - start >= bucket {
                layout.close(start..at);
                start = at;
            }
        }
        if at > start {
            layout.close(start..at);
        }
        layout
    }

    /// End the open bucket, `values`, at the last place.
    fn close(&mut self, values: Range<usize>) {
        if let Some(last) = self.places.last_mut() {
            last.completes = true;
        }
        self.buckets.push(values);
    }

    /// Values in all.
    pub fn len(&self) -> usize {
        self.buckets.last().map_or(0, |b| b.end)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values of each bucket, in the order backward fills them.
    pub fn buckets(&self) -> &[Range<usize>] {
        &self.buckets
    }

    /// Where node `index`'s gradients go (`None` for a node without parameters).
    pub fn place(&self, index: usize) -> Option<&Place> {
        self.places.iter().find(|p| p.node == index)
    }

    /// Copy `node`'s gradients, one parameter after the other, into `out`.
    pub fn copy_grads(node: &Node, out: &mut [f32]) {
        let mut at = 0;
        for (_, p) in node.layer.params() {
            let g = p.grad.data();
            out[at..at + g.len()].copy_from_slice(g);
            at += g.len();
        }
    }

    /// Where `place`'s values are in the whole buffer.
    fn span(&self, place: &Place) -> Range<usize> {
        let start = self.buckets[place.bucket].start;
        start + place.values.start..start + place.values.end
    }

    /// Every gradient of `model` into `flat`.
    pub fn gather(&self, model: &Model, flat: &mut [f32]) {
        for place in &self.places {
            Self::copy_grads(&model.nodes()[place.node], &mut flat[self.span(place)]);
        }
    }

    /// Every gradient of `model` from `flat`.
    pub fn scatter(&self, flat: &[f32], model: &mut Model) {
        for place in &self.places {
            let mut at = self.span(place).start;
            for (_, p) in model.nodes_mut()[place.node].layer.params_mut() {
                let g = p.grad.data_mut();
                let len = g.len();
                g.copy_from_slice(&flat[at..at + len]);
                at += len;
            }
        }
    }
}
