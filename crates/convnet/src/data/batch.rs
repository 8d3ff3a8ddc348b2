//! Deterministic, resumable, parallel batching.
//!
//! An epoch is a permutation of the data set ([`EpochPlan`]), cut into batches of
//! `batch_size` (the last one may be smaller, as PyTorch's `drop_last=False`). Everything
//! random is drawn from streams of [`Rng::stream`] keyed by what it is for, so a batch depends
//! only on `(seed, epoch, batch index)`: never on threads, nor on which batches were built
//! before, which is what resuming mid-epoch exactly needs.
//!
//! - Shuffle: Fisher-Yates ([`Rng::shuffle`]) of `0..len` with
//!   `Rng::stream(seed, &[SHUFFLE_TAG, epoch])`; the identity order without shuffle.
//! - Augmentation of the sample at position `k` of epoch `e` (position in the epoch, not its
//!   dataset index) uses `Rng::stream(seed, &[AUGMENT_TAG, e, k])`, in torchvision's order
//!   `RandomCrop(size, padding=p)` then `RandomHorizontalFlip()`, on the raw image before
//!   normalization:
//!   1. crop (if `crop_padding = p > 0`): `top = below(2p + 1)`, then `left = below(2p + 1)`
//!      (torchvision draws `i` then `j`); the output is the `H x W` window at `(top, left)` of
//!      the image zero-padded by `p` on every side: `out[c, y, x] = img[c, y + top - p,
//!      x + left - p]`, 0 outside the image. The padded zeros are raw pixel 0, so after
//!      normalization they are `(0 - mean) / std`, as `ToTensor` + `Normalize` after
//!      `RandomCrop(fill=0)`.
//!   2. flip (if `hflip`): `uniform() < 0.5` (torchvision: `torch.rand(1) < p`) mirrors every
//!      row: `out[c, y, x] = cropped[c, y, W - 1 - x]`.
//!
//!   No draw is made for an augmentation that is off.

use convnet_core::Tensor;
use rayon::prelude::*;

use super::{DataError, Dataset, Normalization};
use crate::rng::Rng;

/// Key tag of the shuffle stream: `Rng::stream(seed, &[SHUFFLE_TAG, epoch])`.
pub const SHUFFLE_TAG: u64 = u64::from_be_bytes(*b"shuffle\0");
/// Key tag of the augmentation streams: `Rng::stream(seed, &[AUGMENT_TAG, epoch, position])`.
pub const AUGMENT_TAG: u64 = u64::from_be_bytes(*b"augment\0");

/// Random augmentations of training images (see the module documentation for exactly what
/// is drawn and done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random horizontal flip with probability 0.5.
    pub hflip: bool,
    /// Random crop of the original size after zero-padding every side by this many pixels
    /// (0: no crop).
    pub crop_padding: usize,
}

impl Augment {
    /// Whether any augmentation is on.
    pub fn is_active(&self) -> bool {
        self.hflip || self.crop_padding > 0
    }

    /// Checks that this augmentation can be applied to images of `dims` (`[C, H, W]`): the crop
    /// padding must be smaller than the image's height and width, so that every crop window
    /// holds part of the image (torchvision accepts any padding, and a larger one crops
    /// windows of padding only). Whoever configures training calls this with the training
    /// set's `image_dims()` before the first batch.
    pub fn check(&self, dims: [usize; 3]) -> Result<(), DataError> {
        let [_, h, w] = dims;
        let p = self.crop_padding;
        if p > 0 && p >= h.min(w) {
            return Err(DataError::Augment {
                reason: format!(
                    "crop padding {p} is not smaller than the {h}x{w} (HxW) images: a crop could hold padding only; give a padding from 0 to {} (4 is usual for 32x32 images)",
                    h.min(w).saturating_sub(1)
                ),
            });
        }
        Ok(())
    }
}

/// How an epoch is cut into batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    /// Images per batch (the last batch of an epoch may hold fewer); must be at least 1.
    pub batch_size: usize,
    /// Shuffle every epoch (else dataset order).
    pub shuffle: bool,
    pub augment: Augment,
    pub seed: u64,
}

/// One batch: normalized images and their labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, C, H, W]`, normalized.
    pub images: Tensor,
    /// `B` labels.
    pub labels: Vec<usize>,
    /// The dataset index of each image.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl Default for Batch {
    /// An empty batch (`[0, 0, 0, 0]`), to be filled by [`EpochPlan::batch_into`].
    fn default() -> Self {
        Batch {
            images: Tensor::zeros(vec![0, 0, 0, 0]).expect("an empty shape is valid"),
            labels: Vec::new(),
            indices: Vec::new(),
        }
    }
}

/// The order of one epoch and how it is cut into batches.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPlan {
    order: Vec<usize>,
    batch_size: usize,
    augment: Augment,
    seed: u64,
    epoch: u64,
}

impl EpochPlan {
    /// The plan of epoch `epoch` over a data set of `len` images.
    ///
    /// # Panics
    /// If `spec.batch_size` is 0 (callers check user input first).
    pub fn new(len: usize, spec: &BatchSpec, epoch: u64) -> Self {
        assert!(
            spec.batch_size > 0,
            "EpochPlan: batch_size must be at least 1"
        );
        let mut order: Vec<usize> = (0..len).collect();
        if spec.shuffle {
            Rng::stream(spec.seed, &[SHUFFLE_TAG, epoch]).shuffle(&mut order);
        }
        EpochPlan {
            order,
            batch_size: spec.batch_size,
            augment: spec.augment,
            seed: spec.seed,
            epoch,
        }
    }

