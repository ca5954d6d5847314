//! The encoders (`small-cnn` here, `resnet18` in [`crate::resnet`]) and the SimCLR
//! projection head, on candle (CPU, f32, NCHW).
//! [`Model`] holds either family (this SimCLR model or the [`crate::autoencoder`]) for the
//! code that handles both: the optimiser, checkpoints and export.
//!
//! The architecture is the peer's `SmallCNN` (see `shared/peers/README.md`): four blocks of
//! [3x3 convolution without bias, batch norm, ReLU] with 32/64/128/256 channels (times the
//! width multiplier) and strides 1/2/2/2, then a global average pool. Weights start from
//! PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from the
//! run's seed so that two runs with one seed start from the same weights.
//!
//! # Tensor names
//!
//! The safetensors file uses the names of the peer's PyTorch `state_dict`, so it loads
//! there unchanged:
//!
//! * encoder block `i` (0..4): `features.{i}.0.weight` (convolution, `[out, in, 3, 3]`),
//!   `features.{i}.1.weight` / `.bias` (batch-norm scale and shift),
//!   `features.{i}.1.running_mean` / `.running_var` and `features.{i}.1.num_batches_tracked`
//!   (an i64 scalar);
//! * projection head, as an `nn.Sequential` under `head.`: the `k`-th hidden
//!   Linear (no bias) is `head.{3k}.weight` (`[out, in]`), its BatchNorm1d is
//!   `head.{3k+1}.*`; the last Linear is `head.{3h}.weight` and `head.{3h}.bias` with `h`
//!   the number of hidden layers (1 for "2layer", 2 for "3layer").
//!
//! In PyTorch, `SmallCNN().load_state_dict({k: v for k, v in sd.items() if
//! k.startswith("features.")})` restores the encoder. A `resnet18` encoder's tensors have
//! torchvision's names instead (see [`crate::resnet`]); the head's are the same.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use latent_core::rng::{rng_for, stream};
use rand::RngExt;

use crate::error::{Result, TrainError};
use crate::resnet::{ResNet18, STAGE_CHANNELS};

/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm momentum for the running statistics (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
/// Output channels of the four encoder blocks at width 1.
pub const BLOCK_CHANNELS: [usize; 4] = [32, 64, 128, 256];
/// Strides of the four encoder blocks.
pub const BLOCK_STRIDES: [usize; 4] = [1, 2, 2, 2];

/// Which implementation runs convolution and batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// candle's own `conv2d` and batch norm composed of candle tensor ops.
    Candle,
    /// The project's CPU kernels (`latent-kernels`).
    Fast,
}

impl Backend {
    /// The backend `[train] fast_kernels` asks for.
    pub fn from_fast_kernels(fast: bool) -> Self {
        if fast { Backend::Fast } else { Backend::Candle }
    }
}

/// The projection head's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// Linear-BN-ReLU-Linear (SimCLR v1).
    TwoLayer,
    /// Linear-BN-ReLU-Linear-BN-ReLU-Linear (SimCLR v2 style).
    ThreeLayer,
}

impl HeadKind {
    /// Parses the `[train] head` value.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "2layer" => Ok(HeadKind::TwoLayer),
            "3layer" => Ok(HeadKind::ThreeLayer),
            other => Err(TrainError::Setting {
                key: "head",
                value: other.to_string(),
                expected: "\"2layer\" or \"3layer\"",
            }),
        }
    }

    fn hidden_layers(self) -> usize {
        match self {
            HeadKind::TwoLayer => 1,
            HeadKind::ThreeLayer => 2,
        }
    }
}

/// Which encoder network: `[train] encoder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// The peer's four conv-BN-ReLU blocks (32/64/128/256 channels).
    SmallCnn,
    /// The CIFAR-style ResNet-18 (64/128/256/512 channels).
    ResNet18,
}

impl EncoderKind {
    /// Parses the `[train] encoder` value.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "small-cnn" => Ok(EncoderKind::SmallCnn),
            "resnet18" => Ok(EncoderKind::ResNet18),
            other => Err(TrainError::Setting {
                key: "encoder",
                value: other.to_string(),
                expected: "\"small-cnn\" or \"resnet18\"",
            }),
        }
    }
}

/// Everything that fixes the shapes of the model's tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Architecture {
    /// Encoder network.
    pub encoder: EncoderKind,
    /// Channels of the input images.
    pub in_channels: usize,
    /// Width multiplier of the encoder's channels.
    pub width: f64,
    /// Projection head shape.
    pub head: HeadKind,
    /// Output size of the projection head.
    pub projection_dim: usize,
}

