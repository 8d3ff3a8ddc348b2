//! The layer shorthand of `convnet shape` (`conv:6:5x5:s1:same`, `pool:max:2x2`, `relu`, ...):
//! each kind reads its own form ([`crate::layers::read_shorthand`]).

use super::ModelSpec;
use crate::error::{Error, Result};
use crate::layers::read_shorthand;

/// The model of a layer list in `convnet shape`'s shorthand on a per-sample input `[C, H, W]`.
pub fn shorthand_model(input: [usize; 3], layers: &[String]) -> Result<ModelSpec> {
    let mut spec = ModelSpec::new(input);
    for (i, text) in layers.iter().enumerate() {
        let kind = read_shorthand(text)
            .map_err(|e| Error::model(format!("layer {} ('{text}'): {e}", i + 1)))?;
        spec = spec.layer((i + 1).to_string(), kind);
    }
    Ok(spec)
}

/// `HxWxC` (as the documentation writes image sizes) to `[C, H, W]`.
pub fn parse_hwc(text: &str) -> Result<[usize; 3]> {
    let parts: Vec<usize> = text
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::config("input", format!("'{text}' is not HxWxC (e.g. 32x32x3)")))?;
    match parts.as_slice() {
        [h, w, c] if *h > 0 && *w > 0 && *c > 0 => Ok([*c, *h, *w]),
        [h, w] if *h > 0 && *w > 0 => Ok([1, *h, *w]),
        _ => Err(Error::config(
            "input",
            format!("'{text}' is not HxWxC with sizes of at least 1 (e.g. 32x32x3)"),
        )),
    }
}
