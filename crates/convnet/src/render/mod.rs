//! Pictures of what [`crate::inspect`] and training compute: grids of feature maps and
//! kernels, class-activation overlays, training curves and confusion matrices. Everything
//! returns an [`RgbImage`]; the caller decides where it goes.
//!
//! Text is drawn with plotters and an embedded DejaVu Sans (ASCII and Latin-1 subset, see
//! `assets/README.md`), so pictures look the same on every machine.
//!
//! No picture's size follows its input: every picture is at most [`MAX_SIDE`] pixels on a
//! side (layouts shrink their tiles or cells to fit, and [`Canvas::new`] never makes a larger
//! one), a grid shows at most [`MAX_TILES`] tiles (callers with more say which they show),
//! and names, labels and titles are shortened ([`crate::names::shorten`]) before they are
//! measured or drawn.

mod colormap;
#[rustfmt::skip]
mod colormap_data;
mod plot;

pub use colormap::Colormap;
pub use image::RgbImage;
pub use plot::{MAX_CONFUSION_CLASSES, confusion_matrix, curves};

use std::path::Path;
use std::sync::Once;

use convnet_core::Tensor;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::inspect::resize_bilinear;
use crate::names;

/// Refuse, before any work, a picture path that is not `.png` or whose folder is missing.
pub fn check_png(path: &Path) -> Result<()> {
    crate::files::check_output(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !ext.eq_ignore_ascii_case("png") {
        return Err(Error::write(
            path,
            "pictures are written as PNG; name the file .png",
        ));
    }
    Ok(())
}

/// `img` as the bytes of a PNG file (`path` names the file they are for, in the error).
pub fn png_bytes(path: &Path, img: &RgbImage) -> Result<Vec<u8>> {
    crate::image::encode(path, |out| img.write_to(out, image::ImageFormat::Png))
}

/// Write `img` as the PNG file `path`, atomically ([`crate::files::write_atomic`]).
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    check_png(path)?;
    crate::files::write_atomic(path, &png_bytes(path, img)?)
}

/// The largest side of any picture, in pixels (a 4096 x 4096 RGB picture is 48 MiB).
pub const MAX_SIDE: u32 = 4096;
/// The most tiles one grid shows.
pub const MAX_TILES: usize = 1024;
/// The longest tile label or caption drawn, in characters.
const LABEL_CHARS: usize = 32;
/// The longest title drawn, in characters.
const TITLE_CHARS: usize = 160;
/// The longest note under a title, in characters.
const NOTE_CHARS: usize = 240;
/// The smallest tile a grid shrinks to, in pixels.
const MIN_TILE: u32 = 8;

/// `text` cut to at most `max` characters by [`names::shorten`], its ellipsis spelled `...`:
/// the embedded font has no '…'.
fn shorten(text: &str, max: usize) -> String {
    names::shorten(text, max).replace('…', "...")
}

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FONT_FAMILY: &str = "sans-serif";

/// Register the embedded font with plotters (once).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_err() {
            // The font is part of the binary and checked by a test: unreachable in practice.
            // Text then fails to draw with an error rather than a panic.
        }
    });
}

fn drawing_error(e: impl std::fmt::Display) -> Error {
    Error::model(format!("cannot draw the picture: {e}"))
}

/// Where a text's anchor point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    TopLeft,
    TopCenter,
    CenterLeft,
    Center,
    CenterRight,
}

const TEXT: [u8; 3] = [30, 30, 30];
const MUTED: [u8; 3] = [110, 110, 110];

/// An RGB picture being composed: a white page, tiles and text.
pub struct Canvas {
    image: RgbImage,
}

