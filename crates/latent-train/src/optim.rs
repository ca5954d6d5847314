//! The optimisers (AdamW, SGD with momentum, LARS), the learning-rate schedule and the
//! scaling of the learning rate with the batch size.
//!
//! Written here rather than taken from candle-nn so that their state (moments or momentum
//! buffers, and the step count) can be saved and restored, and so that weight decay
//! applies only to the tensors the model marks for it.

use std::collections::HashMap;

use candle_core::{Tensor, backprop::GradStore};

use crate::error::{Result, TrainError};
use crate::model::NamedVar;

/// AdamW hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW (Loshchilov and Hutter): `w <- w (1 - lr wd) - lr m_hat / (sqrt(v_hat) + eps)`,
/// the same update as PyTorch's `torch.optim.AdamW`.
#[derive(Debug)]
pub struct AdamW {
    params: AdamWParams,
    vars: Vec<NamedVar>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    /// Updates done so far.
    pub step: u64,
}

impl AdamW {
    /// An optimiser over `vars` with zero moments.
    pub fn new(vars: Vec<NamedVar>, params: AdamWParams) -> Result<Self> {
        let zeros = vars
            .iter()
            .map(|v| v.var.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            params,
            first_moments: zeros.clone(),
            second_moments: zeros,
            vars,
            step: 0,
        })
    }

    /// One update at learning rate `lr`. Tensors without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let p = self.params;
        let t = self.step as i32;
        let correction1 = 1.0 - p.beta1.powi(t);
        let correction2 = 1.0 - p.beta2.powi(t);

        for (i, named) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(named.var.as_tensor()) else {
                continue;
            };
            let m = ((&self.first_moments[i] * p.beta1)? + (grad * (1.0 - p.beta1))?)?;
            let v = ((&self.second_moments[i] * p.beta2)? + (grad.sqr()? * (1.0 - p.beta2))?)?;

            let m_hat = (&m / correction1)?;
            let v_hat = (&v / correction2)?;
            let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;

            let w = named.var.as_tensor();
            let decayed = if named.decay && p.weight_decay != 0.0 {
                (w * (1.0 - lr * p.weight_decay))?
            } else {
                w.clone()
            };
            named.var.set(&(decayed - (update * lr)?)?)?;
            self.first_moments[i] = m;
            self.second_moments[i] = v;
        }
        Ok(())
    }

    /// The optimiser state as named tensors (`adamw.m.<name>`, `adamw.v.<name>`) plus the
    /// step count, for a checkpoint.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.vars.len());
        for (i, named) in self.vars.iter().enumerate() {
            out.push((
                format!("adamw.m.{}", named.name),
                self.first_moments[i].clone(),
            ));
            out.push((
                format!("adamw.v.{}", named.name),
                self.second_moments[i].clone(),
            ));
        }
        (out, self.step)
    }

    /// Restores a state written by [`AdamW::state`]; every moment must be present.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, named) in self.vars.iter().enumerate() {
            for (kind, slot) in [
                ("m", &mut self.first_moments[i]),
                ("v", &mut self.second_moments[i]),
            ] {
                let key = format!("adamw.{kind}.{}", named.name);
                let tensor = tensors.get(&key).ok_or_else(|| TrainError::Setting {
                    key: "resume",
                    value: key.clone(),
                    expected: "an optimiser state holding every moment",
                })?;
                *slot = tensor.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Which optimiser `[train] optimizer` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    AdamW,
    /// SGD with momentum, PyTorch's `torch.optim.SGD` update.
    Sgd,
    /// LARS as in SimCLR: momentum SGD with a layer-wise trust ratio.
    Lars,
}

impl OptimizerKind {
    /// Parses `[train] optimizer`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "adamw" => Ok(OptimizerKind::AdamW),
            "sgd" => Ok(OptimizerKind::Sgd),
            "lars" => Ok(OptimizerKind::Lars),
            other => Err(TrainError::Setting {
                key: "optimizer",
                value: other.to_string(),
                expected: "\"adamw\", \"sgd\" or \"lars\"",
            }),
        }
    }
}

/// Hyperparameters of SGD with momentum and of LARS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumParams {
    pub momentum: f64,
    pub weight_decay: f64,
    /// LARS trust coefficient (unused by SGD).
    pub eta: f64,
}

impl Default for MomentumParams {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            weight_decay: 0.0,
            eta: 0.001,
        }
    }
}

