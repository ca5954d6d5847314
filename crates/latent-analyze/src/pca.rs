//! Principal components for the 2-D maps of a latent space: the covariance of the rows
//! (d x d), its leading eigenvectors by power iteration with deflation, and the
//! projection of the rows onto them.

use crate::linalg::{Matrix, Op, matmul};

/// Power iterations per component at most; they stop earlier once the direction settles.
const MAX_ITERATIONS: usize = 1000;
/// Squared change of the (unit) direction between iterations below which it counts as
/// settled.
const TOLERANCE: f64 = 1e-24;

/// Leading principal directions of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The column means the rows are centred with.
    pub mean: Vec<f64>,
    /// Unit directions, the largest variance first. Each is signed so that its entry of
    /// largest magnitude is positive, so the maps do not flip between runs.
    pub components: Vec<Vec<f64>>,
    /// Variance of the rows along each direction (population, divided by rows).
    pub variances: Vec<f64>,
}

impl Pca {
    /// The first `count` principal directions of the rows of `x` (fewer when `x` has
    /// fewer columns).
    pub fn fit(x: &Matrix, count: usize) -> Self {
        let (rows, dim) = (x.rows, x.cols);
        let mut mean = vec![0.0f64; dim];
        for r in 0..rows {
            for (m, &v) in mean.iter_mut().zip(x.row(r)) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);

        let mut centred = x.clone();
        for row in centred.data.chunks_mut(dim.max(1)) {
            for (v, m) in row.iter_mut().zip(&mean) {
                *v = (f64::from(*v) - m) as f32;
            }
        }
        let mut product = Matrix::zeros(dim, dim);
        matmul(
            &centred,
            Op::Transposed,
            &centred,
            Op::AsIs,
            &mut product,
            1,
        );
        let mut covariance: Vec<f64> = product
            .data
            .iter()
            .map(|&v| f64::from(v) / rows.max(1) as f64)
            .collect();

        let mut components = Vec::new();
        let mut variances = Vec::new();
        for _ in 0..count.min(dim) {
            let (direction, variance) = leading_eigenvector(&covariance, dim);
            // Deflate: remove this direction so the next iteration finds the next one.
            for i in 0..dim {
                for j in 0..dim {
                    covariance[i * dim + j] -= variance * direction[i] * direction[j];
                }
            }
            components.push(direction);
            variances.push(variance);
        }
        Self {
            mean,
            components,
            variances,
        }
    }

    /// Coordinates of each row of `x` along the components.
    pub fn project(&self, x: &Matrix) -> Vec<Vec<f64>> {
        (0..x.rows)
            .map(|r| {
                self.components
                    .iter()
                    .map(|c| {
                        x.row(r)
                            .iter()
                            .zip(&self.mean)
                            .zip(c)
                            .map(|((&v, m), w)| (f64::from(v) - m) * w)
                            .sum()
                    })
                    .collect()
            })
            .collect()
    }
}

/// The unit eigenvector of the largest eigenvalue of a symmetric positive semi-definite
/// `dim x dim` matrix, and that eigenvalue (0 and the first axis for a zero matrix).
fn leading_eigenvector(matrix: &[f64], dim: usize) -> (Vec<f64>, f64) {
    // A start with a part along every axis; uneven so it is unlikely to be orthogonal to
    // the answer.
    let mut direction: Vec<f64> = (0..dim).map(|i| 1.0 + (i as f64 + 1.0).sqrt()).collect();
    normalise(&mut direction);
    let mut next = vec![0.0; dim];
    for _ in 0..MAX_ITERATIONS {
        for (i, n) in next.iter_mut().enumerate() {
            *n = (0..dim).map(|j| matrix[i * dim + j] * direction[j]).sum();
        }
        if normalise(&mut next) == 0.0 {
            let mut axis = vec![0.0; dim];
            if dim > 0 {
                axis[0] = 1.0;
            }
            return (axis, 0.0);
        }
        let change: f64 = next
            .iter()
            .zip(&direction)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        std::mem::swap(&mut direction, &mut next);
        if change < TOLERANCE {
            break;
        }
    }

    let largest =
        direction.iter().copied().fold(
            0.0f64,
            |best, v| if v.abs() > best.abs() { v } else { best },
        );
    if largest < 0.0 {
        direction.iter_mut().for_each(|v| *v = -*v);
    }
    let eigenvalue = (0..dim)
        .map(|i| {
            let row: f64 = (0..dim).map(|j| matrix[i * dim + j] * direction[j]).sum();
            row * direction[i]
        })
        .sum::<f64>()
        .max(0.0);
    (direction, eigenvalue)
}

/// Scales `v` to unit length and returns its former length (leaves a zero vector alone).
fn normalise(v: &mut [f64]) -> f64 {
    let length = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if length > 0.0 {
        v.iter_mut().for_each(|x| *x /= length);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_axes_of_a_hand_made_cloud() {
        // Four points at (±3, 0, 0) and (0, ±1, 0) around the centre (1, 2, 5): the
        // variance is 9/2 along x, 1/2 along y and 0 along z.
        let x = Matrix::from_vec(
            4,
            3,
            vec![
                4.0, 2.0, 5.0, //
                -2.0, 2.0, 5.0, //
                1.0, 3.0, 5.0, //
                1.0, 1.0, 5.0,
            ],
        );
        let pca = Pca::fit(&x, 2);
        assert_eq!(pca.mean, vec![1.0, 2.0, 5.0]);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(pca.variances[0], 4.5), "{:?}", pca.variances);
        assert!(close(pca.variances[1], 0.5), "{:?}", pca.variances);
        for (found, expected) in pca.components[0].iter().zip([1.0, 0.0, 0.0]) {
            assert!(close(*found, expected), "{:?}", pca.components);
        }
        for (found, expected) in pca.components[1].iter().zip([0.0, 1.0, 0.0]) {
            assert!(close(*found, expected), "{:?}", pca.components);
        }
        let coordinates = pca.project(&x);
        assert!(close(coordinates[0][0], 3.0) && close(coordinates[0][1], 0.0));
        assert!(close(coordinates[3][0], 0.0) && close(coordinates[3][1], -1.0));
    }

    #[test]
    fn finds_a_diagonal_direction() {
        // Points along (1, 1) at -2, -1, 1, 2 plus 0.1, -0.1, -0.1, 0.1 across it
        // (uncorrelated with the part along, both in units of (1, ±1) / sqrt 2): the
        // first component is (1, 1) / sqrt 2 with variance (4 + 1 + 1 + 4) / 4 = 2.5,
        // the second (-1, 1) / sqrt 2 up to sign, with variance 0.01.
        let s = std::f32::consts::FRAC_1_SQRT_2;
        let along = [-2.0f32, -1.0, 1.0, 2.0];
        let across = [0.1f32, -0.1, -0.1, 0.1];
        let mut data = Vec::new();
        for (a, c) in along.iter().zip(across) {
            data.extend([(a - c) * s, (a + c) * s]);
        }
        let pca = Pca::fit(&Matrix::from_vec(4, 2, data), 2);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-5;
        let h = f64::from(s);
        let first = &pca.components[0];
        assert!(close(first[0], h) && close(first[1], h), "{first:?}");
        let second = &pca.components[1];
        assert!(
            close(second[0].abs(), h) && close(second[1].abs(), h),
            "{second:?}"
        );
        assert!(second[0] * second[1] < 0.0, "{second:?}");
        assert!(close(pca.variances[0], 2.5), "{:?}", pca.variances);
        assert!(close(pca.variances[1], 0.01), "{:?}", pca.variances);
    }
}