impl Architecture {
    /// The architecture `[train]` describes, for images of `in_channels` channels.
    pub fn from_config(
        in_channels: usize,
        train: &latent_core::config::TrainConfig,
    ) -> Result<Self> {
        Ok(Self {
            encoder: EncoderKind::parse(&train.encoder)?,
            in_channels,
            width: train.width,
            head: HeadKind::parse(&train.head)?,
            projection_dim: train.projection_dim,
        })
    }

    /// Output channels of each encoder block (small-cnn) or stage (resnet18):
    /// `round(c * width)`, at least 1.
    pub fn block_channels(&self) -> [usize; 4] {
        let base = match self.encoder {
            EncoderKind::SmallCnn => BLOCK_CHANNELS,
            EncoderKind::ResNet18 => STAGE_CHANNELS,
        };
        base.map(|c| ((c as f64 * self.width).round() as usize).max(1))
    }

    /// Size of the encoder's embedding (the last block's channels).
    pub fn embedding_dim(&self) -> usize {
        self.block_channels()[3]
    }
}

/// Draws the initial values of the next tensor: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
///
/// Every tensor gets its own generator derived from the seed and its position, so adding
/// a head does not change the encoder's initial weights.
pub(crate) struct Initialiser {
    seed: u64,
    next_index: u64,
}

impl Initialiser {
    /// Starts at the first tensor of a model seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            next_index: 0,
        }
    }

    pub(crate) fn uniform(&mut self, shape: &[usize], fan_in: usize) -> Result<Var> {
        let mut rng = rng_for(self.seed, &[stream::INIT, self.next_index]);
        self.next_index += 1;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let count: usize = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect();
        Ok(Var::from_vec(values, shape, &Device::Cpu)?)
    }
}

/// Batch normalisation over the channel axis (axis 1) of a 2-d or 4-d input.
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Var,
    pub bias: Var,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub num_batches_tracked: i64,
    /// `None` makes the running statistics a cumulative average over all batches seen
    /// (PyTorch's `momentum=None`), which is how the random-init baseline calibrates them.
    pub momentum: Option<f64>,
}

impl BatchNorm {
    pub(crate) fn new(channels: usize) -> Result<Self> {
        let device = Device::Cpu;
        Ok(Self {
            weight: Var::ones(channels, DType::F32, &device)?,
            bias: Var::zeros(channels, DType::F32, &device)?,
            running_mean: Tensor::zeros(channels, DType::F32, &device)?,
            running_var: Tensor::ones(channels, DType::F32, &device)?,
            num_batches_tracked: 0,
            momentum: Some(BN_MOMENTUM),
        })
    }

    /// Forgets the running statistics (mean 0, variance 1, no batches seen).
    pub fn reset_running_stats(&mut self) -> Result<()> {
        self.running_mean = self.running_mean.zeros_like()?;
        self.running_var = self.running_var.ones_like()?;
        self.num_batches_tracked = 0;
        Ok(())
    }

    /// Normalises with the batch's statistics (biased variance), then updates the running
    /// statistics with the unbiased variance, as PyTorch does in training mode.
    pub fn forward_train(&mut self, x: &Tensor, relu: bool, backend: Backend) -> Result<Tensor> {
        let (y, mean, var) = match backend {
            Backend::Candle => candle_batch_norm(x, &self.weight, &self.bias, relu)?,
            Backend::Fast => fast::batch_norm_train(x, &self.weight, &self.bias, BN_EPS, relu)?,
        };

        let channels = x.dim(1)?;
        let count = x.elem_count() / channels;
        self.update_running_stats(&mean.detach(), &var.detach(), count)?;
        Ok(y)
    }

    fn update_running_stats(
        &mut self,
        mean: &Tensor,
        biased_var: &Tensor,
        count: usize,
    ) -> Result<()> {
        self.num_batches_tracked += 1;
        let factor = self
            .momentum
            .unwrap_or(1.0 / self.num_batches_tracked as f64);
        let unbiased = if count > 1 {
            biased_var.affine(count as f64 / (count - 1) as f64, 0.0)?
        } else {
            biased_var.clone()
        };
        self.running_mean =
            (self.running_mean.affine(1.0 - factor, 0.0)? + mean.affine(factor, 0.0)?)?;
        self.running_var =
            (self.running_var.affine(1.0 - factor, 0.0)? + unbiased.affine(factor, 0.0)?)?;
        Ok(())
    }