/// SGD with momentum or LARS: one velocity buffer per tensor.
///
/// SGD (PyTorch semantics): `g' = g + wd w` for decayed tensors, `v <- mu v + g'`,
/// `w <- w - lr v`.
///
/// LARS (as in SimCLR and the peer's `simclr_torch.py`): for decayed tensors (conv and
/// linear weights) `g' = g + wd w`, then `g' <- g' * eta ||w|| / ||g'||` when both norms
/// are positive; biases and batch-norm parameters get neither decay nor the trust ratio.
/// Then `v <- mu v + lr g'` and `w <- w - v` (the learning rate lives inside the velocity).
#[derive(Debug)]
pub struct Momentum {
    lars: bool,
    params: MomentumParams,
    vars: Vec<NamedVar>,
    velocities: Vec<Tensor>,
    /// Updates done so far.
    pub step: u64,
}

impl Momentum {
    /// SGD with momentum over `vars`, zero velocities.
    pub fn sgd(vars: Vec<NamedVar>, params: MomentumParams) -> Result<Self> {
        Self::new(vars, params, false)
    }

    /// LARS over `vars`, zero velocities.
    pub fn lars(vars: Vec<NamedVar>, params: MomentumParams) -> Result<Self> {
        Self::new(vars, params, true)
    }

    fn new(vars: Vec<NamedVar>, params: MomentumParams, lars: bool) -> Result<Self> {
        let velocities = vars
            .iter()
            .map(|v| v.var.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            lars,
            params,
            vars,
            velocities,
            step: 0,
        })
    }

    /// Prefix of the state's tensor names in a checkpoint.
    fn prefix(&self) -> &'static str {
        if self.lars { "lars" } else { "sgd" }
    }

    /// One update at learning rate `lr`. Tensors without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let p = self.params;

        for (i, named) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(named.var.as_tensor()) else {
                continue;
            };
            let w = named.var.as_tensor();
            let mut grad = if named.decay && p.weight_decay != 0.0 {
                (grad + (w * p.weight_decay)?)?
            } else {
                grad.clone()
            };

            if self.lars && named.decay {
                let w_norm = l2_norm(w)?;
                let g_norm = l2_norm(&grad)?;
                if w_norm > 0.0 && g_norm > 0.0 {
                    grad = (grad * (p.eta * w_norm / g_norm))?;
                }
            }

            let velocity = if self.lars {
                ((&self.velocities[i] * p.momentum)? + (grad * lr)?)?
            } else {
                ((&self.velocities[i] * p.momentum)? + grad)?
            };
            let change = if self.lars {
                velocity.clone()
            } else {
                (&velocity * lr)?
            };
            named.var.set(&(w - change)?)?;
            self.velocities[i] = velocity;
        }
        Ok(())
    }

    /// The velocities as named tensors (`sgd.v.<name>` or `lars.v.<name>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .zip(&self.velocities)
            .map(|(named, v)| (format!("{}.v.{}", self.prefix(), named.name), v.clone()))
            .collect()
    }

    /// Restores a state written by [`Momentum::state`]; every velocity must be present.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        let prefix = self.prefix();
        for (named, slot) in self.vars.iter().zip(&mut self.velocities) {
            let key = format!("{prefix}.v.{}", named.name);
            let tensor = tensors.get(&key).ok_or_else(|| TrainError::Setting {
                key: "resume",
                value: key.clone(),
                expected: "an optimiser state holding every momentum buffer",
            })?;
            *slot = tensor.clone();
        }
        self.step = step;
        Ok(())
    }
}

/// Euclidean norm of a whole tensor.
fn l2_norm(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64)
}

/// The optimiser a run uses, whichever kind it is.
#[derive(Debug)]
pub enum Optimizer {
    AdamW(AdamW),
    Momentum(Momentum),
}

impl Optimizer {
    /// A fresh optimiser of `kind` over `vars`; `weight_decay` applies to the tensors the
    /// model marks for decay.
    pub fn new(kind: OptimizerKind, vars: Vec<NamedVar>, weight_decay: f64) -> Result<Self> {
        let momentum = MomentumParams {
            weight_decay,
            ..Default::default()
        };
        Ok(match kind {
            OptimizerKind::AdamW => Optimizer::AdamW(AdamW::new(
                vars,
                AdamWParams {
                    weight_decay,
                    ..Default::default()
                },
            )?),
            OptimizerKind::Sgd => Optimizer::Momentum(Momentum::sgd(vars, momentum)?),
            OptimizerKind::Lars => Optimizer::Momentum(Momentum::lars(vars, momentum)?),
        })
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        match self {
            Optimizer::AdamW(o) => o.step(grads, lr),
            Optimizer::Momentum(o) => o.step(grads, lr),
        }
    }

