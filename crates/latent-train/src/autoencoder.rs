//! The convolutional autoencoder: the encoder (`small-cnn` or `resnet18`), an optional
//! bottleneck layer and the peer's mirrored decoder, trained on mean squared error.
//! Both encoders halve the side three times, so the decoder mirrors either one's four
//! channel counts (32/64/128/256 or 64/128/256/512, times the width).
//!
//! The code the decoder reads is the encoder's pooled output (D values, 256 at width 1)
//! or, with `[train] bottleneck = B > 0`, a Linear(D -> B, with bias) of it. The decoder is
//! `MirrorDecoder` of `shared/peers/autoencoder_torch.py`, with s = image side / 8 and K
//! the code's size (D or B):
//!
//! * Linear(K -> D*s*s, with bias), reshape to D x s x s, BatchNorm2d(D), ReLU;
//! * three times ConvTranspose2d(4x4, stride 2, padding 1, no bias), BatchNorm2d, ReLU,
//!   with the encoder's channels in reverse (256 -> 128 -> 64 -> 32 at width 1);
//! * Conv2d(32 -> image channels, 3x3, padding 1, with bias), no activation.
//!
//! # Tensor names
//!
//! As the peer's `AutoEncoder.state_dict()`: the encoder under `encoder.features.…`
//! (the SimCLR model's names with an `encoder.` prefix), the bottleneck layer (when there
//! is one) as `bottleneck.weight` (`[B, D]`) / `bottleneck.bias`, the decoder as
//! `decoder.fc.weight` / `.bias`, `decoder.fc_norm.*`, `decoder.up.{i}.0.weight` (the
//! transposed convolutions, `[in, out, 4, 4]`) and `decoder.up.{i}.1.*` (their batch norms)
//! for i in 0..3, then `decoder.up.3.weight` / `.bias` (the output convolution).
//!
//! Initialisation is PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) where, as in
//! PyTorch, a transposed convolution's fan_in is computed from its weight's second axis
//! (out channels x 4 x 4).

use std::path::Path;

use candle_core::{Tensor, Var};

use crate::error::{Result, TrainError};
use crate::model::{
    Architecture, Backend, BatchNorm, Encoder, Initialiser, NamedVar, WeightSource, conv2d, fast,
};

/// Side of the transposed convolutions' kernels.
const UP_KERNEL: usize = 4;
/// Tensor names of the bottleneck layer.
const BOTTLENECK_WEIGHT: &str = "bottleneck.weight";
const BOTTLENECK_BIAS: &str = "bottleneck.bias";

/// One upsampling block: ConvTranspose2d(4x4, stride 2, padding 1, no bias), BN, ReLU.
#[derive(Debug)]
pub struct UpBlock {
    /// `[in, out, 4, 4]`, PyTorch's layout for transposed convolutions.
    pub weight: Var,
    pub norm: BatchNorm,
}

/// The mirrored decoder: code `[N, K]` -> image `[N, C, 8s, 8s]`.
#[derive(Debug)]
pub struct Decoder {
    /// Side of the first feature map (image side / 8).
    pub start: usize,
    /// `[D*s*s, K]`.
    pub fc_weight: Var,
    pub fc_bias: Var,
    pub fc_norm: BatchNorm,
    pub up: Vec<UpBlock>,
    /// `[C, c0, 3, 3]` with c0 the encoder's first block's channels.
    pub out_weight: Var,
    pub out_bias: Var,
}

fn conv_transpose(x: &Tensor, weight: &Tensor, backend: Backend) -> Result<Tensor> {
    Ok(match backend {
        Backend::Candle => x.conv_transpose2d(weight, 1, 0, 2, 1)?,
        Backend::Fast => fast::conv_transpose2d(x, weight, 2, 1)?,
    })
}

