//! Activation maximization: the input a unit responds to most, by gradient ascent on the
//! input (Erhan et al.; Olah et al., "Feature Visualization").
//!
//! The objective is the mean activation of channel `c` of a layer (its value for a vector
//! output such as a linear layer's). Each step:
//!
//! 1. shifts the image by a random offset of up to `jitter` pixels (circularly), so that the
//!    result does not depend on exact pixel positions;
//! 2. runs the model and backward from the objective to the input (in pixel units);
//! 3. steps along the gradient scaled to unit RMS, minus the regularizers' gradients: L2 decay
//!    towards the data's mean pixel (`l2`) and total variation (`tv`, the anisotropic L1
//!    form);
//! 4. keeps pixels in [0, 1], and every `blur_every` steps blurs the image a little
//!    (Gaussian, `blur_sigma`), which removes the high-frequency patterns that would
//!    otherwise dominate.
//!
//! With [`Parameterization::Fourier`] the image is `sigmoid(x)` where `x` is the inverse
//! (unitary) FFT of a spectrum scaled by `1 / frequency`: steps move the spectrum, so low
//! frequencies move first and no blur is needed (the blur is then skipped).

use std::sync::Arc;

use convnet_core::{Conv2dParams, Padding, PaddingMode, Tensor};
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use super::check_image;
use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::filter::{self, Filter};
use crate::layers::ForwardCtx;
use crate::model::{BackwardRequest, Model, Source};
use crate::rng::Rng;

/// How the image being optimized is represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameterization {
    /// The pixels themselves.
    Pixel,
    /// A `1/f`-scaled spectrum, through a sigmoid.
    Fourier,
}

/// Settings of [`maximize`].
#[derive(Debug, Clone)]
pub struct MaximizeConfig {
    pub steps: usize,
    /// Step size (pixel units per step for [`Parameterization::Pixel`]).
    pub lr: f32,
    /// Weight of the L2 decay towards the data's mean pixel.
    pub l2: f32,
    /// Weight of the total-variation penalty.
    pub tv: f32,
    /// Largest random shift in pixels.
    pub jitter: usize,
    /// Blur every this many steps (0: never).
    pub blur_every: usize,
    pub blur_sigma: f32,
    pub parameterization: Parameterization,
    pub seed: u64,
    /// Starting image `[C, H, W]` in [0, 1]; default: the data's mean pixel (a normalized
    /// input of 0, what the model sees as neutral) plus Gaussian noise of `init_noise`.
    pub init: Option<Tensor>,
    pub init_noise: f32,
}

/// The most steps [`maximize`] takes (a few hundred make a picture).
pub const MAX_STEPS: usize = 100_000;

impl MaximizeConfig {
    /// Refuse settings out of their domain, for an image of `[h, w]`, before any work.
    fn check(&self, [h, w]: [usize; 2]) -> Result<()> {
        if self.steps > MAX_STEPS {
            return Err(Error::config(
                "steps",
                format!("{} steps; at most {MAX_STEPS}", self.steps),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config(
                "lr",
                format!("{} is not a positive step", self.lr),
            ));
        }
        let weights = [
            ("l2", self.l2),
            ("tv", self.tv),
            ("init_noise", self.init_noise),
        ];
        for (setting, v) in weights {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(
                    setting,
                    format!("{v} is not a finite weight of 0 or more"),
                ));
            }
        }
        if !(self.blur_sigma > 0.0 && self.blur_sigma.is_finite()) {
            return Err(Error::config(
                "blur_sigma",
                format!("{} is not a positive width", self.blur_sigma),
            ));
        }
        // A circular shift by the image's side is no shift at all.
        let side = h.max(w);
        if self.jitter > side {
            return Err(Error::config(
                "jitter",
                format!(
                    "a shift of {} pixels; the image is {h}x{w}, so at most {side}",
                    self.jitter
                ),
            ));
        }
        Ok(())
    }
}

impl Default for MaximizeConfig {
    fn default() -> Self {
        MaximizeConfig {
            steps: 256,
            lr: 0.05,
            l2: 0.01,
            tv: 0.05,
            jitter: 1,
            blur_every: 4,
            blur_sigma: 0.5,
            parameterization: Parameterization::Pixel,
            seed: 0,
            init: None,
            init_noise: 0.1,
        }
    }
}

