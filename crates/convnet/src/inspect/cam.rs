//! Class-activation maps: Grad-CAM, Grad-CAM++ and gradient saliency.
//!
//! The score of class `c` is the model's output `y_c` (the logit, before softmax), as
//! pytorch-grad-cam's `ClassifierOutputTarget`. For a layer with activations `A` (`[K, h, w]`
//! for one image) and gradients `G = dy_c / dA`:
//!
//! - Grad-CAM (Selvaraju et al.): `w_k = mean_{ij} G_kij`.
//! - Grad-CAM++ (Chattopadhyay et al., in pytorch-grad-cam's closed form):
//!   `a_kij = G^2 / (2 G^2 + (sum_ij A_kij) G^3 + 1e-6)` (0 where `G = 0`),
//!   `w_k = sum_ij a_kij relu(G_kij)`.
//!
//! and the map is `relu(sum_k w_k A_k)`, scaled to [0, 1], bilinearly upsampled to the input
//! size (half-pixel centres: `F.interpolate(align_corners=False)`, `cv2.resize`), then scaled
//! to [0, 1] again: the exact sequence of pytorch-grad-cam. Saliency (Simonyan et al.) is
//! `max_c |dy_c / dx|` over the input channels, scaled to [0, 1].
//!
//! Scaling is `(m - min) / (1e-7 + max(m - min))`, so an all-zero map stays zero.

use convnet_core::{Tensor, softmax};

use super::{check_image, gradients};
use crate::error::{Error, Result};
use crate::layers::Conv2d;
use crate::model::Model;

/// How to explain a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamMethod {
    GradCam,
    GradCamPlusPlus,
    Saliency,
}

impl CamMethod {
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::GradCamPlusPlus => "gradcam++",
            CamMethod::Saliency => "saliency",
        }
    }

    /// The title a picture shows.
    pub fn title(self) -> &'static str {
        match self {
            CamMethod::GradCam => "Grad-CAM",
            CamMethod::GradCamPlusPlus => "Grad-CAM++",
            CamMethod::Saliency => "saliency",
        }
    }
}

impl std::str::FromStr for CamMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gradcam" | "grad-cam" => Ok(CamMethod::GradCam),
            "gradcam++" | "grad-cam++" | "gradcampp" => Ok(CamMethod::GradCamPlusPlus),
            "saliency" => Ok(CamMethod::Saliency),
            _ => Err(Error::config(
                "method",
                format!("'{s}' is not one of gradcam, gradcam++, saliency"),
            )),
        }
    }
}

/// Why the model scored a class as it did, for one image.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub method: CamMethod,
    pub class: usize,
    /// The class score `y_c` (logit).
    pub score: f32,
    /// Softmax of the model's output.
    pub probabilities: Vec<f32>,
    /// The layer explained (CAM methods).
    pub layer: Option<usize>,
    /// Channel weights `w_k` (CAM methods; empty for saliency).
    pub weights: Vec<f32>,
    /// The map before scaling: `relu(sum_k w_k A_k)` at the layer's resolution `[h, w]`, or
    /// `max_c |dy_c/dx|` at the input's `[H, W]` for saliency.
    pub raw: Tensor,
    /// The map at the input's resolution `[H, W]`, in [0, 1]: what gets coloured.
    pub map: Tensor,
}

impl Explanation {
    pub fn probability(&self) -> f32 {
        self.probabilities[self.class]
    }
}

/// The last convolutional layer of `model` (Grad-CAM's usual choice).
pub fn last_conv_layer(model: &Model) -> Option<usize> {
    model.nodes().iter().rposition(|n| n.layer.is::<Conv2d>())
}

/// The class scores (`[K]`) of one image `[1, C, H, W]`.
pub fn scores(model: &mut Model, image: &Tensor) -> Result<Vec<f32>> {
    check_image(model, image)?;
    let logits = model.forward(image, crate::layers::ForwardCtx::eval(false))?;
    Ok(logits.into_data())
}

