//! Clustering scores of the test split: k-means (k = classes, k-means++ starts, several
//! seeded restarts) compared with the labels by NMI and ARI, and cosine silhouettes.
//!
//! Degenerate inputs give documented values instead of NaN: NMI and ARI are 1 when both
//! partitions are a single group (they agree), and a silhouette is `None` when there are
//! fewer than 2 or as many groups as rows (it is undefined there).

use latent_core::rng::{rng_for, stream};
use rand::RngExt;
use rayon::prelude::*;
use serde::Serialize;

use crate::linalg::{Matrix, Op, matmul};

/// Settings of k-means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KmeansSettings {
    /// Independent k-means++ starts; the one with the lowest inertia is kept.
    pub restarts: usize,
    /// Lloyd iterations per start at most.
    pub max_iter: usize,
}

impl Default for KmeansSettings {
    fn default() -> Self {
        Self {
            restarts: 10,
            max_iter: 300,
        }
    }
}

/// Clustering scores of one feature set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClusterScores {
    /// Normalised mutual information (arithmetic mean of the entropies) of k-means
    /// clusters and labels.
    pub kmeans_nmi: f64,
    /// Adjusted Rand index of k-means clusters and labels.
    pub kmeans_ari: f64,
    /// Mean cosine silhouette of the test rows grouped by their labels.
    pub silhouette_labels: Option<f64>,
    /// Mean cosine silhouette of the test rows grouped by their k-means clusters.
    pub silhouette_kmeans: Option<f64>,
}

/// k-means on `x` with `k` clusters, then the scores against `labels`.
pub fn cluster_scores(
    x: &Matrix,
    labels: &[i32],
    k: usize,
    settings: KmeansSettings,
    seed: u64,
) -> ClusterScores {
    let clusters = kmeans(x, k, settings, seed);
    let distances = cosine_distances(x);
    ClusterScores {
        kmeans_nmi: normalized_mutual_info(labels, &clusters),
        kmeans_ari: adjusted_rand_index(labels, &clusters),
        silhouette_labels: silhouette(&distances, labels),
        silhouette_kmeans: silhouette(&distances, &clusters),
    }
}

/// The cluster of every row after the best of `settings.restarts` k-means runs.
pub fn kmeans(x: &Matrix, k: usize, settings: KmeansSettings, seed: u64) -> Vec<i32> {
    let k = k.clamp(1, x.rows.max(1));
    let runs: Vec<(f64, Vec<i32>)> = (0..settings.restarts.max(1))
        .into_par_iter()
        .map(|restart| lloyd(x, k, settings.max_iter, seed, restart as u64))
        .collect();
    runs.into_iter()
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, assignment)| assignment)
        .unwrap_or_default()
}

/// One k-means run from a k-means++ start: (inertia, assignment).
fn lloyd(x: &Matrix, k: usize, max_iter: usize, seed: u64, restart: u64) -> (f64, Vec<i32>) {
    let mut rng = rng_for(seed, &[stream::KMEANS, restart]);
    let squared_norms: Vec<f64> = (0..x.rows)
        .map(|r| x.row(r).iter().map(|v| f64::from(*v).powi(2)).sum())
        .collect();

    // k-means++: each next centre is a row drawn with probability proportional to its
    // squared distance to the nearest centre so far.
    let mut centres = Matrix::zeros(k, x.cols);
    let first = rng.random_range(0..x.rows);
    centres.data[..x.cols].copy_from_slice(x.row(first));
    let mut nearest: Vec<f64> = (0..x.rows)
        .map(|r| squared_distance(x.row(r), x.row(first)))
        .collect();
    for c in 1..k {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = x.rows - 1;
            for (r, d) in nearest.iter().enumerate() {
                if target < *d {
                    chosen = r;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            rng.random_range(0..x.rows)
        };
        centres.data[c * x.cols..(c + 1) * x.cols].copy_from_slice(x.row(pick));
        for (r, d) in nearest.iter_mut().enumerate() {
            *d = d.min(squared_distance(x.row(r), x.row(pick)));
        }
    }

    let mut assignment = vec![0i32; x.rows];
    let mut inertia = f64::INFINITY;
    let mut products = Matrix::zeros(x.rows, k);
    for iteration in 0..max_iter {
        matmul(x, Op::AsIs, &centres, Op::Transposed, &mut products, 1);
        let centre_norms: Vec<f64> = (0..k)
            .map(|c| centres.row(c).iter().map(|v| f64::from(*v).powi(2)).sum())
            .collect();
        let mut changed = false;
        inertia = 0.0;
        for r in 0..x.rows {
            let (mut best, mut best_distance) = (0, f64::INFINITY);
            for (c, centre_norm) in centre_norms.iter().enumerate() {
                let d = squared_norms[r] - 2.0 * f64::from(products.data[r * k + c]) + centre_norm;
                if d < best_distance {
                    best = c;
                    best_distance = d;
                }
            }
            changed |= assignment[r] != best as i32;
            assignment[r] = best as i32;
            inertia += best_distance.max(0.0);
        }
        if !changed && iteration > 0 {
            break;
        }

        // New centres: means of their rows; an emptied cluster keeps its old centre.
        let mut sums = vec![0.0f64; k * x.cols];
        let mut counts = vec![0usize; k];
        for (r, &cluster) in assignment.iter().enumerate() {
            let c = cluster as usize;
            counts[c] += 1;
            for (s, v) in sums[c * x.cols..(c + 1) * x.cols].iter_mut().zip(x.row(r)) {
                *s += f64::from(*v);
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..x.cols {
                    centres.data[c * x.cols + j] = (sums[c * x.cols + j] / counts[c] as f64) as f32;
                }
            }
        }
    }
    (inertia, assignment)
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

/// Contingency counts of two partitions: (table, sizes of `a`'s groups, sizes of `b`'s).
fn contingency(a: &[i32], b: &[i32]) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>) {
    let index = |values: &[i32]| {
        let mut ids: Vec<i32> = values.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let positions: Vec<usize> = values
            .iter()
            .map(|v| ids.binary_search(v).unwrap())
            .collect();
        (ids.len(), positions)
    };
    let (na, ia) = index(a);
    let (nb, ib) = index(b);
    let mut table = vec![vec![0.0; nb]; na];
    for (i, j) in ia.iter().zip(&ib) {
        table[*i][*j] += 1.0;
    }
    let rows = table.iter().map(|r| r.iter().sum()).collect();
    let cols = (0..nb).map(|j| table.iter().map(|r| r[j]).sum()).collect();
    (table, rows, cols)
}

fn entropy(sizes: &[f64], n: f64) -> f64 {
    sizes
        .iter()
        .filter(|&&s| s > 0.0)
        .map(|&s| -(s / n) * (s / n).ln())
        .sum()
}

/// NMI with the arithmetic mean of the two entropies; 1 when both are a single group.
pub fn normalized_mutual_info(a: &[i32], b: &[i32]) -> f64 {
    let n = a.len() as f64;
    let (table, rows, cols) = contingency(a, b);
    let (ha, hb) = (entropy(&rows, n), entropy(&cols, n));
    if ha == 0.0 && hb == 0.0 {
        return 1.0;
    }
    let mut mutual = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            if count > 0.0 {
                mutual += (count / n) * (count * n / (rows[i] * cols[j])).ln();
            }
        }
    }
    (mutual / ((ha + hb) / 2.0)).clamp(0.0, 1.0)
}

