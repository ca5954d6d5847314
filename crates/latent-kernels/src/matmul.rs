//! A safe, bounds-checked front for the `gemm` crate's single-precision matrix product.
//!
//! The convolution kernels call this from inside rayon tasks, one product per chunk of
//! images, so the product itself always runs single-threaded (`Parallelism::None`): the
//! parallelism is the chunks, not the inner product.

/// Where a matrix lives in a slice: element `(r, c)` is at `r * row_stride + c * col_stride`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatrixView {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixView {
    /// A row-major matrix whose rows follow each other without gaps.
    pub(crate) fn row_major(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The same storage read as the transposed matrix.
    pub(crate) fn transposed(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the largest offset the view touches (0 for an empty matrix).
    fn extent(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// `dst = lhs * rhs`, or `dst += lhs * rhs` when `accumulate` is set.
///
/// Panics when the shapes do not chain or a view reaches past its slice: both are bugs in
/// the caller, never a property of user data.
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_view: MatrixView,
    lhs: &[f32],
    lhs_view: MatrixView,
    rhs: &[f32],
    rhs_view: MatrixView,
    accumulate: bool,
) {
    assert_eq!(lhs_view.cols, rhs_view.rows, "inner dimensions differ");
    assert_eq!(dst_view.rows, lhs_view.rows, "row counts differ");
    assert_eq!(dst_view.cols, rhs_view.cols, "column counts differ");
    assert!(
        dst_view.extent() <= dst.len(),
        "destination view past its slice"
    );
    assert!(lhs_view.extent() <= lhs.len(), "left view past its slice");
    assert!(rhs_view.extent() <= rhs.len(), "right view past its slice");
    if dst_view.rows == 0 || dst_view.cols == 0 {
        return;
    }

    // SAFETY: the assertions above keep every offset the product touches inside the
    // slices; `dst` is borrowed mutably, so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            dst_view.rows,
            dst_view.cols,
            lhs_view.cols,
            dst.as_mut_ptr(),
            dst_view.col_stride as isize,
            dst_view.row_stride as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_view.col_stride as isize,
            lhs_view.row_stride as isize,
            rhs.as_ptr(),
            rhs_view.col_stride as isize,
            rhs_view.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_and_accumulation_match_hand_computed_values() {
        // [1 2 3; 4 5 6] * [1 0; 0 1; 1 1] = [4 5; 10 11]
        let lhs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let rhs = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut dst = [f32::NAN; 4];
        let (l, r, d) = (
            MatrixView::row_major(2, 3),
            MatrixView::row_major(3, 2),
            MatrixView::row_major(2, 2),
        );
        matmul(&mut dst, d, &lhs, l, &rhs, r, false);
        assert_eq!(dst, [4.0, 5.0, 10.0, 11.0]);

        matmul(&mut dst, d, &lhs, l, &rhs, r, true);
        assert_eq!(dst, [8.0, 10.0, 20.0, 22.0]);

        // lhs read transposed: [1 4; 2 5; 3 6] * [1 0; 0 1] = [1 4; 2 5; 3 6]
        let identity = [1.0, 0.0, 0.0, 1.0];
        let mut dst = [0.0; 6];
        matmul(
            &mut dst,
            MatrixView::row_major(3, 2),
            &lhs,
            l.transposed(),
            &identity,
            MatrixView::row_major(2, 2),
            false,
        );
        assert_eq!(dst, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
