//! Which output of a trained model is the embedding that `latent-export` writes.
//!
//! SimCLR's encoder output is the usual choice; SimCLR v2 found that a middle layer of a
//! deeper projection head can serve better, so any head layer can be chosen as well. For
//! the autoencoder the embedding is its bottleneck. An [`Embedder`] holds just the layers
//! needed for the chosen output and runs them in eval mode.

use std::fmt;

use candle_core::Tensor;

use crate::error::{Result, TrainError};
use crate::model::{Backend, Encoder, HiddenLayer, Model};

/// A model output that can be exported, as written on the command line.
///
/// * `encoder`: the encoder's pooled output (what the head reads);
/// * `head:K`: the output of layer K of the projection head, K from 1 to its depth (the
///   hidden layers' outputs after batch norm and ReLU; the last is the projection itself);
/// * `bottleneck`: the autoencoder's code, which the decoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Encoder,
    Head(usize),
    Bottleneck,
}

impl Representation {
    /// Parses `encoder`, `head:K` or `bottleneck`.
    pub fn parse(value: &str) -> Result<Self> {
        let invalid = || TrainError::Representation {
            asked: value.into(),
            reason: "expected encoder, head:K with K >= 1, or bottleneck".into(),
        };
        match value {
            "encoder" => Ok(Self::Encoder),
            "bottleneck" => Ok(Self::Bottleneck),
            _ => {
                let layer = value.strip_prefix("head:").ok_or_else(invalid)?;
                // Digits only: no sign, no leading zero, no 0 (the encoder has its own name).
                let canonical = !layer.is_empty()
                    && layer.bytes().all(|b| b.is_ascii_digit())
                    && !layer.starts_with('0');
                match layer.parse::<usize>() {
                    Ok(k) if canonical => Ok(Self::Head(k)),
                    _ => Err(invalid()),
                }
            }
        }
    }

    /// The representation a model of this family exports unless told otherwise.
    pub fn default_for(model: &Model) -> Self {
        match model {
            Model::Simclr(_) => Self::Encoder,
            Model::Autoencoder(_) => Self::Bottleneck,
        }
    }
}

impl fmt::Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encoder => write!(f, "encoder"),
            Self::Head(k) => write!(f, "head:{k}"),
            Self::Bottleneck => write!(f, "bottleneck"),
        }
    }
}

/// The layers that produce one representation, run in eval mode.
#[derive(Debug)]
pub struct Embedder {
    pub encoder: Encoder,
    /// Hidden head layers applied after the encoder.
    hidden: Vec<HiddenLayer>,
    /// The head's output linear layer (weight `[P, D]`, bias `[P]`), when the projection
    /// itself is exported.
    projection: Option<(Tensor, Tensor)>,
    /// The autoencoder's bottleneck layer (weight `[B, D]`, bias `[B]`), when it has one.
    bottleneck: Option<(Tensor, Tensor)>,
    pub representation: Representation,
}

impl Embedder {
    /// The encoder alone: its pooled output.
    pub fn encoder_only(encoder: Encoder) -> Self {
        Self {
            encoder,
            hidden: Vec::new(),
            projection: None,
            bottleneck: None,
            representation: Representation::Encoder,
        }
    }

    /// Takes from `model` what `representation` needs; an error names the choices when
    /// the model has no such output.
    pub fn new(model: Model, representation: Representation) -> Result<Self> {
        let refuse = |reason: String| TrainError::Representation {
            asked: representation.to_string(),
            reason,
        };
        match (model, representation) {
            (Model::Simclr(m), Representation::Encoder) => Ok(Self::encoder_only(m.encoder)),
            (Model::Simclr(m), Representation::Head(k)) => {
                let depth = m.head.hidden.len() + 1;
                if k > depth {
                    return Err(refuse(format!(
                        "head:{k} asked for, but the projection head has {depth} layers (head:1 to head:{depth})"
                    )));
                }
                let take_projection = k == depth;
                let mut hidden = m.head.hidden;
                hidden.truncate(k.min(depth - 1));
                let projection = take_projection.then(|| {
                    (
                        m.head.out_weight.as_tensor().clone(),
                        m.head.out_bias.as_tensor().clone(),
                    )
                });
                Ok(Self {
                    encoder: m.encoder,
                    hidden,
                    projection,
                    bottleneck: None,
                    representation,
                })
            }
            (Model::Simclr(_), Representation::Bottleneck) => Err(refuse(
                "a SimCLR model has no bottleneck (choose encoder or head:K)".into(),
            )),
            (Model::Autoencoder(m), Representation::Encoder) => Ok(Self::encoder_only(m.encoder)),
            (Model::Autoencoder(m), Representation::Bottleneck) => {
                let bottleneck = m.bottleneck_layer();
                Ok(Self {
                    encoder: m.encoder,
                    hidden: Vec::new(),
                    projection: None,
                    bottleneck,
                    representation,
                })
            }
            (Model::Autoencoder(_), Representation::Head(_)) => Err(refuse(
                "an autoencoder has no projection head (choose bottleneck or encoder)".into(),
            )),
        }
    }

