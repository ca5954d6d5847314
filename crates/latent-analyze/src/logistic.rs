//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS.
//!
//! The objective is scikit-learn's, divided by `C * n` as scikit-learn does internally so
//! that its stopping tolerance means the same thing here:
//! `mean cross-entropy + ||W||^2 / (2 C n)`, intercepts not penalised, one weight column
//! per class present in the training labels. A fit stops when the largest gradient entry
//! is at most `tol`, when an iteration lowers the objective by less than 64 machine
//! epsilons (relative), or after `max_iter` iterations; only the last counts as not
//! converged. Data are `f32` (the products are the cost); the parameters, the loss and
//! the optimiser's state are `f64`.

use crate::linalg::{Matrix, Op, matmul};

/// How a model is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    /// Inverse L2 strength, as scikit-learn's `C`.
    pub c: f64,
    /// Iteration cap (scikit-learn's `max_iter`).
    pub max_iter: usize,
    /// Stop when the largest gradient entry of the scaled objective is at most this.
    pub tol: f64,
    /// Threads the matrix products may use (1 inside already-parallel code).
    pub threads: usize,
}

impl FitSettings {
    /// scikit-learn's defaults (`max_iter=1000, tol=1e-4`) with the given `C`.
    pub fn new(c: f64) -> Self {
        Self {
            c,
            max_iter: 1000,
            tol: 1e-4,
            threads: 1,
        }
    }
}

/// A fitted model: scores are `x W + b`, the prediction is the class of the largest score.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticModel {
    /// Class ids, one per weight column, ascending.
    pub classes: Vec<i32>,
    /// Input dimension.
    pub dim: usize,
    /// `dim x classes` weights, row-major.
    pub weights: Vec<f64>,
    /// One intercept per class.
    pub intercepts: Vec<f64>,
    /// L-BFGS iterations the fit took.
    pub iterations: usize,
    /// Whether a stopping rule other than the iteration cap ended the fit.
    pub converged: bool,
}

impl LogisticModel {
    /// The predicted class of every row of `x` (ties go to the lower class id).
    pub fn predict(&self, x: &Matrix, threads: usize) -> Vec<i32> {
        assert_eq!(x.cols, self.dim, "rows to predict have the wrong dimension");
        let k = self.classes.len();
        let w = Matrix::from_vec(
            self.dim,
            k,
            self.weights.iter().map(|&v| v as f32).collect(),
        );
        let mut scores = Matrix::zeros(x.rows, k);
        matmul(x, Op::AsIs, &w, Op::AsIs, &mut scores, threads);
        (0..x.rows)
            .map(|r| {
                let row = scores.row(r);
                let mut best = 0;
                for j in 1..k {
                    if f64::from(row[j]) + self.intercepts[j]
                        > f64::from(row[best]) + self.intercepts[best]
                    {
                        best = j;
                    }
                }
                self.classes[best]
            })
            .collect()
    }

    /// Fraction of rows of `x` whose prediction equals `labels`.
    pub fn accuracy(&self, x: &Matrix, labels: &[i32], threads: usize) -> f64 {
        accuracy(&self.predict(x, threads), labels)
    }
}

/// Fraction of positions where `predicted` equals `truth` (0 for no rows).
pub fn accuracy(predicted: &[i32], truth: &[i32]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    hits as f64 / truth.len() as f64
}

/// Fits the model on rows `x` with labels `labels`, starting from `warm_start` when it
/// has the same classes and dimension (else from zeros).
///
/// A single class in the labels gives a model that always predicts it (0 iterations).
pub fn fit(
    x: &Matrix,
    labels: &[i32],
    settings: FitSettings,
    warm_start: Option<&LogisticModel>,
) -> LogisticModel {
    assert_eq!(x.rows, labels.len(), "one label per row");
    let mut classes: Vec<i32> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let k = classes.len();
    let d = x.cols;

    if k <= 1 {
        return LogisticModel {
            dim: d,
            weights: vec![0.0; d * k],
            intercepts: vec![0.0; k],
            classes,
            iterations: 0,
            converged: true,
        };
    }

    let targets: Vec<usize> = labels
        .iter()
        .map(|l| {
            classes
                .binary_search(l)
                .expect("label is one of the classes")
        })
        .collect();
    let mut start = vec![0.0; (d + 1) * k];
    if let Some(warm) = warm_start.filter(|m| m.classes == classes && m.dim == d) {
        start[..d * k].copy_from_slice(&warm.weights);
        start[d * k..].copy_from_slice(&warm.intercepts);
    }

    let mut objective = Objective::new(x, &targets, k, settings);
    let outcome = lbfgs(&mut objective, start, settings.max_iter, settings.tol);

    let mut params = outcome.params;
    let intercepts = params.split_off(d * k);
    LogisticModel {
        classes,
        dim: d,
        weights: params,
        intercepts,
        iterations: outcome.iterations,
        converged: outcome.converged,
    }
}

