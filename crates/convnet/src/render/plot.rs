//! Training pictures: loss and accuracy curves, confusion matrices.

use plotters::prelude::*;

use super::{
    Anchor, Canvas, Colormap, FONT_FAMILY, MAX_SIDE, MUTED, RgbImage, TEXT, TITLE_CHARS,
    drawing_error, register_font, shorten,
};
use crate::error::{Error, Result};
use crate::train::EpochRecord;

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(255, 127, 14);

/// The largest magnitude an axis spans: larger values are drawn at its edge, so that every
/// span (and its padding) is a finite number.
const MAX_AXIS: f64 = 1e300;
/// The most epochs whose points get a marker (beyond, the lines alone).
const MAX_MARKERS: usize = 200;
/// The most stretches a curve is drawn in: longer curves keep the lowest and highest point of
/// each (a chart is about 500 pixels wide), so drawing time does not follow the epoch count.
const MAX_STRETCHES: usize = 1000;

/// Loss and accuracy per epoch, train and test, as two charts side by side.
///
/// Values that are not finite (NaN, infinity: a diverged run) are not drawn; each chart's
/// caption names the first one and how many there are. Axes span the finite values, at most
/// `±1e300` (larger magnitudes are drawn at the edge), so any file gives a picture.
pub fn curves(history: &[EpochRecord], title: &str) -> Result<RgbImage> {
    if history.is_empty() {
        return Err(Error::model("no epochs to plot"));
    }
    register_font();
    let (w, h) = (1100u32, 440u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let root = root
            .titled(
                &shorten(title, TITLE_CHARS),
                (FONT_FAMILY, 20).into_font().color(&BLACK),
            )
            .map_err(drawing_error)?;
        let (left, right) = root.split_horizontally(w / 2);
        let epochs = history.iter().map(|r| r.epoch).max().unwrap_or(1);
        let first = history.iter().map(|r| r.epoch).min().unwrap_or(1);
        let x_range = padded(first as f64, epochs as f64, 0.0, 0.5);
        let x_step = (x_range.end - x_range.start) / 10.0;
        let series = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
            history.iter().map(|r| (r.epoch as f64, f(r))).collect()
        };
        let panels = [
            (
                &left,
                "loss",
                [series(|r| r.train_loss), series(|r| r.test_loss)],
            ),
            (
                &right,
                "accuracy (%)",
                [
                    series(|r| 100.0 * r.train_accuracy),
                    series(|r| 100.0 * r.test_accuracy),
                ],
            ),
        ];
        for (area, name, [train, test]) in panels {
            let caption = format!("{name}{}", not_drawn(&[("train", &train), ("test", &test)]));
            let (train, test) = (envelope(drawable(&train)), envelope(drawable(&test)));
            let (lo, hi) = train
                .iter()
                .chain(&test)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                    (a.min(p.1), b.max(p.1))
                });
            let y_range = if lo <= hi {
                padded(lo, hi, 0.08, 1e-3)
            } else {
                0.0..1.0
            };
            let y_step = (y_range.end - y_range.start) / 10.0;
            let mut chart = ChartBuilder::on(area)
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(64)
                .caption(caption, (FONT_FAMILY, 16).into_font())
                .build_cartesian_2d(x_range.clone(), y_range)
                .map_err(drawing_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(x_label_count(first, epochs))
                .x_label_formatter(&|x| tick_label(*x, x_step.max(1.0)))
                .y_label_formatter(&|y| tick_label(*y, y_step))
                .label_style((FONT_FAMILY, 13).into_font())
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(drawing_error)?;
            for (points, color, label) in [(train, TRAIN, "train"), (test, TEST, "test")] {
                // Segment by segment: a 2-pixel polyline's mitred joins spike far out of the
                // chart where a curve turns sharply.
                let segments = points
                    .windows(2)
                    .map(|pair| PathElement::new(pair.to_vec(), color.stroke_width(2)));
                chart
                    .draw_series(segments)
                    .map_err(drawing_error)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                if history.len() <= MAX_MARKERS {
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(drawing_error)?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FONT_FAMILY, 13).into_font())
                .position(if name == "loss" {
                    SeriesLabelPosition::UpperRight
                } else {
                    SeriesLabelPosition::LowerRight
                })
                .draw()
                .map_err(drawing_error)?;
        }
        root.present().map_err(drawing_error)?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| Error::model("picture buffer of the wrong size"))
}

