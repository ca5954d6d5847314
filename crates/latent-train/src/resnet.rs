//! The CIFAR-style ResNet-18 encoder (`[train] encoder = "resnet18"`), on candle.
//!
//! The stem is a 3x3 convolution with stride 1 (64 channels times the width multiplier),
//! batch norm and ReLU, without the ImageNet max-pool. Four stages of two BasicBlocks
//! follow, with 64/128/256/512 channels (times the width); the first block of stages 2-4
//! has stride 2 and a shortcut of a 1x1 convolution (stride 2) plus batch norm. A global
//! average pool gives the 512 x width embedding. Convolutions have no bias; weights start
//! from PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like the small-cnn's.
//!
//! # Tensor names
//!
//! torchvision's `resnet18().state_dict()` names without `fc.*`: `conv1.weight`, `bn1.*`,
//! `layer{k}.{b}.conv1.weight`, `layer{k}.{b}.bn1.*`, `layer{k}.{b}.conv2.weight`,
//! `layer{k}.{b}.bn2.*` and, for the first block of stages 2-4,
//! `layer{k}.{b}.downsample.0.weight` / `layer{k}.{b}.downsample.1.*`. A torchvision
//! `resnet18()` whose `conv1` is replaced by a 3x3 stride-1 convolution and whose
//! `maxpool` and `fc` are `nn.Identity()` loads the encoder's tensors with `strict=True`.

use candle_core::{Tensor, Var};

use crate::error::Result;
use crate::model::{Backend, BatchNorm, Initialiser, NamedVar, WeightSource, conv2d_padded};

/// Channels of the stem and of the four stages at width 1.
pub const STAGE_CHANNELS: [usize; 4] = [64, 128, 256, 512];
/// BasicBlocks per stage.
pub const BLOCKS_PER_STAGE: usize = 2;

/// A convolution without bias followed by batch norm.
#[derive(Debug)]
pub struct ConvNorm {
    /// `[out, in, k, k]`.
    pub weight: Var,
    pub norm: BatchNorm,
    pub stride: usize,
    pub padding: usize,
}

impl ConvNorm {
    fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        init: &mut Initialiser,
    ) -> Result<Self> {
        Ok(Self {
            weight: init.uniform(
                &[out_channels, in_channels, kernel, kernel],
                in_channels * kernel * kernel,
            )?,
            norm: BatchNorm::new(out_channels)?,
            stride,
            padding: kernel / 2,
        })
    }

    fn forward_train(&mut self, x: &Tensor, relu: bool, backend: Backend) -> Result<Tensor> {
        let h = conv2d_padded(
            x,
            self.weight.as_tensor(),
            self.stride,
            self.padding,
            backend,
        )?;
        self.norm.forward_train(&h, relu, backend)
    }

    fn forward_eval(&self, x: &Tensor, relu: bool, backend: Backend) -> Result<Tensor> {
        let h = conv2d_padded(
            x,
            self.weight.as_tensor(),
            self.stride,
            self.padding,
            backend,
        )?;
        self.norm.forward_eval(&h, relu)
    }

    fn trainable_into(&self, conv: &str, norm: &str, out: &mut Vec<NamedVar>) {
        out.push(NamedVar::new(format!("{conv}.weight"), &self.weight));
        out.push(NamedVar::new(format!("{norm}.weight"), &self.norm.weight));
        out.push(NamedVar::new(format!("{norm}.bias"), &self.norm.bias));
    }

    fn tensors_into(&self, conv: &str, norm: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        out.push((format!("{conv}.weight"), self.weight.as_tensor().clone()));
        self.norm.tensors(norm, out)
    }

    fn load_from(&mut self, conv: &str, norm: &str, weights: &WeightSource) -> Result<()> {
        let name = format!("{conv}.weight");
        self.weight.set(&weights.get(&name, self.weight.dims())?)?;
        self.norm.load(norm, weights)
    }
}

/// conv3x3-BN-ReLU, conv3x3-BN, plus the shortcut (identity or 1x1 conv + BN), ReLU.
#[derive(Debug)]
pub struct BasicBlock {
    pub conv1: ConvNorm,
    pub conv2: ConvNorm,
    pub downsample: Option<ConvNorm>,
}