    /// Normalises with the running statistics (eval mode).
    pub fn forward_eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let shape = channel_shape(x)?;
        let scale =
            (self.running_var.affine(1.0, BN_EPS)?.sqrt()?.recip()? * self.weight.as_tensor())?;
        let shift = (self.bias.as_tensor() - (&self.running_mean * &scale)?)?;
        let y = x
            .broadcast_mul(&scale.reshape(shape.clone())?)?
            .broadcast_add(&shift.reshape(shape)?)?;
        Ok(if relu { y.relu()? } else { y })
    }

    pub(crate) fn tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        out.push((format!("{prefix}.weight"), self.weight.as_tensor().clone()));
        out.push((format!("{prefix}.bias"), self.bias.as_tensor().clone()));
        out.push((format!("{prefix}.running_mean"), self.running_mean.clone()));
        out.push((format!("{prefix}.running_var"), self.running_var.clone()));
        out.push((
            format!("{prefix}.num_batches_tracked"),
            Tensor::new(self.num_batches_tracked, &Device::Cpu)?,
        ));
        Ok(())
    }

    pub(crate) fn load(&mut self, prefix: &str, weights: &WeightSource) -> Result<()> {
        self.weight
            .set(&weights.get(&format!("{prefix}.weight"), self.weight.dims())?)?;
        self.bias
            .set(&weights.get(&format!("{prefix}.bias"), self.bias.dims())?)?;
        self.running_mean =
            weights.get(&format!("{prefix}.running_mean"), self.running_mean.dims())?;
        self.running_var =
            weights.get(&format!("{prefix}.running_var"), self.running_var.dims())?;
        let tracked = weights.raw(&format!("{prefix}.num_batches_tracked"))?;
        self.num_batches_tracked = tracked.to_dtype(DType::I64)?.to_vec0::<i64>()?;
        Ok(())
    }
}

/// Shape that broadcasts a per-channel vector against `x` (`[1, C, 1, 1]` or `[1, C]`).
fn channel_shape(x: &Tensor) -> Result<Vec<usize>> {
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    Ok(shape)
}

/// Batch norm in training mode from candle tensor ops: (output, batch mean, biased variance).
fn candle_batch_norm(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let shape = channel_shape(x)?;
    let reduce: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();

    let mean = x.mean_keepdim(reduce.clone())?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(reduce)?;

    let inv_std = var.affine(1.0, BN_EPS)?.sqrt()?.recip()?;
    let scale = inv_std.broadcast_mul(&gamma.reshape(shape.clone())?)?;
    let y = centred
        .broadcast_mul(&scale)?
        .broadcast_add(&beta.reshape(shape)?)?;
    let y = if relu { y.relu()? } else { y };
    Ok((y, mean.flatten_all()?, var.flatten_all()?))
}

/// Convolution with padding 1 (the 3x3 layers of the small-cnn and the decoder).
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    backend: Backend,
) -> Result<Tensor> {
    conv2d_padded(x, weight, stride, 1, backend)
}

/// Convolution without bias of any square kernel, stride and zero padding.
pub(crate) fn conv2d_padded(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
    backend: Backend,
) -> Result<Tensor> {
    Ok(match backend {
        Backend::Candle => x.conv2d(weight, padding, stride, 1, 1)?,
        Backend::Fast => fast::conv2d(x, weight, stride, padding)?,
    })
}

/// The project's fast CPU kernels (`latent-kernels`): im2col convolution and fused batch
/// norm with their own backward passes; they fall back to candle's ops off the CPU.
pub(crate) mod fast {
    pub use latent_kernels::{batch_norm_train, conv_transpose2d, conv2d};
}

/// One encoder block: 3x3 convolution (padding 1, no bias), batch norm, ReLU.
#[derive(Debug)]
pub struct ConvBlock {
    pub weight: Var,
    pub norm: BatchNorm,
    pub stride: usize,
}

/// The encoder network of either kind; its pooled output is the embedding.
#[derive(Debug)]
pub enum Encoder {
    SmallCnn(SmallCnn),
    ResNet18(ResNet18),
}

impl Encoder {
    pub(crate) fn new(arch: &Architecture, init: &mut Initialiser) -> Result<Self> {
        Ok(match arch.encoder {
            EncoderKind::SmallCnn => Encoder::SmallCnn(SmallCnn::new(arch, init)?),
            EncoderKind::ResNet18 => Encoder::ResNet18(ResNet18::new(
                arch.in_channels,
                arch.block_channels(),
                init,
            )?),
        })
    }

    /// Which network this is.
    pub fn kind(&self) -> EncoderKind {
        match self {
            Encoder::SmallCnn(_) => EncoderKind::SmallCnn,
            Encoder::ResNet18(_) => EncoderKind::ResNet18,
        }
    }

    /// The small-cnn network, when this is one.
    pub fn small_cnn(&self) -> Option<&SmallCnn> {
        match self {
            Encoder::SmallCnn(e) => Some(e),
            Encoder::ResNet18(_) => None,
        }
    }