impl Canvas {
    /// A white page of `width x height`, each cut to `1..=MAX_SIDE` (what falls outside is
    /// not drawn).
    pub fn new(width: u32, height: u32) -> Self {
        register_font();
        let side = |s: u32| s.clamp(1, MAX_SIDE);
        Canvas {
            image: RgbImage::from_pixel(side(width), side(height), image::Rgb([255, 255, 255])),
        }
    }

    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, rgb: [u8; 3]) {
        for yy in y..y.saturating_add(h).min(self.height()) {
            for xx in x..x.saturating_add(w).min(self.width()) {
                self.image.put_pixel(xx, yy, image::Rgb(rgb));
            }
        }
    }

    /// Copy `tile` with its top-left corner at `(x, y)`.
    pub fn blit(&mut self, tile: &RgbImage, x: u32, y: u32) {
        for (tx, ty, p) in tile.enumerate_pixels() {
            let (px, py) = (x.saturating_add(tx), y.saturating_add(ty));
            if px < self.width() && py < self.height() {
                self.image.put_pixel(px, py, *p);
            }
        }
    }

    fn style(size: f64, rgb: [u8; 3], anchor: Anchor) -> TextStyle<'static> {
        let pos = match anchor {
            Anchor::TopLeft => Pos::new(HPos::Left, VPos::Top),
            Anchor::TopCenter => Pos::new(HPos::Center, VPos::Top),
            Anchor::CenterLeft => Pos::new(HPos::Left, VPos::Center),
            Anchor::Center => Pos::new(HPos::Center, VPos::Center),
            Anchor::CenterRight => Pos::new(HPos::Right, VPos::Center),
        };
        TextStyle {
            font: (FONT_FAMILY, size).into_font(),
            color: RGBColor(rgb[0], rgb[1], rgb[2]).to_backend_color(),
            pos,
        }
    }

    /// Draw `text` of height `size` pixels anchored at `(x, y)`.
    pub fn text(
        &mut self,
        text: &str,
        x: i32,
        y: i32,
        size: f64,
        rgb: [u8; 3],
        anchor: Anchor,
    ) -> Result<()> {
        self.text_rotated(text, x, y, size, rgb, anchor, false)
    }

    /// [`Canvas::text`], optionally turned a quarter counter-clockwise (reading upwards).
    #[allow(clippy::too_many_arguments)]
    pub fn text_rotated(
        &mut self,
        text: &str,
        x: i32,
        y: i32,
        size: f64,
        rgb: [u8; 3],
        anchor: Anchor,
        rotated: bool,
    ) -> Result<()> {
        let (w, h) = self.image.dimensions();
        let mut style = Self::style(size, rgb, anchor);
        if rotated {
            style = style.transform(FontTransform::Rotate270);
        }
        let root = BitMapBackend::with_buffer(self.image.as_mut(), (w, h)).into_drawing_area();
        root.draw_text(text, &style, (x, y))
            .map_err(drawing_error)?;
        root.present().map_err(drawing_error)
    }

    /// Width in pixels of `text` at `size`.
    pub fn text_width(text: &str, size: f64) -> u32 {
        register_font();
        let style = Self::style(size, TEXT, Anchor::TopLeft);
        let mut buf = [0u8; 3];
        let root = BitMapBackend::with_buffer(&mut buf, (1, 1)).into_drawing_area();
        root.estimate_text_size(text, &style)
            .map_or(text.len() as u32 * size as u32 / 2, |s| s.0)
    }

    pub fn into_image(self) -> RgbImage {
        self.image
    }
}

/// One plane `[h, w]` coloured with `map`, values `lo..hi` spanning the map (a flat plane
/// gets the map's low end).
pub fn colorize(plane: &[f32], [h, w]: [usize; 2], map: Colormap, lo: f32, hi: f32) -> RgbImage {
    let span = hi - lo;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = plane[y as usize * w + x as usize];
        let t = if span > 0.0 { (v - lo) / span } else { 0.0 };
        image::Rgb(map.rgb(t))
    })
}

/// A picture `[C, H, W]` of values in [0, 1] (1 channel: grey; 3: RGB; else the first).
pub fn to_rgb(image: &Tensor) -> Result<RgbImage> {
    let (c, h, w) = match image.dims() {
        [c, h, w] => (*c, *h, *w),
        d => {
            return Err(Error::model(format!(
                "a picture needs [C, H, W], got {d:?}"
            )));
        }
    };
    if c == 0 {
        return Err(Error::model("a picture needs at least one channel"));
    }
    let d = image.data();
    let plane = h * w;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let v = |ch: usize| (d[ch * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8;
        if c == 3 {
            image::Rgb([v(0), v(1), v(2)])
        } else {
            image::Rgb([v(0); 3])
        }
    }))
}

/// Nearest-neighbour resize (crisp pixels for small maps); an empty image stays blank.
pub fn resize_nearest(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    if iw == 0 || ih == 0 {
        return RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    }
    RgbImage::from_fn(w, h, |x, y| {
        let sx = ((u64::from(x) * u64::from(iw)) / u64::from(w)) as u32;
        let sy = ((u64::from(y) * u64::from(ih)) / u64::from(h)) as u32;
        *img.get_pixel(sx.min(iw - 1), sy.min(ih - 1))
    })
}