impl BasicBlock {
    fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        init: &mut Initialiser,
    ) -> Result<Self> {
        let conv1 = ConvNorm::new(in_channels, out_channels, 3, stride, init)?;
        let conv2 = ConvNorm::new(out_channels, out_channels, 3, 1, init)?;
        let downsample = if stride != 1 || in_channels != out_channels {
            Some(ConvNorm::new(in_channels, out_channels, 1, stride, init)?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            downsample,
        })
    }

    fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let h = self.conv1.forward_train(x, true, backend)?;
        let h = self.conv2.forward_train(&h, false, backend)?;

        let shortcut = match &mut self.downsample {
            Some(layer) => layer.forward_train(x, false, backend)?,
            None => x.clone(),
        };
        Ok((h + shortcut)?.relu()?)
    }

    fn forward_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let h = self.conv1.forward_eval(x, true, backend)?;
        let h = self.conv2.forward_eval(&h, false, backend)?;

        let shortcut = match &self.downsample {
            Some(layer) => layer.forward_eval(x, false, backend)?,
            None => x.clone(),
        };
        Ok((h + shortcut)?.relu()?)
    }

    /// The block's layers with their (convolution, batch norm) names under `prefix`.
    fn named_layers<'a>(&'a self, prefix: &str) -> Vec<(String, String, &'a ConvNorm)> {
        let mut layers = vec![
            (
                format!("{prefix}conv1"),
                format!("{prefix}bn1"),
                &self.conv1,
            ),
            (
                format!("{prefix}conv2"),
                format!("{prefix}bn2"),
                &self.conv2,
            ),
        ];
        if let Some(layer) = &self.downsample {
            layers.push((
                format!("{prefix}downsample.0"),
                format!("{prefix}downsample.1"),
                layer,
            ));
        }
        layers
    }

    fn norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        [&mut self.conv1, &mut self.conv2]
            .into_iter()
            .chain(self.downsample.as_mut())
            .map(|layer| &mut layer.norm)
    }
}

/// The CIFAR ResNet-18: stem, four stages of BasicBlocks, global average pool.
#[derive(Debug)]
pub struct ResNet18 {
    /// `conv1` / `bn1`.
    pub stem: ConvNorm,
    /// `layer1` to `layer4`, two blocks each.
    pub stages: Vec<Vec<BasicBlock>>,
}

