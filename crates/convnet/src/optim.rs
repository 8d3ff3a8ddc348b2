//! Optimizers (SGD with momentum / Nesterov / weight decay, Adam, AdamW) and learning-rate
//! schedules (constant, step, cosine, one-cycle), computing what PyTorch's do.
//!
//! Updates follow `torch.optim`'s single-tensor code operation by operation, in f32, so a step
//! matches PyTorch's to rounding. State (momentum buffers, Adam moments) is kept per parameter
//! name, so a checkpoint can save and restore it.

use std::collections::BTreeMap;

use convnet_core::Tensor;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::Model;

/// Which optimizer, with its hyper-parameters (PyTorch's defaults where it has them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    Sgd {
        lr: f32,
        momentum: f32,
        dampening: f32,
        weight_decay: f32,
        nesterov: bool,
    },
    Adam {
        lr: f32,
        betas: (f32, f32),
        eps: f32,
        weight_decay: f32,
    },
    /// Adam with decoupled weight decay (the parameter shrinks by `lr * weight_decay`).
    AdamW {
        lr: f32,
        betas: (f32, f32),
        eps: f32,
        weight_decay: f32,
    },
}

impl OptimizerConfig {
    /// SGD with momentum.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
    /// Adam with PyTorch's defaults.
    pub fn adam(lr: f32) -> Self {
        OptimizerConfig::Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01).
    pub fn adamw(lr: f32) -> Self {
        OptimizerConfig::AdamW {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            OptimizerConfig::Sgd { lr, .. }
            | OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. } => lr,
        }
    }

    /// The same optimizer with another weight decay.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        match &mut self {
            OptimizerConfig::Sgd { weight_decay, .. }
            | OptimizerConfig::Adam { weight_decay, .. }
            | OptimizerConfig::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }

    fn check(&self) -> Result<()> {
        match *self {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                dampening,
                weight_decay,
                nesterov,
            } => {
                nonneg("lr", lr)?;
                fraction("momentum", momentum)?;
                fraction("dampening", dampening)?;
                nonneg("weight_decay", weight_decay)?;
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return Err(Error::config(
                        "nesterov",
                        "Nesterov momentum needs a momentum and zero dampening (as in PyTorch)",
                    ));
                }
            }
            OptimizerConfig::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                lr,
                betas,
                eps,
                weight_decay,
            } => {
                nonneg("lr", lr)?;
                nonneg("eps", eps)?;
                nonneg("weight_decay", weight_decay)?;
                fraction("beta1", betas.0)?;
                fraction("beta2", betas.1)?;
            }
        }
        Ok(())
    }
}

/// `Ok` when `holds`, else an error naming the setting: "must be `what`, got `v`".
fn require(name: &'static str, v: f32, holds: bool, what: &str) -> Result<()> {
    if holds {
        Ok(())
    } else {
        Err(Error::config(name, format!("must be {what}, got {v}")))
    }
}

/// A finite value `>= 0` (rates, decays).
fn nonneg(name: &'static str, v: f32) -> Result<()> {
    require(
        name,
        v,
        v.is_finite() && v >= 0.0,
        "finite and not negative",
    )
}

/// A finite value `> 0` (factors that divide or multiply a rate).
fn positive(name: &'static str, v: f32) -> Result<()> {
    require(name, v, v.is_finite() && v > 0.0, "finite and positive")
}

/// A value in `[0, 1)` (momentum-like factors).
fn fraction(name: &'static str, v: f32) -> Result<()> {
    require(name, v, (0.0..1.0).contains(&v), "in [0, 1)")
}

/// Per-parameter state.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Sgd {
        momentum_buffer: Option<Vec<f32>>,
    },
    Adam {
        exp_avg: Vec<f32>,
        exp_avg_sq: Vec<f32>,
        step: u64,
    },
}

