//! The linear probe protocol: class-stratified label subsets, the choice of `C` by
//! stratified cross-validation on the subset alone, and the refit scored on the test
//! split.
//!
//! When a subset has fewer rows than dimensions (1% and 10% of the labels on raw pixels),
//! every fit runs in an orthonormal basis of the span of its training rows instead of the
//! full space. That is the same problem, not an approximation: the scores depend on the
//! weights only through their projection on that span, and the L2 penalty of any part
//! outside it is wasted, so the optimum lies in the span (the representer theorem), and
//! in an orthonormal basis the penalty and the L-BFGS steps are unchanged. It only makes
//! each product cost rows x rows instead of rows x dimensions.

use std::borrow::Cow;

use latent_core::rng::{rng_for, stream};
use rand::RngExt;
use rayon::prelude::*;
use serde::Serialize;

use crate::linalg::{Matrix, Op, matmul};
use crate::logistic::{FitSettings, LogisticModel, accuracy, fit};

/// The fixed settings of the linear probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSettings {
    /// The seed of the run; the subsets and folds derive from it and the subset seed.
    pub run_seed: u64,
    /// Seeds of the subsets drawn for fractions below 1.
    pub seeds: Vec<u64>,
    /// The `C` values tried, ascending.
    pub c_grid: Vec<f64>,
    /// Folds of the cross-validation that chooses `C`.
    pub folds: usize,
    /// `C` used when a class of the subset has fewer rows than folds.
    pub fallback_c: f64,
    /// L-BFGS iteration cap.
    pub max_iter: usize,
    /// L-BFGS gradient tolerance.
    pub tol: f64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            run_seed: 0,
            seeds: vec![0, 1, 2],
            c_grid: vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            folds: 3,
            fallback_c: 1.0,
            max_iter: 1000,
            tol: 1e-4,
        }
    }
}

/// The probe on one subset of the train labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    /// Rows in the subset.
    pub rows: usize,
    /// Test accuracy of the model refitted on the whole subset.
    pub accuracy: f64,
    /// The chosen `C`.
    pub c: f64,
    /// Mean cross-validation accuracy per `C` of the grid (empty when `C` was not
    /// searched because a class had too few rows).
    pub cv_accuracy: Vec<f64>,
    /// L-BFGS iterations of the refit.
    pub iterations: usize,
    pub converged: bool,
    /// The refitted model's class for every test row (for the confusion matrix; not
    /// written to the report).
    #[serde(skip)]
    pub test_predictions: Vec<i32>,
}

/// The probe at one label fraction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FractionResult {
    pub fraction: f64,
    /// Mean test accuracy over the seeds.
    pub mean: f64,
    /// Population standard deviation of the test accuracy over the seeds (0 for one).
    pub std: f64,
    /// Whether every fit (cross-validation and refit) stopped before the iteration cap.
    pub converged: bool,
    pub per_seed: Vec<SeedResult>,
}

/// Row indices holding `max(1, round(fraction * class size))` rows of every class, drawn
/// without replacement from the PROBE stream of `(run_seed, subset_seed, class)`, sorted.
/// A fraction of 1 or more takes every row.
pub fn stratified_subset(
    labels: &[i32],
    fraction: f64,
    run_seed: u64,
    subset_seed: u64,
) -> Vec<usize> {
    if fraction >= 1.0 {
        return (0..labels.len()).collect();
    }
    let mut picked = Vec::new();
    for (class, mut rows) in rows_by_class(labels) {
        let count = ((fraction * rows.len() as f64).round() as usize).clamp(1, rows.len());
        let mut rng = rng_for(run_seed, &[stream::PROBE, subset_seed, class as u64]);
        for i in 0..count {
            let j = rng.random_range(i..rows.len());
            rows.swap(i, j);
        }
        picked.extend_from_slice(&rows[..count]);
    }
    picked.sort_unstable();
    picked
}

