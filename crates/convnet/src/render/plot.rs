//! Training pictures: loss and accuracy curves, confusion matrices.

use plotters::prelude::*;

use super::{
    Anchor, Canvas, Colormap, FONT_FAMILY, MUTED, RgbImage, TEXT, drawing_error, register_font,
};
use crate::error::{Error, Result};
use crate::train::EpochRecord;

const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(255, 127, 14);

/// Loss and accuracy per epoch, train and test, as two charts side by side.
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
            .titled(title, (FONT_FAMILY, 20).into_font().color(&BLACK))
            .map_err(drawing_error)?;
        let (left, right) = root.split_horizontally(w / 2);
        let epochs = history.iter().map(|r| r.epoch).max().unwrap_or(1);
        let first = history.iter().map(|r| r.epoch).min().unwrap_or(1);
        let x_range = if epochs > first {
            first as f64..epochs as f64
        } else {
            first as f64 - 0.5..first as f64 + 0.5
        };
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
            let values = train
                .iter()
                .chain(&test)
                .map(|p| p.1)
                .filter(|v| v.is_finite());
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.08).max(1e-3);
            // Enough decimals to tell the ticks apart, no more.
            let span = hi - lo + 2.0 * pad;
            let decimals = match span {
                s if s >= 10.0 => 0,
                s if s >= 1.0 => 1,
                s if s >= 0.1 => 2,
                _ => 3,
            };
            let mut chart = ChartBuilder::on(area)
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .caption(name, (FONT_FAMILY, 16).into_font())
                .build_cartesian_2d(x_range.clone(), (lo - pad)..(hi + pad))
                .map_err(drawing_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(epochs.min(12))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.decimals$}"))
                .label_style((FONT_FAMILY, 13).into_font())
                .light_line_style(RGBColor(235, 235, 235))
                .draw()
                .map_err(drawing_error)?;
            for (points, color, label) in [(train, TRAIN, "train"), (test, TEST, "test")] {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(drawing_error)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(drawing_error)?;
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

/// `confusion[true][predicted]` as a coloured table (each row's share of its class), with the
/// counts, class names and per-class accuracy.
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
    let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
    let cell = 52u32;
    let label_w = (0..k)
        .map(|i| Canvas::text_width(&name(i), 13.0))
        .max()
        .unwrap_or(0)
        + 16;
    let (left, top) = (label_w + 24, 56u32);
    let bottom = label_w + 30;
    let right = 90u32;
    let (w, h) = (
        left + cell * k as u32 + right,
        top + cell * k as u32 + bottom,
    );
    let mut canvas = Canvas::new(w, h);
    canvas.text(title, 10, 10, 18.0, TEXT, Anchor::TopLeft)?;
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let acc = if total > 0 {
        100.0 * correct as f64 / total as f64
    } else {
        f64::NAN
    };
    canvas.text(
        &format!("{total} images, accuracy {acc:.2}%; colour = share of the true class"),
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
            if count > 0 {
                let ink = if share > 0.5 { [255, 255, 255] } else { TEXT };
                let cx = (x + cell / 2) as i32;
                let cy = (y + cell / 2) as i32;
                canvas.text(&count.to_string(), cx, cy, 12.0, ink, Anchor::Center)?;
            }
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
