//! Batch norm in training mode, optionally fused with ReLU, as one candle custom op.
//!
//! candle_nn's batch norm is about ten generic tensor ops whose backward makes some twenty
//! five passes over the activation. Here the forward is three passes (mean, variance,
//! normalise) and the backward two (per-channel sums, then the input gradient), using the
//! closed form of the gradient. Statistics are accumulated in f64.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::KernelError;
use crate::storage::{all_cpu_f32, layout_f32, with_f32};

const NAME: &str = "latent-batch-norm";

/// Batch norm in training mode over NCHW (or [N, C] for BatchNorm1d) using batch
/// statistics, optionally fused with ReLU, with the closed-form backward for x, gamma,
/// beta. Returns (y, batch mean [C], biased batch variance [C]); the two statistics are
/// detached (the caller updates running stats with them: running = 0.9 running + 0.1 *
/// batch, running var uses the unbiased variance = biased * n/(n-1)).
///
/// Any rank from 2 up is accepted: dimension 1 is the channel, all others are averaged
/// over. On other devices or dtypes this is composed from candle's own ops.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let sizes = ChannelSizes::of(x.dims(), gamma.dims(), beta.dims())?;
    if eps.is_nan() || eps < 0.0 {
        let message = format!("eps must be zero or positive, found {eps}");
        return Err(KernelError::BadParameter { op: NAME, message }.into());
    }
    if !all_cpu_f32(&[x, gamma, beta]) {
        return composed_batch_norm(x, gamma, beta, eps, relu, sizes);
    }

    let x = x.contiguous()?;
    let (mean, variance) = with_f32(NAME, "x", &x, |x| Ok(channel_statistics(x, sizes)))?;
    let inv_std = variance
        .iter()
        .map(|&v| (1.0 / (v + eps).sqrt()) as f32)
        .collect();
    let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
    let variance: Vec<f32> = variance.iter().map(|&v| v as f32).collect();

    let op = BatchNorm {
        sizes,
        mean: mean.clone(),
        inv_std,
        relu,
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let mean = Tensor::from_vec(mean, sizes.channels, x.device())?;
    let variance = Tensor::from_vec(variance, sizes.channels, x.device())?;
    Ok((y, mean, variance))
}

/// x seen as `[samples, channels, spatial]`.
#[derive(Clone, Copy, Debug)]
struct ChannelSizes {
    samples: usize,
    channels: usize,
    spatial: usize,
}

impl ChannelSizes {
    fn of(x: &[usize], gamma: &[usize], beta: &[usize]) -> Result<Self, KernelError> {
        let bad = |what, expected: String, found: &[usize]| KernelError::BadShape {
            op: NAME,
            what,
            expected,
            found: found.to_vec(),
        };
        let &[samples, channels, ..] = x else {
            return Err(bad("the input", "at least 2 dims [N, C, ...]".into(), x));
        };
        let spatial: usize = x[2..].iter().product();
        if samples * spatial == 0 {
            return Err(bad("the input", "at least one value per channel".into(), x));
        }
        if gamma != [channels] {
            return Err(bad("gamma", format!("shape [{channels}]"), gamma));
        }
        if beta != [channels] {
            return Err(bad("beta", format!("shape [{channels}]"), beta));
        }
        Ok(Self {
            samples,
            channels,
            spatial,
        })
    }

    /// Values per channel.
    fn count(&self) -> usize {
        self.samples * self.spatial
    }

    /// The planes (one sample, one channel) of `channel`, in sample order.
    fn planes<'a>(&self, data: &'a [f32], channel: usize) -> impl Iterator<Item = &'a [f32]> {
        let (channels, spatial) = (self.channels, self.spatial);
        (0..self.samples).map(move |n| &data[(n * channels + channel) * spatial..][..spatial])
    }
}