    /// Size of the embedding (the last block's or stage's channels).
    pub fn embedding_dim(&self) -> usize {
        match self {
            Encoder::SmallCnn(e) => e.blocks[3].weight.dims()[0],
            Encoder::ResNet18(e) => e.embedding_dim(),
        }
    }

    /// Embeddings `[N, D]` of a batch `[N, C, H, W]` in training mode (batch statistics;
    /// running statistics updated).
    pub fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        match self {
            Encoder::SmallCnn(e) => e.forward_train(x, backend),
            Encoder::ResNet18(e) => e.forward_train(x, backend),
        }
    }

    /// Embeddings `[N, D]` in eval mode (running statistics, nothing updated).
    pub fn forward_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        match self {
            Encoder::SmallCnn(e) => e.forward_eval(x, backend),
            Encoder::ResNet18(e) => e.forward_eval(x, backend),
        }
    }

    /// The batch-norm layers, in order.
    pub fn norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        let norms: Vec<&mut BatchNorm> = match self {
            Encoder::SmallCnn(e) => e.norms_mut().collect(),
            Encoder::ResNet18(e) => e.norms_mut().collect(),
        };
        norms.into_iter()
    }

    /// Appends the trainable tensors, named with `prefix` first.
    pub(crate) fn trainable_into(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        match self {
            Encoder::SmallCnn(e) => e.trainable_into(prefix, out),
            Encoder::ResNet18(e) => e.trainable_into(prefix, out),
        }
    }

    /// Appends every tensor (batch-norm statistics included), named with `prefix` first.
    pub(crate) fn tensors_into(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        match self {
            Encoder::SmallCnn(e) => e.tensors_into(prefix, out),
            Encoder::ResNet18(e) => e.tensors_into(prefix, out),
        }
    }

    /// Sets every tensor from `weights`, named with `prefix` first.
    pub(crate) fn load_from(&mut self, prefix: &str, weights: &WeightSource) -> Result<()> {
        match self {
            Encoder::SmallCnn(e) => e.load_from(prefix, weights),
            Encoder::ResNet18(e) => e.load_from(prefix, weights),
        }
    }

    /// Name of the first convolution's weight (its `in` axis is the image channels).
    pub(crate) fn first_weight_name(kind: EncoderKind) -> &'static str {
        match kind {
            EncoderKind::SmallCnn => "features.0.0.weight",
            EncoderKind::ResNet18 => "conv1.weight",
        }
    }
}

/// The `small-cnn` encoder: four conv blocks and a global average pool.
#[derive(Debug)]
pub struct SmallCnn {
    pub blocks: Vec<ConvBlock>,
}

impl SmallCnn {
    fn new(arch: &Architecture, init: &mut Initialiser) -> Result<Self> {
        let mut blocks = Vec::with_capacity(4);
        let mut in_channels = arch.in_channels;
        for (out_channels, stride) in arch.block_channels().into_iter().zip(BLOCK_STRIDES) {
            let weight = init.uniform(&[out_channels, in_channels, 3, 3], in_channels * 9)?;
            blocks.push(ConvBlock {
                weight,
                norm: BatchNorm::new(out_channels)?,
                stride,
            });
            in_channels = out_channels;
        }
        Ok(Self { blocks })
    }

    /// Embeddings `[N, D]` of a batch `[N, C, H, W]` in training mode (batch statistics;
    /// running statistics updated).
    pub fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &mut self.blocks {
            h = conv2d(&h, block.weight.as_tensor(), block.stride, backend)?;
            h = block.norm.forward_train(&h, true, backend)?;
        }
        Ok(h.mean((2, 3))?)
    }

    /// Embeddings `[N, D]` in eval mode (running statistics, nothing updated).
    pub fn forward_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            h = conv2d(&h, block.weight.as_tensor(), block.stride, backend)?;
            h = block.norm.forward_eval(&h, true)?;
        }
        Ok(h.mean((2, 3))?)
    }

    /// The batch-norm layers, in order.
    pub fn norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        self.blocks.iter_mut().map(|b| &mut b.norm)
    }

    /// Appends the trainable tensors, named `{prefix}features.{i}.…`.
    pub(crate) fn trainable_into(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        for (i, block) in self.blocks.iter().enumerate() {
            let names = [
                (format!("{prefix}features.{i}.0.weight"), &block.weight),
                (format!("{prefix}features.{i}.1.weight"), &block.norm.weight),
                (format!("{prefix}features.{i}.1.bias"), &block.norm.bias),
            ];
            for (name, var) in names {
                out.push(NamedVar::new(name, var));
            }
        }
    }

    /// Appends every tensor (batch-norm statistics included), named `{prefix}features.…`.
    pub(crate) fn tensors_into(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        for (i, block) in self.blocks.iter().enumerate() {
            out.push((
                format!("{prefix}features.{i}.0.weight"),
                block.weight.as_tensor().clone(),
            ));
            block
                .norm
                .tensors(&format!("{prefix}features.{i}.1"), out)?;
        }
        Ok(())
    }

    /// Sets every tensor from `weights`, named `{prefix}features.…`.
    pub(crate) fn load_from(&mut self, prefix: &str, weights: &WeightSource) -> Result<()> {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let name = format!("{prefix}features.{i}.0.weight");
            block
                .weight
                .set(&weights.get(&name, block.weight.dims())?)?;
            block
                .norm
                .load(&format!("{prefix}features.{i}.1"), weights)?;
        }
        Ok(())
    }
}

