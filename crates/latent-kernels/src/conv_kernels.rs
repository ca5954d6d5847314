//! Slice-level convolution kernels: im2col + one `gemm` per chunk of images.
//!
//! Everything here works on plain NCHW f32 slices so the three passes a convolution needs
//! (forward, input gradient, weight gradient) can be shared by `conv2d` and
//! `conv_transpose2d`, whose forward is the input gradient of a convolution.
//!
//! The batch is cut into chunks of whole images, about `TARGET_COLUMNS` output pixels each,
//! and the chunks run in parallel on rayon. Per chunk, im2col lays the receptive fields out
//! as a `[Cin*K*K, images*Hout*Wout]` matrix so one single-threaded product covers the chunk.

use rayon::prelude::*;

use crate::KernelError;
use crate::matmul::{MatrixView, matmul};

/// About how many output pixels (columns of the im2col matrix) one chunk of images covers.
/// Small layers put several images in a chunk so the product stays large enough to be
/// efficient; large layers take one image per chunk.
const TARGET_COLUMNS: usize = 512;

/// The sizes of one convolution: NCHW input, `[Cout, Cin, K, K]` weight, NCHW output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_height: usize,
    pub in_width: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl ConvGeometry {
    /// The geometry of a convolution of an input of shape `x_dims` by a weight of shape
    /// `w_dims`, checking that the shapes fit together.
    pub(crate) fn for_conv(
        op: &'static str,
        x_dims: &[usize],
        w_dims: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Self, KernelError> {
        let &[batch, in_channels, in_height, in_width] = x_dims else {
            return Err(bad_shape(op, "the input", "4 dims [N, C, H, W]", x_dims));
        };
        let &[out_channels, weight_in_channels, kernel, kernel_width] = w_dims else {
            return Err(bad_shape(
                op,
                "the weight",
                "4 dims [Cout, Cin, K, K]",
                w_dims,
            ));
        };
        if kernel != kernel_width || kernel == 0 {
            return Err(bad_shape(
                op,
                "the weight",
                "a square, non-empty kernel",
                w_dims,
            ));
        }
        if weight_in_channels != in_channels {
            let expected = format!("{in_channels} input channels, as the input has");
            return Err(bad_shape(op, "the weight", &expected, w_dims));
        }
        check_stride(op, stride)?;

        let padded_height = in_height + 2 * padding;
        let padded_width = in_width + 2 * padding;
        if padded_height < kernel || padded_width < kernel {
            return Err(KernelError::BadParameter {
                op,
                message: format!(
                    "kernel {kernel} is larger than the padded input \
                     {padded_height}x{padded_width} (input {x_dims:?}, padding {padding})"
                ),
            });
        }

        Ok(Self {
            batch,
            in_channels,
            in_height,
            in_width,
            out_channels,
            kernel,
            stride,
            padding,
            out_height: (padded_height - kernel) / stride + 1,
            out_width: (padded_width - kernel) / stride + 1,
        })
    }

    /// The geometry of the convolution whose input gradient is the transposed convolution of
    /// `x_dims` (`[N, Cin, H, W]`) by `w_dims` (`[Cin, Cout, K, K]`, PyTorch's layout).
    pub(crate) fn for_conv_transpose(
        op: &'static str,
        x_dims: &[usize],
        w_dims: &[usize],
        stride: usize,
        padding: usize,
    ) -> Result<Self, KernelError> {
        let &[batch, in_channels, in_height, in_width] = x_dims else {
            return Err(bad_shape(op, "the input", "4 dims [N, C, H, W]", x_dims));
        };
        let &[weight_in_channels, out_channels, kernel, kernel_width] = w_dims else {
            return Err(bad_shape(
                op,
                "the weight",
                "4 dims [Cin, Cout, K, K]",
                w_dims,
            ));
        };
        if kernel != kernel_width || kernel == 0 {
            return Err(bad_shape(
                op,
                "the weight",
                "a square, non-empty kernel",
                w_dims,
            ));
        }
        if weight_in_channels != in_channels {
            let expected = format!("{in_channels} input channels first, as the input has");
            return Err(bad_shape(op, "the weight", &expected, w_dims));
        }
        check_stride(op, stride)?;
        if in_height == 0 || in_width == 0 {
            return Err(bad_shape(op, "the input", "a non-empty image", x_dims));
        }

        let full_height = (in_height - 1) * stride + kernel;
        let full_width = (in_width - 1) * stride + kernel;
        if full_height <= 2 * padding || full_width <= 2 * padding {
            return Err(KernelError::BadParameter {
                op,
                message: format!(
                    "padding {padding} crops the whole {full_height}x{full_width} output \
                     (input {x_dims:?}, kernel {kernel}, stride {stride})"
                ),
            });
        }

        // The transposed convolution's output is the input of this convolution.
        Ok(Self {
            batch,
            in_channels: out_channels,
            in_height: full_height - 2 * padding,
            in_width: full_width - 2 * padding,
            out_channels: in_channels,
            kernel,
            stride,
            padding,
            out_height: in_height,
            out_width: in_width,
        })
    }

    pub(crate) fn input_dims(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.in_height, self.in_width]
    }

    pub(crate) fn output_dims(&self) -> [usize; 4] {
        [
            self.batch,
            self.out_channels,
            self.out_height,
            self.out_width,
        ]
    }

    /// Multiply-adds of one pass (forward, input gradient and weight gradient cost the same).
    pub(crate) fn multiply_adds(&self) -> usize {
        self.batch * self.out_channels * self.out_plane() * self.col_rows()
    }

    fn in_plane(&self) -> usize {
        self.in_height * self.in_width
    }

    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn col_rows(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_plane()
    }

    fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_plane()
    }

    fn weight_len(&self) -> usize {
        self.out_channels * self.col_rows()
    }

    fn images_per_chunk(&self) -> usize {
        (TARGET_COLUMNS / self.out_plane().max(1)).clamp(1, self.batch.max(1))
    }

    /// The weight as the `[Cout, Cin*K*K]` matrix it is in memory.
    fn weight_matrix(&self) -> MatrixView {
        MatrixView::row_major(self.out_channels, self.col_rows())
    }

    fn check_lengths(&self, input: Option<&[f32]>, weight: Option<&[f32]>, out: Option<&[f32]>) {
        assert!(
            input.is_none_or(|s| s.len() == self.input_len()),
            "input length"
        );
        assert!(
            weight.is_none_or(|s| s.len() == self.weight_len()),
            "weight length"
        );
        assert!(
            out.is_none_or(|s| s.len() == self.output_len()),
            "output length"
        );
    }
}