/// An optimizer with its state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    config: OptimizerConfig,
    state: BTreeMap<String, State>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig) -> Result<Self> {
        config.check()?;
        Ok(Optimizer {
            config,
            state: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Update every parameter of `model` from its gradient, with learning rate `lr` and
    /// (for a cycling schedule) `momentum` in place of the configured momentum / beta1.
    pub fn step(&mut self, model: &mut Model, lr: f32, momentum: Option<f32>) {
        for (name, param) in model.params_mut() {
            let p = param.value.data_mut();
            let g = param.grad.data();
            match self.config {
                OptimizerConfig::Sgd {
                    momentum: m,
                    dampening,
                    weight_decay,
                    nesterov,
                    ..
                } => {
                    let m = momentum.unwrap_or(m);
                    let state = self.state.entry(name).or_insert(State::Sgd {
                        momentum_buffer: None,
                    });
                    let State::Sgd { momentum_buffer } = state else {
                        unreachable!("state kinds follow the optimizer kind")
                    };
                    sgd_step(
                        p,
                        g,
                        lr,
                        m,
                        dampening,
                        weight_decay,
                        nesterov,
                        momentum_buffer,
                    );
                }
                OptimizerConfig::Adam {
                    betas,
                    eps,
                    weight_decay,
                    ..
                }
                | OptimizerConfig::AdamW {
                    betas,
                    eps,
                    weight_decay,
                    ..
                } => {
                    let decoupled = matches!(self.config, OptimizerConfig::AdamW { .. });
                    let beta1 = momentum.unwrap_or(betas.0);
                    let state = self.state.entry(name).or_insert_with(|| State::Adam {
                        exp_avg: vec![0.0; p.len()],
                        exp_avg_sq: vec![0.0; p.len()],
                        step: 0,
                    });
                    let State::Adam {
                        exp_avg,
                        exp_avg_sq,
                        step,
                    } = state
                    else {
                        unreachable!("state kinds follow the optimizer kind")
                    };
                    *step += 1;
                    adam_step(
                        p,
                        g,
                        AdamArgs {
                            lr,
                            beta1,
                            beta2: betas.1,
                            eps,
                            weight_decay,
                            decoupled,
                            step: *step,
                        },
                        exp_avg,
                        exp_avg_sq,
                    );
                }
            }
        }
    }

    /// The state as named tensors, for a checkpoint: `<param>.momentum_buffer`,
    /// `<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.step` (one value).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let vector = |v: &[f32]| Tensor::new([v.len()], v.to_vec()).expect("length matches");
        for (name, state) in &self.state {
            match state {
                State::Sgd {
                    momentum_buffer: Some(b),
                } => out.push((format!("{name}.momentum_buffer"), vector(b))),
                State::Sgd {
                    momentum_buffer: None,
                } => {}
                State::Adam {
                    exp_avg,
                    exp_avg_sq,
                    step,
                } => {
                    out.push((format!("{name}.exp_avg"), vector(exp_avg)));
                    out.push((format!("{name}.exp_avg_sq"), vector(exp_avg_sq)));
                    out.push((format!("{name}.step"), vector(&[*step as f32])));
                }
            }
        }
        out
    }

    /// Restore the state saved by [`Optimizer::state_tensors`] for the parameters of `model`,
    /// after `steps_taken` optimizer steps. A state that does not fit is refused, naming the
    /// tensor: one of another size, a value that is not finite (or a negative second moment),
    /// a parameter without state once steps were taken (or with a step count that is not
    /// `steps_taken`), a state of no parameter. A resumed run then continues exactly.
    pub fn load_state(
        &mut self,
        model: &Model,
        tensors: &BTreeMap<String, Tensor>,
        steps_taken: usize,
    ) -> Result<()> {
        self.state.clear();
        let mut used = std::collections::BTreeSet::new();
        let mut without_state = Vec::new();
        for (name, param) in model.params() {
            let len = param.value.numel();
            let mut get = |suffix: &str| -> Result<Option<Vec<f32>>> {
                let key = format!("{name}.{suffix}");
                let Some(t) = tensors.get(&key) else {
                    return Ok(None);
                };
                let want = if suffix == "step" { 1 } else { len };
                if t.numel() != want {
                    return Err(state_error(
                        &key,
                        format!("has {} values; {want} expected", t.numel()),
                    ));
                }
                if let Some(v) = t.data().iter().find(|v| !v.is_finite()) {
                    return Err(state_error(&key, format!("holds {v}")));
                }
                used.insert(key);
                Ok(Some(t.data().to_vec()))
            };
            let state = match self.config {
                OptimizerConfig::Sgd { .. } => match get("momentum_buffer")? {
                    Some(b) => State::Sgd {
                        momentum_buffer: Some(b),
                    },
                    None => {
                        without_state.push(name.clone());
                        State::Sgd {
                            momentum_buffer: None,
                        }
                    }
                },
                OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => {
                    match (get("exp_avg")?, get("exp_avg_sq")?, get("step")?) {
                        (Some(exp_avg), Some(exp_avg_sq), Some(step)) => State::Adam {
                            step: adam_step_count(&name, step[0], steps_taken)?,
                            exp_avg,
                            exp_avg_sq: non_negative(&name, exp_avg_sq)?,
                        },
                        (None, None, None) => {
                            without_state.push(name.clone());
                            continue;
                        }
                        _ => {
                            return Err(Error::model(format!(
                                "optimizer state of {name} is incomplete: exp_avg, exp_avg_sq \
                                 and step are saved together"
                            )));
                        }
                    }
                }
            };
            self.state.insert(name, state);
        }
        self.check_complete(&without_state, steps_taken)?;
        if let Some(extra) = tensors.keys().find(|k| !used.contains(*k)) {
            return Err(state_error(
                extra,
                "belongs to no parameter of the model".into(),
            ));
        }
        Ok(())
    }

    /// After steps were taken, Adam has a state for every parameter, and SGD either for
    /// every parameter (with momentum) or for none.
    fn check_complete(&self, without_state: &[String], steps_taken: usize) -> Result<()> {
        let Some(first) = without_state.first() else {
            return Ok(());
        };
        let sgd_without_momentum = matches!(self.config, OptimizerConfig::Sgd { .. })
            && without_state.len() == self.state.len();
        if steps_taken == 0 || sgd_without_momentum {
            return Ok(());
        }
        Err(Error::model(format!(
            "the optimizer state has nothing for {first} after {steps_taken} steps (the \
             optimizer file is incomplete)"
        )))
    }
}

fn state_error(key: &str, reason: String) -> Error {
    Error::model(format!("optimizer state {key} {reason}"))
}

/// Adam's step count of parameter `name`: a whole number equal to the run's step count (as
/// saved, in f32).
fn adam_step_count(name: &str, saved: f32, steps_taken: usize) -> Result<u64> {
    if saved.fract() != 0.0 || saved < 0.0 || saved != steps_taken as f32 {
        return Err(state_error(
            &format!("{name}.step"),
            format!("is {saved}, but the run has taken {steps_taken} steps"),
        ));
    }
    Ok(saved as u64)
}

/// Second moments are squares: a negative one would make Adam's update NaN.
fn non_negative(name: &str, v: Vec<f32>) -> Result<Vec<f32>> {
    match v.iter().position(|x| *x < 0.0) {
        Some(i) => Err(state_error(
            &format!("{name}.exp_avg_sq"),
            format!("holds a negative value ({} at index {i})", v[i]),
        )),
        None => Ok(v),
    }
}

/// `torch.optim.SGD`'s update of one parameter, element by element (each value gets
/// PyTorch's sequence of operations, so chunks run in parallel and give the same values), with
/// no allocation after the momentum buffer's first step.
#[allow(clippy::too_many_arguments)]
fn sgd_step(
    p: &mut [f32],
    g: &[f32],
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: bool,
    buffer: &mut Option<Vec<f32>>,
) {
    let k = SgdConsts {
        lr,
        momentum,
        dampening,
        weight_decay,
    };
    let decay = weight_decay != 0.0;
    if momentum == 0.0 {
        let update = if decay {
            sgd_update::<true, false, false>
        } else {
            sgd_update::<false, false, false>
        };
        p.par_chunks_mut(STEP_CHUNK)
            .zip(g.par_chunks(STEP_CHUNK))
            .for_each(|(p, g)| update(&k, p, g, &mut [], false));
        return;
    }
    // The first step sets the buffer to the step's direction (`torch.clone(d)`).
    let first = buffer.is_none();
    let buf = buffer.get_or_insert_with(|| vec![0.0; p.len()]);
    let update = match (decay, nesterov) {
        (true, true) => sgd_update::<true, true, true>,
        (true, false) => sgd_update::<true, true, false>,
        (false, true) => sgd_update::<false, true, true>,
        (false, false) => sgd_update::<false, true, false>,
    };
    p.par_chunks_mut(STEP_CHUNK)
        .zip(g.par_chunks(STEP_CHUNK))
        .zip(buf.par_chunks_mut(STEP_CHUNK))
        .for_each(|((p, g), b)| update(&k, p, g, b, first));
}

/// The per-step constants of an SGD update.
struct SgdConsts {
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
}

/// SGD's update of a chunk: `d = g (+ wd p)`; with momentum the buffer becomes `d` (first
/// step) or `b momentum + (1 - dampening) d`, and `d` the buffer (or `d + momentum b`,
/// Nesterov); then `p -= lr d`. `b` is empty without momentum.
fn sgd_update<const DECAY: bool, const MOMENTUM: bool, const NESTEROV: bool>(
    k: &SgdConsts,
    p: &mut [f32],
    g: &[f32],
    b: &mut [f32],
    first: bool,
) {
    let direction = |p: f32, g: f32| if DECAY { g + k.weight_decay * p } else { g };
    if !MOMENTUM {
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= k.lr * direction(*p, g);
        }
        return;
    }
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
        let d = direction(*p, g);
        *b = if first {
            d
        } else {
            *b * k.momentum + (1.0 - k.dampening) * d
        };
        let d = if NESTEROV { d + k.momentum * *b } else { *b };
        *p -= k.lr * d;
    }
}