/// The indices of the `k` highest of `values`, highest first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Explain `class` for one normalized image `[1, C, H, W]`: a map of where the evidence for it
/// lies. `layer` (CAM methods) defaults to the last convolutional layer. The model's
/// parameter gradients are left at zero.
pub fn explain(
    model: &mut Model,
    image: &Tensor,
    class: usize,
    method: CamMethod,
    layer: Option<usize>,
) -> Result<Explanation> {
    let [_, h, w] = model.input_shape();
    if method == CamMethod::Saliency {
        let g = gradients(model, image, class, None, true)?;
        let dx = g.input.expect("input gradient requested");
        let raw = channel_abs_max(&dx, h * w);
        let map = scale01(&raw);
        return Ok(Explanation {
            method,
            class,
            score: g.score,
            probabilities: g.probabilities,
            layer: None,
            weights: Vec::new(),
            raw: Tensor::new([h, w], raw)?,
            map: Tensor::new([h, w], map)?,
        });
    }
    let layer = match layer {
        Some(l) => l,
        None => last_conv_layer(model).ok_or_else(|| {
            Error::model("the model has no convolutional layer; choose a layer to explain")
        })?,
    };
    let node = model
        .nodes()
        .get(layer)
        .ok_or_else(|| Error::model(format!("no layer {layer}")))?;
    let [k, lh, lw] = match node.output_shape[..] {
        [k, lh, lw] => [k, lh, lw],
        ref s => {
            return Err(Error::model(format!(
                "{} cannot explain layer '{}': its output {s:?} has no spatial axes; choose a \
                 layer with [C, H, W] output (a convolution, activation or pooling layer)",
                method.title(),
                node.name
            )));
        }
    };
    let g = gradients(model, image, class, Some(layer), false)?;
    let (acts, grads) = (g.activations.expect("captured"), g.layer_grad);
    let plane = lh * lw;
    let a = acts.data();
    let weights: Vec<f32> = match &grads {
        // The score does not depend on the layer (cannot happen in a chain, but a branch
        // could): every weight is zero.
        None => vec![0.0; k],
        Some(gt) => {
            let gd = gt.data();
            (0..k)
                .map(|c| {
                    let gc = &gd[c * plane..(c + 1) * plane];
                    match method {
                        CamMethod::GradCam => gc.iter().sum::<f32>() / plane as f32,
                        _ => {
                            let sum_a: f32 = a[c * plane..(c + 1) * plane].iter().sum();
                            gc.iter()
                                .map(|&gv| {
                                    if gv == 0.0 {
                                        return 0.0;
                                    }
                                    let g2 = gv * gv;
                                    let g3 = g2 * gv;
                                    let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                                    alpha * gv.max(0.0)
                                })
                                .sum()
                        }
                    }
                })
                .collect()
        }
    };
    let mut cam = vec![0.0f32; plane];
    for (c, &wk) in weights.iter().enumerate() {
        for (m, &av) in cam.iter_mut().zip(&a[c * plane..(c + 1) * plane]) {
            *m += wk * av;
        }
    }
    for m in &mut cam {
        *m = m.max(0.0);
    }
    let scaled = scale01(&cam);
    let up = resize_bilinear(&scaled, [lh, lw], [h, w]);
    let map = scale01(&up);
    Ok(Explanation {
        method,
        class,
        score: g.score,
        probabilities: g.probabilities,
        layer: Some(layer),
        weights,
        raw: Tensor::new([lh, lw], cam)?,
        map: Tensor::new([h, w], map)?,
    })
}

/// Softmax of a score vector.
pub(crate) fn probabilities(scores: &Tensor) -> Result<Vec<f32>> {
    Ok(softmax(scores)?.into_data())
}

/// `max_c |g[c, i]|` for one image's gradient `[1, C, H*W]`.
fn channel_abs_max(g: &Tensor, plane: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; plane];
    for ch in g.data().chunks_exact(plane) {
        for (o, &v) in out.iter_mut().zip(ch) {
            *o = o.max(v.abs());
        }
    }
    out
}

/// `(m - min) / (1e-7 + max(m - min))`.
pub fn scale01(m: &[f32]) -> Vec<f32> {
    let min = m.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f32> = m.iter().map(|&v| v - min).collect();
    let max = shifted.iter().copied().fold(0.0f32, f32::max);
    shifted.iter().map(|&v| v / (1e-7 + max)).collect()
}

/// Bilinear resize of one plane with half-pixel centres (PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`, OpenCV's `INTER_LINEAR` when
/// enlarging).
pub fn resize_bilinear(src: &[f32], [ih, iw]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f32> {
    // Source index and weight of the second neighbour, per output coordinate.
    fn axis(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|o| {
                let s = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (s as usize).min(input - 1);
                let i1 = (i0 + 1).min(input - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    }
    if ih == 0 || iw == 0 {
        return vec![0.0; oh * ow];
    }
    let ys = axis(ih, oh);
    let xs = axis(iw, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, ly) in &ys {
        let (r0, r1) = (&src[y0 * iw..(y0 + 1) * iw], &src[y1 * iw..(y1 + 1) * iw]);
        for &(x0, x1, lx) in &xs {
            let top = (1.0 - lx) * r0[x0] + lx * r0[x1];
            let bottom = (1.0 - lx) * r1[x0] + lx * r1[x1];
            out.push((1.0 - ly) * top + ly * bottom);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_half_pixel_bilinear_by_hand() {
        // 2 -> 4 along x: src = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped.
        let out = resize_bilinear(&[0.0, 1.0], [1, 2], [1, 4]);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // Same size is the identity.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(resize_bilinear(&src, [3, 4], [3, 4]), src);
    }

    #[test]
    fn scale01_maps_to_unit_range_and_keeps_zero_maps() {
        let s = scale01(&[2.0, 4.0, 3.0]);
        assert!((s[0]).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6 && (s[2] - 0.5).abs() < 1e-6);
        assert_eq!(scale01(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn top_k_orders_by_value_then_index() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, 0.2], 3), vec![1, 2, 3]);
    }
}
