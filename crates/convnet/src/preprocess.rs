//! How an image file becomes a model's input: the preprocessing a checkpoint stores
//! ([`Preprocessing`], `checkpoint.json`'s `preprocessing`) and the one function every verb
//! that reads images for a model goes through ([`read_image`]).
//!
//! The steps are torchvision's, in its order, on the decoded picture:
//!
//! 1. converted to the model's colour (luma or RGB, as [`crate::image::to_planes`]);
//! 2. resized ([`Resize`]): the shorter side to N pixels with the longer in proportion
//!    (`Resize(N)`: the longer side is `floor(N * long / short)`), or to an exact height x
//!    width (`Resize((H, W))`), with the `image` crate's triangle filter, which like PIL's
//!    bilinear filter widens with the scale when shrinking (antialiased); an image already
//!    of that size is kept as it is;
//! 3. center-cropped to height x width (`CenterCrop`: the top-left corner at
//!    `round((size - crop) / 2)`, halves rounded to even as Python's `round`);
//! 4. put in the model's channel order (RGB, or BGR for models trained on OpenCV's order);
//! 5. normalized: `(pixel / 255 - mean[c]) / std[c]` ([`Normalization`]).
//!
//! A checkpoint without a stored preprocessing means what it meant before there was one:
//! the image resized (squashed) to the model's input size, RGB ([`Preprocessing::squash`]).

use std::path::Path;

use convnet_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::Result;
use crate::image::{self, Color, ImageError, MAX_PIXELS, MAX_SIDE};

/// How the picture is resized before the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// The shorter side to this many pixels, the longer in proportion (torchvision's
    /// `Resize(N)`); `{"shorter_side": 256}` in `checkpoint.json`.
    ShorterSide(usize),
    /// Exactly height x width, the aspect ratio not kept (`Resize((H, W))`);
    /// `{"size": [224, 224]}`.
    Size([usize; 2]),
}

/// The order of a colour model's input channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    /// Red, green, blue (PIL's and torchvision's).
    #[default]
    Rgb,
    /// Blue, green, red (OpenCV's, Caffe models').
    Bgr,
}

/// How images are turned into a model's input, besides the normalization (which the
/// checkpoint keeps in `normalization`, in the model's channel order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    pub resize: Resize,
    /// Center crop height x width after the resize (none: the resized image is the input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[usize; 2]>,
    #[serde(default)]
    pub channel_order: ChannelOrder,
}

impl Preprocessing {
    /// What a checkpoint without a stored preprocessing means: resized (squashed) to the
    /// model's input `[H, W]`, no crop, RGB.
    pub fn squash(size: [usize; 2]) -> Self {
        Preprocessing {
            resize: Resize::Size(size),
            crop: None,
            channel_order: ChannelOrder::Rgb,
        }
    }

    /// torchvision's ImageNet evaluation: the shorter side to `resize`, then a center crop
    /// of `crop` x `crop`, RGB.
    pub fn resize_and_crop(resize: usize, crop: usize) -> Self {
        Preprocessing {
            resize: Resize::ShorterSide(resize),
            crop: Some([crop, crop]),
            channel_order: ChannelOrder::Rgb,
        }
    }

    /// Whether this description can make inputs `[C, H, W]` = `input`: sizes of 1 to
    /// [`MAX_SIDE`], a crop no larger than the resized image, a result of the model's size,
    /// and BGR only for 3 channels. The message names the field (`preprocessing.crop`, ...).
    pub fn check(&self, input: [usize; 3]) -> std::result::Result<(), String> {
        let [c, h, w] = input;
        let side = |field: &str, v: usize| {
            if (1..=MAX_SIDE as usize).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "preprocessing.{field}: {v} pixels (a side is 1 to {MAX_SIDE})"
                ))
            }
        };
        let (limit, what) = match self.resize {
            Resize::ShorterSide(n) => {
                side("resize.shorter_side", n)?;
                ([n, n], format!("its shorter side is {n} pixels"))
            }
            Resize::Size([rh, rw]) => {
                side("resize.size", rh)?;
                side("resize.size", rw)?;
                ([rh, rw], format!("{rh}x{rw}"))
            }
        };
        let result = match (self.crop, self.resize) {
            (Some([ch, cw]), _) => {
                side("crop", ch)?;
                side("crop", cw)?;
                if ch > limit[0] || cw > limit[1] {
                    return Err(format!(
                        "preprocessing.crop: {ch}x{cw} is larger than the resized image \
                         ({what})"
                    ));
                }
                [ch, cw]
            }
            (None, Resize::Size(size)) => size,
            (None, Resize::ShorterSide(n)) => {
                return Err(format!(
                    "preprocessing.resize: the shorter side to {n} gives images of every aspect \
                     ratio; the model takes {h}x{w}: add a crop (preprocessing.crop) of {h}x{w}"
                ));
            }
        };
        if result != [h, w] {
            let field = if self.crop.is_some() {
                "crop"
            } else {
                "resize.size"
            };
            return Err(format!(
                "preprocessing.{field}: makes {}x{} images but the model takes {h}x{w}",
                result[0], result[1]
            ));
        }
        if self.channel_order == ChannelOrder::Bgr && c != 3 {
            return Err(format!(
                "preprocessing.channel_order: bgr orders 3 colour channels; the model takes \
                 {c}-channel images"
            ));
        }
        Ok(())
    }

    /// The size `[H, W]` a picture of `[height, width]` is resized to (torchvision's rule
    /// for `Resize(N)`: the longer side `floor(N * long / short)`).
    pub fn resized_size(&self, [height, width]: [usize; 2]) -> [usize; 2] {
        match self.resize {
            Resize::Size(size) => size,
            Resize::ShorterSide(n) => {
                let (short, long) = (height.min(width).max(1), height.max(width));
                // Exact in integers: `N * long / short` is never within a rounding step of
                // the next integer for sides within MAX_SIDE, so Python's float agrees.
                let long = (n as u128 * long as u128 / short as u128)
                    .try_into()
                    .unwrap_or(usize::MAX);
                if width <= height {
                    [long, n]
                } else {
                    [n, long]
                }
            }
        }
    }

    /// A short description: `resize 256 (shorter side), crop 224x224, RGB`.
    pub fn describe(&self) -> String {
        let resize = match self.resize {
            Resize::ShorterSide(n) => format!("resize {n} (shorter side)"),
            Resize::Size([h, w]) => format!("resize {h}x{w}"),
        };
        let crop = self
            .crop
            .map_or(String::new(), |[h, w]| format!(", crop {h}x{w}"));
        let order = match self.channel_order {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
        };
        format!("{resize}{crop}, {order}")
    }
}