/// The scaled objective and its gradient, with buffers reused between evaluations.
struct Objective<'a> {
    x: &'a Matrix,
    targets: &'a [usize],
    classes: usize,
    penalty: f64,
    threads: usize,
    weights: Matrix,
    scores: Matrix,
    residuals: Matrix,
    weight_gradient: Matrix,
}

impl<'a> Objective<'a> {
    fn new(x: &'a Matrix, targets: &'a [usize], classes: usize, settings: FitSettings) -> Self {
        Self {
            x,
            targets,
            classes,
            penalty: 1.0 / (settings.c * x.rows as f64),
            threads: settings.threads,
            weights: Matrix::zeros(x.cols, classes),
            scores: Matrix::zeros(x.rows, classes),
            residuals: Matrix::zeros(x.rows, classes),
            weight_gradient: Matrix::zeros(x.cols, classes),
        }
    }

    /// The objective at `params`, writing its gradient into `gradient`.
    fn evaluate(&mut self, params: &[f64], gradient: &mut [f64]) -> f64 {
        let (k, n) = (self.classes, self.x.rows);
        let dk = self.x.cols * k;
        let (w, b) = params.split_at(dk);
        for (out, &v) in self.weights.data.iter_mut().zip(w) {
            *out = v as f32;
        }

        matmul(
            self.x,
            Op::AsIs,
            &self.weights,
            Op::AsIs,
            &mut self.scores,
            self.threads,
        );

        let mut loss = 0.0;
        let mut probabilities = vec![0.0f64; k];
        let scale = 1.0 / n as f64;
        for r in 0..n {
            let scores = &self.scores.data[r * k..(r + 1) * k];
            let mut max = f64::NEG_INFINITY;
            for j in 0..k {
                probabilities[j] = f64::from(scores[j]) + b[j];
                max = max.max(probabilities[j]);
            }
            let target_score = probabilities[self.targets[r]];
            let mut sum = 0.0;
            for p in probabilities.iter_mut() {
                *p = (*p - max).exp();
                sum += *p;
            }
            loss += max + sum.ln() - target_score;
            let residuals = &mut self.residuals.data[r * k..(r + 1) * k];
            for j in 0..k {
                let indicator = if j == self.targets[r] { 1.0 } else { 0.0 };
                residuals[j] = ((probabilities[j] / sum - indicator) * scale) as f32;
            }
        }

        matmul(
            self.x,
            Op::Transposed,
            &self.residuals,
            Op::AsIs,
            &mut self.weight_gradient,
            self.threads,
        );

        let mut squared_norm = 0.0;
        for i in 0..dk {
            gradient[i] = f64::from(self.weight_gradient.data[i]) + self.penalty * w[i];
            squared_norm += w[i] * w[i];
        }
        for j in 0..k {
            gradient[dk + j] = (0..n)
                .map(|r| f64::from(self.residuals.data[r * k + j]))
                .sum();
        }
        loss * scale + 0.5 * self.penalty * squared_norm
    }
}

/// Where L-BFGS stopped.
struct LbfgsOutcome {
    params: Vec<f64>,
    iterations: usize,
    converged: bool,
}

/// Corrections kept (scipy's default `maxcor`).
const HISTORY: usize = 10;
/// Relative decrease below which the objective counts as flat (scipy's `ftol` as
/// scikit-learn sets it).
const FLAT: f64 = 64.0 * f64::EPSILON;
/// Sufficient-decrease constant of the backtracking line search.
const ARMIJO: f64 = 1e-4;
/// Most trial steps of one line search.
const MAX_LINE_STEPS: usize = 50;