/// How many epoch labels fit under a chart: one per epoch up to 12, fewer for long numbers
/// (about 7 pixels a digit, in some 350 pixels).
fn x_label_count(first: usize, last: usize) -> usize {
    let digits = tick_label(last as f64, 1.0).len();
    let fit = 350 / ((digits + 2) * 7);
    (last - first).saturating_add(1).min(12).min(fit.max(2))
}

/// The points that can be drawn: finite values, at most [`MAX_AXIS`] in magnitude.
fn drawable(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(x, y)| (x, y.clamp(-MAX_AXIS, MAX_AXIS)))
        .collect()
}

/// `points` in at most [`MAX_STRETCHES`] stretches, each kept as its lowest and highest
/// point in epoch order: the curve's envelope, as it would be drawn anyway.
fn envelope(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= 2 * MAX_STRETCHES {
        return points;
    }
    let stretch = points.len().div_ceil(MAX_STRETCHES);
    let mut kept = Vec::with_capacity(2 * MAX_STRETCHES);
    for part in points.chunks(stretch) {
        let by_value = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let (Some(&lo), Some(&hi)) = (part.iter().min_by(by_value), part.iter().max_by(by_value))
        else {
            continue;
        };
        if lo.0 <= hi.0 {
            kept.extend([lo, hi]);
        } else {
            kept.extend([hi, lo]);
        }
    }
    kept
}

/// A caption's note on the values of `series` that are not drawn: the first (by series) and
/// how many; empty when all are finite.
fn not_drawn(series: &[(&str, &Vec<(f64, f64)>)]) -> String {
    let mut skipped = series
        .iter()
        .flat_map(|(name, points)| points.iter().map(move |p| (name, p)))
        .filter(|(_, p)| !p.1.is_finite());
    match skipped.next() {
        None => String::new(),
        Some((name, (epoch, v))) => {
            let more = skipped.count();
            let more = if more > 0 {
                format!(", +{more} more")
            } else {
                String::new()
            };
            format!(" (not drawn: {name} {v} at epoch {epoch}{more})")
        }
    }
}

/// `lo..hi` (finite, `lo <= hi`, magnitudes at most [`MAX_AXIS`]) widened on both sides by
/// `share` of its span, and by at least `min_pad` and a thousandth of its magnitude, so that
/// the range is never empty, even where `hi - lo` is lost to rounding.
fn padded(lo: f64, hi: f64, share: f64, min_pad: f64) -> std::ops::Range<f64> {
    let magnitude = lo.abs().max(hi.abs());
    let pad = ((hi - lo) * share).max(magnitude * 1e-3).max(min_pad);
    (lo - pad)..(hi + pad)
}