/// The fold (0..folds) of every row: each class's rows are shuffled and dealt out in
/// turn, so every fold holds a near-equal share of every class.
pub fn stratified_folds(
    labels: &[i32],
    folds: usize,
    run_seed: u64,
    subset_seed: u64,
) -> Vec<usize> {
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for (class, mut rows) in rows_by_class(labels) {
        let mut rng = rng_for(
            run_seed,
            &[stream::PROBE, subset_seed, u64::MAX, class as u64],
        );
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.random_range(0..=i));
        }
        // Continue dealing where the previous class stopped, so fold sizes stay balanced.
        for row in rows {
            fold_of[row] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Rows of each class, by ascending class id.
fn rows_by_class(labels: &[i32]) -> Vec<(i32, Vec<usize>)> {
    let mut classes: Vec<i32> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    classes
        .into_iter()
        .map(|c| (c, (0..labels.len()).filter(|&i| labels[i] == c).collect()))
        .collect()
}

/// The linear probe at one label fraction: for each seed (one seed at fraction 1), draw
/// the subset, choose `C` on it, refit on all of it and score the test split.
pub fn linear_probe(
    train: &Matrix,
    train_labels: &[i32],
    test: &Matrix,
    test_labels: &[i32],
    fraction: f64,
    settings: &ProbeSettings,
) -> FractionResult {
    let seeds: Vec<u64> = if fraction >= 1.0 {
        settings.seeds.iter().copied().take(1).collect()
    } else {
        settings.seeds.clone()
    };
    let threads_per_fit = if seeds.len() == 1 {
        rayon::current_num_threads()
    } else {
        1
    };

    let results: Vec<(SeedResult, bool)> = seeds
        .par_iter()
        .map(|&seed| {
            let rows = stratified_subset(train_labels, fraction, settings.run_seed, seed);
            let x = train.select_rows(&rows);
            let y: Vec<i32> = rows.iter().map(|&r| train_labels[r]).collect();
            let (c, cv_accuracy, cv_converged) = choose_c(&x, &y, seed, settings, threads_per_fit);

            let fit_settings = FitSettings {
                threads: threads_per_fit,
                ..fit_settings(c, settings)
            };
            let (x_fit, others) = compact(&x, &[test], threads_per_fit);
            let model = fit(&x_fit, &y, fit_settings, None);
            let test_predictions = model.predict(&others[0], threads_per_fit);
            let result = SeedResult {
                seed,
                rows: rows.len(),
                accuracy: accuracy(&test_predictions, test_labels),
                c,
                cv_accuracy,
                iterations: model.iterations,
                converged: model.converged,
                test_predictions,
            };
            tracing::debug!(
                "linear probe {}% seed {seed}: {} rows, C {c}, accuracy {:.4}, {} iterations",
                fraction * 100.0,
                result.rows,
                result.accuracy,
                result.iterations
            );
            (result, cv_converged)
        })
        .collect();

    let accuracies: Vec<f64> = results.iter().map(|(r, _)| r.accuracy).collect();
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let variance =
        accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / accuracies.len() as f64;
    FractionResult {
        fraction,
        mean,
        std: variance.sqrt(),
        converged: results.iter().all(|(r, cv)| r.converged && *cv),
        per_seed: results.into_iter().map(|(r, _)| r).collect(),
    }
}

fn fit_settings(c: f64, settings: &ProbeSettings) -> FitSettings {
    FitSettings {
        max_iter: settings.max_iter,
        tol: settings.tol,
        ..FitSettings::new(c)
    }
}

/// Chooses `C` by stratified cross-validation on `(x, labels)` only: within each fold the
/// grid runs from the smallest `C` up, each fit warm-started from the previous one; the
/// best mean held-out accuracy wins, ties to the smaller `C`.
///
/// Returns the chosen `C`, the mean accuracy per `C` (empty if not searched) and whether
/// every fit converged. A class with fewer rows than folds gets the fallback `C`.
///
/// `threads` is what each fold's products may use; with more than one, the pool balances
/// the folds (3 folds on 2 cores would otherwise leave one core idle for the last).
pub fn choose_c(
    x: &Matrix,
    labels: &[i32],
    seed: u64,
    settings: &ProbeSettings,
    threads: usize,
) -> (f64, Vec<f64>, bool) {
    let smallest_class = rows_by_class(labels)
        .iter()
        .map(|(_, r)| r.len())
        .min()
        .unwrap_or(0);
    if smallest_class < settings.folds {
        return (settings.fallback_c, Vec::new(), true);
    }

    let fold_of = stratified_folds(labels, settings.folds, settings.run_seed, seed);
    let per_fold: Vec<(Vec<f64>, bool)> = (0..settings.folds)
        .into_par_iter()
        .map(|fold| {
            let fit_rows: Vec<usize> = (0..x.rows).filter(|&r| fold_of[r] != fold).collect();
            let check_rows: Vec<usize> = (0..x.rows).filter(|&r| fold_of[r] == fold).collect();
            let fit_labels: Vec<i32> = fit_rows.iter().map(|&r| labels[r]).collect();
            let check_labels: Vec<i32> = check_rows.iter().map(|&r| labels[r]).collect();
            let fit_x = x.select_rows(&fit_rows);
            let check_x = x.select_rows(&check_rows);
            let (x_fit, others) = compact(&fit_x, &[&check_x], threads);

            let mut model: Option<LogisticModel> = None;
            let mut converged = true;
            let mut scores = Vec::with_capacity(settings.c_grid.len());
            for &c in &settings.c_grid {
                let next = fit(
                    &x_fit,
                    &fit_labels,
                    FitSettings {
                        threads,
                        ..fit_settings(c, settings)
                    },
                    model.as_ref(),
                );
                converged &= next.converged;
                scores.push(accuracy(&next.predict(&others[0], threads), &check_labels));
                tracing::debug!(
                    "subset seed {seed} fold {fold}: C {c}, {} rows of dimension {}, {} \
                     iterations, held-out accuracy {:.4}",
                    x_fit.rows,
                    x_fit.cols,
                    next.iterations,
                    scores.last().expect("just pushed")
                );
                model = Some(next);
            }
            (scores, converged)
        })
        .collect();

    let mean: Vec<f64> = (0..settings.c_grid.len())
        .map(|i| per_fold.iter().map(|(s, _)| s[i]).sum::<f64>() / settings.folds as f64)
        .collect();
    let mut best = 0;
    for i in 1..mean.len() {
        if mean[i] > mean[best] {
            best = i;
        }
    }
    let converged = per_fold.iter().all(|(_, c)| *c);
    (settings.c_grid[best], mean, converged)
}

/// `fit_rows` and `others` re-expressed in an orthonormal basis of the span of
/// `fit_rows`, when there are clearly fewer rows than dimensions; else unchanged.
fn compact<'a>(
    fit_rows: &'a Matrix,
    others: &[&'a Matrix],
    threads: usize,
) -> (Cow<'a, Matrix>, Vec<Cow<'a, Matrix>>) {
    if 4 * fit_rows.rows >= 3 * fit_rows.cols {
        return (
            Cow::Borrowed(fit_rows),
            others.iter().map(|&m| Cow::Borrowed(m)).collect(),
        );
    }
    let basis = row_space_basis(fit_rows, threads);
    let project = |m: &Matrix| {
        let mut out = Matrix::zeros(m.rows, basis.rows);
        matmul(m, Op::AsIs, &basis, Op::Transposed, &mut out, threads);
        Cow::Owned(out)
    };
    (
        project(fit_rows),
        others.iter().map(|&m| project(m)).collect(),
    )
}

/// Relative size (to the largest squared row norm) below which a row's distance to the
/// span of the rows already chosen counts as zero.
const RANK_TOLERANCE: f64 = 1e-7;

/// An orthonormal basis (one vector per row of the result) of the span of the rows of `x`.
///
/// A pivoted Cholesky factorisation of the Gram matrix `x x^T = L L^T` picks a set `J` of
/// independent rows; with `L_J` the rows of `L` at `J` (lower triangular),
/// `L_J^-1 x_J` has orthonormal rows spanning the same space.
pub fn row_space_basis(x: &Matrix, threads: usize) -> Matrix {
    let n = x.rows;
    let mut gram = Matrix::zeros(n, n);
    matmul(x, Op::AsIs, x, Op::Transposed, &mut gram, threads);
    let gram = |i: usize, j: usize| f64::from(gram.data[i * n + j]);

    // Pivoted Cholesky: columns of L (length n each) and the pivots in order.
    let mut residual: Vec<f64> = (0..n).map(|i| gram(i, i)).collect();
    let largest = residual.iter().fold(0.0f64, |m, &v| m.max(v));
    let mut chosen = vec![false; n];
    let mut pivots: Vec<usize> = Vec::new();
    let mut columns: Vec<Vec<f64>> = Vec::new();
    loop {
        let candidate = (0..n)
            .filter(|&i| !chosen[i])
            .max_by(|&a, &b| residual[a].total_cmp(&residual[b]));
        let Some(p) = candidate else { break };
        if residual[p] <= RANK_TOLERANCE * largest || residual[p] <= 0.0 {
            break;
        }
        let pivot = residual[p].sqrt();
        let column: Vec<f64> = (0..n)
            .map(|i| {
                if chosen[i] {
                    return 0.0;
                }
                let done: f64 = columns.iter().map(|c| c[i] * c[p]).sum();
                (gram(i, p) - done) / pivot
            })
            .collect();
        for i in 0..n {
            if !chosen[i] {
                residual[i] -= column[i] * column[i];
            }
        }
        chosen[p] = true;
        pivots.push(p);
        columns.push(column);
    }

    // Invert the r x r lower-triangular L_J by forward substitution.
    let r = pivots.len();
    let l = |a: usize, b: usize| columns[b][pivots[a]];
    let mut inverse = vec![0.0f64; r * r];
    for col in 0..r {
        for row in col..r {
            let identity = if row == col { 1.0 } else { 0.0 };
            let sum: f64 = (col..row).map(|m| l(row, m) * inverse[m * r + col]).sum();
            inverse[row * r + col] = (identity - sum) / l(row, row);
        }
    }

    let inverse = Matrix::from_vec(r, r, inverse.into_iter().map(|v| v as f32).collect());
    let mut basis = Matrix::zeros(r, x.cols);
    matmul(
        &inverse,
        Op::AsIs,
        &x.select_rows(&pivots),
        Op::AsIs,
        &mut basis,
        threads,
    );
    basis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_space_basis_is_orthonormal_and_spans_the_rows() {
        // Three rows in 4-d, the third the sum of the first two: rank 2.
        let x = Matrix::from_vec(
            3,
            4,
            vec![
                1.0, 2.0, 0.0, 1.0, //
                0.0, 1.0, 3.0, -1.0, //
                1.0, 3.0, 3.0, 0.0,
            ],
        );
        let basis = row_space_basis(&x, 1);
        assert_eq!(basis.rows, 2);
        let mut product = Matrix::zeros(2, 2);
        matmul(&basis, Op::AsIs, &basis, Op::Transposed, &mut product, 1);
        for (i, v) in product.data.iter().enumerate() {
            let expected = if i % 3 == 0 { 1.0 } else { 0.0 };
            assert!((v - expected).abs() < 1e-5, "{:?}", product.data);
        }
        // Projecting on the basis keeps each row's length: the rows lie in the span.
        let mut coordinates = Matrix::zeros(3, 2);
        matmul(&x, Op::AsIs, &basis, Op::Transposed, &mut coordinates, 1);
        for r in 0..3 {
            let original: f32 = x.row(r).iter().map(|v| v * v).sum();
            let projected: f32 = coordinates.row(r).iter().map(|v| v * v).sum();
            assert!(
                (original - projected).abs() < 1e-4,
                "row {r}: {original} vs {projected}"
            );
        }
    }
}