struct AdamArgs {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    step: u64,
}

/// `torch.optim.Adam` / `AdamW`'s update of one parameter (single-tensor path).
fn adam_step(p: &mut [f32], g: &[f32], a: AdamArgs, exp_avg: &mut [f32], exp_avg_sq: &mut [f32]) {
    let decay = a.weight_decay != 0.0;
    let shrink = 1.0 - a.lr * a.weight_decay;
    // Scalars are Python floats (f64) in PyTorch, converted where they meet the tensors.
    let bias_correction1 = 1.0 - f64::from(a.beta1).powi(a.step as i32);
    let bias_correction2 = 1.0 - f64::from(a.beta2).powi(a.step as i32);
    let step_size = (f64::from(a.lr) / bias_correction1) as f32;
    let bc2_sqrt = bias_correction2.sqrt() as f32;
    let lerp_weight = 1.0 - a.beta1;
    let k = AdamConsts {
        shrink,
        weight_decay: a.weight_decay,
        lerp_weight,
        beta2: a.beta2,
        bc2_sqrt,
        eps: a.eps,
        step_size,
    };
    // One loop per combination of the settings, so that each compiles without branches
    // (and vectorises).
    let update = match (
        a.decoupled && decay,
        !a.decoupled && decay,
        lerp_weight < 0.5,
    ) {
        (true, _, true) => adam_update::<true, false, true>,
        (true, _, false) => adam_update::<true, false, false>,
        (false, true, true) => adam_update::<false, true, true>,
        (false, true, false) => adam_update::<false, true, false>,
        (false, false, true) => adam_update::<false, false, true>,
        (false, false, false) => adam_update::<false, false, false>,
    };
    p.par_chunks_mut(STEP_CHUNK)
        .zip(g.par_chunks(STEP_CHUNK))
        .zip(exp_avg.par_chunks_mut(STEP_CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(STEP_CHUNK))
        .for_each(|(((p, g), m), v)| update(&k, p, g, m, v));
}

/// The per-step constants of an Adam update.
struct AdamConsts {
    shrink: f32,
    weight_decay: f32,
    lerp_weight: f32,
    beta2: f32,
    bc2_sqrt: f32,
    eps: f32,
    step_size: f32,
}

/// Adam's update, element by element: each value gets PyTorch's sequence of operations
/// (AdamW's decay first, as its separate `mul_`; Adam's L2 term added to the gradient), so
/// chunks can run on any thread and give the same values.
fn adam_update<const DECOUPLED: bool, const L2: bool, const LERP_LOW: bool>(
    k: &AdamConsts,
    p: &mut [f32],
    g: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(exp_avg).zip(exp_avg_sq) {
        if DECOUPLED {
            *p *= k.shrink;
        }
        let grad = if L2 { g + k.weight_decay * *p } else { g };
        // exp_avg.lerp_(grad, 1 - beta1): PyTorch's lerp, by which side of 0.5 the weight is.
        *m = if LERP_LOW {
            *m + k.lerp_weight * (grad - *m)
        } else {
            grad - (grad - *m) * (1.0 - k.lerp_weight)
        };
        *v = *v * k.beta2 + (1.0 - k.beta2) * grad * grad;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += -k.step_size * (*m / denom);
    }
}

/// Values per parallel chunk of an optimizer update (a bias is one chunk; the reference
/// model's largest weight, 401,408 values, is 25).
const STEP_CHUNK: usize = 1 << 14;

/// How the learning rate moves over a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleConfig {
    /// The optimizer's learning rate throughout.
    Constant,
    /// Multiply by `gamma` every `step_epochs` epochs (`torch.optim.lr_scheduler.StepLR`,
    /// stepped per epoch).
    Step { step_epochs: usize, gamma: f32 },
    /// Cosine from the base rate to `eta_min` over the whole run, updated every step
    /// (`CosineAnnealingLR` with `T_max` = total steps, stepped per batch).
    Cosine { eta_min: f32 },
    /// `OneCycleLR(max_lr, total_steps)` with PyTorch's defaults: warm up from
    /// `max_lr / div_factor` for `pct_start` of the steps, then cosine down to
    /// `max_lr / div_factor / final_div_factor`; momentum (SGD) or beta1 (Adam) cycles the
    /// other way between `max_momentum` and `base_momentum`.
    OneCycle {
        max_lr: f32,
        pct_start: f32,
        div_factor: f32,
        final_div_factor: f32,
        cycle_momentum: bool,
        base_momentum: f32,
        max_momentum: f32,
    },
}