/// One hidden layer of the projection head: Linear (no bias), BatchNorm1d, ReLU.
#[derive(Debug)]
pub struct HiddenLayer {
    pub weight: Var,
    pub norm: BatchNorm,
}

/// The SimCLR projection head, used in training only.
#[derive(Debug)]
pub struct ProjectionHead {
    pub hidden: Vec<HiddenLayer>,
    pub out_weight: Var,
    pub out_bias: Var,
}

impl ProjectionHead {
    fn new(arch: &Architecture, init: &mut Initialiser) -> Result<Self> {
        let dim = arch.embedding_dim();
        let mut hidden = Vec::new();
        for _ in 0..arch.head.hidden_layers() {
            hidden.push(HiddenLayer {
                weight: init.uniform(&[dim, dim], dim)?,
                norm: BatchNorm::new(dim)?,
            });
        }
        Ok(Self {
            hidden,
            out_weight: init.uniform(&[arch.projection_dim, dim], dim)?,
            out_bias: init.uniform(&[arch.projection_dim], dim)?,
        })
    }

    fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &mut self.hidden {
            h = h.matmul(&layer.weight.as_tensor().t()?)?;
            h = layer.norm.forward_train(&h, true, backend)?;
        }
        Ok(h.matmul(&self.out_weight.as_tensor().t()?)?
            .broadcast_add(self.out_bias.as_tensor())?)
    }
}

/// Encoder plus projection head: what SimCLR trains.
#[derive(Debug)]
pub struct SimclrModel {
    pub arch: Architecture,
    pub encoder: Encoder,
    pub head: ProjectionHead,
}

/// A trainable tensor with its safetensors name and whether weight decay applies to it.
#[derive(Debug, Clone)]
pub struct NamedVar {
    pub name: String,
    pub var: Var,
    /// Conv and linear weights decay; biases and batch-norm parameters do not (as in the
    /// peer, which decays only parameters with more than one dimension).
    pub decay: bool,
}

impl NamedVar {
    /// A tensor that decays when it has more than one dimension (a weight matrix or kernel).
    pub(crate) fn new(name: String, var: &Var) -> Self {
        Self {
            name,
            decay: var.rank() > 1,
            var: var.clone(),
        }
    }
}

impl SimclrModel {
    /// A freshly initialised model; the same seed gives the same weights.
    pub fn new(arch: Architecture, seed: u64) -> Result<Self> {
        let mut init = Initialiser::new(seed);
        let encoder = Encoder::new(&arch, &mut init)?;
        let head = ProjectionHead::new(&arch, &mut init)?;
        Ok(Self {
            arch,
            encoder,
            head,
        })
    }