fn bad_shape(op: &'static str, what: &'static str, expected: &str, found: &[usize]) -> KernelError {
    KernelError::BadShape {
        op,
        what,
        expected: expected.to_string(),
        found: found.to_vec(),
    }
}

fn check_stride(op: &'static str, stride: usize) -> Result<(), KernelError> {
    if stride == 0 {
        return Err(KernelError::BadParameter {
            op,
            message: "stride must be at least 1".into(),
        });
    }
    Ok(())
}

/// Per-task buffers, reused across the chunks one rayon task handles.
#[derive(Default)]
struct Scratch {
    /// The im2col matrix of a chunk (or its gradient).
    columns: Vec<f32>,
    /// A `[Cout, images*Hout*Wout]` matrix: the chunk's output or output gradient.
    outputs: Vec<f32>,
}

/// The first `len` elements of `buffer`, growing it when it is too short. Old contents are
/// left in place: every caller overwrites the whole prefix.
fn prefix(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    &mut buffer[..len]
}

/// The output positions `o` in `0..out_len` whose input position `o * stride + offset`
/// lies in `0..in_len`, as a range `lo..hi` (empty when there are none).
fn valid_outputs(out_len: usize, in_len: usize, offset: isize, stride: usize) -> (usize, usize) {
    let stride = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    let last_input = in_len as isize - 1 - offset;
    let hi = if last_input < 0 {
        0
    } else {
        last_input / stride + 1
    };
    let lo = (lo as usize).min(out_len);
    let hi = (hi as usize).min(out_len).max(lo);
    (lo, hi)
}