impl ScheduleConfig {
    /// Check the schedule's own settings (finite, in range), naming the one at fault.
    pub fn check(&self) -> Result<()> {
        match *self {
            ScheduleConfig::Constant => {}
            ScheduleConfig::Step { step_epochs, gamma } => {
                if step_epochs == 0 {
                    return Err(Error::config(
                        "step_epochs",
                        "the step schedule needs step_epochs >= 1",
                    ));
                }
                positive("gamma", gamma)?;
            }
            ScheduleConfig::Cosine { eta_min } => nonneg("eta_min", eta_min)?,
            ScheduleConfig::OneCycle {
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
                base_momentum,
                max_momentum,
                ..
            } => {
                positive("lr", max_lr)?;
                if !(0.0..=1.0).contains(&pct_start) {
                    return Err(Error::config(
                        "pct_start",
                        format!("must be in [0, 1], got {pct_start}"),
                    ));
                }
                positive("div_factor", div_factor)?;
                positive("final_div_factor", final_div_factor)?;
                fraction("base_momentum", base_momentum)?;
                fraction("max_momentum", max_momentum)?;
            }
        }
        Ok(())
    }

    /// One-cycle with PyTorch's defaults.
    pub fn one_cycle(max_lr: f32) -> Self {
        ScheduleConfig::OneCycle {
            max_lr,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
        }
    }
}