    /// Projections `[N, projection_dim]` in training mode.
    pub fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let embedding = self.encoder.forward_train(x, backend)?;
        self.head.forward_train(&embedding, backend)
    }

    /// The trainable tensors, named as in the safetensors file.
    pub fn trainable(&self) -> Vec<NamedVar> {
        let mut out = Vec::new();
        self.encoder.trainable_into("", &mut out);
        let mut push = |name: String, var: &Var| out.push(NamedVar::new(name, var));
        for (k, layer) in self.head.hidden.iter().enumerate() {
            push(format!("head.{}.weight", 3 * k), &layer.weight);
            push(format!("head.{}.weight", 3 * k + 1), &layer.norm.weight);
            push(format!("head.{}.bias", 3 * k + 1), &layer.norm.bias);
        }
        let last = 3 * self.head.hidden.len();
        push(format!("head.{last}.weight"), &self.head.out_weight);
        push(format!("head.{last}.bias"), &self.head.out_bias);
        out
    }

    /// Every tensor of the model (weights and batch-norm running statistics), named as in
    /// the safetensors file, in a fixed order.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        self.encoder.tensors_into("", &mut out)?;
        for (k, layer) in self.head.hidden.iter().enumerate() {
            out.push((
                format!("head.{}.weight", 3 * k),
                layer.weight.as_tensor().clone(),
            ));
            layer
                .norm
                .tensors(&format!("head.{}", 3 * k + 1), &mut out)?;
        }
        let last = 3 * self.head.hidden.len();
        out.push((
            format!("head.{last}.weight"),
            self.head.out_weight.as_tensor().clone(),
        ));
        out.push((
            format!("head.{last}.bias"),
            self.head.out_bias.as_tensor().clone(),
        ));
        Ok(out)
    }

    /// The model as safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors = self.tensors()?;
        safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| TrainError::Tensor(candle_core::Error::wrap(e)))
    }

    /// Loads a model of architecture `arch` from a safetensors file; every tensor must be
    /// present with the right shape.
    pub fn load(arch: Architecture, path: &Path) -> Result<Self> {
        let weights = WeightSource::open(path)?;
        let mut model = Self::new(arch, 0)?;
        model.encoder.load_from("", &weights)?;
        for (k, layer) in model.head.hidden.iter_mut().enumerate() {
            layer
                .weight
                .set(&weights.get(&format!("head.{}.weight", 3 * k), layer.weight.dims())?)?;
            layer.norm.load(&format!("head.{}", 3 * k + 1), &weights)?;
        }
        let last = 3 * model.head.hidden.len();
        let head = &mut model.head;
        head.out_weight
            .set(&weights.get(&format!("head.{last}.weight"), head.out_weight.dims())?)?;
        head.out_bias
            .set(&weights.get(&format!("head.{last}.bias"), head.out_bias.dims())?)?;
        Ok(model)
    }

    /// The input channels recorded in a weights file (the first convolution's `in`).
    pub fn in_channels_of(path: &Path) -> Result<usize> {
        WeightSource::open(path)?.first_conv_in_channels("")
    }
}

/// What a run trains: `[train] objective`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Encoder and projection head on NT-Xent over two views.
    Simclr,
    /// Encoder and mirrored decoder on mean squared error over one view.
    Autoencoder,
}

impl Objective {
    /// Parses the `[train] objective` value.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "simclr" => Ok(Objective::Simclr),
            "autoencoder" => Ok(Objective::Autoencoder),
            other => Err(TrainError::Setting {
                key: "objective",
                value: other.to_string(),
                expected: "\"simclr\" or \"autoencoder\"",
            }),
        }
    }
}

/// A model of either family, for the code that does not care which (optimiser,
/// checkpoints, export of the encoder).
#[derive(Debug)]
pub enum Model {
    Simclr(SimclrModel),
    Autoencoder(crate::autoencoder::AutoencoderModel),
}

impl Model {
    pub fn objective(&self) -> Objective {
        match self {
            Model::Simclr(_) => Objective::Simclr,
            Model::Autoencoder(_) => Objective::Autoencoder,
        }
    }

    pub fn arch(&self) -> Architecture {
        match self {
            Model::Simclr(m) => m.arch,
            Model::Autoencoder(m) => m.arch,
        }
    }

    /// The encoder, whose pooled output is the embedding (for an autoencoder with a
    /// bottleneck layer, the input of that layer).
    pub fn encoder(&self) -> &Encoder {
        match self {
            Model::Simclr(m) => &m.encoder,
            Model::Autoencoder(m) => &m.encoder,
        }
    }

    /// The encoder, taking the model apart.
    pub fn into_encoder(self) -> Encoder {
        match self {
            Model::Simclr(m) => m.encoder,
            Model::Autoencoder(m) => m.encoder,
        }
    }

    /// The trainable tensors, named as in the safetensors file.
    pub fn trainable(&self) -> Vec<NamedVar> {
        match self {
            Model::Simclr(m) => m.trainable(),
            Model::Autoencoder(m) => m.trainable(),
        }
    }

