//! `batchnorm2d`, `batchnorm1d`: `BatchNorm2d` / `BatchNorm1d`, as `torch.nn.BatchNorm1d` / `torch.nn.BatchNorm2d`.

use convnet_core::{
    Pool2dParams, Tensor, batch_norm_backward, batch_norm_eval, batch_norm_eval_backward,
    batch_norm_relu_backward, batch_norm_relu_max_pool2d_backward, batch_norm_train,
    batch_norm_train_output, batch_norm_train_relu, batch_norm_train_relu_max_pool2d,
};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::kind::{Kind, Output, by_type_name};
use super::values;
use super::{
    Buffer, BufferMut, ForwardCtx, Layer, Module, Param, channels, recorded, single, single_shape,
    take_given,
};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::train::{Workers, sync_bn};

fn default_eps() -> f32 {
    1e-5
}

fn default_momentum() -> Option<f32> {
    Some(0.1)
}

/// Settings of a [`BatchNorm`] layer: the `batchnorm2d` and `batchnorm1d` tables of a model
/// file. PyTorch's defaults: `eps = 1e-5`, `momentum = Some(0.1)`, `affine`,
/// `track_running_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormConfig {
    /// `None`: taken from the input when the layer is planned in a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_features: Option<usize>,
    /// `true` for `BatchNorm2d` (input `[N, C, H, W]`), `false` for `BatchNorm1d` (`[N, C]`
    /// or `[N, C, L]`): the type name says which.
    #[serde(skip, default = "values::yes")]
    pub spatial: bool,
    #[serde(with = "values::finite", default = "default_eps")]
    pub eps: f32,
    /// Weight of the new batch in the running statistics; `None`: a cumulative average
    /// (weight `1 / batches seen`), as PyTorch's `momentum=None`.
    #[serde(with = "values::momentum", default = "default_momentum")]
    pub momentum: Option<f32>,
    #[serde(default = "values::yes")]
    pub affine: bool,
    #[serde(default = "values::yes")]
    pub track_running_stats: bool,
}

impl BatchNormConfig {
    /// `BatchNorm2d(num_features)`.
    pub fn new_2d(num_features: usize) -> Self {
        BatchNormConfig {
            num_features: Some(num_features),
            ..Self::lazy_2d()
        }
    }
    /// `BatchNorm1d(num_features)`.
    pub fn new_1d(num_features: usize) -> Self {
        BatchNormConfig {
            num_features: Some(num_features),
            ..Self::lazy_1d()
        }
    }
    /// `LazyBatchNorm2d()`: `num_features` taken from the input when the layer is planned
    /// in a model.
    pub fn lazy_2d() -> Self {
        BatchNormConfig {
            num_features: None,
            spatial: true,
            eps: default_eps(),
            momentum: default_momentum(),
            affine: values::yes(),
            track_running_stats: values::yes(),
        }
    }
    /// `LazyBatchNorm1d()`.
    pub fn lazy_1d() -> Self {
        BatchNormConfig {
            spatial: false,
            ..Self::lazy_2d()
        }
    }
    pub fn with_eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
    pub fn with_momentum(mut self, momentum: Option<f32>) -> Self {
        self.momentum = momentum;
        self
    }
    pub fn with_affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }
    pub fn with_track_running_stats(mut self, track: bool) -> Self {
        self.track_running_stats = track;
        self
    }

    /// Check the settings (all that `init` checks) and return the number of features.
    fn checked(&self) -> Result<usize> {
        let c = self.num_features.ok_or_else(|| {
            Error::config(
                "num_features",
                "not known: give it, or plan the layer in a model (which takes it from the \
                 input)",
            )
        })?;
        if c == 0 {
            return Err(Error::config(
                "num_features",
                "batch norm needs at least one feature",
            ));
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(Error::config(
                "eps",
                format!("must be positive, got {}", self.eps),
            ));
        }
        if let Some(m) = self.momentum
            && !(0.0..=1.0).contains(&m)
        {
            return Err(Error::config(
                "momentum",
                format!("must be in [0, 1], got {m}"),
            ));
        }
        Ok(c)
    }

    /// Check the settings; weight 1, bias 0, running mean 0 and variance 1.
    pub fn init(&self) -> Result<BatchNorm> {
        let c = self.checked()?;
        let full = |v: f32| Tensor::full([c], v);
        let affine = |v: f32| -> Result<Option<Param>> {
            Ok(if self.affine {
                Some(Param::new(full(v)?))
            } else {
                None
            })
        };
        Ok(BatchNorm {
            config: *self,
            weight: affine(1.0)?,
            bias: affine(0.0)?,
            running_mean: full(0.0)?,
            running_var: full(1.0)?,
            num_batches_tracked: 0,
            cache: None,
        })
    }
}

