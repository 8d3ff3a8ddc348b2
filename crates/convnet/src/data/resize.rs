//! Resizing a data set's images, plane by plane with [`resize_planes`], so every layout
//! (image folders, IDX, CIFAR-10) resizes alike.

use std::path::Path;

use rayon::prelude::*;

use super::folder::{alloc_images, check_resize};
use super::{DataError, Dataset};
use crate::image::{MAX_SIDE, resize_planes};

impl Dataset {
    /// The same images resized to `size` (`[H, W]`, from 1 to [`MAX_SIDE`] a side) with
    /// the triangle filter, plane by plane; unchanged when they already have that size. The
    /// new set is allocated (checked against the memory available) before any image is
    /// resized.
    pub fn resized(self, size: [usize; 2]) -> Result<Dataset, DataError> {
        let source = Path::new(&self.source);
        check_resize(source, size)?;
        if [self.height, self.width] == size {
            return Ok(self);
        }
        let side = 1..=MAX_SIDE as usize;
        if !(side.contains(&self.height) && side.contains(&self.width)) {
            return Err(DataError::InvalidOption {
                path: source.to_path_buf(),
                reason: format!(
                    "cannot resize images of {}x{}: each side must be from 1 to {MAX_SIDE} pixels",
                    self.height, self.width
                ),
            });
        }
        let dims = self.image_dims();
        let mut pixels = alloc_images(source, self.len(), [self.channels, size[0], size[1]])?;
        let per_image = self.channels * size[0] * size[1];
        if per_image > 0 && self.image_len() > 0 {
            pixels
                .par_chunks_exact_mut(per_image)
                .zip(self.pixels.par_chunks_exact(self.image_len()))
                .for_each(|(dst, src)| resize_planes(src, dims, size, dst));
        }
        Ok(Dataset {
            height: size[0],
            width: size[1],
            pixels,
            ..self
        })
    }
}