    /// Dataset indices in epoch order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of images in the epoch.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of batches: `ceil(len / batch_size)` (the last may be smaller).
    pub fn batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// The epoch positions of batch `b`.
    ///
    /// # Panics
    /// If `b >= self.batches()`.
    pub fn positions(&self, b: usize) -> std::ops::Range<usize> {
        assert!(
            b < self.batches(),
            "EpochPlan: batch {b} of an epoch of {} batches",
            self.batches()
        );
        let start = b * self.batch_size;
        start..(start + self.batch_size).min(self.order.len())
    }

    /// Builds batch `b` (normalized and augmented; per-sample work in parallel).
    ///
    /// # Panics
    /// If `b >= self.batches()`, `data.len()` differs from the plan's length, or `norm` has
    /// not one entry per channel of `data`.
    pub fn batch(&self, data: &Dataset, norm: &Normalization, b: usize) -> Batch {
        let mut out = Batch::default();
        self.batch_into(data, norm, b, &mut out);
        out
    }

    /// [`batch`](Self::batch) into `out`, reusing its buffers (no allocation once they are
    /// big enough, except small per-thread scratch for augmentation).
    ///
    /// # Panics
    /// As [`batch`](Self::batch).
    pub fn batch_into(&self, data: &Dataset, norm: &Normalization, b: usize, out: &mut Batch) {
        self.positions_into(data, norm, self.positions(b), out);
    }

    /// The part of batch `b` that worker `rank` of `count` trains on in data-parallel
    /// training ([`crate::train::shard`]): augmented as in the whole batch.
    ///
    /// # Panics
    /// As [`batch`](Self::batch).
    pub fn shard(
        &self,
        data: &Dataset,
        norm: &Normalization,
        b: usize,
        (rank, count): (usize, usize),
    ) -> Batch {
        let all = self.positions(b);
        let part = crate::train::shard(all.len(), rank, count);
        let mut out = Batch::default();
        self.positions_into(
            data,
            norm,
            all.start + part.start..all.start + part.end,
            &mut out,
        );
        out
    }

    /// The images at epoch `positions` into `out`.
    fn positions_into(
        &self,
        data: &Dataset,
        norm: &Normalization,
        positions: std::ops::Range<usize>,
        out: &mut Batch,
    ) {
        assert_eq!(
            data.len(),
            self.order.len(),
            "EpochPlan: planned for {} images, given a data set of {}",
            self.order.len(),
            data.len()
        );
        assert!(
            norm.mean.len() == data.channels && norm.std.len() == data.channels,
            "EpochPlan: normalization for {} channels, data of {}",
            norm.mean.len(),
            data.channels
        );
        let start = positions.start;
        let n = positions.len();
        let [c, h, w] = data.image_dims();
        let chw = c * h * w;

        out.indices.clear();
        out.indices.extend_from_slice(&self.order[positions]);
        out.labels.clear();
        out.labels
            .extend(out.indices.iter().map(|&i| data.labels[i]));

        let empty = Tensor::zeros(vec![0]).expect("an empty shape is valid");
        let mut buf = std::mem::replace(&mut out.images, empty).into_data();
        buf.truncate(n * chw);
        buf.resize(n * chw, 0.0);
        if chw > 0 {
            let indices = &out.indices;
            let aug = self.augment;
            buf.par_chunks_mut(chw)
                .with_min_len(8)
                .enumerate()
                .for_each_init(Vec::new, |scratch, (j, dst)| {
                    let image = data.image(indices[j]);
                    if aug.is_active() {
                        let k = (start + j) as u64;
                        let mut rng = Rng::stream(self.seed, &[AUGMENT_TAG, self.epoch, k]);
                        scratch.resize(chw, 0);
                        augment_into(image, [c, h, w], aug, &mut rng, scratch);
                        norm.apply(scratch, dst);
                    } else {
                        norm.apply(image, dst);
                    }
                });
        }
        out.images = Tensor::new(vec![n, c, h, w], buf)
            .expect("a batch of images already in memory has a valid shape");
    }
}

/// Applies `aug` to `image` (`[C, H, W]`) into `out` (same length), drawing from `rng` as the
/// module documentation says.
pub fn augment_into(image: &[u8], dims: [usize; 3], aug: Augment, rng: &mut Rng, out: &mut [u8]) {
    let [c, h, w] = dims;
    assert_eq!(
        image.len(),
        c * h * w,
        "augment_into: image is not {c}x{h}x{w}"
    );
    assert_eq!(
        out.len(),
        image.len(),
        "augment_into: output length differs"
    );
    let p = aug.crop_padding;
    let (top, left) = if p > 0 {
        // `check` keeps p below the image size; saturating all the same, so no padding
        // overflows here.
        let span = (p as u64).saturating_mul(2).saturating_add(1);
        let top = rng.below(span) as usize;
        let left = rng.below(span) as usize;
        (top, left)
    } else {
        (p, p)
    };
    let flip = aug.hflip && rng.uniform() < 0.5;
    // Source row of output row y: y + top - p; source column of output column x:
    // x' + left - p with x' = x, or W - 1 - x when flipped.
    for ch in 0..c {
        let src = &image[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for (y, row) in dst.chunks_exact_mut(w).enumerate() {
            let sy = y.wrapping_add(top).wrapping_sub(p);
            if sy >= h {
                row.fill(0);
                continue;
            }
            let src_row = &src[sy * w..(sy + 1) * w];
            for (x, o) in row.iter_mut().enumerate() {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx.wrapping_add(left).wrapping_sub(p);
                *o = if sx < w { src_row[sx] } else { 0 };
            }
        }
    }
}