/// Per-channel mean and biased variance (two passes, f64 sums of f32 lane sums).
fn channel_statistics(x: &[f32], sizes: ChannelSizes) -> (Vec<f64>, Vec<f64>) {
    let count = sizes.count() as f64;
    (0..sizes.channels)
        .into_par_iter()
        .map(|channel| {
            let sum: f64 = sizes
                .planes(x, channel)
                .map(|p| lane_sum(p, |v| v) as f64)
                .sum();
            let mean = sum / count;
            let mean_f32 = mean as f32;
            let squares: f64 = sizes
                .planes(x, channel)
                .map(|p| lane_sum(p, |v| (v - mean_f32) * (v - mean_f32)) as f64)
                .sum();
            (mean, squares / count)
        })
        .unzip()
}

/// Sum of `f(v)` over a slice, in eight independent lanes so it vectorises.
#[inline]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// The normalise-scale-shift(-ReLU) op; the statistics come from `channel_statistics`.
struct BatchNorm {
    sizes: ChannelSizes,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    relu: bool,
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        gamma: &CpuStorage,
        gamma_layout: &Layout,
        beta: &CpuStorage,
        beta_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = layout_f32(NAME, "x", x, x_layout)?;
        let gamma = layout_f32(NAME, "gamma", gamma, gamma_layout)?;
        let beta = layout_f32(NAME, "beta", beta, beta_layout)?;
        let affine = self.affine(gamma, beta);

        let sample_len = self.sizes.channels * self.sizes.spatial;
        let mut y = vec![0.0f32; x.len()];
        y.par_chunks_mut(sample_len)
            .zip(x.par_chunks(sample_len))
            .for_each(|(y, x)| {
                let planes = y
                    .chunks_exact_mut(self.sizes.spatial)
                    .zip(x.chunks_exact(self.sizes.spatial));
                for ((y, x), &(scale, shift)) in planes.zip(&affine) {
                    for (y, &x) in y.iter_mut().zip(x) {
                        let z = x * scale + shift;
                        *y = if self.relu { z.max(0.0) } else { z };
                    }
                }
            });
        Ok((CpuStorage::F32(y), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let need_dx = x.track_op();
        let grads = with_f32(NAME, "x", x, |x| {
            with_f32(NAME, "dy", dy, |dy| {
                with_f32(NAME, "gamma", gamma, |gamma| {
                    with_f32(NAME, "beta", beta, |beta| {
                        self.gradients(x, dy, gamma, &self.affine(gamma, beta), need_dx)
                    })
                })
            })
        })?;

        let device = x.device();
        let dx = grads
            .dx
            .map(|dx| Tensor::from_vec(dx, x.shape(), device))
            .transpose()?;
        let dgamma = Tensor::from_vec(grads.dgamma, self.sizes.channels, device)?;
        let dbeta = Tensor::from_vec(grads.dbeta, self.sizes.channels, device)?;
        Ok((dx, Some(dgamma), Some(dbeta)))
    }
}

struct Gradients {
    dx: Option<Vec<f32>>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

impl BatchNorm {
    /// Per channel `(scale, shift)` with `y = x * scale + shift` before the ReLU.
    fn affine(&self, gamma: &[f32], beta: &[f32]) -> Vec<(f32, f32)> {
        (0..self.sizes.channels)
            .map(|c| {
                let scale = gamma[c] * self.inv_std[c];
                (scale, beta[c] - self.mean[c] * scale)
            })
            .collect()
    }

    /// The gradient through the ReLU: `dy` where the forward output was positive, else 0.
    /// The output is recomputed from x exactly as the forward did (same f32 operations), so
    /// the backward reads two arrays instead of three. Branch-free so loops vectorise.
    #[inline(always)]
    fn through_relu(relu: bool, dy: f32, x: f32, (scale, shift): (f32, f32)) -> f32 {
        let keep = !relu | (x * scale + shift > 0.0);
        if keep { dy } else { 0.0 }
    }