/// The result of [`maximize`].
#[derive(Debug, Clone)]
pub struct Maximized {
    /// `[C, H, W]` pixel values in [0, 1].
    pub image: Tensor,
    /// The objective on the starting image and on the result (neither jittered).
    pub start_activation: f32,
    pub activation: f32,
    /// The objective at every step (on the jittered image).
    pub history: Vec<f32>,
}

/// Find an image in [0, 1] that maximizes the mean activation of `channel` of `layer`.
/// `norm` turns pixels in [0, 1] into the model's input (as the training data was).
pub fn maximize(
    model: &mut Model,
    norm: &Normalization,
    layer: usize,
    channel: usize,
    config: &MaximizeConfig,
) -> Result<Maximized> {
    let [c, h, w] = model.input_shape();
    let node = model
        .nodes()
        .get(layer)
        .ok_or_else(|| Error::model(format!("no layer {layer}")))?;
    let channels = node.output_shape.first().copied().unwrap_or(1);
    if channel >= channels {
        return Err(Error::model(format!(
            "channel {channel} is out of range: layer '{}' has {channels} channels (0..={})",
            node.name,
            channels.saturating_sub(1)
        )));
    }
    if norm.mean.len() != c || norm.std.len() != c {
        return Err(Error::model(format!(
            "the normalization has {} channels; the model takes {c}",
            norm.mean.len()
        )));
    }
    config.check([h, w])?;
    let plane = h * w;
    let mut rng = Rng::new(config.seed);
    let start = match &config.init {
        Some(t) => {
            if t.dims() != [c, h, w] {
                return Err(Error::model(format!(
                    "the starting image has shape {:?}; the model takes {:?}",
                    t.dims(),
                    [c, h, w]
                )));
            }
            t.data().iter().map(|v| v.clamp(0.0, 1.0)).collect()
        }
        None => (0..c * plane)
            .map(|i| (norm.mean[i / plane] + config.init_noise * rng.normal()).clamp(0.0, 1.0))
            .collect::<Vec<f32>>(),
    };
    let objective = Objective::new(model, layer, channel)?;
    let start_activation = objective.value(model, norm, &start, [c, h, w])?;

    let blur = if config.blur_every > 0 && config.parameterization == Parameterization::Pixel {
        let spec = format!("gaussian:{}", config.blur_sigma);
        Some((
            filter::named(&spec)?,
            Conv2dParams::builder()
                .with_padding(Padding::Same)
                .with_padding_mode(PaddingMode::Replicate)
                .build()?,
        ))
    } else {
        None
    };
    let mut fourier = match config.parameterization {
        Parameterization::Pixel => None,
        Parameterization::Fourier => Some(Spectrum::from_image(&start, [c, h, w])),
    };
    let mut pixels = start;
    let mut history = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        let j = config.jitter as i64;
        let (dy, dx) = if j > 0 {
            let span = (2 * j + 1) as u64;
            (rng.below(span) as i64 - j, rng.below(span) as i64 - j)
        } else {
            (0, 0)
        };
        let shifted = roll(&pixels, [c, h, w], dy, dx);
        let (value, grad) = objective.gradient(model, norm, &shifted, [c, h, w])?;
        history.push(value);
        let grad = roll(&grad, [c, h, w], -dy, -dx);
        let rms = (grad.iter().map(|g| g * g).sum::<f32>() / grad.len() as f32).sqrt();
        let tv = tv_gradient(&pixels, [c, h, w]);
        let total: Vec<f32> = grad
            .iter()
            .zip(&pixels)
            .zip(&tv)
            .enumerate()
            .map(|(i, ((&g, &p), &t))| {
                g / (rms + 1e-12) - config.l2 * (p - norm.mean[i / plane]) - config.tv * t
            })
            .collect();
        match &mut fourier {
            None => {
                for (p, t) in pixels.iter_mut().zip(&total) {
                    *p = (*p + config.lr * t).clamp(0.0, 1.0);
                }
                if let Some((filter, params)) = &blur
                    && (step + 1) % config.blur_every == 0
                {
                    pixels = blur_image(&pixels, [c, h, w], filter, params)?;
                }
            }
            Some(spec) => {
                // Through the sigmoid, then to the spectrum.
                let dx: Vec<f32> = total
                    .iter()
                    .zip(&pixels)
                    .map(|(&t, &p)| t * p * (1.0 - p))
                    .collect();
                spec.ascend(&dx, config.lr);
                pixels = spec.image();
            }
        }
        if history.last().is_some_and(|v| !v.is_finite()) {
            return Err(Error::Diverged(format!(
                "the objective became {} at step {step}",
                history[step]
            )));
        }
    }
    let activation = objective.value(model, norm, &pixels, [c, h, w])?;
    Ok(Maximized {
        image: Tensor::new([c, h, w], pixels)?,
        start_activation,
        activation,
        history,
    })
}

