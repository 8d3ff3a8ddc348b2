//! Pooling hyper-parameters: [`Pool2dParams`], checked once in [`Pool2dParamsBuilder::build`],
//! and the output size they give for an input plane.

use crate::error::{Error, Result};
use crate::geometry::{check_positive, effective_kernel, pool_output_len};

const OP: &str = "pool2d";

/// Pooling hyper-parameters, as `torch.nn.MaxPool2d` / `torch.nn.AvgPool2d` take them.
///
/// Built and checked by [`Pool2dParams::builder`]. `dilation` is used by max pooling only
/// (average pooling rejects a dilation other than 1); `count_include_pad` and
/// `divisor_override` are used by average pooling only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dParams {
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Option<usize>,
}

impl Pool2dParams {
    /// Start from PyTorch's defaults for a `kernel` (height, width): stride = kernel, no
    /// padding, dilation 1, floor mode, `count_include_pad = true`, no divisor override;
    /// `with_*` sets the others and [`build`](Pool2dParamsBuilder::build) checks the result.
    ///
    /// ```
    /// use convnet_core::{Pool2dParams, Tensor, max_pool2d};
    /// let p = Pool2dParams::builder([2, 2]).build()?;
    /// let x = Tensor::new([1, 1, 2, 4], vec![1., 5., 2., 0., 3., 4., 8., 7.])?;
    /// let out = max_pool2d(&x, &p)?;
    /// assert_eq!(out.output.data(), &[5.0, 8.0]);
    /// assert_eq!(out.indices, [1, 6]);
    /// # Ok::<(), convnet_core::Error>(())
    /// ```
    pub fn builder(kernel: [usize; 2]) -> Pool2dParamsBuilder {
        Pool2dParamsBuilder {
            params: Pool2dParams {
                kernel,
                stride: kernel,
                padding: [0, 0],
                dilation: [1, 1],
                ceil_mode: false,
                count_include_pad: true,
                divisor_override: None,
            },
        }
    }

    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    /// Padding `[h, w]`, applied on both sides of each axis.
    pub fn padding(&self) -> [usize; 2] {
        self.padding
    }
    pub fn dilation(&self) -> [usize; 2] {
        self.dilation
    }
    pub fn ceil_mode(&self) -> bool {
        self.ceil_mode
    }
    pub fn count_include_pad(&self) -> bool {
        self.count_include_pad
    }
    pub fn divisor_override(&self) -> Option<usize> {
        self.divisor_override
    }

    /// Output height and width for an input plane of `input_hw`, or an error saying what does
    /// not fit.
    pub fn output_hw(&self, input_hw: [usize; 2]) -> Result<[usize; 2]> {
        self.output_hw_for(OP, input_hw)
    }

    pub(super) fn output_hw_for(
        &self,
        op: &'static str,
        input_hw: [usize; 2],
    ) -> Result<[usize; 2]> {
        if input_hw.contains(&0) {
            return Err(Error::shape(
                op,
                format!(
                    "input height and width must be at least 1, got {}x{}",
                    input_hw[0], input_hw[1]
                ),
            ));
        }
        let mut out = [0; 2];
        for (axis, len) in out.iter_mut().enumerate() {
            let input = input_hw[axis];
            // `2 * padding <= kernel` (checked in `build`), so only the sum can overflow.
            if input.checked_add(2 * self.padding[axis]).is_none() {
                return Err(Error::overflow(
                    op,
                    format!(
                        "input {}x{} with padding {}x{}",
                        input_hw[0], input_hw[1], self.padding[0], self.padding[1]
                    ),
                ));
            }
            *len = pool_output_len(
                input,
                self.kernel[axis],
                self.stride[axis],
                self.dilation[axis],
                self.padding[axis],
                self.ceil_mode,
            )
            .ok_or_else(|| self.does_not_fit(op, input_hw))?;
        }
        Ok(out)
    }

    fn does_not_fit(&self, op: &'static str, [h, w]: [usize; 2]) -> Error {
        let [kh, kw] = self.kernel;
        let [dh, dw] = self.dilation;
        let [ph, pw] = self.padding;
        let span = |k: usize, d: usize| effective_kernel(k, d).unwrap_or(usize::MAX);
        let mut reason = format!(
            "kernel {kh}x{kw} (dilation {dh}x{dw}, spans {}x{}) is larger than the padded input \
             {}x{} (input {h}x{w}, padding {ph}x{pw} on each side)",
            span(kh, dh),
            span(kw, dw),
            h.saturating_add(2 * ph),
            w.saturating_add(2 * pw),
        );
        if self.ceil_mode {
            reason.push_str(&format!(
                "; ceil_mode allows an overhang of less than one stride ({}x{})",
                self.stride[0], self.stride[1]
            ));
        }
        Error::shape(op, reason)
    }
}

/// Builder for [`Pool2dParams`]; nothing is checked until [`build`](Self::build).
#[derive(Debug, Clone, Copy)]
pub struct Pool2dParamsBuilder {
    params: Pool2dParams,
}

impl Pool2dParamsBuilder {
    /// Step of the window `[h, w]` (default: the kernel).
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.params.stride = stride;
        self
    }
    /// Padding `[h, w]` on both sides of each axis (PyTorch's `padding=(h, w)`).
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.params.padding = padding;
        self
    }
    /// Spacing of the kernel taps (max pooling only).
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.params.dilation = dilation;
        self
    }
    /// Round the output size up instead of down (see the module documentation).
    pub fn with_ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.params.ceil_mode = ceil_mode;
        self
    }
    /// Average pooling: divide by the window including its padding (else only the inputs).
    pub fn with_count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.params.count_include_pad = count_include_pad;
        self
    }
    /// Average pooling: divide every window by this instead.
    pub fn with_divisor_override(mut self, divisor_override: Option<usize>) -> Self {
        self.params.divisor_override = divisor_override;
        self
    }

    /// Check what does not depend on the input: kernel, stride and dilation at least 1,
    /// padding at most half the kernel on each axis, and a divisor override other than 0.
    pub fn build(self) -> Result<Pool2dParams> {
        let p = self.params;
        check_positive(OP, "kernel", p.kernel)?;
        check_positive(OP, "stride", p.stride)?;
        check_positive(OP, "dilation", p.dilation)?;
        for axis in 0..2 {
            if effective_kernel(p.kernel[axis], p.dilation[axis]).is_none() {
                return Err(Error::overflow(
                    OP,
                    format!(
                        "kernel {}x{} with dilation {}x{} spans more than usize::MAX",
                        p.kernel[0], p.kernel[1], p.dilation[0], p.dilation[1]
                    ),
                ));
            }
        }
        if p.padding[0] > p.kernel[0] / 2 || p.padding[1] > p.kernel[1] / 2 {
            return Err(Error::param(
                OP,
                "padding",
                format!(
                    "must be at most half the kernel size on each axis (as in PyTorch), got \
                     padding {}x{} for kernel {}x{} (at most {}x{})",
                    p.padding[0],
                    p.padding[1],
                    p.kernel[0],
                    p.kernel[1],
                    p.kernel[0] / 2,
                    p.kernel[1] / 2
                ),
            ));
        }
        if p.divisor_override == Some(0) {
            return Err(Error::param(OP, "divisor_override", "must not be 0"));
        }
        Ok(p)
    }
}