/// Lays out the receptive fields of `images` images as the `[Cin*K*K, images*Hout*Wout]`
/// matrix `columns` (zeros where the kernel reaches into the padding).
fn im2col(g: &ConvGeometry, input: &[f32], images: usize, columns: &mut [f32]) {
    let (in_plane, out_plane) = (g.in_plane(), g.out_plane());
    let width = images * out_plane;

    for ((channel, ky, kx), row) in kernel_rows(g).zip(columns.chunks_exact_mut(width)) {
        let x_offset = kx as isize - g.padding as isize;
        let (lo, hi) = valid_outputs(g.out_width, g.in_width, x_offset, g.stride);

        for (image, image_row) in row.chunks_exact_mut(out_plane).enumerate() {
            let plane = &input[(image * g.in_channels + channel) * in_plane..][..in_plane];

            for (oy, out) in image_row.chunks_exact_mut(g.out_width).enumerate() {
                let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                if iy < 0 || iy >= g.in_height as isize || lo == hi {
                    out.fill(0.0);
                    continue;
                }
                let source = &plane[iy as usize * g.in_width..][..g.in_width];
                let first = (lo as isize * g.stride as isize + x_offset) as usize;

                out[..lo].fill(0.0);
                out[hi..].fill(0.0);
                if g.stride == 1 {
                    out[lo..hi].copy_from_slice(&source[first..first + (hi - lo)]);
                } else if g.stride == 2 {
                    // A literal stride lets LLVM vectorise the gather as interleaved loads.
                    let count = hi - lo;
                    let source = &source[first..first + 2 * count - 1];
                    for (i, value) in out[lo..hi].iter_mut().enumerate() {
                        *value = source[2 * i];
                    }
                } else {
                    // Chunks of `stride` inputs, first element each: cheaper than step_by.
                    let picked = source[first..].chunks(g.stride);
                    for (value, picked) in out[lo..hi].iter_mut().zip(picked) {
                        *value = picked[0];
                    }
                }
            }
        }
    }
}

/// The inverse scatter of `im2col`: adds every entry of `columns` back onto the input
/// position it was read from.
fn col2im(g: &ConvGeometry, columns: &[f32], images: usize, input: &mut [f32]) {
    let (in_plane, out_plane) = (g.in_plane(), g.out_plane());
    let width = images * out_plane;

    for ((channel, ky, kx), row) in kernel_rows(g).zip(columns.chunks_exact(width)) {
        let x_offset = kx as isize - g.padding as isize;
        let (lo, hi) = valid_outputs(g.out_width, g.in_width, x_offset, g.stride);
        if lo == hi {
            continue;
        }

        for (image, image_row) in row.chunks_exact(out_plane).enumerate() {
            let plane = &mut input[(image * g.in_channels + channel) * in_plane..][..in_plane];

            for (oy, out) in image_row.chunks_exact(g.out_width).enumerate() {
                let iy = (oy * g.stride + ky) as isize - g.padding as isize;
                if iy < 0 || iy >= g.in_height as isize {
                    continue;
                }
                let target = &mut plane[iy as usize * g.in_width..][..g.in_width];
                let first = (lo as isize * g.stride as isize + x_offset) as usize;

                if g.stride == 1 {
                    for (value, gradient) in target[first..].iter_mut().zip(&out[lo..hi]) {
                        *value += gradient;
                    }
                } else {
                    let targets = target[first..].chunks_mut(g.stride);
                    for (value, gradient) in targets.zip(&out[lo..hi]) {
                        value[0] += gradient;
                    }
                }
            }
        }
    }
}

/// (input channel, kernel row, kernel column) in the order of the im2col rows.
fn kernel_rows(g: &ConvGeometry) -> impl Iterator<Item = (usize, usize, usize)> + use<> {
    let (channels, k) = (g.in_channels, g.kernel);
    (0..channels).flat_map(move |c| (0..k).flat_map(move |ky| (0..k).map(move |kx| (c, ky, kx))))
}

/// Copies a chunk's NCHW outputs `[images, Cout, P]` into the `[Cout, images*P]` matrix.
fn gather_outputs(g: &ConvGeometry, nchw: &[f32], images: usize, matrix: &mut [f32]) {
    let plane = g.out_plane();
    for (channel, matrix_row) in matrix.chunks_exact_mut(images * plane).enumerate() {
        for (image, out) in matrix_row.chunks_exact_mut(plane).enumerate() {
            out.copy_from_slice(&nchw[(image * g.out_channels + channel) * plane..][..plane]);
        }
    }
}