/// The mean activation of one channel of one layer.
struct Objective {
    layer: usize,
    channel: usize,
    /// Per-sample output shape of the layer.
    shape: Vec<usize>,
    /// For an activation layer, the node it reads: where the ascent steps while the unit is
    /// inactive everywhere (a ReLU passes no gradient then; the pre-activation rises towards
    /// the threshold instead of the image staying where it started).
    pre_activation: Option<usize>,
}

impl Objective {
    fn new(model: &Model, layer: usize, channel: usize) -> Result<Self> {
        let node = &model.nodes()[layer];
        let pre_activation = match node.inputs.as_slice() {
            [Source::Node(j)]
                if node.layer.is_activation()
                    && model.nodes()[*j].output_shape == node.output_shape =>
            {
                Some(*j)
            }
            _ => None,
        };
        Ok(Objective {
            layer,
            channel,
            shape: node.output_shape.clone(),
            pre_activation,
        })
    }

    /// Values per channel of the layer's output.
    fn plane(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    fn input(norm: &Normalization, pixels: &[f32], [c, h, w]: [usize; 3]) -> Result<Tensor> {
        let plane = h * w;
        let data = pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let ch = i / plane;
                (p - norm.mean[ch]) / norm.std[ch]
            })
            .collect();
        Ok(Tensor::new([1, c, h, w], data)?)
    }

    fn of(&self, output: &Tensor) -> f32 {
        let plane = self.plane();
        output.data()[self.channel * plane..(self.channel + 1) * plane]
            .iter()
            .sum::<f32>()
            / plane as f32
    }

    fn value(
        &self,
        model: &mut Model,
        norm: &Normalization,
        pixels: &[f32],
        dims: [usize; 3],
    ) -> Result<f32> {
        let x = Self::input(norm, pixels, dims)?;
        check_image(model, &x)?;
        let (_, maps) = model.forward_capture(&x, ForwardCtx::eval(false), &[self.layer])?;
        Ok(self.of(&maps[0]))
    }

    /// The objective and its gradient w.r.t. the pixels.
    fn gradient(
        &self,
        model: &mut Model,
        norm: &Normalization,
        pixels: &[f32],
        dims: [usize; 3],
    ) -> Result<(f32, Vec<f32>)> {
        let x = Self::input(norm, pixels, dims)?;
        let run = (|| -> Result<(f32, Option<Tensor>)> {
            let (_, maps) = model.forward_capture(&x, ForwardCtx::eval(true), &[self.layer])?;
            let value = self.of(&maps[0]);
            let plane = self.plane();
            let mut seed = Tensor::zeros(maps[0].dims().to_vec())?;
            seed.data_mut()[self.channel * plane..(self.channel + 1) * plane]
                .fill(1.0 / plane as f32);
            let request = BackwardRequest {
                input: true,
                ..BackwardRequest::default()
            };
            let mut grad = model.backward_from(self.layer, &seed, &request)?.input;
            let flat = grad
                .as_ref()
                .is_none_or(|g| g.data().iter().all(|&v| v == 0.0));
            if flat && let Some(pre) = self.pre_activation {
                grad = model.backward_from(pre, &seed, &request)?.input;
            }
            Ok((value, grad))
        })();
        model.zero_grad();
        model.clear();
        let (value, input_grad) = run?;
        let plane = dims[1] * dims[2];
        // d/dpixel = d/dinput / std; zero if the objective does not depend on the input.
        let grad = match input_grad {
            Some(g) => g
                .data()
                .iter()
                .enumerate()
                .map(|(i, &v)| v / norm.std[i / plane])
                .collect(),
            None => vec![0.0; pixels.len()],
        };
        Ok((value, grad))
    }
}