impl Kind for BatchNormConfig {
    const NAMES: &'static [&'static str] = &["batchnorm2d", "batchnorm1d"];
    const SHORTHAND: &'static str = "bn, bn1d";

    fn name(&self) -> &'static str {
        Self::NAMES[usize::from(!self.spatial)]
    }

    fn named(self, name: &str) -> Self {
        BatchNormConfig {
            spatial: name == Self::NAMES[0],
            ..self
        }
    }

    fn resolve(&self, inputs: &[&[usize]]) -> Result<Self> {
        let c = take_given("num_features", self.num_features, channels(inputs)?)?;
        Ok(BatchNormConfig {
            num_features: Some(c),
            ..*self
        })
    }

    fn check(&self) -> Result<()> {
        self.checked().map(drop)
    }

    fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        let c = self.num_features.unwrap_or(0);
        if self.affine {
            vec![("weight", vec![c]), ("bias", vec![c])]
        } else {
            Vec::new()
        }
    }

    /// The input's shape: `[C, H, W]` (2d) or `[C]` / `[C, L]` (1d), with
    /// `C = num_features`.
    fn output(&self, inputs: &[&[usize]]) -> Result<Output> {
        let input = single_shape(inputs)?;
        let c = self.num_features.unwrap_or(0);
        let rank_ok = if self.spatial {
            input.len() == 3
        } else {
            matches!(input.len(), 1 | 2)
        };
        if !rank_ok || input[0] != c {
            let want = if self.spatial {
                format!("[{c}, H, W]")
            } else {
                format!("[{c}] or [{c}, L]")
            };
            return Err(Error::model(format!(
                "{} expects per-sample input {want}, got {input:?}",
                self.name()
            )));
        }
        Ok(Output::new(input.to_vec()))
    }

    fn build(&self, _rng: &mut Rng) -> Result<Layer> {
        Ok(Box::new(self.init()?))
    }

    fn shorthand(words: &[&str]) -> Option<Result<Self>> {
        match words {
            ["bn"] => Some(Ok(Self::lazy_2d())),
            ["bn1d"] => Some(Ok(Self::lazy_1d())),
            _ => by_type_name(words),
        }
    }
}

/// What backward needs: the input and how it was normalised.
#[derive(Debug, Clone)]
enum Cache {
    /// Batch statistics (training, or no running statistics), over these workers' shards
    /// when `workers` is given.
    Batch {
        input: Tensor,
        mean: Tensor,
        invstd: Tensor,
        workers: Option<Arc<dyn Workers>>,
        /// What was fused into the forward pass after the batch norm, and so whose output's
        /// gradient backward takes.
        after: After,
    },
    /// Running statistics (evaluation).
    Running { input: Tensor },
}

/// The layers after a batch norm that its forward pass ran fused into its own passes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    Nothing,
    /// A ReLU ([`BatchNorm::forward_relu`]).
    Relu,
    /// A ReLU and then a max pooling ([`BatchNorm::forward_relu_max_pool`]).
    ReluMaxPool(Pool2dParams),
}

/// Batch normalisation over the channel axis (axis 1).
///
/// Shapes: input `[N, C, H, W]` (2d) or `[N, C]` / `[N, C, L]` (1d); output the same.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    config: BatchNormConfig,
    weight: Option<Param>,
    bias: Option<Param>,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: u64,
    cache: Option<Cache>,
}