impl ResNet18 {
    /// A freshly initialised network with the given stage channels (width applied).
    pub(crate) fn new(
        in_channels: usize,
        channels: [usize; 4],
        init: &mut Initialiser,
    ) -> Result<Self> {
        let stem = ConvNorm::new(in_channels, channels[0], 3, 1, init)?;
        let mut stages = Vec::with_capacity(4);
        let mut previous = channels[0];
        for (stage, &out_channels) in channels.iter().enumerate() {
            let mut blocks = Vec::with_capacity(BLOCKS_PER_STAGE);
            for block in 0..BLOCKS_PER_STAGE {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(previous, out_channels, stride, init)?);
                previous = out_channels;
            }
            stages.push(blocks);
        }
        Ok(Self { stem, stages })
    }

    /// Size of the embedding: the last stage's channels.
    pub fn embedding_dim(&self) -> usize {
        self.stages[3][BLOCKS_PER_STAGE - 1].conv2.weight.dims()[0]
    }

    /// Embeddings `[N, D]` in training mode (batch statistics; running ones updated).
    pub fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = self.stem.forward_train(x, true, backend)?;
        for block in self.stages.iter_mut().flatten() {
            h = block.forward_train(&h, backend)?;
        }
        Ok(h.mean((2, 3))?)
    }

    /// Embeddings `[N, D]` in eval mode (running statistics, nothing updated).
    pub fn forward_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = self.stem.forward_eval(x, true, backend)?;
        for block in self.stages.iter().flatten() {
            h = block.forward_eval(&h, backend)?;
        }
        Ok(h.mean((2, 3))?)
    }

    /// Every convolution with its batch norm and their names under `prefix`, in order.
    fn named_layers<'a>(&'a self, prefix: &str) -> Vec<(String, String, &'a ConvNorm)> {
        let mut layers = vec![(format!("{prefix}conv1"), format!("{prefix}bn1"), &self.stem)];
        for (stage, blocks) in self.stages.iter().enumerate() {
            for (index, block) in blocks.iter().enumerate() {
                let block_prefix = format!("{prefix}layer{}.{index}.", stage + 1);
                layers.extend(block.named_layers(&block_prefix));
            }
        }
        layers
    }

    /// The batch-norm layers, in order.
    pub fn norms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        std::iter::once(&mut self.stem.norm).chain(
            self.stages
                .iter_mut()
                .flatten()
                .flat_map(BasicBlock::norms_mut),
        )
    }

    pub(crate) fn trainable_into(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        for (conv, norm, layer) in self.named_layers(prefix) {
            layer.trainable_into(&conv, &norm, out);
        }
    }

    pub(crate) fn tensors_into(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        for (conv, norm, layer) in self.named_layers(prefix) {
            layer.tensors_into(&conv, &norm, out)?;
        }
        Ok(())
    }

    pub(crate) fn load_from(&mut self, prefix: &str, weights: &WeightSource) -> Result<()> {
        let names: Vec<(String, String)> = self
            .named_layers(prefix)
            .into_iter()
            .map(|(conv, norm, _)| (conv, norm))
            .collect();
        let layers =
            std::iter::once(&mut self.stem).chain(self.stages.iter_mut().flatten().flat_map(|b| {
                [&mut b.conv1, &mut b.conv2]
                    .into_iter()
                    .chain(b.downsample.as_mut())
            }));
        for ((conv, norm), layer) in names.iter().zip(layers) {
            layer.load_from(conv, norm, weights)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::loss::nt_xent;
    use crate::model::{Architecture, EncoderKind, HeadKind, SimclrModel};

    fn arch(width: f64) -> Architecture {
        Architecture {
            encoder: EncoderKind::ResNet18,
            in_channels: 3,
            width,
            head: HeadKind::TwoLayer,
            projection_dim: 8,
        }
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn outputs_have_the_embedding_and_projection_sizes() {
        let mut model = SimclrModel::new(arch(0.125), 1).unwrap();
        assert_eq!(model.encoder.embedding_dim(), 64);
        let x = Tensor::randn(0f32, 1., (2, 3, 16, 16), &Device::Cpu).unwrap();
        assert_eq!(
            model.forward_train(&x, Backend::Fast).unwrap().dims(),
            &[2, 8]
        );
        let e = model.encoder.forward_eval(&x, Backend::Fast).unwrap();
        assert_eq!(e.dims(), &[2, 64]);
        assert_eq!(
            SimclrModel::new(arch(1.0), 1)
                .unwrap()
                .encoder
                .embedding_dim(),
            512
        );
    }

    #[test]
    fn tensor_names_and_shapes_are_torchvisions() {
        let model = SimclrModel::new(arch(1.0), 0).unwrap();
        let shapes: std::collections::HashMap<String, Vec<usize>> = model
            .tensors()
            .unwrap()
            .into_iter()
            .filter(|(n, _)| !n.starts_with("head."))
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();

        // torchvision's resnet18().state_dict() less fc.weight / fc.bias, written out.
        let norm = [
            "weight",
            "bias",
            "running_mean",
            "running_var",
            "num_batches_tracked",
        ];
        let mut expected = vec!["conv1.weight".to_string()];
        expected.extend(norm.iter().map(|p| format!("bn1.{p}")));
        for stage in 1..=4 {
            for block in 0..2 {
                let prefix = format!("layer{stage}.{block}");
                for (conv, bn) in [("conv1", "bn1"), ("conv2", "bn2")] {
                    expected.push(format!("{prefix}.{conv}.weight"));
                    expected.extend(norm.iter().map(|p| format!("{prefix}.{bn}.{p}")));
                }
                if stage > 1 && block == 0 {
                    expected.push(format!("{prefix}.downsample.0.weight"));
                    expected.extend(norm.iter().map(|p| format!("{prefix}.downsample.1.{p}")));
                }
            }
        }
        assert_eq!(expected.len(), 120);
        let mut names: Vec<&String> = shapes.keys().collect();
        names.sort();
        let mut wanted: Vec<&String> = expected.iter().collect();
        wanted.sort();
        assert_eq!(names, wanted);

        let checks: [(&str, &[usize]); 6] = [
            ("conv1.weight", &[64, 3, 3, 3]),
            ("layer1.0.conv1.weight", &[64, 64, 3, 3]),
            ("layer2.0.conv1.weight", &[128, 64, 3, 3]),
            ("layer2.0.downsample.0.weight", &[128, 64, 1, 1]),
            ("layer4.1.conv2.weight", &[512, 512, 3, 3]),
            ("layer4.0.downsample.1.running_var", &[512]),
        ];
        for (name, dims) in checks {
            assert_eq!(shapes[name], dims, "{name}");
        }
        // Trainable: a conv weight and two batch-norm parameters per layer (20 layers).
        let trainable = model
            .trainable()
            .into_iter()
            .filter(|v| !v.name.starts_with("head."));
        assert_eq!(trainable.count(), 60);
    }

    #[test]
    fn strided_stages_halve_the_side() {
        // 16x16 input: stages 2-4 give 8, 4, 2; a 17x17 input gives 9, 5, 3 (padding 1).
        let model = SimclrModel::new(arch(0.125), 2).unwrap();
        let crate::model::Encoder::ResNet18(net) = &model.encoder else {
            panic!("not a resnet");
        };
        for (side, expected) in [(16, [16, 8, 4, 2]), (17, [17, 9, 5, 3])] {
            let x = Tensor::randn(0f32, 1., (1, 3, side, side), &Device::Cpu).unwrap();
            let mut h = net.stem.forward_eval(&x, true, Backend::Candle).unwrap();
            for (stage, blocks) in net.stages.iter().enumerate() {
                for block in blocks {
                    h = block.forward_eval(&h, Backend::Candle).unwrap();
                }
                assert_eq!(
                    h.dims()[2..],
                    [expected[stage]; 2],
                    "side {side}, stage {stage}"
                );
            }
        }
    }

    #[test]
    fn fast_kernels_match_candles_ops_forward_and_backward() {
        let x = Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap();
        let run = |backend: Backend| {
            let mut model = SimclrModel::new(arch(0.125), 5).unwrap();
            let z = model.forward_train(&x, backend).unwrap();
            let grads = z.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let crate::model::Encoder::ResNet18(net) = &model.encoder else {
                panic!("not a resnet");
            };
            let shortcut = net.stages[1][0].downsample.as_ref().unwrap();
            let grad = grads.get(shortcut.weight.as_tensor()).unwrap().clone();
            (z, grad)
        };
        let (candle, fast) = (run(Backend::Candle), run(Backend::Fast));
        for (a, b, what) in [
            (&candle.0, &fast.0, "output"),
            (&candle.1, &fast.1, "gradient"),
        ] {
            let scale = a
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let worst = max_abs_diff(a, b);
            assert!(
                worst <= 1e-4 * scale.max(1e-3),
                "{what}: {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn saved_model_loads_back_with_identical_eval_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut model = SimclrModel::new(arch(0.125), 9).unwrap();
        let x = Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap();
        model.forward_train(&x, Backend::Fast).unwrap();
        std::fs::write(&path, model.to_safetensors().unwrap()).unwrap();

        let loaded = SimclrModel::load(arch(0.125), &path).unwrap();
        assert_eq!(SimclrModel::in_channels_of(&path).unwrap(), 3);
        let a = model.encoder.forward_eval(&x, Backend::Fast).unwrap();
        let b = loaded.encoder.forward_eval(&x, Backend::Fast).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        let tracked = |m: &SimclrModel| -> Vec<f64> {
            m.tensors()
                .unwrap()
                .into_iter()
                .filter(|(n, _)| n.ends_with("running_var"))
                .flat_map(|(_, t)| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap())
                .collect()
        };
        assert_eq!(tracked(&model), tracked(&loaded));

        // A small-cnn file does not load as a resnet: the names differ.
        let small = Architecture {
            encoder: EncoderKind::SmallCnn,
            ..arch(0.125)
        };
        let err = SimclrModel::load(small, &path).unwrap_err().to_string();
        assert!(
            err.contains("features.0.0.weight") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn a_few_sgd_steps_lower_the_contrastive_loss() {
        let mut model = SimclrModel::new(arch(0.125), 3).unwrap();
        let images = Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap();
        let noise = (Tensor::randn(0f32, 1., (4, 3, 8, 8), &Device::Cpu).unwrap() * 0.1).unwrap();
        let views = Tensor::cat(&[images.clone(), (images + noise).unwrap()], 0).unwrap();

        let mut losses = Vec::new();
        for _ in 0..8 {
            let z = model.forward_train(&views, Backend::Fast).unwrap();
            let loss = nt_xent(&z, 0.5).unwrap().loss;
            losses.push(loss.to_scalar::<f32>().unwrap());
            let grads = loss.backward().unwrap();
            for named in model.trainable() {
                if let Some(grad) = grads.get(named.var.as_tensor()) {
                    let updated = (named.var.as_tensor() - (grad * 0.05).unwrap()).unwrap();
                    named.var.set(&updated).unwrap();
                }
            }
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < 0.9 * first, "losses {losses:?}");
    }
}