/// Circular shift of each plane by `(dy, dx)`: `out[y][x] = in[y - dy][x - dx]`.
fn roll(pixels: &[f32], [c, h, w]: [usize; 3], dy: i64, dx: i64) -> Vec<f32> {
    if dy == 0 && dx == 0 {
        return pixels.to_vec();
    }
    let wrap = |v: i64, n: usize| v.rem_euclid(n as i64) as usize;
    let mut out = vec![0.0; pixels.len()];
    for ch in 0..c {
        let (src, dst) = (
            &pixels[ch * h * w..(ch + 1) * h * w],
            &mut out[ch * h * w..(ch + 1) * h * w],
        );
        for y in 0..h {
            let sy = wrap(y as i64 - dy, h);
            for x in 0..w {
                dst[y * w + x] = src[sy * w + wrap(x as i64 - dx, w)];
            }
        }
    }
    out
}

/// Gradient of the anisotropic total variation `sum |p[y][x+1] - p[y][x]| + |p[y+1][x] -
/// p[y][x]|` (sign of each difference).
fn tv_gradient(pixels: &[f32], [c, h, w]: [usize; 3]) -> Vec<f32> {
    let mut g = vec![0.0f32; pixels.len()];
    let sign = |d: f32| {
        if d > 0.0 {
            1.0
        } else if d < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    for ch in 0..c {
        let base = ch * h * w;
        for y in 0..h {
            for x in 0..w {
                let i = base + y * w + x;
                if x + 1 < w {
                    let s = sign(pixels[i + 1] - pixels[i]);
                    g[i + 1] += s;
                    g[i] -= s;
                }
                if y + 1 < h {
                    let s = sign(pixels[i + w] - pixels[i]);
                    g[i + w] += s;
                    g[i] -= s;
                }
            }
        }
    }
    g
}

fn blur_image(
    pixels: &[f32],
    [c, h, w]: [usize; 3],
    filter: &Filter,
    params: &Conv2dParams,
) -> Result<Vec<f32>> {
    let x = Tensor::new([1, c, h, w], pixels.to_vec())?;
    Ok(filter::apply(&x, filter, params)?.into_data())
}

/// An image as `sigmoid(Re(ifft2(scale * S)))`, `S` the parameters, `scale = 1 / max(f,
/// 1/max(H, W))` with `f` the frequency in cycles per pixel; unitary transforms.
struct Spectrum {
    dims: [usize; 3],
    spectrum: Vec<Complex32>,
    scale: Vec<f32>,
    rows: [Arc<dyn Fft<f32>>; 2],
    cols: [Arc<dyn Fft<f32>>; 2],
}

impl Spectrum {
    fn from_image(pixels: &[f32], [c, h, w]: [usize; 3]) -> Self {
        let mut planner = FftPlanner::new();
        let rows = [planner.plan_fft_forward(w), planner.plan_fft_inverse(w)];
        let cols = [planner.plan_fft_forward(h), planner.plan_fft_inverse(h)];
        let freq = |k: usize, n: usize| {
            let k = if k <= n / 2 {
                k as f32
            } else {
                k as f32 - n as f32
            };
            k / n as f32
        };
        let floor = 1.0 / h.max(w) as f32;
        let mut scale = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let f = freq(y, h).hypot(freq(x, w));
                scale.push(1.0 / f.max(floor));
            }
        }
        let mut s = Spectrum {
            dims: [c, h, w],
            spectrum: Vec::new(),
            scale,
            rows,
            cols,
        };
        // x = logit(p), then S = fft(x) / scale.
        let mut z: Vec<Complex32> = pixels
            .iter()
            .map(|&p| {
                let p = p.clamp(0.01, 0.99);
                Complex32::new((p / (1.0 - p)).ln(), 0.0)
            })
            .collect();
        s.transform(&mut z, false);
        for (i, v) in z.iter_mut().enumerate() {
            *v /= s.scale[i % (h * w)];
        }
        s.spectrum = z;
        s
    }

    /// Unitary 2-D FFT of each plane, forward or inverse.
    fn transform(&self, data: &mut [Complex32], inverse: bool) {
        let [_, h, w] = self.dims;
        let k = usize::from(inverse);
        let norm = 1.0 / ((h * w) as f32).sqrt();
        let mut column = vec![Complex32::default(); h];
        for plane in data.chunks_exact_mut(h * w) {
            for row in plane.chunks_exact_mut(w) {
                self.rows[k].process(row);
            }
            for x in 0..w {
                for y in 0..h {
                    column[y] = plane[y * w + x];
                }
                self.cols[k].process(&mut column);
                for y in 0..h {
                    plane[y * w + x] = column[y] * norm;
                }
            }
        }
    }

    fn image(&self) -> Vec<f32> {
        let plane = self.dims[1] * self.dims[2];
        let mut z: Vec<Complex32> = self
            .spectrum
            .iter()
            .enumerate()
            .map(|(i, &v)| v * self.scale[i % plane])
            .collect();
        self.transform(&mut z, true);
        z.iter().map(|v| 1.0 / (1.0 + (-v.re).exp())).collect()
    }

    /// One ascent step from the gradient w.r.t. `x` (before the sigmoid): the spectrum
    /// gradient is `scale * fft(dx)`, taken to unit RMS.
    fn ascend(&mut self, dx: &[f32], lr: f32) {
        let plane = self.dims[1] * self.dims[2];
        let mut g: Vec<Complex32> = dx.iter().map(|&v| Complex32::new(v, 0.0)).collect();
        self.transform(&mut g, false);
        for (i, v) in g.iter_mut().enumerate() {
            *v *= self.scale[i % plane];
        }
        let rms = (g.iter().map(|v| v.norm_sqr()).sum::<f32>() / g.len() as f32).sqrt();
        for (s, v) in self.spectrum.iter_mut().zip(&g) {
            *s += v * (lr / (rms + 1e-12));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_then_unroll_is_identity() {
        let p: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let r = roll(&p, [2, 3, 4], 1, -2);
        assert_eq!(r[4 + 2], p[0]); // (0, 0) moved to (1, 2)
        assert_eq!(roll(&r, [2, 3, 4], -1, 2), p);
    }

    #[test]
    fn tv_gradient_matches_finite_differences() {
        let p = [0.1f32, 0.7, 0.3, 0.9, 0.2, 0.5];
        let tv = |p: &[f32]| -> f32 {
            let mut s = 0.0;
            for y in 0..2 {
                for x in 0..3 {
                    if x + 1 < 3 {
                        s += (p[y * 3 + x + 1] - p[y * 3 + x]).abs();
                    }
                    if y + 1 < 2 {
                        s += (p[(y + 1) * 3 + x] - p[y * 3 + x]).abs();
                    }
                }
            }
            s
        };
        let g = tv_gradient(&p, [1, 2, 3]);
        for i in 0..p.len() {
            let mut q = p;
            q[i] += 1e-3;
            let fd = (tv(&q) - tv(&p)) / 1e-3;
            assert!((fd - g[i]).abs() < 1e-2, "pixel {i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn spectrum_round_trips_an_image_and_its_gradient_is_the_adjoint() {
        let dims = [1, 4, 6];
        let p: Vec<f32> = (0..24).map(|i| 0.2 + 0.025 * i as f32).collect();
        let s = Spectrum::from_image(&p, dims);
        for (a, b) in s.image().iter().zip(&p) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        // <d, d x / d S> by finite differences on one real spectrum entry.
        let dx: Vec<f32> = (0..24).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let logit = |s: &Spectrum| -> f32 {
            s.image()
                .iter()
                .zip(&dx)
                .map(|(&q, &d)| d * (q / (1.0 - q)).ln())
                .sum()
        };
        let mut g: Vec<Complex32> = dx.iter().map(|&v| Complex32::new(v, 0.0)).collect();
        s.transform(&mut g, false);
        for k in [1usize, 7, 13] {
            for part in [0, 1] {
                let mut t = Spectrum::from_image(&p, dims);
                let eps = 1e-3;
                if part == 0 {
                    t.spectrum[k].re += eps;
                } else {
                    t.spectrum[k].im += eps;
                }
                let fd = (logit(&t) - logit(&s)) / eps;
                let analytic = s.scale[k] * if part == 0 { g[k].re } else { g[k].im };
                assert!(
                    (fd - analytic).abs() < 2e-2 * analytic.abs().max(1.0),
                    "entry {k} part {part}: {fd} vs {analytic}"
                );
            }
        }
    }
}