/// `(w, h)` scaled so that the larger side is `side`, neither below 1.
fn fit(w: u32, h: u32, side: u32) -> (u32, u32) {
    let scale = f64::from(side) / f64::from(w.max(h).max(1));
    let scaled = |v: u32| ((f64::from(v) * scale).round() as u32).clamp(1, side.max(1));
    (scaled(w), scaled(h))
}

/// The display size of a tile whose largest side is `side`: at least `min`, an integer
/// multiple when enlarging.
fn display_side(side: usize, min: u32, max: u32) -> u32 {
    let side = side.max(1) as u32;
    if side >= min {
        side.min(max)
    } else {
        side * min.div_ceil(side)
    }
}

/// A labelled tile of a grid.
pub struct Tile {
    pub image: RgbImage,
    pub label: String,
}

/// Tiles in a grid (`cols` columns), each shown at `side` x `side` pixels (less if the grid
/// would be wider or taller than [`MAX_SIDE`]) with its label under it, and a title line on
/// top. At most [`MAX_TILES`] tiles.
pub fn grid(tiles: &[Tile], cols: usize, side: u32, title: &str, note: &str) -> Result<RgbImage> {
    if tiles.len() > MAX_TILES {
        return Err(Error::model(format!(
            "a grid of {} tiles; at most {MAX_TILES} fit in one picture",
            tiles.len()
        )));
    }
    let (title, note) = (shorten(title, TITLE_CHARS), shorten(note, NOTE_CHARS));
    let cols = cols.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let gap = 6u32;
    let label_h = if tiles.iter().any(|t| !t.label.is_empty()) {
        16
    } else {
        0
    };
    let header = if note.is_empty() { 30 } else { 48 };
    // The largest side that keeps the grid within MAX_SIDE both ways.
    let fits_w = ((MAX_SIDE - gap) / cols as u32).saturating_sub(gap);
    let fits_h = ((MAX_SIDE - header - gap) / rows as u32).saturating_sub(label_h + gap);
    let side = side.min(fits_w).min(fits_h);
    if side < MIN_TILE {
        return Err(Error::model(format!(
            "{} tiles in {cols} columns do not fit in a picture of {MAX_SIDE} pixels",
            tiles.len()
        )));
    }
    let cell_w = side + gap;
    let cell_h = side + label_h + gap;
    let width = (cols as u32 * cell_w + gap)
        .max(Canvas::text_width(&title, 16.0) + 2 * gap)
        .max(Canvas::text_width(&note, 12.0) + 2 * gap);
    let height = header + rows as u32 * cell_h + gap;
    let mut canvas = Canvas::new(width, height);
    canvas.text(&title, gap as i32, 8, 16.0, TEXT, Anchor::TopLeft)?;
    if !note.is_empty() {
        canvas.text(&note, gap as i32, 28, 12.0, MUTED, Anchor::TopLeft)?;
    }
    // About 6 pixels per character at 11 pixels.
    let label_chars = (cell_w as usize / 6).clamp(1, LABEL_CHARS);
    for (i, tile) in tiles.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        let x = gap + c * cell_w;
        let y = header + r * cell_h;
        let (tw, th) = tile.image.dimensions();
        let (dw, dh) = fit(tw, th, side);
        canvas.blit(
            &resize_nearest(&tile.image, dw, dh),
            x + (side - dw) / 2,
            y + (side - dh) / 2,
        );
        if !tile.label.is_empty() {
            canvas.text(
                &shorten(&tile.label, label_chars),
                (x + side / 2) as i32,
                (y + side + 2) as i32,
                11.0,
                MUTED,
                Anchor::TopCenter,
            )?;
        }
    }
    Ok(canvas.into_image())
}

/// How many of `count` things a picture shows (at most `max`), and a note saying so when not
/// all.
fn first_of(count: usize, max: usize, what: &str) -> (usize, String) {
    if count > max {
        (max, format!("; the first {max} {what} shown"))
    } else {
        (count, String::new())
    }
}

fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Every feature map `[K, h, w]` of a layer as a grid, each scaled to its own range with
/// viridis, after the input image `[C, H, W]` (values in [0, 1]).
pub fn feature_maps(input: &Tensor, maps: &Tensor, title: &str) -> Result<RgbImage> {
    let (k, h, w) = match maps.dims() {
        [k, h, w] => (*k, *h, *w),
        d => {
            return Err(Error::model(format!(
                "feature maps need a layer with [C, H, W] output, got {d:?}"
            )));
        }
    };
    if h * w == 0 {
        return Err(Error::model(format!(
            "feature maps of {h}x{w} have no pixels to show"
        )));
    }
    let (shown, more) = first_of(k, MAX_TILES - 1, "maps");
    let mut tiles = vec![Tile {
        image: to_rgb(input)?,
        label: "input".into(),
    }];
    for (i, plane) in maps.data().chunks_exact(h * w).take(shown).enumerate() {
        let (lo, hi) = min_max(plane);
        tiles.push(Tile {
            image: colorize(plane, [h, w], Colormap::Viridis, lo, hi),
            label: if hi > lo {
                i.to_string()
            } else {
                format!("{i} flat")
            },
        });
    }
    let side = display_side(h.max(w), 64, 192);
    let cols = ((shown + 1) as f64).sqrt().ceil() as usize;
    grid(
        &tiles,
        cols,
        side,
        title,
        &format!(
            "{k} maps of {h}x{w}, each scaled to its own range (viridis: dark = low, yellow = \
             high){more}"
        ),
    )
}

/// How kernel values map to colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelScale {
    /// One range for all filters: their strengths compare.
    Shared,
    /// Each filter on its own range: every pattern shows.
    Each,
}

/// The most filters (rows) and input channels (columns) [`kernels`] shows of a layer whose
/// filters are drawn one tile per input channel.
const MAX_KERNEL_ROWS: usize = 32;

/// Conv weights `[O, I, kh, kw]` as a grid: one RGB tile per filter for 3-channel inputs,
/// otherwise one tile per (filter, input channel), filters as rows. Signed values use a
/// diverging map (blue negative, white 0, red positive); RGB tiles map `-m..m` to `0..255`.
/// Layers with more filters (or channels) than a picture holds show the first ones, and say
/// so.
pub fn kernels(weights: &Tensor, scale: KernelScale, title: &str) -> Result<RgbImage> {
    let [o, i, kh, kw] = weights.dims4("kernels", "weights")?;
    let per_filter = i * kh * kw;
    let data = weights.data();
    let abs_max = |v: &[f32]| v.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
    let shared = abs_max(data);
    let range = |f: usize| match scale {
        KernelScale::Shared => shared,
        KernelScale::Each => abs_max(&data[f * per_filter..(f + 1) * per_filter]),
    };
    let side = display_side(kh.max(kw), 40, 96);
    let scale_note = match scale {
        KernelScale::Shared => format!("shared scale: +/-{}", crate::filter::format_number(shared)),
        KernelScale::Each => "each filter on its own scale".to_string(),
    };
    let plane = kh * kw;
    if i == 3 || i == 1 {
        // One labelled tile per filter.
        let (shown, more) = first_of(o, MAX_TILES, "filters");
        let tiles: Vec<Tile> = (0..shown)
            .map(|f| {
                let m = range(f);
                let w = &data[f * per_filter..(f + 1) * per_filter];
                let image = if i == 3 {
                    RgbImage::from_fn(kw as u32, kh as u32, |x, y| {
                        let p = y as usize * kw + x as usize;
                        let v = |c: usize| {
                            let t = if m > 0.0 {
                                0.5 + 0.5 * w[c * plane + p] / m
                            } else {
                                0.5
                            };
                            (t.clamp(0.0, 1.0) * 255.0).round() as u8
                        };
                        image::Rgb([v(0), v(1), v(2)])
                    })
                } else {
                    colorize(w, [kh, kw], Colormap::Diverging, -m, m)
                };
                Tile {
                    image,
                    label: f.to_string(),
                }
            })
            .collect();
        let cols = (shown as f64).sqrt().ceil() as usize;
        let what = if i == 3 { "RGB filters" } else { "filters" };
        let key = if i == 3 {
            "grey = 0"
        } else {
            "(blue < 0 < red)"
        };
        return grid(
            &tiles,
            cols,
            side,
            title,
            &format!("{o} {what} {kh}x{kw}, {key}; {scale_note}{more}"),
        );
    }
    // Filters as rows, input channels as columns.
    let (rows, cols) = (o.min(MAX_KERNEL_ROWS), i.min(MAX_KERNEL_ROWS));
    let more = if (rows, cols) == (o, i) {
        String::new()
    } else {
        format!("; the first {rows} filters x {cols} channels shown")
    };
    let tiles: Vec<Tile> = (0..rows)
        .flat_map(|f| {
            let m = range(f);
            (0..cols).map(move |c| {
                let start = f * per_filter + c * plane;
                Tile {
                    image: colorize(
                        &data[start..start + plane],
                        [kh, kw],
                        Colormap::Diverging,
                        -m,
                        m,
                    ),
                    label: String::new(),
                }
            })
        })
        .collect();
    grid(
        &tiles,
        cols,
        side.min(48),
        title,
        &format!(
            "{o} filters (rows) x {i} input channels (columns), {kh}x{kw} (blue < 0 < red); \
             {scale_note}{more}"
        ),
    )
}

