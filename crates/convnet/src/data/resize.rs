//! Resizing images held as `[C, H, W]` planes: each plane with the `image` crate's triangle
//! (bilinear) filter, so every layout (image folders, IDX, CIFAR-10) resizes alike.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma};
use rayon::prelude::*;

use super::folder::{MAX_IMAGE_SIDE, alloc_images, check_resize};
use super::{DataError, Dataset};

/// Resizes `src` (`[C, H, W]` = `dims`) to `[C, target]` into `dst`; a plain copy when the
/// size is already `target`.
///
/// # Panics
/// If `src` or `dst` is not as long as its dimensions say, or a side does not fit in `u32`
/// (callers check sizes with `check_resize`).
pub(crate) fn resize_planes(src: &[u8], dims: [usize; 3], target: [usize; 2], dst: &mut [u8]) {
    let [c, h, w] = dims;
    let [th, tw] = target;
    assert_eq!(
        src.len(),
        c * h * w,
        "resize_planes: source is not {c}x{h}x{w}"
    );
    assert_eq!(
        dst.len(),
        c * th * tw,
        "resize_planes: target is not {c}x{th}x{tw}"
    );
    if [h, w] == target {
        dst.copy_from_slice(src);
        return;
    }
    let side = |v: usize| u32::try_from(v).expect("image sides are checked to fit in u32");
    for (plane, out) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(th * tw)) {
        let img = ImageBuffer::<Luma<u8>, &[u8]>::from_raw(side(w), side(h), plane)
            .expect("a plane of h * w bytes");
        let resized = imageops::resize(&img, side(tw), side(th), FilterType::Triangle);
        out.copy_from_slice(resized.as_raw());
    }
}

/// Interleaved `[H, W, C]` pixels as `[C, H, W]` planes.
pub(crate) fn hwc_to_chw(hwc: &[u8], channels: usize) -> Vec<u8> {
    let plane = hwc.len() / channels;
    let mut chw = vec![0u8; hwc.len()];
    for (i, px) in hwc.chunks_exact(channels).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * plane + i] = v;
        }
    }
    chw
}

impl Dataset {
    /// The same images resized to `size` (`[H, W]`, from 1 to [`MAX_IMAGE_SIDE`] a side) with
    /// the triangle filter, plane by plane; unchanged when they already have that size. The
    /// new set is allocated (checked against the memory available) before any image is
    /// resized.
    pub fn resized(self, size: [usize; 2]) -> Result<Dataset, DataError> {
        let source = Path::new(&self.source);
        check_resize(source, size)?;
        if [self.height, self.width] == size {
            return Ok(self);
        }
        let side = 1..=MAX_IMAGE_SIDE as usize;
        if !(side.contains(&self.height) && side.contains(&self.width)) {
            return Err(DataError::InvalidOption {
                path: source.to_path_buf(),
                reason: format!(
                    "cannot resize images of {}x{}: each side must be from 1 to {MAX_IMAGE_SIDE} pixels",
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