impl BatchNorm {
    pub fn config(&self) -> &BatchNormConfig {
        &self.config
    }
    pub fn running_mean(&self) -> &Tensor {
        &self.running_mean
    }
    pub fn running_var(&self) -> &Tensor {
        &self.running_var
    }
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Fold the batch statistics into the running ones, as PyTorch does in training.
    fn update_running(&mut self, mean: &[f32], var_unbiased: &[f32]) {
        self.num_batches_tracked += 1;
        let f = self
            .config
            .momentum
            .unwrap_or(1.0 / self.num_batches_tracked as f32);
        for (r, &m) in self.running_mean.data_mut().iter_mut().zip(mean) {
            *r = (1.0 - f) * *r + f * m;
        }
        for (r, &v) in self.running_var.data_mut().iter_mut().zip(var_unbiased) {
            *r = (1.0 - f) * *r + f * v;
        }
    }

    /// Whether [`BatchNorm::forward_relu`] can run this pass: batch statistics over this
    /// process's batch (training, or no running statistics; not synchronized across workers).
    pub(crate) fn fuses_relu(&self, ctx: &ForwardCtx) -> bool {
        self.uses_batch(ctx) && ctx.sync_batch_norm.is_none()
    }

    fn uses_batch(&self, ctx: &ForwardCtx) -> bool {
        ctx.training || !self.config.track_running_stats
    }

    /// The forward pass followed by a ReLU, in the same passes over the data
    /// (`convnet_core::batch_norm_train_relu`): the ReLU's output. Backward then takes the
    /// gradient of that output, until [`BatchNorm::unfuse_relu`]. Only where
    /// [`BatchNorm::fuses_relu`].
    pub(crate) fn forward_relu(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        if !self.fuses_relu(ctx) {
            return Err(Error::model(
                "a ReLU fuses into batch norm only on this process's batch statistics",
            ));
        }
        self.forward_batch(single(inputs)?, ctx, After::Relu)
    }

    /// The forward pass followed by a ReLU and the max pooling `pool`, in the batch norm's
    /// passes (`convnet_core::batch_norm_train_relu_max_pool2d`): the pooling's output.
    /// Backward then takes the gradient of that output, until
    /// [`BatchNorm::unfuse_max_pool`]. Only where [`BatchNorm::fuses_relu`].
    pub(crate) fn forward_relu_max_pool(
        &mut self,
        inputs: Vec<Tensor>,
        ctx: &ForwardCtx,
        pool: &Pool2dParams,
    ) -> Result<Tensor> {
        if !self.fuses_relu(ctx) {
            return Err(Error::model(
                "a ReLU and a pooling fuse into batch norm only on this process's batch \
                 statistics",
            ));
        }
        self.forward_batch(single(inputs)?, ctx, After::ReluMaxPool(*pool))
    }

    /// Let backward take the gradient of the batch norm's own output again (the ReLU fused
    /// into the recorded forward pass runs its own backward).
    pub(crate) fn unfuse_relu(&mut self) {
        if let Some(Cache::Batch { after, .. }) = &mut self.cache {
            *after = After::Nothing;
        }
    }

    /// Let backward take the gradient of the ReLU's output (as after
    /// [`BatchNorm::forward_relu`]) rather than the fused pooling's: the ReLU's output, which
    /// that pass did not write, recomputed (the same bits), for the ReLU and the pooling to
    /// keep and run their own backward from. `None` unless the recorded pass fused a pooling.
    pub(crate) fn unfuse_max_pool(&mut self) -> Result<Option<Tensor>> {
        let weight = self.weight.as_ref().map(|p| &p.value);
        let bias = self.bias.as_ref().map(|p| &p.value);
        let Some(Cache::Batch {
            input,
            mean,
            invstd,
            after: after @ After::ReluMaxPool(_),
            ..
        }) = &mut self.cache
        else {
            return Ok(None);
        };
        let y = batch_norm_train_output(input, mean, invstd, weight, bias, true)?;
        *after = After::Relu;
        Ok(Some(y))
    }

