//! Seeing inside a model: feature maps, learned kernels, class-activation maps and activation
//! maximization. Everything here returns tensors; [`crate::render`] turns them into pictures.
//!
//! Images are one normalized sample `[1, C, H, W]` of the model's input shape (see
//! [`crate::data::Normalization`]); layers are node indices ([`Model::node_index`] finds one
//! by name, with an error that lists the names).

mod cam;
mod maximize;

pub use cam::{
    CamMethod, Explanation, explain, last_conv_layer, resize_bilinear, scale01, scores, top_k,
};
pub use maximize::{MAX_STEPS, MaximizeConfig, Maximized, Parameterization, maximize};

use convnet_core::Tensor;

use crate::error::{Error, Result};
use crate::layers::{Conv2d, ForwardCtx};
use crate::model::{BackwardRequest, Model};

/// The outputs of `layers` for one image, each without the batch axis (`[C, h, w]` for image
/// layers).
pub fn feature_maps(model: &mut Model, image: &Tensor, layers: &[usize]) -> Result<Vec<Tensor>> {
    check_image(model, image)?;
    let (_, maps) = model.forward_capture(image, ForwardCtx::eval(false), layers)?;
    maps.into_iter()
        .map(|t| {
            let dims = t.dims()[1..].to_vec();
            Ok(t.reshape(dims)?)
        })
        .collect()
}

/// The kernels of a convolutional layer, `[out_channels, in_channels / groups, kh, kw]`.
pub fn kernels(model: &Model, layer: usize) -> Result<Tensor> {
    let node = model
        .nodes()
        .get(layer)
        .ok_or_else(|| Error::model(format!("no layer {layer}")))?;
    match node.layer.downcast_ref::<Conv2d>() {
        Some(conv) => Ok(conv.weight().value.clone()),
        None => {
            let convs: Vec<&str> = model
                .nodes()
                .iter()
                .filter(|n| n.layer.is::<Conv2d>())
                .map(|n| n.name.as_str())
                .collect();
            Err(Error::model(format!(
                "layer '{}' is a {} layer and has no kernels; the convolutional layers are: {}",
                node.name,
                node.kind,
                if convs.is_empty() {
                    "(none)".to_string()
                } else {
                    convs.join(", ")
                }
            )))
        }
    }
}

/// An image that fits the model: `[1, C, H, W]` with the model's `[C, H, W]`.
pub(crate) fn check_image(model: &Model, image: &Tensor) -> Result<()> {
    let want = model.input_shape();
    match image.dims() {
        [1, c, h, w] if [*c, *h, *w] == want => Ok(()),
        dims => Err(Error::model(format!(
            "the model takes one image of [C, H, W] = {want:?} (a batch [1, {}, {}, {}]), got \
             a tensor of shape {dims:?}",
            want[0], want[1], want[2]
        ))),
    }
}

/// What one backward pass from a class score gives.
pub(crate) struct ClassGradients {
    pub score: f32,
    pub probabilities: Vec<f32>,
    /// The captured layer's output for the image (without batch axis).
    pub activations: Option<Tensor>,
    /// `d score / d layer output` (without batch axis); `None` if the score does not depend
    /// on the layer.
    pub layer_grad: Option<Tensor>,
    /// `d score / d input`, `[1, C, H, W]`.
    pub input: Option<Tensor>,
}

/// Forward one image, then backward from the score of `class`, capturing `layer`'s output and
/// gradient and (if `input`) the input gradient. Leaves the parameter gradients at zero and
/// nothing recorded.
pub(crate) fn gradients(
    model: &mut Model,
    image: &Tensor,
    class: usize,
    layer: Option<usize>,
    input: bool,
) -> Result<ClassGradients> {
    check_image(model, image)?;
    let out_dims = model.output_shape().to_vec();
    let classes = match out_dims[..] {
        [k] => k,
        ref s => {
            return Err(Error::model(format!(
                "the model's output {s:?} is not a vector of class scores"
            )));
        }
    };
    if class >= classes {
        return Err(Error::model(format!(
            "class {class} is out of range: the model has {classes} classes (0..={})",
            classes - 1
        )));
    }
    let capture: Vec<usize> = layer.into_iter().collect();
    let result = (|| -> Result<ClassGradients> {
        let (logits, mut captured) =
            model.forward_capture(image, ForwardCtx::eval(true), &capture)?;
        let probabilities = cam::probabilities(&logits)?;
        let score = logits.data()[class];
        let mut seed = Tensor::zeros([1, classes])?;
        seed.data_mut()[class] = 1.0;
        let back = model.backward_with(
            &seed,
            &BackwardRequest {
                input,
                capture: &capture,
                params: false,
            },
        )?;
        let strip = |t: Tensor| -> Result<Tensor> {
            let dims = t.dims()[1..].to_vec();
            Ok(t.reshape(dims)?)
        };
        Ok(ClassGradients {
            score,
            probabilities,
            activations: captured.pop().map(strip).transpose()?,
            layer_grad: back
                .captured
                .into_iter()
                .next()
                .flatten()
                .map(strip)
                .transpose()?,
            input: back.input,
        })
    })();
    model.zero_grad();
    model.clear();
    result
}
