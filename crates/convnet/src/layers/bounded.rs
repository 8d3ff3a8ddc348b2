//! The size bound of outputs that a layer's settings make larger than its input (resize,
//! pad, transposed convolution): checked where the output shape is computed, so that a
//! model file's sizes are refused before anything is allocated from them.

use convnet_core::tensor::MAX_TENSOR_ELEMENTS;

use crate::error::Result;

/// `dims`, or `TooLarge` naming `op` and the `param` that sizes it when `dims` would hold
/// more than [`MAX_TENSOR_ELEMENTS`] values.
pub(crate) fn bounded(
    op: &'static str,
    param: &'static str,
    dims: Vec<usize>,
) -> Result<Vec<usize>> {
    let values = dims
        .iter()
        .try_fold(1u128, |a, &d| a.checked_mul(d as u128));
    match values {
        Some(v) if v <= MAX_TENSOR_ELEMENTS as u128 => Ok(dims),
        _ => Err(convnet_core::Error::TooLarge {
            op,
            param,
            reason: format!(
                "the output {dims:?} would hold {} values, more than the \
                 {MAX_TENSOR_ELEMENTS} one tensor may hold",
                values.map_or("more".to_string(), |v| v.to_string())
            ),
        }
        .into()),
    }
}