    /// Every tensor, named as in the safetensors file.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Model::Simclr(m) => m.tensors(),
            Model::Autoencoder(m) => m.tensors(),
        }
    }

    /// The model as safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors = self.tensors()?;
        safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
            .map_err(|e| TrainError::Tensor(candle_core::Error::wrap(e)))
    }

    /// The encoder alone as safetensors bytes, named as in a SimCLR model's file (no
    /// `encoder.` prefix even for an autoencoder), so one loader serves every backbone:
    /// `features.*` for small-cnn (the peer's `SmallCNN.features`), torchvision's names
    /// for resnet18. The header's metadata names the encoder (`latent.encoder`).
    pub fn encoder_safetensors(&self) -> Result<Vec<u8>> {
        let encoder = match self {
            Model::Simclr(m) => &m.encoder,
            Model::Autoencoder(m) => &m.encoder,
        };
        let mut tensors = Vec::new();
        encoder.tensors_into("", &mut tensors)?;
        let kind = match encoder.kind() {
            EncoderKind::SmallCnn => "small-cnn",
            EncoderKind::ResNet18 => "resnet18",
        };
        let metadata = HashMap::from([("latent.encoder".to_string(), kind.to_string())]);
        safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| TrainError::Tensor(candle_core::Error::wrap(e)))
    }

    /// Loads a model of the given family and architecture from a safetensors file.
    pub fn load(objective: Objective, arch: Architecture, path: &Path) -> Result<Self> {
        Ok(match objective {
            Objective::Simclr => Model::Simclr(SimclrModel::load(arch, path)?),
            Objective::Autoencoder => {
                Model::Autoencoder(crate::autoencoder::AutoencoderModel::load(arch, path)?)
            }
        })
    }

    /// The input channels recorded in a weights file of the given family.
    pub fn in_channels_of(objective: Objective, path: &Path) -> Result<usize> {
        match objective {
            Objective::Simclr => SimclrModel::in_channels_of(path),
            Objective::Autoencoder => crate::autoencoder::AutoencoderModel::in_channels_of(path),
        }
    }
}

/// Named tensors read from a file, with errors that name the file and the tensor.
pub(crate) struct WeightSource<'a> {
    path: &'a Path,
    tensors: HashMap<String, Tensor>,
}