/// The image `[C, H, W]` in [0, 1] with a heatmap `[H, W]` in [0, 1] laid over it at `side`
/// pixels: `alpha * jet(map) + (1 - alpha) * image`, as pytorch-grad-cam's
/// `show_cam_on_image`.
pub fn overlay(image: &Tensor, map: &Tensor, alpha: f32, side: u32) -> Result<RgbImage> {
    let base = to_rgb(image)?;
    let (w, h) = base.dimensions();
    if map.dims() != [h as usize, w as usize] {
        return Err(Error::model(format!(
            "a map of shape {:?} does not fit an image of {h}x{w}",
            map.dims()
        )));
    }
    let (dw, dh) = fit(w, h, side);
    let base = resize_nearest(&base, dw, dh);
    let heat = resize_bilinear(
        map.data(),
        [h as usize, w as usize],
        [dh as usize, dw as usize],
    );
    let alpha = alpha.clamp(0.0, 1.0);
    Ok(RgbImage::from_fn(dw, dh, |x, y| {
        let c = Colormap::Jet.rgb(heat[(y * dw + x) as usize]);
        let p = base.get_pixel(x, y).0;
        let mix =
            |a: u8, b: u8| (alpha * f32::from(a) + (1.0 - alpha) * f32::from(b)).round() as u8;
        image::Rgb([mix(c[0], p[0]), mix(c[1], p[1]), mix(c[2], p[2])])
    }))
}

/// The most maps [`class_maps`] puts side by side (after the input).
pub const MAX_CLASS_MAPS: usize = 8;

/// The input `[C, H, W]` and one overlay per `(map, caption)` (at most [`MAX_CLASS_MAPS`]),
/// side by side, with a jet colour bar.
pub fn class_maps(
    image: &Tensor,
    maps: &[(Tensor, String)],
    alpha: f32,
    title: &str,
) -> Result<RgbImage> {
    let [_, h, w] = match image.dims() {
        [c, h, w] => [*c, *h, *w],
        d => {
            return Err(Error::model(format!(
                "a picture needs [C, H, W], got {d:?}"
            )));
        }
    };
    if maps.len() > MAX_CLASS_MAPS {
        return Err(Error::model(format!(
            "{} maps side by side; at most {MAX_CLASS_MAPS}",
            maps.len()
        )));
    }
    let side = display_side(h.max(w), 224, 448);
    let input = to_rgb(image)?;
    let (dw, dh) = fit(input.width(), input.height(), side);
    let mut tiles = vec![Tile {
        image: resize_nearest(&input, dw, dh),
        label: "input".into(),
    }];
    for (map, caption) in maps {
        tiles.push(Tile {
            image: overlay(image, map, alpha, side)?,
            label: caption.clone(),
        });
    }
    let picture = grid(&tiles, tiles.len(), side, title, "")?;
    // A colour bar under the grid.
    let bar_h = 34;
    let mut canvas = Canvas::new(picture.width(), picture.height() + bar_h);
    canvas.blit(&picture, 0, 0);
    let (x0, y0, bw) = (6u32, picture.height(), (picture.width() - 12).min(300));
    for x in 0..bw {
        canvas.fill_rect(
            x0 + x,
            y0,
            1,
            10,
            Colormap::Jet.rgb(x as f32 / (bw - 1).max(1) as f32),
        );
    }
    canvas.text(
        "weak",
        x0 as i32,
        (y0 + 12) as i32,
        11.0,
        MUTED,
        Anchor::TopLeft,
    )?;
    canvas.text(
        "strong evidence",
        (x0 + bw) as i32,
        (y0 + 12) as i32,
        11.0,
        MUTED,
        Anchor::CenterRight,
    )?;
    Ok(canvas.into_image())
}