/// The top-left corner of a `crop` centered in `size` (torchvision's `CenterCrop`:
/// `int(round((size - crop) / 2))`, Python's `round`, which rounds halves to even).
///
/// # Panics
/// If the crop is larger than `size` on an axis.
pub fn center_crop_origin(size: [usize; 2], crop: [usize; 2]) -> [usize; 2] {
    let origin = |size: usize, crop: usize| {
        let diff = size
            .checked_sub(crop)
            .expect("center_crop_origin: crop larger than the image");
        let half = diff / 2;
        // diff / 2 = half + 0.5 when diff is odd: to the even one of half, half + 1.
        if diff % 2 == 1 && half % 2 == 1 {
            half + 1
        } else {
            half
        }
    };
    [origin(size[0], crop[0]), origin(size[1], crop[1])]
}

/// The `[C, H, W]` window at `origin` of size `crop` of `planes` (`[C, H, W]` = `dims`).
///
/// # Panics
/// If the window does not lie within the planes.
pub fn crop_planes(
    planes: &[u8],
    [c, h, w]: [usize; 3],
    origin: [usize; 2],
    crop: [usize; 2],
) -> Vec<u8> {
    let ([top, left], [ch, cw]) = (origin, crop);
    assert!(
        top + ch <= h && left + cw <= w && planes.len() == c * h * w,
        "crop_planes: {ch}x{cw} at ({top}, {left}) is not within {c}x{h}x{w}"
    );
    let mut out = Vec::with_capacity(c * ch * cw);
    for plane in planes.chunks_exact(h * w) {
        for row in plane[top * w..].chunks_exact(w).take(ch) {
            out.extend_from_slice(&row[left..left + cw]);
        }
    }
    out
}

/// One image made ready for a model.
#[derive(Debug, Clone)]
pub struct ModelImage {
    /// The picture the model sees, before normalization: `[C, H, W]` bytes at the model's
    /// input size (resized and cropped), in display order (gray, or RGB even for a BGR
    /// model), for pictures drawn over it.
    pub pixels: Vec<u8>,
    /// The model's input `[1, C, H, W]`: `pixels` in the model's channel order, normalized.
    pub input: Tensor,
}

/// The image file `path` as the input of a model taking `[C, H, W]` = `dims` images, through
/// `preprocessing` (checked against `dims` first) and `normalization` (see the module
/// documentation). Errors name the file; an image whose resized size would be larger than
/// images are read (at most [`MAX_SIDE`] a side and [`MAX_PIXELS`] pixels: a long strip
/// whose shorter side is enlarged) is refused before it is resized.
pub fn read_image(
    path: &Path,
    dims: [usize; 3],
    preprocessing: &Preprocessing,
    normalization: &Normalization,
) -> Result<ModelImage> {
    let pixels = read_pixels(path, dims, preprocessing)?;
    let model_order = to_model_order(&pixels, dims, preprocessing.channel_order);
    let input = normalization.to_input(&model_order, dims)?;
    Ok(ModelImage { pixels, input })
}

