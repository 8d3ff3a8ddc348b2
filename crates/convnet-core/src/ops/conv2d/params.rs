//! Conv2d hyper-parameters (checked once, in [`Conv2dParamsBuilder::build`]) and the geometry
//! of one concrete problem (checked against the tensor shapes in [`Conv2dParams::geometry`]).

use crate::error::{Error, Result};
use crate::geometry::{check_positive, conv2d_output_hw, same_padding};
use crate::tensor::{check_elements, checked_numel, fmt_dims};

const OP: &str = "conv2d";

/// How the input is padded before the kernel slides over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Given amounts on each side, in pixels.
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
    /// No padding: the kernel stays inside the input (PyTorch `padding='valid'` or `0`).
    #[default]
    Valid,
    /// Output size equals input size (stride 1 only). PyTorch's rule: the total
    /// `dilation * (kernel - 1)` is split in half, an odd remainder going bottom/right.
    Same,
}

impl Padding {
    /// The same amount on both sides of each axis, PyTorch's `padding=(h, w)`.
    pub fn symmetric([h, w]: [usize; 2]) -> Self {
        Padding::Explicit {
            top: h,
            bottom: h,
            left: w,
            right: w,
        }
    }
}

/// What the padded border holds (PyTorch's `padding_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PaddingMode {
    /// Zeros.
    #[default]
    Zeros,
    /// Mirror without repeating the edge: `d c b | a b c d | c b a` (OpenCV BORDER_REFLECT_101).
    Reflect,
    /// Repeat the edge value: `a a a | a b c d | d d d`.
    Replicate,
    /// Wrap around: `b c d | a b c d | a b c`.
    Circular,
}

/// Whether the kernel is flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvMode {
    /// `S(i,j) = sum_mn I(i+m, j+n) K(m,n)`: what deep-learning libraries call convolution.
    #[default]
    CrossCorrelation,
    /// `S(i,j) = sum_mn I(m,n) K(i-m, j-n)`: the mathematical convolution, i.e. the
    /// cross-correlation with the kernel flipped in both axes.
    Convolution,
}

/// Conv2d hyper-parameters, as `torch.nn.functional.conv2d` takes them plus the padding mode
/// of `torch.nn.Conv2d` and the choice of flipping the kernel.
///
/// Built and checked by [`Conv2dParams::builder`]; `Default` is stride 1, no padding,
/// dilation 1, one group, cross-correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    stride: [usize; 2],
    padding: Padding,
    dilation: [usize; 2],
    groups: usize,
    padding_mode: PaddingMode,
    mode: ConvMode,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: Padding::Valid,
            dilation: [1, 1],
            groups: 1,
            padding_mode: PaddingMode::Zeros,
            mode: ConvMode::CrossCorrelation,
        }
    }
}

impl Conv2dParams {
    /// Start from the defaults (`with_*` sets the others); [`build`](Conv2dParamsBuilder::build)
    /// checks the result.
    ///
    /// ```
    /// use convnet_core::{Conv2dParams, Padding};
    /// let p = Conv2dParams::builder()
    ///     .with_stride([2, 2])
    ///     .with_padding(Padding::symmetric([1, 1]))
    ///     .build()?;
    /// assert_eq!(p.stride(), [2, 2]);
    /// # Ok::<(), convnet_core::Error>(())
    /// ```
    pub fn builder() -> Conv2dParamsBuilder {
        Conv2dParamsBuilder {
            params: Conv2dParams::default(),
        }
    }

    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    pub fn padding(&self) -> Padding {
        self.padding
    }
    pub fn dilation(&self) -> [usize; 2] {
        self.dilation
    }
    pub fn groups(&self) -> usize {
        self.groups
    }
    pub fn padding_mode(&self) -> PaddingMode {
        self.padding_mode
    }
    pub fn mode(&self) -> ConvMode {
        self.mode
    }

    /// Padding amounts `[top, bottom, left, right]` for a kernel of size `kernel`.
    pub fn resolve_padding(&self, kernel: [usize; 2]) -> Result<[usize; 4]> {
        match self.padding {
            Padding::Valid => Ok([0; 4]),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => Ok([top, bottom, left, right]),
            Padding::Same => {
                let h = same_padding(kernel[0], self.dilation[0]);
                let w = same_padding(kernel[1], self.dilation[1]);
                match (h, w) {
                    (Some((t, b)), Some((l, r))) => Ok([t, b, l, r]),
                    _ => Err(Error::param(
                        OP,
                        "kernel size",
                        format!(
                            "'same' padding needs a kernel of at least 1x1, got {}x{}",
                            kernel[0], kernel[1]
                        ),
                    )),
                }
            }
        }
    }