/// Minimises the objective from `params` with limited-memory BFGS and a backtracking
/// line search (steps that do not show positive curvature are not stored). A step is
/// taken on sufficient decrease, or on the approximate Wolfe conditions once the decrease
/// is within the objective's rounding noise.
fn lbfgs(
    objective: &mut Objective<'_>,
    mut params: Vec<f64>,
    max_iter: usize,
    tol: f64,
) -> LbfgsOutcome {
    let size = params.len();
    let mut gradient = vec![0.0; size];
    let mut value = objective.evaluate(&params, &mut gradient);
    let mut steps: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::with_capacity(HISTORY);
    let mut trial = vec![0.0; size];
    let mut trial_gradient = vec![0.0; size];

    for iteration in 0..max_iter {
        if max_abs(&gradient) <= tol {
            return LbfgsOutcome {
                params,
                iterations: iteration,
                converged: true,
            };
        }

        let mut direction = two_loop_direction(&gradient, &steps);
        let mut slope = dot(&direction, &gradient);
        if slope >= 0.0 {
            // The curvature pairs gave a non-descent direction: fall back to the gradient.
            steps.clear();
            direction = gradient.iter().map(|g| -g).collect();
            slope = dot(&direction, &gradient);
        }
        let mut step = if steps.is_empty() {
            (1.0 / norm(&direction)).min(1.0)
        } else {
            1.0
        };

        let mut accepted = false;
        for _ in 0..MAX_LINE_STEPS {
            for i in 0..size {
                trial[i] = params[i] + step * direction[i];
            }
            let trial_value = objective.evaluate(&trial, &mut trial_gradient);
            let sufficient_decrease = trial_value <= value + ARMIJO * step * slope;
            if trial_value.is_finite()
                && (sufficient_decrease
                    || approximately_wolfe(value, trial_value, slope, &direction, &trial_gradient))
            {
                let s: Vec<f64> = (0..size).map(|i| trial[i] - params[i]).collect();
                let y: Vec<f64> = (0..size).map(|i| trial_gradient[i] - gradient[i]).collect();
                let curvature = dot(&s, &y);
                if curvature > 1e-10 * dot(&y, &y) {
                    if steps.len() == HISTORY {
                        steps.remove(0);
                    }
                    steps.push((s, y, 1.0 / curvature));
                }
                let decrease = value - trial_value;
                // A step taken on the gradient's word alone says nothing about flatness.
                let flat = sufficient_decrease
                    && decrease <= FLAT * value.abs().max(trial_value.abs()).max(1.0);
                std::mem::swap(&mut params, &mut trial);
                std::mem::swap(&mut gradient, &mut trial_gradient);
                value = trial_value;
                accepted = true;
                if flat {
                    return LbfgsOutcome {
                        params,
                        iterations: iteration + 1,
                        converged: true,
                    };
                }
                break;
            }
            let quadratic = -slope * step * step / (2.0 * (trial_value - value - slope * step));
            step = if quadratic.is_finite() {
                quadratic.clamp(0.1 * step, 0.5 * step)
            } else {
                0.1 * step
            };
        }
        if !accepted {
            // No step lowers the objective: we are at the optimum to machine precision.
            return LbfgsOutcome {
                params,
                iterations: iteration + 1,
                converged: true,
            };
        }
    }
    let converged = max_abs(&gradient) <= tol;
    LbfgsOutcome {
        params,
        iterations: max_iter,
        converged,
    }
}

/// Relative size of the rounding noise in the objective: the scores come from `f32`
/// products, so differences of objective values below this are not measurable.
const OBJECTIVE_NOISE: f64 = 1e-6;
/// Curvature constant of the approximate Wolfe test.
const CURVATURE: f64 = 0.9;

/// Hager and Zhang's approximate Wolfe test: near the optimum the objective's rounding
/// noise hides real decreases, but the gradient (accurate to far smaller values) still
/// shows whether the step went in the right direction and not too far.
fn approximately_wolfe(
    value: f64,
    trial_value: f64,
    slope: f64,
    direction: &[f64],
    trial_gradient: &[f64],
) -> bool {
    let trial_slope = dot(direction, trial_gradient);
    trial_value <= value + OBJECTIVE_NOISE * value.abs()
        && trial_slope >= CURVATURE * slope
        && trial_slope <= (2.0 * ARMIJO - 1.0) * slope
}

/// The L-BFGS search direction `-H g` from the stored `(s, y, 1 / s.y)` pairs.
fn two_loop_direction(gradient: &[f64], steps: &[(Vec<f64>, Vec<f64>, f64)]) -> Vec<f64> {
    let mut q: Vec<f64> = gradient.to_vec();
    let mut alphas = vec![0.0; steps.len()];
    for (i, (s, y, rho)) in steps.iter().enumerate().rev() {
        alphas[i] = rho * dot(s, &q);
        axpy(-alphas[i], y, &mut q);
    }
    if let Some((s, y, _)) = steps.last() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for (i, (s, y, rho)) in steps.iter().enumerate() {
        let beta = rho * dot(y, &q);
        axpy(alphas[i] - beta, s, &mut q);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let x = Matrix::from_vec(4, 2, vec![1.0, 0.5, -0.3, 2.0, 0.7, -1.0, -1.5, 0.2]);
        let targets = [0, 2, 1, 2];
        let settings = FitSettings::new(0.7);
        let mut objective = Objective::new(&x, &targets, 3, settings);
        let params: Vec<f64> = (0..9).map(|i| 0.1 * i as f64 - 0.3).collect();
        let mut gradient = vec![0.0; 9];
        objective.evaluate(&params, &mut gradient);
        for i in 0..9 {
            let h = 1e-3;
            let mut up = params.clone();
            up[i] += h;
            let mut down = params.clone();
            down[i] -= h;
            let mut scratch = vec![0.0; 9];
            let numeric = (objective.evaluate(&up, &mut scratch)
                - objective.evaluate(&down, &mut scratch))
                / (2.0 * h);
            assert!(
                (numeric - gradient[i]).abs() < 1e-4,
                "{i}: {numeric} vs {}",
                gradient[i]
            );
        }
    }

    #[test]
    fn a_single_class_is_predicted_without_fitting() {
        let x = Matrix::from_vec(2, 1, vec![1.0, 2.0]);
        let model = fit(&x, &[4, 4], FitSettings::new(1.0), None);
        assert_eq!(model.predict(&x, 1), vec![4, 4]);
        assert_eq!(model.iterations, 0);
    }
}