/// A tick label: as many decimals as tell ticks `step` apart (at most 6), or scientific
/// notation for magnitudes of a million and more or steps below a millionth.
fn tick_label(v: f64, step: f64) -> String {
    let step = step.abs().max(f64::MIN_POSITIVE);
    if v.abs() >= 1e6 || step < 1e-6 {
        let digits = (v.abs() / step).log10().floor().clamp(1.0, 6.0) as usize;
        format!("{v:.digits$e}")
    } else {
        let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// The most classes a confusion-matrix picture holds: cells of 2 pixels fill
/// [`super::MAX_SIDE`].
pub const MAX_CONFUSION_CLASSES: usize = 2000;
/// The longest class name drawn, in characters.
const CLASS_CHARS: usize = 24;
/// The widest cell, in pixels (few classes).
const CONFUSION_CELL: u32 = 52;
/// The smallest cell that still gets its class names and accuracy beside it.
const NAMED_CELL: u32 = 12;
/// The smallest cell that still gets its count written in it.
const COUNTED_CELL: u32 = 30;

/// `confusion[true][predicted]` as a coloured table (each row's share of its class), with the
/// counts, class names (shortened) and per-class accuracy. Cells shrink to keep the picture
/// within [`super::MAX_SIDE`] pixels; below [`NAMED_CELL`] pixels the names and accuracies are
/// left out and below [`COUNTED_CELL`] the counts (the note under the title says so). At most
/// [`MAX_CONFUSION_CLASSES`] classes.
pub fn confusion_matrix(
    confusion: &[Vec<usize>],
    classes: &[String],
    title: &str,
) -> Result<RgbImage> {
    let k = confusion.len();
    if k == 0 || confusion.iter().any(|row| row.len() != k) {
        return Err(Error::model(
            "a confusion matrix must be square and not empty",
        ));
    }
    if k > MAX_CONFUSION_CLASSES {
        return Err(Error::model(format!(
            "a confusion matrix of {k} classes is too large to draw (at most \
             {MAX_CONFUSION_CLASSES})"
        )));
    }
    let name = |i: usize| match classes.get(i) {
        Some(c) => shorten(c, CLASS_CHARS),
        None => i.to_string(),
    };
    let top = 56u32;
    // (left, bottom, right) margins: with names beside the rows and under the columns (and
    // accuracies on the right), or bare.
    let fits = |(left, bottom, right): (u32, u32, u32)| {
        let margin = (left + right).max(top + bottom);
        ((MAX_SIDE - margin) / k as u32).min(CONFUSION_CELL)
    };
    let bare = (30, 30, 8);
    let named_layout = (k as u32 * NAMED_CELL < MAX_SIDE).then(|| {
        let label_w = (0..k)
            .map(|i| Canvas::text_width(&name(i), 13.0))
            .max()
            .unwrap_or(0)
            + 16;
        (label_w + 24, label_w + 30, 90)
    });
    let named = named_layout.is_some_and(|m| fits(m) >= NAMED_CELL);
    let (left, bottom, right) = match named_layout {
        Some(m) if named => m,
        _ => bare,
    };
    let cell = fits((left, bottom, right));
    let counted = cell >= COUNTED_CELL;
    let (w, h) = (
        left + cell * k as u32 + right,
        top + cell * k as u32 + bottom,
    );
    let mut canvas = Canvas::new(w, h);
    canvas.text(
        &shorten(title, TITLE_CHARS),
        10,
        10,
        18.0,
        TEXT,
        Anchor::TopLeft,
    )?;
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let acc = if total > 0 {
        100.0 * correct as f64 / total as f64
    } else {
        f64::NAN
    };
    let left_out = match (named, counted) {
        (true, true) => String::new(),
        (true, false) => "; counts left out at this size".to_string(),
        (false, _) => format!("; {k} classes: names and counts left out at this size"),
    };
    canvas.text(
        &format!("{total} images, accuracy {acc:.2}%; colour = share of the true class{left_out}"),
        10,
        34,
        12.0,
        MUTED,
        Anchor::TopLeft,
    )?;
    for (t, row) in confusion.iter().enumerate() {
        let row_total: usize = row.iter().sum();
        let y = top + t as u32 * cell;
        for (p, &count) in row.iter().enumerate() {
            let share = if row_total > 0 {
                count as f32 / row_total as f32
            } else {
                0.0
            };
            let x = left + p as u32 * cell;
            canvas.fill_rect(x, y, cell - 1, cell - 1, Colormap::Blues.rgb(share));
            if counted && count > 0 {
                let ink = if share > 0.5 { [255, 255, 255] } else { TEXT };
                let cx = (x + cell / 2) as i32;
                let cy = (y + cell / 2) as i32;
                canvas.text(&count.to_string(), cx, cy, 12.0, ink, Anchor::Center)?;
            }
        }
        if !named {
            continue;
        }
        canvas.text(
            &name(t),
            (left - 8) as i32,
            (y + cell / 2) as i32,
            13.0,
            TEXT,
            Anchor::CenterRight,
        )?;
        let class_acc = if row_total > 0 {
            format!("{:.1}%", 100.0 * confusion[t][t] as f64 / row_total as f64)
        } else {
            "-".to_string()
        };
        canvas.text(
            &class_acc,
            (left + cell * k as u32 + 8) as i32,
            (y + cell / 2) as i32,
            12.0,
            MUTED,
            Anchor::CenterLeft,
        )?;
    }
    let grid_bottom = top + cell * k as u32;
    if named {
        for p in 0..k {
            let x = (left + p as u32 * cell + cell / 2) as i32;
            canvas.text_rotated(
                &name(p),
                x,
                (grid_bottom + 8) as i32,
                13.0,
                TEXT,
                Anchor::CenterRight,
                true,
            )?;
        }
    }
    canvas.text(
        "predicted",
        (left + cell * k as u32 / 2) as i32,
        (h - 18) as i32,
        13.0,
        MUTED,
        Anchor::TopCenter,
    )?;
    canvas.text_rotated(
        "true class",
        6,
        (top + cell * k as u32 / 2) as i32,
        13.0,
        MUTED,
        Anchor::Center,
        true,
    )?;
    Ok(canvas.into_image())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, train_loss: f64, test_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss,
            train_accuracy: 0.5,
            test_loss,
            test_accuracy: 0.6,
            lr: 0.1,
            seconds: 1.0,
            images_per_second: 1.0,
        }
    }

    fn square(k: usize) -> Vec<Vec<usize>> {
        (0..k)
            .map(|t| (0..k).map(|p| usize::from(t == p) * 9 + 1).collect())
            .collect()
    }

    #[test]
    fn curves_whose_range_overflows_are_drawn_in_bounded_time() {
        let start = std::time::Instant::now();
        let history = [record(1, 1e308, 1.0), record(2, -1e308, 1.0)];
        let img = curves(&history, "overflow").unwrap();
        assert_eq!(img.dimensions(), (1100, 440));
        // Non-finite values are left out, and so are epochs whose numbers round together.
        let history = [
            record(1, f64::NAN, f64::INFINITY),
            record(usize::MAX - 1, 1.0, f64::NEG_INFINITY),
            record(usize::MAX, 1.0, 2.0),
        ];
        curves(&history, "not finite").unwrap();
        let history: Vec<EpochRecord> = (1..=3).map(|e| record(e, 1e20, 1e20)).collect();
        curves(&history, "flat").unwrap();
        assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
    }

    #[test]
    fn long_curves_keep_their_envelope_in_bounded_points() {
        let points: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 7) as f64)).collect();
        let kept = envelope(points);
        assert!(kept.len() <= 2 * MAX_STRETCHES, "{}", kept.len());
        assert!(kept.windows(2).all(|w| w[0].0 <= w[1].0));
        let (lo, hi) = kept
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        assert_eq!((lo, hi), (0.0, 6.0));
        let few = vec![(1.0, 2.0), (2.0, 1.0)];
        assert_eq!(envelope(few.clone()), few);
    }

    #[test]
    fn values_not_drawn_are_named_in_the_caption() {
        let train = vec![(1.0, 0.5), (2.0, f64::NAN), (3.0, f64::INFINITY)];
        let test = vec![(1.0, 0.5)];
        let note = not_drawn(&[("train", &train), ("test", &test)]);
        assert_eq!(note, " (not drawn: train NaN at epoch 2, +1 more)");
        assert_eq!(not_drawn(&[("test", &test)]), "");
    }

    #[test]
    fn axis_ranges_are_never_empty_and_ticks_tell_apart() {
        for (lo, hi) in [
            (1e20, 1e20),
            (0.0, 0.0),
            (-1e300, 1e300),
            (1.0, 1.0 + 1e-13),
        ] {
            let r = padded(lo, hi, 0.08, 1e-3);
            assert!(r.start < r.end && (r.end - r.start).is_finite(), "{r:?}");
        }
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(90.0, 2.0), "90");
        assert_eq!(tick_label(2.5e300, 1e299), "2.5e300");
    }

    #[test]
    fn confusion_matrix_size_does_not_follow_class_names() {
        let classes: Vec<String> = (0..10)
            .map(|i| format!("{i}{}", "x".repeat(5000)))
            .collect();
        let img = confusion_matrix(&square(10), &classes, "long names").unwrap();
        assert!(
            img.width() < 1400 && img.height() < 1400,
            "{:?}",
            img.dimensions()
        );
    }

    #[test]
    fn confusion_matrix_of_many_classes_stays_within_the_picture_bound() {
        for k in [100, 1000, MAX_CONFUSION_CLASSES] {
            let classes: Vec<String> = (0..k).map(|i| format!("class {i}")).collect();
            let img = confusion_matrix(&square(k), &classes, "many").unwrap();
            assert!(
                img.width() <= MAX_SIDE && img.height() <= MAX_SIDE,
                "{k}: {:?}",
                img.dimensions()
            );
        }
        let k = MAX_CONFUSION_CLASSES + 1;
        let err = confusion_matrix(&square(k), &[], "too many").unwrap_err();
        assert!(err.to_string().contains("too large to draw"), "{err}");
    }
}