    /// Check these parameters against an input `[N, C, H, W]` and a weight
    /// `[C_out, C / groups, kh, kw]`, and resolve the padding and output size.
    pub fn geometry(&self, input: [usize; 4], weight: [usize; 4]) -> Result<Conv2dGeometry> {
        let [n, c, h, w] = input;
        let [k, cg, kh, kw] = weight;
        let g = self.groups;
        if c == 0 {
            return Err(Error::shape(
                OP,
                format!("input {} has no channels", fmt_dims(&input)),
            ));
        }
        if k == 0 {
            return Err(Error::shape(
                OP,
                format!("weight {} has no output channels", fmt_dims(&weight)),
            ));
        }
        if !c.is_multiple_of(g) {
            return Err(Error::param(
                OP,
                "groups",
                format!("{g} groups do not divide the input's {c} channels"),
            ));
        }
        if !k.is_multiple_of(g) {
            return Err(Error::param(
                OP,
                "groups",
                format!("{g} groups do not divide the weight's {k} output channels"),
            ));
        }
        if cg * g != c {
            return Err(Error::shape(
                OP,
                format!(
                    "channel mismatch: weight {} with {g} group(s) expects input with {} \
                     channels, but input {} has {c}",
                    fmt_dims(&weight),
                    cg * g,
                    fmt_dims(&input)
                ),
            ));
        }
        let pad = self.resolve_padding([kh, kw])?;
        self.check_padding_mode([h, w], pad)?;
        let out_hw = conv2d_output_hw(OP, [h, w], [kh, kw], self.stride, self.dilation, pad)?;
        let geom = Conv2dGeometry {
            batch: n,
            in_channels: c,
            in_hw: [h, w],
            out_channels: k,
            kernel: [kh, kw],
            groups: g,
            stride: self.stride,
            dilation: self.dilation,
            pad,
            padding_mode: self.padding_mode,
            mode: self.mode,
            out_hw,
        };
        let padded = geom.padded_hw();
        let sizes = [
            geom.output_dims().to_vec(),
            vec![n, c, padded[0], padded[1]],
            // The im2col matrix of one image and group.
            vec![cg, kh, kw, out_hw[0], out_hw[1]],
        ];
        for dims in &sizes {
            if checked_numel(dims).is_none() {
                return Err(Error::overflow(
                    OP,
                    format!(
                        "input {}, weight {}: {} elements do not fit in usize",
                        fmt_dims(&input),
                        fmt_dims(&weight),
                        fmt_dims(dims)
                    ),
                ));
            }
        }
        geom.check_sizes()?;
        Ok(geom)
    }

