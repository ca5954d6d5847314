//! Fast CPU kernels for candle: convolution and fused batch norm (+ ReLU) as custom ops
//! with their own backward passes.
//!
//! Stock candle 0.11 expresses a convolution's backward as a slow transposed convolution
//! plus a convolution with a huge kernel, and builds batch norm from about ten generic ops
//! (see `/work/shared/notes/candle-cpu-training.md`). The ops here replace those on the
//! CPU for f32 tensors: im2col + one single-threaded `gemm` per chunk of images, chunks in
//! parallel on rayon; batch norm in a few passes with its closed-form gradient. On other
//! devices or dtypes every function falls back to candle's own ops, so a `cuda` build
//! still works.
//!
//! SIMD is chosen at run time by the `gemm` crate; nothing here needs `target-cpu=native`.

mod allocator;
mod batch_norm;
mod conv;
mod conv_kernels;
mod error;
mod matmul;
mod storage;

pub use allocator::ReusingAllocator;
pub use batch_norm::batch_norm_train;
pub use conv::{
    conv_transpose2d, conv2d, conv2d_backward_input, conv2d_backward_weight, conv2d_multiply_adds,
};
pub use error::KernelError;