impl Decoder {
    /// A decoder from codes of `code_dim` values.
    fn new(
        arch: &Architecture,
        start: usize,
        code_dim: usize,
        init: &mut Initialiser,
    ) -> Result<Self> {
        let channels = arch.block_channels();
        let dim = arch.embedding_dim();
        let fc_out = dim * start * start;
        let fc_weight = init.uniform(&[fc_out, code_dim], code_dim)?;
        let fc_bias = init.uniform(&[fc_out], code_dim)?;

        let mut up = Vec::with_capacity(3);
        for k in (0..3).rev() {
            let (input, output) = (channels[k + 1], channels[k]);
            up.push(UpBlock {
                weight: init.uniform(
                    &[input, output, UP_KERNEL, UP_KERNEL],
                    output * UP_KERNEL * UP_KERNEL,
                )?,
                norm: BatchNorm::new(output)?,
            });
        }

        let last = channels[0];
        Ok(Self {
            start,
            fc_weight,
            fc_bias,
            fc_norm: BatchNorm::new(dim)?,
            up,
            out_weight: init.uniform(&[arch.in_channels, last, 3, 3], last * 9)?,
            out_bias: init.uniform(&[arch.in_channels], last * 9)?,
        })
    }

    /// Size of the codes the decoder reads.
    pub fn code_dim(&self) -> usize {
        self.fc_weight.dims()[1]
    }

    /// The Linear layer, reshaped to `[N, D, s, s]`.
    fn project(&self, code: &Tensor) -> Result<Tensor> {
        let n = code.dim(0)?;
        let dim = self.fc_norm.weight.dim(0)?;
        let h = code
            .matmul(&self.fc_weight.as_tensor().t()?)?
            .broadcast_add(self.fc_bias.as_tensor())?;
        Ok(h.reshape((n, dim, self.start, self.start))?)
    }

    /// The output convolution with its bias.
    fn output(&self, h: &Tensor, backend: Backend) -> Result<Tensor> {
        let y = conv2d(h, self.out_weight.as_tensor(), 1, backend)?;
        let channels = self.out_bias.dim(0)?;
        Ok(y.broadcast_add(&self.out_bias.as_tensor().reshape((1, channels, 1, 1))?)?)
    }

    /// Images `[N, C, H, W]` in training mode (batch statistics; running ones updated).
    pub fn forward_train(&mut self, code: &Tensor, backend: Backend) -> Result<Tensor> {
        let h = self.project(code)?;
        let mut h = self.fc_norm.forward_train(&h, true, backend)?;
        for block in &mut self.up {
            h = conv_transpose(&h, block.weight.as_tensor(), backend)?;
            h = block.norm.forward_train(&h, true, backend)?;
        }
        self.output(&h, backend)
    }

    /// Images `[N, C, H, W]` in eval mode (running statistics, nothing updated).
    pub fn forward_eval(&self, code: &Tensor, backend: Backend) -> Result<Tensor> {
        let h = self.project(code)?;
        let mut h = self.fc_norm.forward_eval(&h, true)?;
        for block in &self.up {
            h = conv_transpose(&h, block.weight.as_tensor(), backend)?;
            h = block.norm.forward_eval(&h, true)?;
        }
        self.output(&h, backend)
    }

    fn trainable_into(&self, out: &mut Vec<NamedVar>) {
        let mut push = |name: &str, var: &Var| out.push(NamedVar::new(name.to_string(), var));
        push("decoder.fc.weight", &self.fc_weight);
        push("decoder.fc.bias", &self.fc_bias);
        push("decoder.fc_norm.weight", &self.fc_norm.weight);
        push("decoder.fc_norm.bias", &self.fc_norm.bias);
        for (i, block) in self.up.iter().enumerate() {
            push(&format!("decoder.up.{i}.0.weight"), &block.weight);
            push(&format!("decoder.up.{i}.1.weight"), &block.norm.weight);
            push(&format!("decoder.up.{i}.1.bias"), &block.norm.bias);
        }
        push("decoder.up.3.weight", &self.out_weight);
        push("decoder.up.3.bias", &self.out_bias);
    }

    fn tensors_into(&self, out: &mut Vec<(String, Tensor)>) -> Result<()> {
        let mut push =
            |name: &str, var: &Var| out.push((name.to_string(), var.as_tensor().clone()));
        push("decoder.fc.weight", &self.fc_weight);
        push("decoder.fc.bias", &self.fc_bias);
        self.fc_norm.tensors("decoder.fc_norm", out)?;
        for (i, block) in self.up.iter().enumerate() {
            out.push((
                format!("decoder.up.{i}.0.weight"),
                block.weight.as_tensor().clone(),
            ));
            block.norm.tensors(&format!("decoder.up.{i}.1"), out)?;
        }
        out.push((
            "decoder.up.3.weight".into(),
            self.out_weight.as_tensor().clone(),
        ));
        out.push((
            "decoder.up.3.bias".into(),
            self.out_bias.as_tensor().clone(),
        ));
        Ok(())
    }

