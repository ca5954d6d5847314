//! AdamW with decoupled weight decay, and the learning-rate schedule.
//!
//! Written here rather than taken from candle-nn so that its state (both moments and the
//! step count) can be saved and restored, and so that weight decay applies only to the
//! tensors the model marks for it.

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
    pub fn restore(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
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