    /// Updates done so far.
    pub fn steps_done(&self) -> u64 {
        match self {
            Optimizer::AdamW(o) => o.step,
            Optimizer::Momentum(o) => o.step,
        }
    }

    /// The state as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match self {
            Optimizer::AdamW(o) => o.state().0,
            Optimizer::Momentum(o) => o.state(),
        }
    }

    /// Restores a state written by [`Optimizer::state`] for the same kind of optimiser.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        match self {
            Optimizer::AdamW(o) => o.restore(tensors, step),
            Optimizer::Momentum(o) => o.restore(tensors, step),
        }
    }
}

/// How the peak learning rate follows the batch size (`[train] lr_scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrScaling {
    /// `lr` as given.
    None,
    /// `lr * batch / 256` (Goyal et al.; SimCLR's LARS runs).
    Linear,
    /// `lr * sqrt(batch)` (SimCLR's recommendation for LARS at small batches).
    Sqrt,
}

impl LrScaling {
    /// Parses `[train] lr_scaling`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(LrScaling::None),
            "linear" => Ok(LrScaling::Linear),
            "sqrt" => Ok(LrScaling::Sqrt),
            other => Err(TrainError::Setting {
                key: "lr_scaling",
                value: other.to_string(),
                expected: "\"none\", \"linear\" or \"sqrt\"",
            }),
        }
    }

    /// The peak learning rate for `lr` at `batch_size` images per batch.
    pub fn apply(&self, lr: f64, batch_size: usize) -> f64 {
        match self {
            LrScaling::None => lr,
            LrScaling::Linear => lr * batch_size as f64 / 256.0,
            LrScaling::Sqrt => lr * (batch_size as f64).sqrt(),
        }
    }
}

/// How the learning rate moves over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Linear warm-up, then constant.
    Constant { warmup: f64 },
    /// Linear warm-up, then cosine decay to 0 at the end of the run.
    Cosine { warmup: f64 },
}