    /// Embeddings `[N, dim]` of normalised images `[N, C, H, W]`, in eval mode.
    pub fn forward_eval(&self, x: &Tensor, backend: Backend) -> Result<Tensor> {
        let mut h = self.encoder.forward_eval(x, backend)?;
        for layer in &self.hidden {
            h = h.matmul(&layer.weight.as_tensor().t()?)?;
            h = layer.norm.forward_eval(&h, true)?;
        }
        for (weight, bias) in self.projection.iter().chain(self.bottleneck.iter()) {
            h = h.matmul(&weight.t()?)?.broadcast_add(bias)?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::{Architecture, HeadKind, SimclrModel};

    fn arch(head: HeadKind) -> Architecture {
        Architecture {
            encoder: crate::model::EncoderKind::SmallCnn,
            in_channels: 3,
            width: 0.25,
            head,
            projection_dim: 16,
        }
    }

    #[test]
    fn parses_and_prints_every_form() {
        for text in ["encoder", "head:1", "head:3", "bottleneck"] {
            assert_eq!(Representation::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "head", "head:", "head:x", "head:0", "head:+1", "head:01", "pooled", "",
        ] {
            let err = Representation::parse(bad).unwrap_err().to_string();
            assert!(err.contains("representation"), "{bad}: {err}");
        }
    }

    #[test]
    fn head_layers_give_the_dimensions_of_a_three_layer_head() {
        let x = Tensor::randn(0f32, 1.0, (4, 3, 16, 16), &Device::Cpu).unwrap();
        let dim = arch(HeadKind::ThreeLayer).embedding_dim();
        for (k, expected) in [(0, dim), (1, dim), (2, dim), (3, 16)] {
            let model = SimclrModel::new(arch(HeadKind::ThreeLayer), 7).unwrap();
            let text = if k == 0 {
                "encoder".to_string()
            } else {
                format!("head:{k}")
            };
            let repr = Representation::parse(&text).unwrap();
            let embedder = Embedder::new(Model::Simclr(model), repr).unwrap();
            let out = embedder.forward_eval(&x, Backend::Candle).unwrap();
            assert_eq!(out.dims(), &[4, expected], "head:{k}");
            assert_eq!(out.dtype(), DType::F32);
        }
        let model = SimclrModel::new(arch(HeadKind::ThreeLayer), 7).unwrap();
        let err = Embedder::new(Model::Simclr(model), Representation::Head(4)).unwrap_err();
        assert!(err.to_string().contains("head:1 to head:3"), "{err}");
    }

    #[test]
    fn the_last_head_layer_is_the_projection_of_the_encoder_output() {
        let x = Tensor::randn(0f32, 1.0, (3, 3, 16, 16), &Device::Cpu).unwrap();
        let model = SimclrModel::new(arch(HeadKind::TwoLayer), 3).unwrap();

        // By hand: encoder, Linear, BN (eval) + ReLU, Linear with bias.
        let h = model.encoder.forward_eval(&x, Backend::Candle).unwrap();
        let layer = &model.head.hidden[0];
        let h = h.matmul(&layer.weight.as_tensor().t().unwrap()).unwrap();
        let h = layer.norm.forward_eval(&h, true).unwrap();
        let expected = h
            .matmul(&model.head.out_weight.as_tensor().t().unwrap())
            .unwrap()
            .broadcast_add(model.head.out_bias.as_tensor())
            .unwrap();

        let embedder = Embedder::new(Model::Simclr(model), Representation::Head(2)).unwrap();
        let got = embedder.forward_eval(&x, Backend::Candle).unwrap();
        let diff = (got - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff == 0.0, "max difference {diff}");
    }
}