/// A schedule over a run of `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    config: ScheduleConfig,
    base_lr: f32,
    steps_per_epoch: usize,
    total_steps: usize,
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

impl Schedule {
    pub fn new(
        config: ScheduleConfig,
        optimizer: &OptimizerConfig,
        steps_per_epoch: usize,
        epochs: usize,
    ) -> Result<Self> {
        config.check()?;
        let total_steps = steps_per_epoch.checked_mul(epochs).ok_or_else(|| {
            Error::config(
                "epochs",
                format!("{epochs} epochs of {steps_per_epoch} steps are too many steps to count"),
            )
        })?;
        if matches!(config, ScheduleConfig::OneCycle { .. }) && total_steps == 0 {
            return Err(Error::config(
                "schedule",
                "one-cycle needs at least one step",
            ));
        }
        Ok(Schedule {
            config,
            base_lr: optimizer.lr(),
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps,
        })
    }

    /// Learning rate and momentum override for optimizer step `step` (0-based).
    pub fn at(&self, step: usize) -> (f32, Option<f32>) {
        match self.config {
            ScheduleConfig::Constant => (self.base_lr, None),
            ScheduleConfig::Step { step_epochs, gamma } => {
                let epoch = step / self.steps_per_epoch;
                let k = (epoch / step_epochs) as i32;
                (
                    (f64::from(self.base_lr) * f64::from(gamma).powi(k)) as f32,
                    None,
                )
            }
            ScheduleConfig::Cosine { eta_min } => {
                let t = step.min(self.total_steps) as f64 / self.total_steps.max(1) as f64;
                let lr = f64::from(eta_min)
                    + (f64::from(self.base_lr) - f64::from(eta_min))
                        * (1.0 + (std::f64::consts::PI * t).cos())
                        / 2.0;
                (lr as f32, None)
            }
            ScheduleConfig::OneCycle {
                max_lr,
                pct_start,
                div_factor,
                final_div_factor,
                cycle_momentum,
                base_momentum,
                max_momentum,
            } => {
                let max_lr = f64::from(max_lr);
                let initial = max_lr / f64::from(div_factor);
                let min_lr = initial / f64::from(final_div_factor);
                let (bm, mm) = (f64::from(base_momentum), f64::from(max_momentum));
                let first_end = f64::from(pct_start) * self.total_steps as f64 - 1.0;
                let last_end = self.total_steps as f64 - 1.0;
                let s = step.min(self.total_steps) as f64;
                // (A run too short for a warm-up goes straight to the second phase.)
                let (lr, m) = if first_end > 0.0 && s <= first_end {
                    let pct = s / first_end;
                    (cos_anneal(initial, max_lr, pct), cos_anneal(mm, bm, pct))
                } else {
                    let first_end = first_end.max(0.0);
                    let pct = ((s - first_end) / (last_end - first_end).max(1.0)).min(1.0);
                    (cos_anneal(max_lr, min_lr, pct), cos_anneal(bm, mm, pct))
                };
                (lr as f32, cycle_momentum.then_some(m as f32))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_matches_pytorch_at_the_landmarks() {
        // OneCycleLR(max_lr=3e-3, total_steps=100): starts at max/25, peaks at step 29
        // (0.3 * 100 - 1), ends at max/25/1e4; momentum mirrors it between 0.95 and 0.85.
        let opt = OptimizerConfig::adamw(3e-3);
        let s = Schedule::new(ScheduleConfig::one_cycle(3e-3), &opt, 10, 10).unwrap();
        let (lr0, m0) = s.at(0);
        assert!((lr0 - 1.2e-4).abs() < 1e-9 && m0 == Some(0.95));
        let (peak, mp) = s.at(29);
        assert!((peak - 3e-3).abs() < 1e-9 && (mp.unwrap() - 0.85).abs() < 1e-7);
        let (last, ml) = s.at(99);
        assert!((last - 1.2e-8).abs() < 1e-12 && (ml.unwrap() - 0.95).abs() < 1e-7);
        // Halfway up: the cosine midpoint.
        let (mid, _) = s.at(14);
        let pct = 14.0 / 29.0;
        let want = 3e-3 + (1.2e-4 - 3e-3) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
        assert!((f64::from(mid) - want).abs() < 1e-9);
    }

    #[test]
    fn step_and_cosine_schedules() {
        let opt = OptimizerConfig::sgd(0.1, 0.9);
        let step = Schedule::new(
            ScheduleConfig::Step {
                step_epochs: 2,
                gamma: 0.5,
            },
            &opt,
            10,
            6,
        )
        .unwrap();
        assert_eq!(step.at(0).0, 0.1);
        assert_eq!(step.at(19).0, 0.1);
        assert!((step.at(20).0 - 0.05).abs() < 1e-9);
        assert!((step.at(59).0 - 0.025).abs() < 1e-9);
        let cos = Schedule::new(ScheduleConfig::Cosine { eta_min: 0.0 }, &opt, 10, 1).unwrap();
        assert!((cos.at(0).0 - 0.1).abs() < 1e-9);
        assert!((cos.at(5).0 - 0.05).abs() < 1e-7);
        assert!(cos.at(10).0.abs() < 1e-9);
    }

    #[test]
    fn sgd_with_nesterov_and_decay_matches_the_formula() {
        let mut p = vec![1.0f32, -2.0];
        let mut buf = None;
        sgd_step(&mut p, &[0.5, 0.25], 0.1, 0.9, 0.0, 0.01, true, &mut buf);
        // d = g + 0.01 p = [0.51, 0.23]; buf = d; d = d + 0.9 buf = 1.9 d
        assert!((p[0] - (1.0 - 0.1 * 1.9 * 0.51)).abs() < 1e-6);
        assert!((p[1] - (-2.0 - 0.1 * 1.9 * 0.23)).abs() < 1e-6);
        // Second step: buf = 0.9 buf + d2.
        let before = p.clone();
        sgd_step(&mut p, &[0.5, 0.25], 0.1, 0.9, 0.0, 0.01, true, &mut buf);
        let d2: Vec<f32> = [0.5f32, 0.25]
            .iter()
            .zip(&before)
            .map(|(g, p)| g + 0.01 * p)
            .collect();
        let b2: Vec<f32> = [0.51f32, 0.23]
            .iter()
            .zip(&d2)
            .map(|(b, d)| 0.9 * b + d)
            .collect();
        for i in 0..2 {
            assert!((p[i] - (before[i] - 0.1 * (d2[i] + 0.9 * b2[i]))).abs() < 1e-6);
        }
    }

    #[test]
    fn adam_first_step_moves_each_parameter_by_about_lr() {
        // With bias correction, the first Adam step is lr * g / (|g| + eps') = lr * sign(g).
        let mut p = vec![0.0f32, 0.0];
        let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
        adam_step(
            &mut p,
            &[2.0, -0.5],
            AdamArgs {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                decoupled: true,
                step: 1,
            },
            &mut m,
            &mut v,
        );
        assert!(
            (p[0] + 1e-3).abs() < 1e-8 && (p[1] - 1e-3).abs() < 1e-8,
            "{p:?}"
        );
    }

    /// Every combination of the settings (AdamW's decay, Adam's L2 term, either side of
    /// PyTorch's lerp), over a tensor of several parallel chunks, gives the bits of one plain
    /// loop written from PyTorch's single-tensor Adam.
    #[test]
    fn chunked_adam_updates_are_the_plain_loop_to_the_bit() {
        let n = 2 * STEP_CHUNK + 123;
        let value = |i: usize, k: u32| (i as f32 * 0.37 + k as f32).sin() * 0.5;
        for decoupled in [true, false] {
            for weight_decay in [0.0, 0.01] {
                for beta1 in [0.9, 0.3] {
                    let a = || AdamArgs {
                        lr: 3e-3,
                        beta1,
                        beta2: 0.999,
                        eps: 1e-8,
                        weight_decay,
                        decoupled,
                        step: 3,
                    };
                    let g: Vec<f32> = (0..n).map(|i| value(i, 1)).collect();
                    let start = |k| (0..n).map(|i| value(i, k)).collect::<Vec<f32>>();
                    let (mut p, mut m) = (start(2), start(3));
                    let mut v: Vec<f32> = start(4).iter().map(|x| x * x).collect();
                    let (mut p0, mut m0, mut v0) = (p.clone(), m.clone(), v.clone());
                    adam_step(&mut p, &g, a(), &mut m, &mut v);
                    let a = a();
                    let bc1 = 1.0 - f64::from(a.beta1).powi(3);
                    let bc2 = 1.0 - f64::from(a.beta2).powi(3);
                    let (step_size, bc2_sqrt) = ((f64::from(a.lr) / bc1) as f32, bc2.sqrt() as f32);
                    let w = 1.0 - a.beta1;
                    for i in 0..n {
                        if decoupled {
                            p0[i] *= 1.0 - a.lr * weight_decay;
                        }
                        let grad = if decoupled {
                            g[i]
                        } else {
                            g[i] + weight_decay * p0[i]
                        };
                        m0[i] = if w < 0.5 {
                            m0[i] + w * (grad - m0[i])
                        } else {
                            grad - (grad - m0[i]) * (1.0 - w)
                        };
                        v0[i] = v0[i] * a.beta2 + (1.0 - a.beta2) * grad * grad;
                        p0[i] += -step_size * (m0[i] / (v0[i].sqrt() / bc2_sqrt + a.eps));
                    }
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    let case =
                        format!("decoupled {decoupled}, decay {weight_decay}, beta1 {beta1}");
                    assert_eq!(bits(&p), bits(&p0), "params, {case}");
                    assert_eq!(bits(&m), bits(&m0), "exp_avg, {case}");
                    assert_eq!(bits(&v), bits(&v0), "exp_avg_sq, {case}");
                }
            }
        }
    }

    /// Every SGD setting (momentum or none, Nesterov, decay, dampening), first and later
    /// steps, over several parallel chunks, gives the bits of PyTorch's tensor formulas
    /// written as plain loops.
    #[test]
    fn chunked_sgd_updates_are_the_plain_loop_to_the_bit() {
        let n = 2 * STEP_CHUNK + 77;
        let value = |i: usize, k: u32| (i as f32 * 0.29 + k as f32).sin() * 0.5;
        for momentum in [0.0, 0.9] {
            for nesterov in [false, true] {
                for weight_decay in [0.0, 0.01] {
                    let dampening = if nesterov { 0.0 } else { 0.1 };
                    let case =
                        format!("momentum {momentum}, nesterov {nesterov}, decay {weight_decay}");
                    let mut p: Vec<f32> = (0..n).map(|i| value(i, 1)).collect();
                    let mut p0 = p.clone();
                    let (mut buf, mut buf0): (Option<Vec<f32>>, Option<Vec<f32>>) = (None, None);
                    for step in 0..2 {
                        let g: Vec<f32> = (0..n).map(|i| value(i, 2 + step)).collect();
                        sgd_step(
                            &mut p,
                            &g,
                            0.1,
                            momentum,
                            dampening,
                            weight_decay,
                            nesterov,
                            &mut buf,
                        );
                        let mut d: Vec<f32> = if weight_decay != 0.0 {
                            g.iter()
                                .zip(&p0)
                                .map(|(g, p)| g + weight_decay * p)
                                .collect()
                        } else {
                            g.clone()
                        };
                        if momentum != 0.0 {
                            let b = match buf0.take() {
                                None => d.clone(),
                                Some(b) => b
                                    .iter()
                                    .zip(&d)
                                    .map(|(b, d)| b * momentum + (1.0 - dampening) * d)
                                    .collect(),
                            };
                            d = if nesterov {
                                d.iter().zip(&b).map(|(d, b)| d + momentum * b).collect()
                            } else {
                                b.clone()
                            };
                            buf0 = Some(b);
                        }
                        for (p, d) in p0.iter_mut().zip(&d) {
                            *p -= 0.1 * d;
                        }
                        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&p), bits(&p0), "params, step {step}, {case}");
                        assert_eq!(
                            buf.as_deref().map(bits),
                            buf0.as_deref().map(bits),
                            "momentum buffer, step {step}, {case}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Optimizer::new(OptimizerConfig::sgd(-1.0, 0.9)).is_err());
        let nesterov = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        };
        assert!(Optimizer::new(nesterov).is_err());
        let adam = OptimizerConfig::Adam {
            lr: 0.1,
            betas: (1.0, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let err = Optimizer::new(adam).unwrap_err().to_string();
        assert!(err.contains("beta1"), "{err}");
    }
}