impl<'a> WeightSource<'a> {
    /// Reads every tensor of the safetensors file at `path`.
    pub(crate) fn open(path: &'a Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| latent_core::Error::io(path, "reading the model weights", e))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            TrainError::Model {
                path: path.to_path_buf(),
                what: format!("not a safetensors file ({e})"),
            }
        })?;
        Ok(Self { path, tensors })
    }

    /// A "the file does not fit the model" error naming the file.
    pub(crate) fn mismatch(&self, what: String) -> TrainError {
        TrainError::Model {
            path: self.path.to_path_buf(),
            what,
        }
    }

    /// Whether the file has a tensor of this name.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The input channels of the encoder under `prefix`: the `in` axis of its first
    /// convolution, whichever kind of encoder the file holds.
    pub(crate) fn first_conv_in_channels(&self, prefix: &str) -> Result<usize> {
        let resnet = format!(
            "{prefix}{}",
            Encoder::first_weight_name(EncoderKind::ResNet18)
        );
        let name = if self.has(&resnet) {
            resnet
        } else {
            format!(
                "{prefix}{}",
                Encoder::first_weight_name(EncoderKind::SmallCnn)
            )
        };
        Ok(self.raw(&name)?.dim(1)?)
    }

    pub(crate) fn raw(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| TrainError::Model {
            path: self.path.to_path_buf(),
            what: format!("tensor '{name}' is missing"),
        })
    }

    pub(crate) fn get(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let tensor = self.raw(name)?;
        if tensor.dims() != dims {
            return Err(TrainError::Model {
                path: self.path.to_path_buf(),
                what: format!(
                    "tensor '{name}' has shape {:?}, the model config needs {dims:?}",
                    tensor.dims()
                ),
            });
        }
        Ok(tensor.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Architecture {
        Architecture {
            encoder: EncoderKind::SmallCnn,
            in_channels: 3,
            width: 0.25,
            head: HeadKind::TwoLayer,
            projection_dim: 8,
        }
    }

    #[test]
    fn init_is_seeded_and_within_pytorch_bounds() {
        let a = SimclrModel::new(tiny(), 3).unwrap();
        let b = SimclrModel::new(tiny(), 3).unwrap();
        let c = SimclrModel::new(tiny(), 4).unwrap();
        let first = |m: &SimclrModel| -> Vec<f32> {
            m.encoder.small_cnn().unwrap().blocks[1]
                .weight
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(first(&a), first(&b));
        assert_ne!(first(&a), first(&c));

        // Block 1 at width 0.25: 16 outputs, 8 inputs, fan_in 72.
        let bound = 1.0 / 72f32.sqrt();
        let values = first(&a);
        assert_eq!(values.len(), 16 * 8 * 9);
        assert!(values.iter().all(|v| v.abs() <= bound));
        let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(largest > 0.9 * bound, "{largest} vs bound {bound}");
    }

    #[test]
    fn batch_norm_running_stats_use_the_unbiased_variance() {
        let mut norm = BatchNorm::new(1).unwrap();
        let x = Tensor::from_vec(vec![1f32, 2., 3., 4.], (4, 1), &Device::Cpu).unwrap();
        let y = norm.forward_train(&x, false, Backend::Candle).unwrap();

        // mean 2.5, biased var 1.25, unbiased 5/3.
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let expected = [-1.5f32, -0.5, 0.5, 1.5].map(|d| d / (1.25f32 + 1e-5).sqrt());
        for (a, b) in y.iter().zip(expected) {
            assert!((a - b).abs() < 1e-5, "{y:?}");
        }
        let rm: Vec<f32> = norm.running_mean.to_vec1().unwrap();
        let rv: Vec<f32> = norm.running_var.to_vec1().unwrap();
        assert!((rm[0] - 0.25).abs() < 1e-6);
        assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
        assert_eq!(norm.num_batches_tracked, 1);
    }

    #[test]
    fn cumulative_batch_norm_averages_all_batches() {
        let mut norm = BatchNorm::new(1).unwrap();
        norm.momentum = None;
        for values in [[0f32, 2.], [4., 6.]] {
            let x = Tensor::from_vec(values.to_vec(), (2, 1), &Device::Cpu).unwrap();
            norm.forward_train(&x, false, Backend::Candle).unwrap();
        }
        // Batch means 1 and 5; unbiased variances 2 and 2.
        let rm: Vec<f32> = norm.running_mean.to_vec1().unwrap();
        let rv: Vec<f32> = norm.running_var.to_vec1().unwrap();
        assert!((rm[0] - 3.0).abs() < 1e-6, "{rm:?}");
        assert!((rv[0] - 2.0).abs() < 1e-6, "{rv:?}");
    }

    #[test]
    fn encoder_output_shape_and_names_match_the_peer() {
        let mut model = SimclrModel::new(tiny(), 0).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 8, 8), &Device::Cpu).unwrap();
        let z = model.forward_train(&x, Backend::Candle).unwrap();
        assert_eq!(z.dims(), &[2, 8]);
        let e = model.encoder.forward_eval(&x, Backend::Candle).unwrap();
        assert_eq!(e.dims(), &[2, 64]);

        let names: Vec<String> = model
            .tensors()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(names.contains(&"features.3.1.running_var".to_string()));
        assert!(names.contains(&"head.1.num_batches_tracked".to_string()));
        assert!(names.contains(&"head.3.bias".to_string()));
        assert_eq!(names.len(), 4 * 6 + 6 + 2);
    }

    #[test]
    fn fast_kernels_match_candles_ops_forward_and_backward() {
        let x = Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap();
        let run = |backend: Backend| {
            let mut model = SimclrModel::new(tiny(), 5).unwrap();
            let z = model.forward_train(&x, backend).unwrap();
            let grads = z.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            let conv_grad = flat(
                grads
                    .get(
                        model.encoder.small_cnn().unwrap().blocks[0]
                            .weight
                            .as_tensor(),
                    )
                    .unwrap(),
            );
            let gamma_grad = flat(
                grads
                    .get(
                        model.encoder.small_cnn().unwrap().blocks[2]
                            .norm
                            .weight
                            .as_tensor(),
                    )
                    .unwrap(),
            );
            let running = flat(
                &model.encoder.small_cnn().unwrap().blocks[1]
                    .norm
                    .running_var,
            );
            (flat(&z), conv_grad, gamma_grad, running)
        };
        let (candle, fast) = (run(Backend::Candle), run(Backend::Fast));
        let close = |a: &[f32], b: &[f32], what: &str| {
            let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-4 * scale, "{what}: {worst} (scale {scale})");
        };
        close(&candle.0, &fast.0, "projections");
        close(&candle.1, &fast.1, "conv weight gradient");
        close(&candle.2, &fast.2, "batch-norm scale gradient");
        close(&candle.3, &fast.3, "running variance");
    }

    #[test]
    fn saved_model_loads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut model = SimclrModel::new(tiny(), 9).unwrap();
        let x = Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap();
        model.forward_train(&x, Backend::Candle).unwrap();
        std::fs::write(&path, model.to_safetensors().unwrap()).unwrap();

        let loaded = SimclrModel::load(tiny(), &path).unwrap();
        for ((n1, t1), (n2, t2)) in model
            .tensors()
            .unwrap()
            .iter()
            .zip(loaded.tensors().unwrap())
        {
            assert_eq!(n1, &n2);
            let diff = (t1.to_dtype(DType::F64).unwrap() - t2.to_dtype(DType::F64).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(diff, 0.0, "{n1}");
        }

        let wider = Architecture {
            width: 0.5,
            ..tiny()
        };
        let err = SimclrModel::load(wider, &path).unwrap_err().to_string();
        assert!(
            err.contains("features.0.0.weight") && err.contains("shape"),
            "{err}"
        );
    }
}