/// The inverse of `gather_outputs`.
fn scatter_outputs(g: &ConvGeometry, matrix: &[f32], images: usize, nchw: &mut [f32]) {
    let plane = g.out_plane();
    for (channel, matrix_row) in matrix.chunks_exact(images * plane).enumerate() {
        for (image, values) in matrix_row.chunks_exact(plane).enumerate() {
            nchw[(image * g.out_channels + channel) * plane..][..plane].copy_from_slice(values);
        }
    }
}

/// The output gradient of a chunk as a `[Cout, images*P]` matrix: the NCHW slice itself
/// for a single image, else a gathered copy in `buffer`.
fn output_matrix<'a>(
    g: &ConvGeometry,
    nchw: &'a [f32],
    images: usize,
    buffer: &'a mut Vec<f32>,
) -> &'a [f32] {
    if images == 1 {
        return nchw;
    }
    let matrix = prefix(buffer, nchw.len());
    gather_outputs(g, nchw, images, matrix);
    matrix
}

/// `y = conv(x, w)`: NCHW input, `[Cout, Cin, K, K]` weight, NCHW output.
pub(crate) fn forward(g: &ConvGeometry, input: &[f32], weight: &[f32]) -> Vec<f32> {
    g.check_lengths(Some(input), Some(weight), None);
    let mut output = vec![0.0; g.output_len()];
    if output.is_empty() {
        return output;
    }
    let images_per_chunk = g.images_per_chunk();
    let in_image = g.in_channels * g.in_plane();
    let out_image = g.out_channels * g.out_plane();

    output
        .par_chunks_mut(images_per_chunk * out_image)
        .zip(input.par_chunks(images_per_chunk * in_image))
        .for_each_init(Scratch::default, |scratch, (out_chunk, in_chunk)| {
            let images = out_chunk.len() / out_image;
            let width = images * g.out_plane();
            let columns = prefix(&mut scratch.columns, g.col_rows() * width);
            im2col(g, in_chunk, images, columns);

            let product = MatrixView::row_major(g.out_channels, width);
            let columns_view = MatrixView::row_major(g.col_rows(), width);
            if images == 1 {
                matmul(
                    out_chunk,
                    product,
                    weight,
                    g.weight_matrix(),
                    columns,
                    columns_view,
                    false,
                );
            } else {
                let matrix = prefix(&mut scratch.outputs, out_chunk.len());
                matmul(
                    matrix,
                    product,
                    weight,
                    g.weight_matrix(),
                    columns,
                    columns_view,
                    false,
                );
                scatter_outputs(g, matrix, images, out_chunk);
            }
        });
    output
}

/// `dx` of `y = conv(x, w)` given `dy`: `W^T dY` per chunk, scattered back by col2im.
pub(crate) fn backward_input(g: &ConvGeometry, output_grad: &[f32], weight: &[f32]) -> Vec<f32> {
    g.check_lengths(None, Some(weight), Some(output_grad));
    let mut input_grad = vec![0.0; g.input_len()];
    if input_grad.is_empty() || output_grad.is_empty() {
        return input_grad;
    }
    let images_per_chunk = g.images_per_chunk();
    let in_image = g.in_channels * g.in_plane();
    let out_image = g.out_channels * g.out_plane();

    input_grad
        .par_chunks_mut(images_per_chunk * in_image)
        .zip(output_grad.par_chunks(images_per_chunk * out_image))
        .for_each_init(Scratch::default, |scratch, (in_chunk, out_chunk)| {
            let images = out_chunk.len() / out_image;
            let width = images * g.out_plane();
            let output_grad = output_matrix(g, out_chunk, images, &mut scratch.outputs);

            let columns = prefix(&mut scratch.columns, g.col_rows() * width);
            matmul(
                columns,
                MatrixView::row_major(g.col_rows(), width),
                weight,
                g.weight_matrix().transposed(),
                output_grad,
                MatrixView::row_major(g.out_channels, width),
                false,
            );
            col2im(g, columns, images, in_chunk);
        });
    input_grad
}

