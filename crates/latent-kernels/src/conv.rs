//! `conv2d` and `conv_transpose2d` as candle custom ops with their own backward passes.
//!
//! Both ops wrap the slice kernels of `conv_kernels`. A transposed convolution's forward
//! is a convolution's input gradient, its input gradient is a convolution's forward and
//! its weight gradient is a convolution's weight gradient with the roles of input and
//! output swapped, so one set of kernels serves both.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use crate::conv_kernels::{self, ConvGeometry};
use crate::storage::{all_cpu_f32, layout_f32, with_f32};

const CONV_NAME: &str = "latent-conv2d";
const CONV_TRANSPOSE_NAME: &str = "latent-conv-transpose2d";

/// NCHW f32 convolution without bias (square kernel from w's shape [Cout, Cin, K, K]),
/// with its backward passes for x (skipped when x does not track gradients: e.g. the
/// image batch) and w.
///
/// Non-contiguous inputs are copied first. On other devices or dtypes this is candle's own
/// `Tensor::conv2d`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if !all_cpu_f32(&[x, w]) {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    ConvGeometry::for_conv(CONV_NAME, x.dims(), w.dims(), stride, padding)?;
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv2d { stride, padding })
}

/// NCHW f32 transposed convolution without bias or output padding, weight in PyTorch's
/// layout `[Cin, Cout, K, K]`; output side `(H - 1) * stride - 2 * padding + K`. The
/// decoder's upsampling layers use k4 s2 p1, which doubles the size. Backward for x (when
/// it tracks gradients) and w.
///
/// On other devices or dtypes this is candle's own `Tensor::conv_transpose2d`.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    if !all_cpu_f32(&[x, w]) {
        return x.conv_transpose2d(w, padding, 0, stride, 1);
    }
    ConvGeometry::for_conv_transpose(CONV_TRANSPOSE_NAME, x.dims(), w.dims(), stride, padding)?;
    x.contiguous()?
        .apply_op2(&w.contiguous()?, ConvTranspose2d { stride, padding })
}

/// The input gradient of `conv2d(x, w, stride, padding)` for an input of shape `input_dims`,
/// given the output gradient `dy`. Detached; f32 on the CPU only. Public so that the
/// per-layer benchmark can time it alone.
pub fn conv2d_backward_input(
    dy: &Tensor,
    w: &Tensor,
    input_dims: &[usize],
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let g = ConvGeometry::for_conv(CONV_NAME, input_dims, w.dims(), stride, padding)?;
    check_output_shape(CONV_NAME, &g, dy)?;
    let dx = with_f32(CONV_NAME, "dy", dy, |dy| {
        with_f32(CONV_NAME, "w", w, |w| {
            Ok(conv_kernels::backward_input(&g, dy, w))
        })
    })?;
    Tensor::from_vec(dx, g.input_dims().as_slice(), dy.device())
}

/// The weight gradient of `conv2d(x, w, stride, padding)` for a square kernel of side
/// `kernel`, given the output gradient `dy`. Detached; f32 on the CPU only.
pub fn conv2d_backward_weight(
    x: &Tensor,
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> candle_core::Result<Tensor> {
    let (out_channels, in_channels) = (dy.dim(1)?, x.dim(1)?);
    let w_dims = [out_channels, in_channels, kernel, kernel];
    let g = ConvGeometry::for_conv(CONV_NAME, x.dims(), &w_dims, stride, padding)?;
    check_output_shape(CONV_NAME, &g, dy)?;
    let dw = with_f32(CONV_NAME, "x", x, |x| {
        with_f32(CONV_NAME, "dy", dy, |dy| {
            Ok(conv_kernels::backward_weight(&g, x, dy))
        })
    })?;
    Tensor::from_vec(dw, w_dims.as_slice(), dy.device())
}

/// The multiply-adds of one pass of `conv2d` on these shapes (for GFLOP/s figures).
pub fn conv2d_multiply_adds(
    input_dims: &[usize],
    weight_dims: &[usize],
    stride: usize,
    padding: usize,
) -> candle_core::Result<usize> {
    let g = ConvGeometry::for_conv(CONV_NAME, input_dims, weight_dims, stride, padding)?;
    Ok(g.multiply_adds())
}

fn check_output_shape(op: &'static str, g: &ConvGeometry, dy: &Tensor) -> candle_core::Result<()> {
    if dy.dims() != g.output_dims() {
        return Err(crate::KernelError::BadShape {
            op,
            what: "the output gradient",
            expected: format!("shape {:?}", g.output_dims()),
            found: dy.dims().to_vec(),
        }
        .into());
    }
    Ok(())
}

struct Conv2d {
    stride: usize,
    padding: usize,
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        CONV_NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = ConvGeometry::for_conv(
            CONV_NAME,
            x_layout.dims(),
            w_layout.dims(),
            self.stride,
            self.padding,
        )?;
        let x = layout_f32(CONV_NAME, "x", x, x_layout)?;
        let w = layout_f32(CONV_NAME, "w", w, w_layout)?;
        let y = conv_kernels::forward(&g, x, w);
        Ok((CpuStorage::F32(y), Shape::from(g.output_dims().as_slice())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() {
            Some(conv2d_backward_input(
                dy,
                w,
                x.dims(),
                self.stride,
                self.padding,
            )?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(conv2d_backward_weight(
                x,
                dy,
                w.dim(2)?,
                self.stride,
                self.padding,
            )?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

struct ConvTranspose2d {
    stride: usize,
    padding: usize,
}

impl ConvTranspose2d {
    fn geometry(&self, x_dims: &[usize], w_dims: &[usize]) -> candle_core::Result<ConvGeometry> {
        let name = CONV_TRANSPOSE_NAME;
        Ok(ConvGeometry::for_conv_transpose(
            name,
            x_dims,
            w_dims,
            self.stride,
            self.padding,
        )?)
    }
}

impl CustomOp2 for ConvTranspose2d {
    fn name(&self) -> &'static str {
        CONV_TRANSPOSE_NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geometry(x_layout.dims(), w_layout.dims())?;
        let x = layout_f32(CONV_TRANSPOSE_NAME, "x", x, x_layout)?;
        let w = layout_f32(CONV_TRANSPOSE_NAME, "w", w, w_layout)?;
        let y = conv_kernels::backward_input(&g, x, w);
        Ok((CpuStorage::F32(y), Shape::from(g.input_dims().as_slice())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.geometry(x.dims(), w.dims())?;
        let name = CONV_TRANSPOSE_NAME;

        let dx = if x.track_op() {
            let dx = with_f32(name, "dy", dy, |dy| {
                with_f32(name, "w", w, |w| Ok(conv_kernels::forward(&g, dy, w)))
            })?;
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };

        let dw = if w.track_op() {
            let dw = with_f32(name, "dy", dy, |dy| {
                with_f32(name, "x", x, |x| {
                    Ok(conv_kernels::backward_weight(&g, dy, x))
                })
            })?;
            Some(Tensor::from_vec(dw, w.shape(), w.device())?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}