    /// The forward pass on batch statistics, with `after` fused (not across workers).
    fn forward_batch(&mut self, x: Tensor, ctx: &ForwardCtx, after: After) -> Result<Tensor> {
        let weight = self.weight.as_ref().map(|p| &p.value);
        let bias = self.bias.as_ref().map(|p| &p.value);
        let eps = self.config.eps;
        let out = match (ctx.sync_batch_norm, after) {
            (Some(workers), After::Nothing) => {
                sync_bn::forward(&x, weight, bias, eps, workers.as_ref())?
            }
            (None, After::Nothing) => batch_norm_train(&x, weight, bias, eps)?,
            (None, After::Relu) => batch_norm_train_relu(&x, weight, bias, eps)?,
            (None, After::ReluMaxPool(pool)) => {
                batch_norm_train_relu_max_pool2d(&x, weight, bias, eps, &pool)?
            }
            (Some(_), _) => {
                return Err(Error::model(
                    "a ReLU does not fuse into batch norm synchronized across workers",
                ));
            }
        };
        if ctx.training && self.config.track_running_stats {
            self.update_running(out.mean.data(), out.var_unbiased.data());
        }
        self.cache = ctx.record.then_some(Cache::Batch {
            input: x,
            mean: out.mean,
            invstd: out.invstd,
            workers: ctx.sync_batch_norm.cloned(),
            after,
        });
        Ok(out.output)
    }
}

impl Module for BatchNorm {
    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        if self.uses_batch(ctx) {
            self.forward_batch(x, ctx, After::Nothing)
        } else {
            let weight = self.weight.as_ref().map(|p| &p.value);
            let bias = self.bias.as_ref().map(|p| &p.value);
            let y = batch_norm_eval(
                &x,
                &self.running_mean,
                &self.running_var,
                weight,
                bias,
                self.config.eps,
            )?;
            self.cache = ctx.record.then_some(Cache::Running { input: x });
            Ok(y)
        }
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let weight = self.weight.as_ref().map(|p| &p.value);
        let bias = self.bias.as_ref().map(|p| &p.value);
        let grads = match recorded(&self.cache)? {
            Cache::Batch {
                input,
                mean,
                invstd,
                workers: None,
                after,
            } => match after {
                After::Nothing => batch_norm_backward(&grad_output, input, mean, invstd, weight)?,
                After::Relu => {
                    batch_norm_relu_backward(&grad_output, input, mean, invstd, weight, bias)?
                }
                After::ReluMaxPool(pool) => batch_norm_relu_max_pool2d_backward(
                    &grad_output,
                    input,
                    mean,
                    invstd,
                    weight,
                    bias,
                    pool,
                )?,
            },
            Cache::Batch {
                input,
                mean,
                invstd,
                workers: Some(workers),
                after: After::Nothing,
            } => sync_bn::backward(&grad_output, input, mean, invstd, weight, workers.as_ref())?,
            Cache::Batch {
                workers: Some(_), ..
            } => {
                return Err(Error::model(
                    "a ReLU does not fuse into batch norm synchronized across workers",
                ));
            }
            Cache::Running { input } => batch_norm_eval_backward(
                &grad_output,
                input,
                &self.running_mean,
                &self.running_var,
                weight,
                self.config.eps,
            )?,
        };
        if let (Some(w), Some(g)) = (self.weight.as_mut(), &grads.grad_weight) {
            w.accumulate(g)?;
        }
        if let (Some(b), Some(g)) = (self.bias.as_mut(), &grads.grad_bias) {
            b.accumulate(g)?;
        }
        Ok(vec![need_input_grad.then_some(grads.grad_input)])
    }

    fn params(&self) -> Vec<(&'static str, &Param)> {
        match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => vec![("weight", w), ("bias", b)],
            _ => Vec::new(),
        }
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param)> {
        match (&mut self.weight, &mut self.bias) {
            (Some(w), Some(b)) => vec![("weight", w), ("bias", b)],
            _ => Vec::new(),
        }
    }

    fn buffers(&self) -> Vec<(&'static str, Buffer<'_>)> {
        if !self.config.track_running_stats {
            return Vec::new();
        }
        vec![
            ("running_mean", Buffer::Tensor(&self.running_mean)),
            ("running_var", Buffer::Tensor(&self.running_var)),
            (
                "num_batches_tracked",
                Buffer::Count(self.num_batches_tracked),
            ),
        ]
    }

    fn buffers_mut(&mut self) -> Vec<(&'static str, BufferMut<'_>)> {
        if !self.config.track_running_stats {
            return Vec::new();
        }
        vec![
            ("running_mean", BufferMut::Tensor(&mut self.running_mean)),
            ("running_var", BufferMut::Tensor(&mut self.running_var)),
            (
                "num_batches_tracked",
                BufferMut::Count(&mut self.num_batches_tracked),
            ),
        ]
    }

    fn clear(&mut self) {
        self.cache = None;
    }
}