/// `dw` of `y = conv(x, w)` given `dy`: `dY col^T` (computed as its transpose) summed over chunks, one running sum per
/// rayon task, then added up.
pub(crate) fn backward_weight(g: &ConvGeometry, input: &[f32], output_grad: &[f32]) -> Vec<f32> {
    g.check_lengths(Some(input), None, Some(output_grad));
    if input.is_empty() || output_grad.is_empty() {
        return vec![0.0; g.weight_len()];
    }
    let images_per_chunk = g.images_per_chunk();
    let in_image = g.in_channels * g.in_plane();
    let out_image = g.out_channels * g.out_plane();

    input
        .par_chunks(images_per_chunk * in_image)
        .zip(output_grad.par_chunks(images_per_chunk * out_image))
        .fold(
            || (vec![0.0; g.weight_len()], Scratch::default()),
            |(mut sum, mut scratch), (in_chunk, out_chunk)| {
                let images = out_chunk.len() / out_image;
                let width = images * g.out_plane();
                let columns = prefix(&mut scratch.columns, g.col_rows() * width);
                im2col(g, in_chunk, images, columns);
                let output_grad = output_matrix(g, out_chunk, images, &mut scratch.outputs);

                // dW^T = col dY^T, written through a transposed view of dW: the long side
                // of the product (Cin*K*K rows) then runs along gemm's micro-kernel rows,
                // which suits the small Cout of the first layers better than dW = dY col^T.
                matmul(
                    &mut sum,
                    g.weight_matrix().transposed(),
                    columns,
                    MatrixView::row_major(g.col_rows(), width),
                    output_grad,
                    MatrixView::row_major(g.out_channels, width).transposed(),
                    true,
                );
                (sum, scratch)
            },
        )
        .map(|(sum, _)| sum)
        .reduce_with(|mut total, part| {
            total.iter_mut().zip(&part).for_each(|(t, p)| *t += p);
            total
        })
        .unwrap_or_else(|| vec![0.0; g.weight_len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_outputs_cover_exactly_the_inside_of_the_input() {
        for out_len in 0..6 {
            for in_len in 0..8 {
                for offset in -3..3 {
                    for stride in 1..4 {
                        let (lo, hi) = valid_outputs(out_len, in_len, offset, stride);
                        for o in 0..out_len {
                            let i = o as isize * stride as isize + offset;
                            let inside = (0..in_len as isize).contains(&i);
                            assert_eq!((lo..hi).contains(&o), inside, "{o} {in_len} {offset}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn im2col_of_a_padded_3x3_image_matches_hand_layout() {
        // One 2x2 image [1 2; 3 4], kernel 3, padding 1, stride 1 -> 2x2 outputs.
        let g = ConvGeometry::for_conv("test", &[1, 1, 2, 2], &[1, 1, 3, 3], 1, 1).unwrap();
        let mut columns = vec![f32::NAN; 9 * 4];
        im2col(&g, &[1.0, 2.0, 3.0, 4.0], 1, &mut columns);

        // Row (ky, kx) holds, for each output (oy, ox), input (oy + ky - 1, ox + kx - 1).
        let expected = [
            [0., 0., 0., 1.],
            [0., 0., 1., 2.],
            [0., 0., 2., 0.],
            [0., 1., 0., 3.],
            [1., 2., 3., 4.],
            [2., 0., 4., 0.],
            [0., 3., 0., 0.],
            [3., 4., 0., 0.],
            [4., 0., 0., 0.],
        ];
        assert_eq!(columns, expected.concat());
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for any x and c, with stride 2 and odd sizes.
        let g = ConvGeometry::for_conv("test", &[3, 2, 7, 5], &[4, 2, 3, 3], 2, 1).unwrap();
        let x: Vec<f32> = (0..g.input_len())
            .map(|i| ((i * 7919) % 13) as f32 - 6.0)
            .collect();
        let width = 3 * g.out_plane();
        let c: Vec<f32> = (0..g.col_rows() * width)
            .map(|i| ((i * 104729) % 11) as f32 - 5.0)
            .collect();

        let mut columns = vec![0.0; c.len()];
        im2col(&g, &x, 3, &mut columns);
        let mut back = vec![0.0; x.len()];
        col2im(&g, &c, 3, &mut back);

        let left: f32 = columns.iter().zip(&c).map(|(a, b)| a * b).sum();
        let right: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(left, right);
        assert!(left != 0.0);
    }
}