impl Schedule {
    /// Parses `[train] schedule` and `warmup` (a fraction of the run).
    pub fn parse(schedule: &str, warmup: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&warmup) {
            return Err(TrainError::Setting {
                key: "warmup",
                value: warmup.to_string(),
                expected: "a fraction in [0, 1)",
            });
        }
        match schedule {
            "constant" => Ok(Schedule::Constant { warmup }),
            "cosine" => Ok(Schedule::Cosine { warmup }),
            other => Err(TrainError::Setting {
                key: "schedule",
                value: other.to_string(),
                expected: "\"constant\" or \"cosine\"",
            }),
        }
    }

    /// Factor of the peak learning rate at `progress` (0 at the start, 1 at the end).
    pub fn factor(&self, progress: f64) -> f64 {
        let (Schedule::Constant { warmup } | Schedule::Cosine { warmup }) = *self;
        if warmup > 0.0 && progress < warmup {
            return progress / warmup;
        }
        match self {
            Schedule::Constant { .. } => 1.0,
            Schedule::Cosine { .. } => {
                let rest = ((progress - warmup) / (1.0 - warmup)).clamp(0.0, 1.0);
                0.5 * (1.0 + (std::f64::consts::PI * rest).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn two_adamw_steps_match_the_hand_computation() {
        // loss = 0.5 * w (gradient 0.5 each step), w0 = 1, lr 0.1, wd 0.01.
        // Step 1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25, update 1;
        //         w1 = 1 * (1 - 0.001) - 0.1 = 0.899.
        // Step 2: m = 0.095, v = 0.00049975, m_hat = 0.5, v_hat = 0.25, update 1;
        //         w2 = 0.899 * 0.999 - 0.1 = 0.798101.
        let w = Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap();
        let bias = Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap();
        let vars = vec![
            NamedVar {
                name: "w".into(),
                var: w.clone(),
                decay: true,
            },
            NamedVar {
                name: "b".into(),
                var: bias.clone(),
                decay: false,
            },
        ];
        let params = AdamWParams {
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut opt = AdamW::new(vars, params).unwrap();
        let expected_w = [0.899f32, 0.798101];
        let expected_b = [0.9f32, 0.8];
        for (e_w, e_b) in expected_w.into_iter().zip(expected_b) {
            let loss = ((w.as_tensor() * 0.5).unwrap() + (bias.as_tensor() * 0.5).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads, 0.1).unwrap();
            let got_w = w.as_tensor().to_vec1::<f32>().unwrap()[0];
            let got_b = bias.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((got_w - e_w).abs() < 1e-5, "{got_w} vs {e_w}");
            assert!((got_b - e_b).abs() < 1e-5, "{got_b} vs {e_b}");
        }
        assert_eq!(opt.step, 2);
        assert_eq!(opt.state().0.len(), 4);
    }

    /// A 1x2 weight (decayed) and a 1-element bias (not decayed), with the linear loss
    /// `0.3 w0 - 0.4 w1 + 0.5 b`, so the gradients are (0.3, -0.4) and 0.5 at every step.
    fn weight_and_bias() -> (Var, Var, Vec<NamedVar>) {
        let w = Var::from_vec(vec![3f32, 4.0], (1, 2), &Device::Cpu).unwrap();
        let b = Var::from_vec(vec![1f32], 1, &Device::Cpu).unwrap();
        let vars = vec![NamedVar::new("w".into(), &w), NamedVar::new("b".into(), &b)];
        assert!(vars[0].decay && !vars[1].decay);
        (w, b, vars)
    }

    fn linear_loss_grads(w: &Var, b: &Var) -> GradStore {
        let coefficients = Tensor::from_vec(vec![0.3f32, -0.4], (1, 2), &Device::Cpu).unwrap();
        let loss = ((w.as_tensor() * coefficients).unwrap().sum_all().unwrap()
            + (b.as_tensor() * 0.5).unwrap().sum_all().unwrap())
        .unwrap();
        loss.backward().unwrap()
    }

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    fn assert_close(got: &[f32], expected: &[f32]) {
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn two_sgd_steps_match_the_hand_computation() {
        // lr 0.1, momentum 0.9, wd 0.1 (weight only).
        // Step 1: g' = (0.3 + 0.3, -0.4 + 0.4) = (0.6, 0); v = (0.6, 0); w = (2.94, 4).
        //         bias: v = 0.5; b = 1 - 0.05 = 0.95.
        // Step 2: g' = (0.3 + 0.294, 0) = (0.594, 0); v = (0.54 + 0.594, 0) = (1.134, 0);
        //         w = (2.94 - 0.1134, 4) = (2.8266, 4).
        //         bias: v = 0.45 + 0.5 = 0.95; b = 0.95 - 0.095 = 0.855.
        let (w, b, vars) = weight_and_bias();
        let params = MomentumParams {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = Momentum::sgd(vars, params).unwrap();
        let expected = [([2.94f32, 4.0], 0.95f32), ([2.8266, 4.0], 0.855)];
        for (e_w, e_b) in expected {
            opt.step(&linear_loss_grads(&w, &b), 0.1).unwrap();
            assert_close(&values(&w), &e_w);
            assert_close(&values(&b), &[e_b]);
        }
        assert_eq!(opt.step, 2);
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["sgd.v.w", "sgd.v.b"]);
    }

    #[test]
    fn two_lars_steps_match_the_hand_computation_and_leave_the_bias_unscaled() {
        // lr 1, momentum 0.9, eta 0.001, wd 0.1 (weight only).
        // Step 1: g' = (0.6, 0), ||w|| = 5, ||g'|| = 0.6, trust = 0.001 * 5 / 0.6, so the
        //         scaled g' = (0.005, 0); v = (0.005, 0); w = (2.995, 4).
        // Step 2: g' = (0.3 + 0.2995, 0); scaled it is eta ||w|| along x:
        //         ||w|| = sqrt(2.995^2 + 16) = 4.99700..., so (0.00499700, 0);
        //         v = 0.0045 + 0.00499700 = 0.00949700; w = (2.98550300, 4).
        // Bias, neither decayed nor scaled: v = 0.5, b = 0.5; v = 0.95, b = -0.45.
        // (Decayed it would move by 0.6 at step 1; trust-scaled by 0.001.)
        let (w, b, vars) = weight_and_bias();
        let params = MomentumParams {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = Momentum::lars(vars, params).unwrap();
        let norm_after_step1 = (2.995f64 * 2.995 + 16.0).sqrt();
        let w2 = 2.995 - (0.9 * 0.005 + 0.001 * norm_after_step1);
        let expected = [([2.995f32, 4.0], 0.5f32), ([w2 as f32, 4.0], -0.45)];
        for (e_w, e_b) in expected {
            opt.step(&linear_loss_grads(&w, &b), 1.0).unwrap();
            assert_close(&values(&w), &e_w);
            assert_close(&values(&b), &[e_b]);
        }
        assert!((w2 - 2.985503).abs() < 1e-6);
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["lars.v.w", "lars.v.b"]);
    }

    #[test]
    fn a_restored_momentum_state_continues_like_the_original() {
        let (w, b, vars) = weight_and_bias();
        let mut original = Momentum::lars(vars, MomentumParams::default()).unwrap();
        original.step(&linear_loss_grads(&w, &b), 0.5).unwrap();
        let saved: HashMap<String, Tensor> = original.state().into_iter().collect();
        let (w_after_one, b_after_one) = (values(&w), values(&b));
        original.step(&linear_loss_grads(&w, &b), 0.5).unwrap();
        let (w_after_two, b_after_two) = (values(&w), values(&b));

        let (w2, b2, vars2) = weight_and_bias();
        w2.set(&Tensor::from_vec(w_after_one, (1, 2), &Device::Cpu).unwrap())
            .unwrap();
        b2.set(&Tensor::from_vec(b_after_one, 1, &Device::Cpu).unwrap())
            .unwrap();
        let mut restored = Momentum::lars(vars2.clone(), MomentumParams::default()).unwrap();
        restored.restore(&saved, 1).unwrap();
        restored.step(&linear_loss_grads(&w2, &b2), 0.5).unwrap();
        assert_eq!(restored.step, 2);
        assert_close(&values(&w2), &w_after_two);
        assert_close(&values(&b2), &b_after_two);

        // SGD's state is not LARS's: restoring it is refused, naming the missing buffer.
        let mut sgd = Momentum::sgd(vars2, MomentumParams::default()).unwrap();
        let err = sgd.restore(&saved, 1).unwrap_err().to_string();
        assert!(err.contains("sgd.v.w"), "{err}");
    }

    #[test]
    fn optimiser_names_and_lr_scalings_are_parsed_and_unknown_ones_refused() {
        assert_eq!(OptimizerKind::parse("lars").unwrap(), OptimizerKind::Lars);
        assert_eq!(OptimizerKind::parse("sgd").unwrap(), OptimizerKind::Sgd);
        assert_eq!(OptimizerKind::parse("adamw").unwrap(), OptimizerKind::AdamW);
        let err = OptimizerKind::parse("adam").unwrap_err().to_string();
        assert!(err.contains("adam") && err.contains("lars"), "{err}");

        // SimCLR's LARS recipe: 0.075 * sqrt(256) = 1.2; 0.3 * 512 / 256 = 0.6.
        let sqrt = LrScaling::parse("sqrt").unwrap();
        assert!((sqrt.apply(0.075, 256) - 1.2).abs() < 1e-12);
        let linear = LrScaling::parse("linear").unwrap();
        assert!((linear.apply(0.3, 512) - 0.6).abs() < 1e-12);
        assert_eq!(LrScaling::parse("none").unwrap().apply(0.3, 512), 0.3);
        assert!(LrScaling::parse("quadratic").is_err());
    }

    #[test]
    fn warmup_then_cosine_reaches_its_landmarks() {
        let cosine = Schedule::parse("cosine", 0.1).unwrap();
        assert!((cosine.factor(0.05) - 0.5).abs() < 1e-12);
        assert!((cosine.factor(0.1) - 1.0).abs() < 1e-12);
        assert!((cosine.factor(0.55) - 0.5).abs() < 1e-12);
        assert!(cosine.factor(1.0).abs() < 1e-12);
        let constant = Schedule::parse("constant", 0.0).unwrap();
        assert_eq!(constant.factor(0.0), 1.0);
        assert_eq!(constant.factor(0.9), 1.0);
        assert!(Schedule::parse("linear", 0.0).is_err());
    }
}