/// Adjusted Rand index; 1 when the expected and the maximal index coincide (both
/// partitions a single group, or both all singletons).
pub fn adjusted_rand_index(a: &[i32], b: &[i32]) -> f64 {
    let pairs = |x: f64| x * (x - 1.0) / 2.0;
    let (table, rows, cols) = contingency(a, b);
    let index: f64 = table.iter().flatten().map(|&c| pairs(c)).sum();
    let sum_rows: f64 = rows.iter().map(|&s| pairs(s)).sum();
    let sum_cols: f64 = cols.iter().map(|&s| pairs(s)).sum();
    let expected = sum_rows * sum_cols / pairs(a.len() as f64).max(1.0);
    let maximum = (sum_rows + sum_cols) / 2.0;
    if maximum == expected {
        return 1.0;
    }
    (index - expected) / (maximum - expected)
}

/// `1 - cosine similarity` between every two rows (rows of length 0 count as orthogonal).
pub fn cosine_distances(x: &Matrix) -> Matrix {
    let mut unit = x.clone();
    for row in unit.data.chunks_mut(x.cols.max(1)) {
        let length = row
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        if length > 1e-12 {
            row.iter_mut()
                .for_each(|v| *v = (f64::from(*v) / length) as f32);
        }
    }
    let mut distances = Matrix::zeros(x.rows, x.rows);
    matmul(
        &unit,
        Op::AsIs,
        &unit,
        Op::Transposed,
        &mut distances,
        rayon::current_num_threads(),
    );
    distances
        .data
        .iter_mut()
        .for_each(|s| *s = (1.0 - *s).max(0.0));
    distances
}

/// Mean silhouette over all rows for the given precomputed distances; a row alone in its
/// group scores 0. `None` when there are fewer than 2 groups or as many groups as rows.
pub fn silhouette(distances: &Matrix, groups: &[i32]) -> Option<f64> {
    let (_, sizes, _) = contingency(groups, groups);
    let mut ids: Vec<i32> = groups.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 || ids.len() >= groups.len() {
        return None;
    }
    let group_of: Vec<usize> = groups
        .iter()
        .map(|g| ids.binary_search(g).unwrap())
        .collect();
    let total: f64 = (0..groups.len())
        .into_par_iter()
        .map(|r| {
            let own = group_of[r];
            if sizes[own] <= 1.0 {
                return 0.0;
            }
            let mut sums = vec![0.0f64; ids.len()];
            for (other, &d) in distances.row(r).iter().enumerate() {
                if other != r {
                    sums[group_of[other]] += f64::from(d);
                }
            }
            let a = sums[own] / (sizes[own] - 1.0);
            let b = (0..ids.len())
                .filter(|&g| g != own)
                .map(|g| sums[g] / sizes[g])
                .fold(f64::INFINITY, f64::min);
            let larger = a.max(b);
            if larger > 0.0 { (b - a) / larger } else { 0.0 }
        })
        .sum();
    Some(total / groups.len() as f64)
}