    fn load_from(&mut self, weights: &WeightSource) -> Result<()> {
        let set = |var: &Var, name: &str| -> Result<()> {
            var.set(&weights.get(name, var.dims())?)?;
            Ok(())
        };
        set(&self.fc_weight, "decoder.fc.weight")?;
        set(&self.fc_bias, "decoder.fc.bias")?;
        self.fc_norm.load("decoder.fc_norm", weights)?;
        for (i, block) in self.up.iter_mut().enumerate() {
            set(&block.weight, &format!("decoder.up.{i}.0.weight"))?;
            block.norm.load(&format!("decoder.up.{i}.1"), weights)?;
        }
        set(&self.out_weight, "decoder.up.3.weight")?;
        set(&self.out_bias, "decoder.up.3.bias")?;
        Ok(())
    }
}

/// A Linear layer with bias: `x W^T + b`.
#[derive(Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Var,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// Encoder, optional bottleneck layer and decoder: what the autoencoder objective trains.
#[derive(Debug)]
pub struct AutoencoderModel {
    pub arch: Architecture,
    pub encoder: Encoder,
    /// Linear(D -> B) between the pooled output and the decoder (`[train] bottleneck`).
    pub bottleneck: Option<Linear>,
    pub decoder: Decoder,
}

impl AutoencoderModel {
    /// A freshly initialised model for square images of side `image_size` (a multiple of
    /// 8) whose code has `bottleneck` values (0: the encoder's pooled output is the code).
    /// The encoder's initial weights are the SimCLR model's for the same seed.
    pub fn new(
        arch: Architecture,
        image_size: usize,
        bottleneck: usize,
        seed: u64,
    ) -> Result<Self> {
        if image_size == 0 || !image_size.is_multiple_of(8) {
            return Err(TrainError::Input {
                input: "autoencoder".into(),
                expected: "images whose side is a multiple of 8 (the decoder doubles 3 times)"
                    .into(),
                found: format!("side {image_size}"),
            });
        }
        let mut init = Initialiser::new(seed);
        let encoder = Encoder::new(&arch, &mut init)?;
        let dim = arch.embedding_dim();
        let bottleneck = match bottleneck {
            0 => None,
            size => Some(Linear {
                weight: init.uniform(&[size, dim], dim)?,
                bias: init.uniform(&[size], dim)?,
            }),
        };
        let code_dim = bottleneck
            .as_ref()
            .map_or(dim, |layer| layer.weight.dims()[0]);
        let decoder = Decoder::new(&arch, image_size / 8, code_dim, &mut init)?;
        Ok(Self {
            arch,
            encoder,
            bottleneck,
            decoder,
        })
    }

    /// The linear layer between the encoder's pooled output and the code the decoder
    /// reads (weight `[B, D]`, bias `[B]`), or None when the pooled output is the code.
    pub fn bottleneck_layer(&self) -> Option<(Tensor, Tensor)> {
        self.bottleneck.as_ref().map(|layer| {
            (
                layer.weight.as_tensor().clone(),
                layer.bias.as_tensor().clone(),
            )
        })
    }

    /// Size of the code the decoder reads (B, or D without a bottleneck layer).
    pub fn code_dim(&self) -> usize {
        self.decoder.code_dim()
    }

    /// Side of the images the decoder makes.
    pub fn image_size(&self) -> usize {
        8 * self.decoder.start
    }

    /// (code `[N, B or D]`, reconstruction `[N, C, H, W]`) in training mode.
    pub fn forward_train(&mut self, x: &Tensor, backend: Backend) -> Result<(Tensor, Tensor)> {
        let mut code = self.encoder.forward_train(x, backend)?;
        if let Some(layer) = &self.bottleneck {
            code = layer.forward(&code)?;
        }
        let reconstruction = self.decoder.forward_train(&code, backend)?;
        Ok((code, reconstruction))
    }