/// [`read_image`]'s pixels: the picture resized and cropped, in display order.
pub fn read_pixels(
    path: &Path,
    dims: [usize; 3],
    preprocessing: &Preprocessing,
) -> Result<Vec<u8>> {
    let [c, _, _] = dims;
    preprocessing
        .check(dims)
        .map_err(|e| crate::Error::config("preprocessing", e))?;
    let color = Color::from_channels(c).ok_or(ImageError::Channels { channels: c })?;
    let img = image::decode(path)?;
    let (height, width) = (img.height() as usize, img.width() as usize);
    let [rh, rw] = preprocessing.resized_size([height, width]);
    if rh > MAX_SIDE as usize || rw > MAX_SIDE as usize || (rh as u64) * (rw as u64) > MAX_PIXELS {
        return Err(ImageError::Resized {
            path: path.to_path_buf(),
            from: [height, width],
            to: [rh, rw],
        }
        .into());
    }
    let mut resized = vec![0; c * rh * rw];
    image::resize_planes(
        &image::to_planes(&img, color),
        [c, height, width],
        [rh, rw],
        &mut resized,
    );
    Ok(match preprocessing.crop {
        None => resized,
        Some(crop) => crop_planes(
            &resized,
            [c, rh, rw],
            center_crop_origin([rh, rw], crop),
            crop,
        ),
    })
}

/// `[C, H, W]` pixels (display order) in the model's channel order: planes 0 and 2 swapped
/// for BGR (a swap is its own inverse, so this also turns a BGR model's pixels back).
pub fn to_model_order<T: Copy>(pixels: &[T], dims: [usize; 3], order: ChannelOrder) -> Vec<T> {
    let mut out = pixels.to_vec();
    if order == ChannelOrder::Bgr && dims[0] == 3 {
        let plane = dims[1] * dims[2];
        let (first, rest) = out.split_at_mut(plane);
        first.copy_from_slice(&pixels[2 * plane..3 * plane]);
        rest[plane..].copy_from_slice(&pixels[..plane]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_crop_rounds_half_to_even_as_python() {
        // (size - crop) / 2 = 0.5, 1.5, 2.5, 3.5 -> 0, 2, 2, 4.
        let tops: Vec<usize> = [1, 3, 5, 7]
            .iter()
            .map(|d| center_crop_origin([10 + d, 10], [10, 10])[0])
            .collect();
        assert_eq!(tops, [0, 2, 2, 4]);
        assert_eq!(center_crop_origin([256, 384], [224, 224]), [16, 80]);
    }

    #[test]
    fn shorter_side_resize_keeps_the_aspect_ratio_as_torchvision() {
        let p = Preprocessing::resize_and_crop(256, 224);
        // chelsea.png is 451 wide, 300 high: int(256 * 451 / 300) = 384.
        assert_eq!(p.resized_size([300, 451]), [256, 384]);
        assert_eq!(p.resized_size([451, 300]), [384, 256]);
        assert_eq!(p.resized_size([400, 400]), [256, 256]);
        // int(256 * 600 / 400) = 384; int(256 * 1000 / 3) = 85333.
        assert_eq!(p.resized_size([400, 600]), [256, 384]);
        assert_eq!(p.resized_size([3, 1000]), [256, 85333]);
    }

    #[test]
    fn checks_name_the_field() {
        let input = [3, 224, 224];
        assert!(
            Preprocessing::resize_and_crop(256, 224)
                .check(input)
                .is_ok()
        );
        assert!(Preprocessing::squash([224, 224]).check(input).is_ok());
        let cases = [
            (
                Preprocessing::resize_and_crop(0, 224),
                "resize.shorter_side",
            ),
            (
                Preprocessing::resize_and_crop(200, 224),
                "crop: 224x224 is larger",
            ),
            (
                Preprocessing::resize_and_crop(256, 200),
                "crop: makes 200x200",
            ),
            (
                Preprocessing::squash([224, 200]),
                "resize.size: makes 224x200",
            ),
            (
                Preprocessing::squash([224, 1 << 20]),
                "resize.size: 1048576",
            ),
        ];
        for (p, says) in cases {
            let err = p.check(input).unwrap_err();
            assert!(err.contains(&format!("preprocessing.{says}")), "{err}");
        }
        let no_crop = Preprocessing {
            crop: None,
            ..Preprocessing::resize_and_crop(224, 224)
        };
        assert!(no_crop.check(input).unwrap_err().contains("add a crop"));
        let bgr = Preprocessing {
            channel_order: ChannelOrder::Bgr,
            ..Preprocessing::squash([28, 28])
        };
        assert!(bgr.check([3, 28, 28]).is_ok());
        let err = bgr.check([1, 28, 28]).unwrap_err();
        assert!(err.contains("preprocessing.channel_order"), "{err}");
    }

    #[test]
    fn bgr_swaps_the_first_and_last_planes() {
        let rgb = [1, 1, 2, 2, 3, 3];
        assert_eq!(
            to_model_order(&rgb, [3, 1, 2], ChannelOrder::Bgr),
            [3, 3, 2, 2, 1, 1]
        );
        assert_eq!(to_model_order(&rgb, [3, 1, 2], ChannelOrder::Rgb), rgb);
    }

    #[test]
    fn crop_takes_the_window_of_every_plane() {
        // 2 planes of 3x4, values 0..24.
        let planes: Vec<u8> = (0..24).collect();
        assert_eq!(
            crop_planes(&planes, [2, 3, 4], [1, 1], [2, 2]),
            [5, 6, 9, 10, 17, 18, 21, 22]
        );
    }
}