/// Images `[C, H, W]` in [0, 1] with captions, as a grid (activation maximization).
pub fn images(pictures: &[(Tensor, String)], title: &str, note: &str) -> Result<RgbImage> {
    let mut tiles = Vec::with_capacity(pictures.len());
    let mut side = 0;
    for (t, label) in pictures {
        let img = to_rgb(t)?;
        side = side.max(img.width().max(img.height()));
        tiles.push(Tile {
            image: img,
            label: label.clone(),
        });
    }
    let side = display_side(side as usize, 112, 256);
    let cols = (pictures.len() as f64).sqrt().ceil() as usize;
    grid(&tiles, cols, side, title, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_draws_dark_pixels_with_the_embedded_font() {
        let mut c = Canvas::new(120, 30);
        c.text("Ankle boot 97%", 4, 4, 16.0, TEXT, Anchor::TopLeft)
            .unwrap();
        let img = c.into_image();
        let dark = img.pixels().filter(|p| p.0[0] < 128).count();
        assert!(dark > 40, "only {dark} dark pixels");
        assert!(Canvas::text_width("Ankle boot", 16.0) > 40);
    }

    #[test]
    fn grid_places_every_tile() {
        let tiles: Vec<Tile> = (0..5)
            .map(|i| Tile {
                image: RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 200 + i as u8])),
                label: i.to_string(),
            })
            .collect();
        let img = grid(&tiles, 3, 32, "title", "").unwrap();
        // Two rows of three cells.
        let blue = img
            .pixels()
            .filter(|p| p.0[2] >= 200 && p.0[0] == 0)
            .count();
        assert_eq!(blue, 5 * 32 * 32);
    }

    #[test]
    fn overlay_blends_jet_with_the_image() {
        let img = Tensor::full([1, 2, 2], 1.0).unwrap();
        let map = Tensor::zeros([2, 2]).unwrap();
        let o = overlay(&img, &map, 0.5, 2).unwrap();
        // jet(0) = (0, 0, 128) mixed half with white.
        assert_eq!(o.get_pixel(0, 0).0, [128, 128, 192]);
    }

    fn within_bound(img: &RgbImage) {
        assert!(
            img.width() <= MAX_SIDE && img.height() <= MAX_SIDE,
            "{:?}",
            img.dimensions()
        );
    }

    #[test]
    fn feature_maps_of_many_channels_show_the_first_within_the_bound() {
        let input = Tensor::full([1, 4, 4], 0.5).unwrap();
        let maps = Tensor::from_fn([5000, 2, 2], |i| i as f32).unwrap();
        within_bound(&feature_maps(&input, &maps, "many").unwrap());
        let tall = Tensor::full([1, 3000, 2], 0.5).unwrap();
        let maps = Tensor::full([2, 3000, 2], 1.0).unwrap();
        within_bound(&feature_maps(&tall, &maps, "tall").unwrap());
    }

    #[test]
    fn kernels_of_wide_layers_stay_within_the_bound() {
        for dims in [[300, 300, 3, 3], [3000, 1, 5, 5], [3000, 3, 1, 1]] {
            let w = Tensor::from_fn(dims, |i| (i as f32).sin()).unwrap();
            within_bound(&kernels(&w, KernelScale::Each, "wide").unwrap());
        }
    }

    #[test]
    fn class_maps_of_a_tall_image_stay_within_the_bound() {
        let image = Tensor::full([1, 4000, 3], 0.5).unwrap();
        let map = Tensor::full([4000, 3], 0.5).unwrap();
        let maps: Vec<(Tensor, String)> = (0..MAX_CLASS_MAPS)
            .map(|i| (map.clone(), format!("{i} {}", "long name ".repeat(500))))
            .collect();
        within_bound(&class_maps(&image, &maps, 0.5, &"title ".repeat(5000)).unwrap());
        let too_many = vec![(map, String::new()); MAX_CLASS_MAPS + 1];
        assert!(class_maps(&image, &too_many, 0.5, "").is_err());
    }

    #[test]
    fn grids_refuse_more_tiles_than_fit() {
        let tile = || Tile {
            image: RgbImage::new(2, 2),
            label: String::new(),
        };
        let tiles: Vec<Tile> = (0..MAX_TILES + 1).map(|_| tile()).collect();
        assert!(grid(&tiles, 32, 64, "", "").is_err());
        // One row of a thousand tiles cannot keep 8-pixel tiles within the bound.
        assert!(grid(&tiles[..1000], 1000, 64, "", "").is_err());
    }
}