    /// Codes `[N, B or D]` of a batch in eval mode: what the decoder reads.
    pub fn encode_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let pooled = self.encoder.forward_eval(x, backend)?;
        match &self.bottleneck {
            Some(layer) => layer.forward(&pooled),
            None => Ok(pooled),
        }
    }

    /// The trainable tensors, named as in the safetensors file.
    pub fn trainable(&self) -> Vec<NamedVar> {
        let mut out = Vec::new();
        self.encoder.trainable_into("encoder.", &mut out);
        if let Some(layer) = &self.bottleneck {
            out.push(NamedVar::new(BOTTLENECK_WEIGHT.into(), &layer.weight));
            out.push(NamedVar::new(BOTTLENECK_BIAS.into(), &layer.bias));
        }
        self.decoder.trainable_into(&mut out);
        out
    }

    /// Every tensor of the model (batch-norm statistics included), in a fixed order.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        self.encoder.tensors_into("encoder.", &mut out)?;
        if let Some(layer) = &self.bottleneck {
            out.push((BOTTLENECK_WEIGHT.into(), layer.weight.as_tensor().clone()));
            out.push((BOTTLENECK_BIAS.into(), layer.bias.as_tensor().clone()));
        }
        self.decoder.tensors_into(&mut out)?;
        Ok(out)
    }

    /// Loads a model of architecture `arch` from a safetensors file; the image side comes
    /// from the shape of `decoder.fc.weight`, the bottleneck size from `bottleneck.weight`
    /// (no such tensor: the pooled output is the code).
    pub fn load(arch: Architecture, path: &Path) -> Result<Self> {
        let weights = WeightSource::open(path)?;
        let dim = arch.embedding_dim();
        let fc_out = weights.raw("decoder.fc.weight")?.dim(0)?;
        let start = (1..=fc_out)
            .take_while(|s| dim * s * s <= fc_out)
            .find(|s| dim * s * s == fc_out)
            .ok_or_else(|| {
                weights.mismatch(format!(
                    "tensor 'decoder.fc.weight' has {fc_out} rows, expected {dim} x s x s for the \
                     model config's embedding size {dim}"
                ))
            })?;

        let bottleneck = match weights.raw(BOTTLENECK_WEIGHT) {
            Ok(weight) => weight.dim(0)?,
            Err(_) => 0,
        };

        let mut model = Self::new(arch, 8 * start, bottleneck, 0)?;
        model.encoder.load_from("encoder.", &weights)?;
        if let Some(layer) = &model.bottleneck {
            layer
                .weight
                .set(&weights.get(BOTTLENECK_WEIGHT, layer.weight.dims())?)?;
            layer
                .bias
                .set(&weights.get(BOTTLENECK_BIAS, layer.bias.dims())?)?;
        }
        model.decoder.load_from(&weights)?;
        Ok(model)
    }

    /// The input channels recorded in a weights file (the first convolution's `in`).
    pub fn in_channels_of(path: &Path) -> Result<usize> {
        WeightSource::open(path)?.first_conv_in_channels("encoder.")
    }
}

