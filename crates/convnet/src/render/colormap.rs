//! Colormaps: value in [0, 1] to an RGB colour.

use super::colormap_data::VIRIDIS;

/// How values become colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Perceptually uniform, dark blue to yellow (matplotlib's default).
    Viridis,
    /// Blue, cyan, yellow, red: the classic heatmap of Grad-CAM pictures.
    Jet,
    /// Black to white.
    Gray,
    /// Blue (0) through white (0.5) to red (1), for signed values.
    Diverging,
    /// White to dark blue, for counts.
    Blues,
}

/// Piecewise-linear channel through `(x, y)` anchors sorted by `x`.
fn ramp(points: &[(f32, f32)], t: f32) -> f32 {
    let mut prev = points[0];
    for &p in &points[1..] {
        if t <= p.0 {
            let f = if p.0 > prev.0 {
                (t - prev.0) / (p.0 - prev.0)
            } else {
                0.0
            };
            return prev.1 + f * (p.1 - prev.1);
        }
        prev = p;
    }
    prev.1
}

fn lerp(a: [u8; 3], b: [u8; 3], f: f32) -> [u8; 3] {
    let mix = |x: u8, y: u8| (f32::from(x) + f * (f32::from(y) - f32::from(x))).round() as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

fn unit(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

impl Colormap {
    /// The colour of `t` (clamped to [0, 1]; NaN is the colour of 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Colormap::Viridis => VIRIDIS[(t * 255.0).round() as usize],
            Colormap::Jet => {
                // The MATLAB / matplotlib `jet` anchors.
                let r = ramp(
                    &[
                        (0.0, 0.0),
                        (0.35, 0.0),
                        (0.66, 1.0),
                        (0.89, 1.0),
                        (1.0, 0.5),
                    ],
                    t,
                );
                let g = ramp(
                    &[
                        (0.0, 0.0),
                        (0.125, 0.0),
                        (0.375, 1.0),
                        (0.64, 1.0),
                        (0.91, 0.0),
                        (1.0, 0.0),
                    ],
                    t,
                );
                let b = ramp(
                    &[
                        (0.0, 0.5),
                        (0.11, 1.0),
                        (0.34, 1.0),
                        (0.65, 0.0),
                        (1.0, 0.0),
                    ],
                    t,
                );
                [unit(r), unit(g), unit(b)]
            }
            Colormap::Gray => [unit(t); 3],
            Colormap::Diverging => {
                const BLUE: [u8; 3] = [33, 102, 172];
                const WHITE: [u8; 3] = [247, 247, 247];
                const RED: [u8; 3] = [178, 24, 43];
                if t < 0.5 {
                    lerp(BLUE, WHITE, t * 2.0)
                } else {
                    lerp(WHITE, RED, t * 2.0 - 1.0)
                }
            }
            Colormap::Blues => lerp([247, 251, 255], [8, 48, 107], t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_documented_colours() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [68, 1, 84]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [253, 231, 37]);
        assert_eq!(Colormap::Jet.rgb(0.0), [0, 0, 128]);
        assert_eq!(Colormap::Jet.rgb(0.5), [123, 255, 123]);
        assert_eq!(Colormap::Jet.rgb(1.0), [128, 0, 0]);
        assert_eq!(Colormap::Gray.rgb(1.0), [255, 255, 255]);
        assert_eq!(Colormap::Diverging.rgb(0.5), [247, 247, 247]);
        assert_eq!(Colormap::Gray.rgb(f32::NAN), [0, 0, 0]);
    }

    #[test]
    fn viridis_brightens_monotonically() {
        let lum = |c: [u8; 3]| {
            0.2126 * f32::from(c[0]) + 0.7152 * f32::from(c[1]) + 0.0722 * f32::from(c[2])
        };
        for i in 1..=255 {
            let (a, b) = (i as f32 - 1.0, i as f32);
            assert!(
                lum(Colormap::Viridis.rgb(b / 255.0))
                    >= lum(Colormap::Viridis.rgb(a / 255.0)) - 0.5
            );
        }
    }
}