    /// `(sum g, sum g * (x - mean))` over one plane, in eight lanes so it vectorises.
    #[inline]
    fn plane_sums(&self, x: &[f32], dy: &[f32], channel: usize, affine: (f32, f32)) -> (f32, f32) {
        let (relu, mean) = (self.relu, self.mean[channel]);
        let (mut sums, mut centered) = ([0.0f32; 8], [0.0f32; 8]);
        let (x_chunks, dy_chunks) = (x.chunks_exact(8), dy.chunks_exact(8));
        let (x_rest, dy_rest) = (x_chunks.remainder(), dy_chunks.remainder());
        for (x, dy) in x_chunks.zip(dy_chunks) {
            for lane in 0..8 {
                let g = Self::through_relu(relu, dy[lane], x[lane], affine);
                sums[lane] += g;
                centered[lane] += g * (x[lane] - mean);
            }
        }
        for (&x, &dy) in x_rest.iter().zip(dy_rest) {
            let g = Self::through_relu(relu, dy, x, affine);
            sums[0] += g;
            centered[0] += g * (x - mean);
        }
        (sums.iter().sum(), centered.iter().sum())
    }

    /// With `g = dy` masked by the ReLU and `xhat = (x - mean) * inv_std`:
    /// `dbeta = sum g`, `dgamma = sum g * xhat`,
    /// `dx = gamma * inv_std * (g - dbeta / m - xhat * dgamma / m)` with m values per channel.
    fn gradients(
        &self,
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        affine: &[(f32, f32)],
        need_dx: bool,
    ) -> candle_core::Result<Gradients> {
        let sizes = self.sizes;
        if x.len() != dy.len() {
            let message = format!("dy has {} values, x has {}", dy.len(), x.len());
            return Err(KernelError::BadParameter { op: NAME, message }.into());
        }

        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..sizes.channels)
            .into_par_iter()
            .map(|c| {
                let (mut sum, mut sum_centered) = (0.0f64, 0.0f64);
                for (x, dy) in sizes.planes(x, c).zip(sizes.planes(dy, c)) {
                    let (plane_sum, plane_centered) = self.plane_sums(x, dy, c, affine[c]);
                    sum += plane_sum as f64;
                    sum_centered += plane_centered as f64;
                }
                (sum as f32, (sum_centered * self.inv_std[c] as f64) as f32)
            })
            .unzip();

        let dx = need_dx.then(|| {
            let count = sizes.count() as f32;
            let sample_len = sizes.channels * sizes.spatial;
            let mut dx = vec![0.0f32; x.len()];
            dx.par_chunks_mut(sample_len)
                .zip(x.par_chunks(sample_len).zip(dy.par_chunks(sample_len)))
                .for_each(|(dx, (x, dy))| {
                    let planes = dx.chunks_exact_mut(sizes.spatial).zip(
                        x.chunks_exact(sizes.spatial)
                            .zip(dy.chunks_exact(sizes.spatial)),
                    );
                    for (c, (dx, (x, dy))) in planes.enumerate() {
                        let (mean, inv_std) = (self.mean[c], self.inv_std[c]);
                        let outer = gamma[c] * inv_std;
                        let mean_g = dbeta[c] / count;
                        let slope = inv_std * dgamma[c] / count;
                        let (relu, affine) = (self.relu, affine[c]);
                        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                            let g = Self::through_relu(relu, dy, x, affine);
                            *dx = outer * (g - mean_g - (x - mean) * slope);
                        }
                    }
                });
            dx
        });
        Ok(Gradients { dx, dgamma, dbeta })
    }
}

/// The same batch norm composed from candle ops, for devices and dtypes without a kernel.
fn composed_batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
    sizes: ChannelSizes,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let c = sizes.channels;
    let planes = x.reshape((sizes.samples, c, sizes.spatial))?;
    let mean = planes.mean_keepdim(2)?.mean_keepdim(0)?;
    let centered = planes.broadcast_sub(&mean)?;
    let variance = centered.sqr()?.mean_keepdim(2)?.mean_keepdim(0)?;

    let normalized = centered.broadcast_div(&(&variance + eps)?.sqrt()?)?;
    let y = normalized
        .broadcast_mul(&gamma.reshape((1, c, 1))?)?
        .broadcast_add(&beta.reshape((1, c, 1))?)?;
    let y = if relu { y.relu()? } else { y };
    let y = y.reshape(x.shape())?;
    Ok((
        y,
        mean.flatten_all()?.detach(),
        variance.flatten_all()?.detach(),
    ))
}
