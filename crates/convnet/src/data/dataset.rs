//! [`Dataset`] (raw images and labels in memory) and [`Normalization`].

use convnet_core::Tensor;
use rayon::prelude::*;

/// Images and labels in memory: `pixels` is `[N, C, H, W]`, raw bytes 0..=255.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `[N, C, H, W]`, raw 0..=255.
    pub pixels: Vec<u8>,
    /// One per image, each `< classes.len()`.
    pub labels: Vec<usize>,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Where the data came from, for messages (a path, or "embedded Fashion-MNIST sample ...").
    pub source: String,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i` as `C * H * W` bytes.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// `[C, H, W]`.
    pub fn image_dims(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Number of images of each class (`classes.len()` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// Per-channel mean and population standard deviation of `pixel / 255` over the whole set,
    /// computed exactly in `f64` (from a histogram of the byte values) and rounded to `f32`.
    /// A channel with no spread (or an empty set) gets std 1 so that [`Normalization::apply`]
    /// stays finite; an empty set gets mean 0.
    pub fn normalization(&self) -> Normalization {
        let c = self.channels;
        let plane = self.height * self.width;
        let chw = self.image_len();
        if self.is_empty() || chw == 0 {
            return Normalization::identity(c);
        }
        // Chunks of whole images (so every chunk starts at channel 0), each counted into
        // four interleaved u32 histograms per channel (repeated values, e.g. the many black
        // pixels, then do not serialize on one counter), merged into u64 totals per chunk.
        let images_per_chunk = (1 << 16) / chw + 1;
        let hist = self
            .pixels
            .par_chunks(chw * images_per_chunk)
            .fold(
                || vec![[0u64; 256]; c],
                |mut total, chunk| {
                    let mut sub = vec![[[0u32; 256]; 4]; c];
                    for image in chunk.chunks_exact(chw) {
                        for (ch, values) in image.chunks_exact(plane).enumerate() {
                            let [h0, h1, h2, h3] = &mut sub[ch];
                            let mut quads = values.chunks_exact(4);
                            for q in &mut quads {
                                h0[q[0] as usize] += 1;
                                h1[q[1] as usize] += 1;
                                h2[q[2] as usize] += 1;
                                h3[q[3] as usize] += 1;
                            }
                            for &v in quads.remainder() {
                                h0[v as usize] += 1;
                            }
                        }
                    }
                    for (t, s) in total.iter_mut().zip(&sub) {
                        for (v, x) in t.iter_mut().enumerate() {
                            *x += s.iter().map(|h| h[v] as u64).sum::<u64>();
                        }
                    }
                    total
                },
            )
            .reduce(
                || vec![[0u64; 256]; c],
                |mut a, b| {
                    for (ha, hb) in a.iter_mut().zip(&b) {
                        for (x, y) in ha.iter_mut().zip(hb) {
                            *x += y;
                        }
                    }
                    a
                },
            );
        let count = (self.len() * plane) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for h in &hist {
            let m = h
                .iter()
                .enumerate()
                .map(|(v, &k)| k as f64 * (v as f64 / 255.0))
                .sum::<f64>()
                / count;
            let var = h
                .iter()
                .enumerate()
                .map(|(v, &k)| {
                    let d = v as f64 / 255.0 - m;
                    k as f64 * d * d
                })
                .sum::<f64>()
                / count;
            let s = var.sqrt() as f32;
            mean.push(m as f32);
            std.push(if s > 0.0 { s } else { 1.0 });
        }
        Normalization { mean, std }
    }

    /// The images at `indices` (in that order; repeats allowed), same classes and source.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        Dataset {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            source: self.source.clone(),
        }
    }
}

/// Per-channel normalization, as torchvision's `ToTensor()` then `Normalize(mean, std)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// One per channel.
    pub mean: Vec<f32>,
    /// One per channel.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean 0 and std 1 for `channels` channels: `apply` then only scales to `[0, 1]`.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// `out[c, y, x] = (pixels[c, y, x] / 255 - mean[c]) / std[c]` for one image `[C, H, W]`,
    /// in `f32` with exactly torchvision's operations (a division by 255, a subtraction, a
    /// division by std), so the values are bit-identical to `Normalize(mean, std)(ToTensor()(img))`.
    ///
    /// # Panics
    /// If `out` and `pixels` differ in length, or the length is not a multiple of the number
    /// of channels.
    pub fn apply(&self, pixels: &[u8], out: &mut [f32]) {
        let c = self.mean.len();
        assert_eq!(
            pixels.len(),
            out.len(),
            "Normalization::apply: {} pixels into {} outputs",
            pixels.len(),
            out.len()
        );
        assert!(
            c > 0 && self.std.len() == c && pixels.len().is_multiple_of(c),
            "Normalization::apply: {} values are not {c} channel planes",
            pixels.len()
        );
        let plane = pixels.len() / c;
        if plane == 0 {
            return;
        }
        for ((src, dst), (&m, &s)) in pixels
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .zip(self.mean.iter().zip(&self.std))
        {
            for (o, &p) in dst.iter_mut().zip(src) {
                *o = (p as f32 / 255.0 - m) / s;
            }
        }
    }

    /// One image's `[C, H, W]` = `dims` bytes as the normalized model input `[1, C, H, W]`
    /// ([`Normalization::apply`]); an error when the bytes or this normalization do not fit
    /// `dims`.
    pub fn to_input(&self, pixels: &[u8], dims: [usize; 3]) -> crate::Result<Tensor> {
        let [c, h, w] = dims;
        if self.mean.len() != c || self.std.len() != c || pixels.len() != c * h * w {
            return Err(crate::Error::config(
                "normalization",
                format!(
                    "{} values with {} means and {} stds are not an image {dims:?} (CxHxW)",
                    pixels.len(),
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        let mut out = vec![0.0; pixels.len()];
        self.apply(pixels, &mut out);
        Ok(Tensor::new([1, c, h, w], out)?)
    }
}