    fn check_padding_mode(&self, hw: [usize; 2], pad: [usize; 4]) -> Result<()> {
        let axes = [
            ("height", hw[0], pad[0], pad[1]),
            ("width", hw[1], pad[2], pad[3]),
        ];
        for (axis, size, before, after) in axes {
            let widest = before.max(after);
            let (ok, rule) = match self.padding_mode {
                PaddingMode::Zeros => (true, ""),
                // PyTorch: reflect padding must be smaller than the dimension.
                PaddingMode::Reflect => (widest < size, "reflect padding must be smaller than"),
                // PyTorch: circular padding may wrap at most once.
                PaddingMode::Circular => (widest <= size, "circular padding must be at most"),
                PaddingMode::Replicate => (
                    size > 0 || widest == 0,
                    "replicate padding needs a non-empty input, and got",
                ),
            };
            if !ok {
                return Err(Error::param(
                    OP,
                    "padding",
                    format!(
                        "{rule} the input {axis} {size}, got {before} before and {after} after"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Builder for [`Conv2dParams`]; nothing is checked until [`build`](Self::build).
#[derive(Debug, Clone, Copy)]
pub struct Conv2dParamsBuilder {
    params: Conv2dParams,
}

impl Conv2dParamsBuilder {
    /// Step of the kernel `[h, w]` (default 1).
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.params.stride = stride;
        self
    }
    /// How much padding, on which sides (default none).
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.params.padding = padding;
        self
    }
    /// Spacing of the kernel taps `[h, w]` (default 1).
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.params.dilation = dilation;
        self
    }
    /// Channel groups: each filter sees `C / groups` input channels (default 1).
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.params.groups = groups;
        self
    }
    /// What the padded border holds (default zeros).
    pub fn with_padding_mode(mut self, mode: PaddingMode) -> Self {
        self.params.padding_mode = mode;
        self
    }
    /// Cross-correlation (default) or convolution (the kernel flipped).
    pub fn with_mode(mut self, mode: ConvMode) -> Self {
        self.params.mode = mode;
        self
    }

    /// Check what does not depend on the tensors: stride, dilation and groups at least 1,
    /// and 'same' padding only with stride 1 (as PyTorch).
    pub fn build(self) -> Result<Conv2dParams> {
        let p = self.params;
        check_positive(OP, "stride", p.stride)?;
        check_positive(OP, "dilation", p.dilation)?;
        if p.groups == 0 {
            return Err(Error::param(OP, "groups", "must be at least 1, got 0"));
        }
        if p.padding == Padding::Same && p.stride != [1, 1] {
            return Err(Error::param(
                OP,
                "padding",
                format!(
                    "'same' padding needs stride 1 (as in PyTorch), got stride {}x{}",
                    p.stride[0], p.stride[1]
                ),
            ));
        }
        Ok(p)
    }
}

/// One conv2d problem, fully resolved: shapes, padding amounts and output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_hw: [usize; 2],
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub groups: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, bottom, left, right]`.
    pub pad: [usize; 4],
    pub padding_mode: PaddingMode,
    pub mode: ConvMode,
    pub out_hw: [usize; 2],
}

/// One product of the convolution sum: which input pixel (if any) and which weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    /// The input position `[row, col]` read, or `None` where zero padding is read. With
    /// reflect, replicate or circular padding, a position in the border reads an input pixel.
    pub input: Option<[usize; 2]>,
    /// The padded-input position `[row, col]` (row `-pad_top` is the first padding row).
    pub padded: [isize; 2],
    /// The weight `[row, col]` it is multiplied by (flipped for `ConvMode::Convolution`).
    pub weight: [usize; 2],
}

impl Conv2dGeometry {
    /// The product of output position `out` and kernel tap `[p, q]`: input row
    /// `out_row * stride + p * dilation - pad_top` (and likewise for columns), read through
    /// the padding mode; weight `[p, q]`, or `[kh-1-p, kw-1-q]` for convolution. This is the
    /// convolution's defining formula; the reference kernel is a sum over these.
    #[inline]
    pub fn tap(&self, out: [usize; 2], [p, q]: [usize; 2]) -> Tap {
        let row = (out[0] * self.stride[0] + p * self.dilation[0]) as isize - self.pad[0] as isize;
        let col = (out[1] * self.stride[1] + q * self.dilation[1]) as isize - self.pad[2] as isize;
        let input = super::pad::source_index(row, self.in_hw[0], self.padding_mode)
            .zip(super::pad::source_index(
                col,
                self.in_hw[1],
                self.padding_mode,
            ))
            .map(|(r, c)| [r, c]);
        let weight = match self.mode {
            ConvMode::CrossCorrelation => [p, q],
            ConvMode::Convolution => [self.kernel[0] - 1 - p, self.kernel[1] - 1 - q],
        };
        Tap {
            input,
            padded: [row, col],
            weight,
        }
    }

    pub fn input_dims(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_hw[0], self.in_hw[1]]
    }
    pub fn weight_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups,
            self.kernel[0],
            self.kernel[1],
        ]
    }
    pub fn output_dims(&self) -> [usize; 4] {
        [
            self.batch,
            self.out_channels,
            self.out_hw[0],
            self.out_hw[1],
        ]
    }
    /// Input channels seen by one filter.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }
    /// Filters in one group.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }
    /// The one bound on what a conv2d allocates: the output and the padded input (which a
    /// padding mode other than zeros materialises, and whose rows the kernels lay out) hold
    /// at most [`MAX_TENSOR_ELEMENTS`](crate::tensor::MAX_TENSOR_ELEMENTS) values each. Every
    /// workspace is sized from these (and from the weight), never from the stride, so this
    /// bounds them all.
    fn check_sizes(&self) -> Result<()> {
        let [n, c, h, w] = self.input_dims();
        let padded = self.padded_hw();
        let what = if self.pad == [0; 4] {
            ("input", format!("input {}", fmt_dims(&[n, c, h, w])))
        } else {
            let [top, bottom, left, right] = self.pad;
            (
                "padding",
                format!(
                    "input {} padded by top {top}, bottom {bottom}, left {left}, right {right} \
                     ({})",
                    fmt_dims(&[n, c, h, w]),
                    fmt_dims(&[n, c, padded[0], padded[1]])
                ),
            )
        };
        check_elements(OP, what.0, what.1, &[n, c, padded[0], padded[1]])?;
        let out = self.output_dims();
        check_elements(OP, "output", format!("output {}", fmt_dims(&out)), &out)?;
        Ok(())
    }

    /// Input height and width after padding.
    pub fn padded_hw(&self) -> [usize; 2] {
        [
            self.in_hw[0] + self.pad[0] + self.pad[1],
            self.in_hw[1] + self.pad[2] + self.pad[3],
        ]
    }
    /// Forward FLOPs, a multiply-add counted as two.
    pub fn flops(&self) -> u64 {
        [
            2,
            self.batch,
            self.out_channels,
            self.out_hw[0],
            self.out_hw[1],
            self.in_per_group(),
            self.kernel[0],
            self.kernel[1],
        ]
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
    }
}
