//! Dense row-major `f32` matrices and the one matrix product everything here is built on.
//!
//! The probes spend nearly all their time in products of a data matrix with a thin
//! weight matrix (and its transpose), so those go through the `gemm` crate's tuned
//! kernels; the rest of the arithmetic is simple loops over rows.

use gemm::Parallelism;

/// A dense matrix stored row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Wraps row-major data; panics if the length does not match the shape.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Self { rows, cols, data }
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// A new matrix holding the given rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(rows.len() * self.cols);
        for &r in rows {
            data.extend_from_slice(self.row(r));
        }
        Matrix::from_vec(rows.len(), self.cols, data)
    }
}

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    AsIs,
    Transposed,
}

/// `out = a' b'` where `'` is the operand's [`Op`]; `out` is overwritten.
///
/// `threads` > 1 lets the product use the rayon pool; inside code that is already
/// parallel over independent fits, pass 1.
pub fn matmul(a: &Matrix, a_op: Op, b: &Matrix, b_op: Op, out: &mut Matrix, threads: usize) {
    let (m, k, a_rs, a_cs) = match a_op {
        Op::AsIs => (a.rows, a.cols, a.cols as isize, 1),
        Op::Transposed => (a.cols, a.rows, 1, a.cols as isize),
    };
    let (k2, n, b_rs, b_cs) = match b_op {
        Op::AsIs => (b.rows, b.cols, b.cols as isize, 1),
        Op::Transposed => (b.cols, b.rows, 1, b.cols as isize),
    };
    assert_eq!(k, k2, "inner dimensions of a matrix product differ");
    assert_eq!(
        (out.rows, out.cols),
        (m, n),
        "output of a matrix product has the wrong shape"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.data.fill(0.0);
        return;
    }
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };

    // SAFETY: the shapes and strides above describe exactly the three buffers, which are
    // valid for the whole call; `out` is borrowed mutably so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.data.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_transposes_match_hand_computed_values() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [1, 1]]
        let a = Matrix::from_vec(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = Matrix::from_vec(3, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let mut ab = Matrix::zeros(2, 2);
        matmul(&a, Op::AsIs, &b, Op::AsIs, &mut ab, 1);
        assert_eq!(ab.data, vec![4.0, 5.0, 10.0, 11.0]);

        // a a^T = [[14, 32], [32, 77]]
        let mut gram = Matrix::zeros(2, 2);
        matmul(&a, Op::AsIs, &a, Op::Transposed, &mut gram, 1);
        assert_eq!(gram.data, vec![14.0, 32.0, 32.0, 77.0]);

        // a^T [1, 1]^T-style: a^T (2x1 ones) = column sums [5, 7, 9]
        let ones = Matrix::from_vec(2, 1, vec![1.0, 1.0]);
        let mut sums = Matrix::zeros(3, 1);
        matmul(&a, Op::Transposed, &ones, Op::AsIs, &mut sums, 2);
        assert_eq!(sums.data, vec![5.0, 7.0, 9.0]);
    }
}