/// Mean squared error over every element: the autoencoder's loss (PyTorch's
/// `F.mse_loss` with its default mean reduction).
pub fn mse(reconstruction: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((reconstruction - target)?.sqr()?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::HeadKind;

    fn arch(width: f64) -> Architecture {
        Architecture {
            encoder: crate::model::EncoderKind::SmallCnn,
            in_channels: 3,
            width,
            head: HeadKind::TwoLayer,
            projection_dim: 8,
        }
    }

    #[test]
    fn decoder_makes_32x32_images_with_the_peers_shapes() {
        let mut model = AutoencoderModel::new(arch(1.0), 32, 0, 0).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &Device::Cpu).unwrap();
        let (code, y) = model.forward_train(&x, Backend::Candle).unwrap();
        assert_eq!(code.dims(), &[2, 256]);
        assert_eq!(y.dims(), &[2, 3, 32, 32]);
        let eval = model.decoder.forward_eval(&code, Backend::Candle).unwrap();
        assert_eq!(eval.dims(), &[2, 3, 32, 32]);

        let shapes: std::collections::HashMap<String, Vec<usize>> = model
            .tensors()
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        // The peer's AutoEncoder(32).state_dict() shapes.
        let expected: [(&str, &[usize]); 9] = [
            ("encoder.features.0.0.weight", &[32, 3, 3, 3]),
            ("decoder.fc.weight", &[4096, 256]),
            ("decoder.fc.bias", &[4096]),
            ("decoder.fc_norm.running_var", &[256]),
            ("decoder.up.0.0.weight", &[256, 128, 4, 4]),
            ("decoder.up.1.0.weight", &[128, 64, 4, 4]),
            ("decoder.up.2.0.weight", &[64, 32, 4, 4]),
            ("decoder.up.3.weight", &[3, 32, 3, 3]),
            ("decoder.up.3.bias", &[3]),
        ];
        for (name, dims) in expected {
            assert_eq!(shapes.get(name).map(Vec::as_slice), Some(dims), "{name}");
        }
        // 4 encoder blocks x 6 + fc 2 + fc_norm 5 + 3 up blocks x 6 + output 2.
        assert_eq!(shapes.len(), 24 + 2 + 5 + 18 + 2);
        // Trainable: 4 x 3 + 2 + 2 + 3 x 3 + 2.
        assert_eq!(model.trainable().len(), 27);
    }

    #[test]
    fn transposed_convolution_fan_in_follows_pytorch() {
        // PyTorch computes a ConvTranspose2d weight [in, out, k, k]'s fan_in as out * k * k.
        let model = AutoencoderModel::new(arch(1.0), 8, 0, 1).unwrap();
        let values: Vec<f32> = model.decoder.up[0]
            .weight
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let bound = 1.0 / (128f32 * 16.0).sqrt();
        let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            largest <= bound && largest > 0.95 * bound,
            "{largest} vs {bound}"
        );
    }

    #[test]
    fn mse_matches_the_hand_computation() {
        // Differences 1, -2, 0.5, 0 -> squares 1, 4, 0.25, 0 -> mean 5.25 / 4 = 1.3125.
        let a = Tensor::new(&[[1f32, 0.], [2.5, 3.]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[0f32, 2.], [2., 3.]], &Device::Cpu).unwrap();
        let loss = mse(&a, &b).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - 1.3125).abs() < 1e-7, "{loss}");
    }

    #[test]
    fn fast_kernels_match_candles_ops_for_the_decoder() {
        let code = Tensor::randn(0f32, 1., (4, 64), &Device::Cpu).unwrap();
        let run = |backend: Backend| {
            let mut model = AutoencoderModel::new(arch(0.25), 16, 0, 2).unwrap();
            let y = model.decoder.forward_train(&code, backend).unwrap();
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
            let up_grad = flat(grads.get(model.decoder.up[1].weight.as_tensor()).unwrap());
            (flat(&y), up_grad)
        };
        let (candle, fast) = (run(Backend::Candle), run(Backend::Fast));
        for (a, b, what) in [
            (&candle.0, &fast.0, "output"),
            (&candle.1, &fast.1, "gradient"),
        ] {
            let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(worst <= 1e-4 * scale, "{what}: {worst} (scale {scale})");
        }
    }

    #[test]
    fn saved_model_loads_back_identically_and_refuses_other_widths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut model = AutoencoderModel::new(arch(0.25), 16, 0, 9).unwrap();
        let x = Tensor::randn(0f32, 1., (3, 3, 16, 16), &Device::Cpu).unwrap();
        model.forward_train(&x, Backend::Candle).unwrap();
        let tensors = model.tensors().unwrap();
        let bytes =
            safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
                .unwrap();
        std::fs::write(&path, bytes).unwrap();

        let loaded = AutoencoderModel::load(arch(0.25), &path).unwrap();
        assert_eq!(loaded.image_size(), 16);
        assert_eq!(AutoencoderModel::in_channels_of(&path).unwrap(), 3);
        for ((n1, t1), (n2, t2)) in tensors.iter().zip(loaded.tensors().unwrap()) {
            assert_eq!(n1, &n2);
            let a: Vec<f64> = t1
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let b: Vec<f64> = t2
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(a, b, "{n1}");
        }

        let err = AutoencoderModel::load(arch(0.5), &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder.fc.weight"), "{err}");
    }

    #[test]
    fn a_bottleneck_layer_maps_the_pooled_output_to_the_code_the_decoder_reads() {
        let mut model = AutoencoderModel::new(arch(0.25), 16, 5, 4).unwrap();
        assert_eq!(model.code_dim(), 5);
        let x = Tensor::randn(0f32, 1., (3, 3, 16, 16), &Device::Cpu).unwrap();
        let (code, y) = model.forward_train(&x, Backend::Candle).unwrap();
        assert_eq!(code.dims(), &[3, 5]);
        assert_eq!(y.dims(), &[3, 3, 16, 16]);

        // Eval-mode code = pooled encoder output times W^T plus b, by hand.
        let pooled = model.encoder.forward_eval(&x, Backend::Candle).unwrap();
        let (weight, bias) = model.bottleneck_layer().unwrap();
        assert_eq!((weight.dims(), bias.dims()), (&[5, 64][..], &[5][..]));
        let by_hand = pooled
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let code = model.encode_eval(&x, Backend::Candle).unwrap();
        let diff = (code - by_hand).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);

        let shapes: std::collections::HashMap<String, Vec<usize>> = model
            .tensors()
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        assert_eq!(shapes["bottleneck.weight"], vec![5, 64]);
        assert_eq!(shapes["bottleneck.bias"], vec![5]);
        assert_eq!(shapes["decoder.fc.weight"], vec![64 * 2 * 2, 5]);
        let names: Vec<String> = model.trainable().into_iter().map(|v| v.name).collect();
        assert!(names.contains(&"bottleneck.weight".to_string()));
        assert_eq!(names.len(), 27 + 2);

        // Without the layer the code is the pooled output and nothing is named bottleneck.
        let plain = AutoencoderModel::new(arch(0.25), 16, 0, 4).unwrap();
        assert!(plain.bottleneck_layer().is_none());
        assert_eq!(plain.code_dim(), 64);
        let plain_names = plain.tensors().unwrap();
        assert!(
            plain_names
                .iter()
                .all(|(n, _)| !n.starts_with("bottleneck"))
        );
    }

    #[test]
    fn a_saved_bottleneck_loads_back_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let model = AutoencoderModel::new(arch(0.25), 16, 7, 3).unwrap();
        let tensors = model.tensors().unwrap();
        let bytes =
            safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
                .unwrap();
        std::fs::write(&path, bytes).unwrap();

        let loaded = AutoencoderModel::load(arch(0.25), &path).unwrap();
        assert_eq!(loaded.code_dim(), 7);
        let x = Tensor::randn(0f32, 1., (2, 3, 16, 16), &Device::Cpu).unwrap();
        let a = model.encode_eval(&x, Backend::Candle).unwrap();
        let b = loaded.encode_eval(&x, Backend::Candle).unwrap();
        let diff = (a.clone() - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let images = loaded.decoder.forward_eval(&a, Backend::Candle).unwrap();
        assert_eq!(images.dims(), &[2, 3, 16, 16]);
    }

    #[test]
    fn a_resnet18_autoencoder_mirrors_its_stage_channels() {
        let resnet = Architecture {
            encoder: crate::model::EncoderKind::ResNet18,
            ..arch(0.125)
        };
        let mut model = AutoencoderModel::new(resnet, 16, 0, 1).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 16, 16), &Device::Cpu).unwrap();
        let (code, y) = model.forward_train(&x, Backend::Fast).unwrap();
        assert_eq!(code.dims(), &[2, 64]);
        assert_eq!(y.dims(), &[2, 3, 16, 16]);

        let shapes: std::collections::HashMap<String, Vec<usize>> = model
            .tensors()
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.dims().to_vec()))
            .collect();
        assert_eq!(shapes["encoder.conv1.weight"], vec![8, 3, 3, 3]);
        assert_eq!(shapes["decoder.up.0.0.weight"], vec![64, 32, 4, 4]);
        assert_eq!(shapes["decoder.up.3.weight"], vec![3, 8, 3, 3]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let tensors = model.tensors().unwrap();
        let bytes =
            safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None)
                .unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(AutoencoderModel::in_channels_of(&path).unwrap(), 3);
        let loaded = AutoencoderModel::load(resnet, &path).unwrap();
        let a = model.encode_eval(&x, Backend::Fast).unwrap();
        let b = loaded.encode_eval(&x, Backend::Fast).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    #[test]
    fn image_sides_that_are_not_multiples_of_8_are_refused() {
        let err = AutoencoderModel::new(arch(0.25), 12, 0, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("multiple of 8") && err.contains("12"), "{err}");
    }
}
