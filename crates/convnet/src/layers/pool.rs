//! Pooling layers: max, average, adaptive average and global pooling.

use convnet_core::{
    Pool2dParams, Tensor, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d,
    avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d,
    max_pool2d, max_pool2d_backward,
};

use super::{ForwardCtx, Module, image_shape, recorded, single, single_shape};
use crate::error::Result;

fn batch_dims(x: &Tensor, kind: &'static str) -> Result<[usize; 4]> {
    Ok(x.dims4(kind, "input")?)
}

/// Max pooling, as `torch.nn.MaxPool2d`. Shapes: `[N, C, H, W]` -> `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    params: Pool2dParams,
    /// Argmax indices and input shape of the recorded forward pass.
    cache: Option<(Vec<usize>, [usize; 4])>,
}

impl MaxPool2d {
    pub fn new(params: Pool2dParams) -> Self {
        MaxPool2d {
            params,
            cache: None,
        }
    }
    pub fn pool_params(&self) -> &Pool2dParams {
        &self.params
    }
}

impl Module for MaxPool2d {
    fn kind(&self) -> &'static str {
        "max_pool2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let [c, h, w] = image_shape(single_shape(inputs)?, self.kind())?;
        let [ho, wo] = self.params.output_hw([h, w])?;
        Ok(vec![c, ho, wo])
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let dims = batch_dims(x, self.kind())?;
        let out = max_pool2d(x, &self.params)?;
        self.cache = ctx.record.then_some((out.indices, dims));
        Ok(out.output)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let (indices, dims) = recorded(&self.cache, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(max_pool2d_backward(
            grad_output,
            indices,
            *dims,
        )?)])
    }
    fn clear(&mut self) {
        self.cache = None;
    }
}

/// Average pooling, as `torch.nn.AvgPool2d`. Shapes: `[N, C, H, W]` -> `[N, C, Ho, Wo]`.
#[derive(Debug, Clone)]
pub struct AvgPool2d {
    params: Pool2dParams,
    input_dims: Option<[usize; 4]>,
}

impl AvgPool2d {
    pub fn new(params: Pool2dParams) -> Self {
        AvgPool2d {
            params,
            input_dims: None,
        }
    }
    pub fn pool_params(&self) -> &Pool2dParams {
        &self.params
    }
}

impl Module for AvgPool2d {
    fn kind(&self) -> &'static str {
        "avg_pool2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let [c, h, w] = image_shape(single_shape(inputs)?, self.kind())?;
        let [ho, wo] = self.params.output_hw([h, w])?;
        Ok(vec![c, ho, wo])
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let dims = batch_dims(x, self.kind())?;
        let y = avg_pool2d(x, &self.params)?;
        self.input_dims = ctx.record.then_some(dims);
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let dims = recorded(&self.input_dims, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(avg_pool2d_backward(
            grad_output,
            *dims,
            &self.params,
        )?)])
    }
    fn clear(&mut self) {
        self.input_dims = None;
    }
}

/// Adaptive average pooling to a fixed output size, as `torch.nn.AdaptiveAvgPool2d`.
/// Shapes: `[N, C, H, W]` -> `[N, C, oh, ow]`.
#[derive(Debug, Clone)]
pub struct AdaptiveAvgPool2d {
    output_hw: [usize; 2],
    input_dims: Option<[usize; 4]>,
}

impl AdaptiveAvgPool2d {
    pub fn new(output_hw: [usize; 2]) -> Self {
        AdaptiveAvgPool2d {
            output_hw,
            input_dims: None,
        }
    }
    pub fn output_hw(&self) -> [usize; 2] {
        self.output_hw
    }
}

impl Module for AdaptiveAvgPool2d {
    fn kind(&self) -> &'static str {
        "adaptive_avg_pool2d"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let [c, _, _] = image_shape(single_shape(inputs)?, self.kind())?;
        if self.output_hw.contains(&0) {
            return Err(crate::Error::config("output_size", "must be at least 1x1"));
        }
        Ok(vec![c, self.output_hw[0], self.output_hw[1]])
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let dims = batch_dims(x, self.kind())?;
        let y = adaptive_avg_pool2d(x, self.output_hw)?;
        self.input_dims = ctx.record.then_some(dims);
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let dims = recorded(&self.input_dims, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        Ok(vec![Some(adaptive_avg_pool2d_backward(
            grad_output,
            *dims,
        )?)])
    }
    fn clear(&mut self) {
        self.input_dims = None;
    }
}

/// Which reduction a [`GlobalPool`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    Avg,
    Max,
}

/// Global pooling of each plane to one value (`AdaptiveAvgPool2d(1)` /
/// `AdaptiveMaxPool2d(1)`). Shapes: `[N, C, H, W]` -> `[N, C, 1, 1]`.
#[derive(Debug, Clone)]
pub struct GlobalPool {
    kind: PoolKind,
    /// Input shape, and the argmax indices for max.
    cache: Option<([usize; 4], Vec<usize>)>,
}

impl GlobalPool {
    pub fn new(kind: PoolKind) -> Self {
        GlobalPool { kind, cache: None }
    }
    pub fn pool_kind(&self) -> PoolKind {
        self.kind
    }
}

impl Module for GlobalPool {
    fn kind(&self) -> &'static str {
        match self.kind {
            PoolKind::Avg => "global_avg_pool2d",
            PoolKind::Max => "global_max_pool2d",
        }
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let [c, _, _] = image_shape(single_shape(inputs)?, self.kind())?;
        Ok(vec![c, 1, 1])
    }
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let dims = batch_dims(x, self.kind())?;
        let (y, indices) = match self.kind {
            PoolKind::Avg => (global_avg_pool2d(x)?, Vec::new()),
            PoolKind::Max => {
                let out = global_max_pool2d(x)?;
                (out.output, out.indices)
            }
        };
        self.cache = ctx.record.then_some((dims, indices));
        Ok(y)
    }
    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let (dims, indices) = recorded(&self.cache, self.kind())?;
        if !need_input_grad {
            return Ok(vec![None]);
        }
        let g = match self.kind {
            PoolKind::Avg => global_avg_pool2d_backward(grad_output, *dims)?,
            PoolKind::Max => max_pool2d_backward(grad_output, indices, *dims)?,
        };
        Ok(vec![Some(g)])
    }
    fn clear(&mut self) {
        self.cache = None;
    }
}
