//! `BatchNorm1d` / `BatchNorm2d`, as `torch.nn.BatchNorm1d` / `torch.nn.BatchNorm2d`.

use convnet_core::{
    Tensor, batch_norm_backward, batch_norm_eval, batch_norm_eval_backward, batch_norm_train,
};

use super::{Buffer, BufferMut, ForwardCtx, Module, Param, recorded, single, single_shape};
use crate::error::{Error, Result};

/// Configuration of a [`BatchNorm`] layer. PyTorch's defaults: `eps = 1e-5`,
/// `momentum = Some(0.1)`, `affine`, `track_running_stats`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    pub num_features: usize,
    /// `true` for `BatchNorm2d` (input `[N, C, H, W]`), `false` for `BatchNorm1d` (`[N, C]`
    /// or `[N, C, L]`).
    pub spatial: bool,
    pub eps: f32,
    /// Weight of the new batch in the running statistics; `None`: a cumulative average
    /// (weight `1 / batches seen`), as PyTorch's `momentum=None`.
    pub momentum: Option<f32>,
    pub affine: bool,
    pub track_running_stats: bool,
}

impl BatchNormConfig {
    /// `BatchNorm2d(num_features)`.
    pub fn new_2d(num_features: usize) -> Self {
        BatchNormConfig {
            num_features,
            spatial: true,
            eps: 1e-5,
            momentum: Some(0.1),
            affine: true,
            track_running_stats: true,
        }
    }
    /// `BatchNorm1d(num_features)`.
    pub fn new_1d(num_features: usize) -> Self {
        BatchNormConfig {
            spatial: false,
            ..Self::new_2d(num_features)
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

    /// The layer's type name, as model files write it.
    pub fn kind(&self) -> &'static str {
        if self.spatial {
            "batchnorm2d"
        } else {
            "batchnorm1d"
        }
    }

    /// Per-sample output shape (the input's): `[C, H, W]` (2d) or `[C]` / `[C, L]` (1d), with
    /// `C = num_features`.
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let rank_ok = if self.spatial {
            input.len() == 3
        } else {
            matches!(input.len(), 1 | 2)
        };
        if !rank_ok || input[0] != self.num_features {
            let want = if self.spatial {
                format!("[{}, H, W]", self.num_features)
            } else {
                format!("[{}] or [{}, L]", self.num_features, self.num_features)
            };
            return Err(Error::model(format!(
                "{} expects per-sample input {want}, got {input:?}",
                self.kind()
            )));
        }
        Ok(input.to_vec())
    }

    /// The shapes of the learnable tensors, by `state_dict` name (nothing is allocated).
    pub fn param_dims(&self) -> Vec<(&'static str, Vec<usize>)> {
        if self.affine {
            vec![
                ("weight", vec![self.num_features]),
                ("bias", vec![self.num_features]),
            ]
        } else {
            Vec::new()
        }
    }

    /// Check the configuration (all that `init` checks, drawing nothing).
    pub fn check(&self) -> Result<()> {
        if self.num_features == 0 {
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
        Ok(())
    }

    /// Check the configuration; weight 1, bias 0, running mean 0 and variance 1.
    pub fn init(&self) -> Result<BatchNorm> {
        self.check()?;
        let c = self.num_features;
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

/// What backward needs: the input and how it was normalised.
#[derive(Debug, Clone)]
enum Cache {
    /// Batch statistics (training, or no running statistics).
    Batch {
        input: Tensor,
        mean: Tensor,
        invstd: Tensor,
    },
    /// Running statistics (evaluation).
    Running { input: Tensor },
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
}

impl Module for BatchNorm {
    fn kind(&self) -> &'static str {
        self.config.kind()
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.config.output_shape(single_shape(inputs)?)
    }

    fn forward(&mut self, inputs: Vec<Tensor>, ctx: &ForwardCtx) -> Result<Tensor> {
        let x = single(inputs)?;
        let x = &x;
        let weight = self.weight.as_ref().map(|p| &p.value);
        let bias = self.bias.as_ref().map(|p| &p.value);
        let use_batch = ctx.training || !self.config.track_running_stats;
        if use_batch {
            let out = batch_norm_train(x, weight, bias, self.config.eps)?;
            if ctx.training && self.config.track_running_stats {
                self.update_running(out.mean.data(), out.var_unbiased.data());
            }
            self.cache = ctx.record.then(|| Cache::Batch {
                input: x.clone(),
                mean: out.mean,
                invstd: out.invstd,
            });
            Ok(out.output)
        } else {
            let y = batch_norm_eval(
                x,
                &self.running_mean,
                &self.running_var,
                weight,
                bias,
                self.config.eps,
            )?;
            self.cache = ctx.record.then(|| Cache::Running { input: x.clone() });
            Ok(y)
        }
    }

    fn backward(
        &mut self,
        grad_output: Tensor,
        need_input_grad: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let grad_output = &grad_output;
        let weight = self.weight.as_ref().map(|p| &p.value);
        let grads = match recorded(&self.cache, self.kind())? {
            Cache::Batch {
                input,
                mean,
                invstd,
            } => batch_norm_backward(grad_output, input, mean, invstd, weight)?,
            Cache::Running { input } => batch_norm_eval_backward(
                grad_output,
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
