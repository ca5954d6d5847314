//! A trained autoencoder's decoder applied to embeddings: how the analyzer turns points of
//! the latent space (for example a walk between two images' bottlenecks) into pictures.
//!
//! The decoder runs in eval mode (batch-norm running statistics), so an image does not
//! depend on the other embeddings of the batch. Its output is on the normalised scale the
//! model was trained on; [`DecodedImages::to_unit_range`] undoes the normalisation.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::autoencoder::AutoencoderModel;
use crate::error::{Result, TrainError};
use crate::model::{Backend, Model};
use crate::run::load_model_dir;

/// Images made by the decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImages {
    pub count: usize,
    pub channels: usize,
    /// Side of the square images.
    pub size: usize,
    /// `count * channels * size * size` values, CHW per image, on the normalised scale.
    pub values: Vec<f32>,
    /// Per-channel mean the training views were normalised with (0 when they were not).
    pub mean: Vec<f32>,
    /// Per-channel std the training views were normalised with (1 when they were not).
    pub std: Vec<f32>,
}

impl DecodedImages {
    /// The values back on the 0..1 pixel scale (`value * std + mean`), clamped to 0..1.
    pub fn to_unit_range(&self) -> Vec<f32> {
        let plane = self.size * self.size;
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / plane) % self.channels;
                (v * self.std[c] + self.mean[c]).clamp(0.0, 1.0)
            })
            .collect()
    }
}

/// A trained autoencoder, loaded once to decode many batches.
#[derive(Debug)]
pub struct AutoencoderDecoder {
    model: AutoencoderModel,
    backend: Backend,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl AutoencoderDecoder {
    /// Loads the autoencoder in a model folder written by `latent-train`; a SimCLR model
    /// is refused (it has no decoder).
    pub fn load(model_dir: &Path) -> Result<Self> {
        let trained = load_model_dir(model_dir)?;
        let Model::Autoencoder(model) = trained.model else {
            return Err(TrainError::Model {
                path: trained.weights,
                what: format!(
                    "is a {} model; only an autoencoder has a decoder",
                    trained.config.train.objective
                ),
            });
        };
        let channels = model.arch.in_channels;
        let augment = &trained.config.augment;
        let (mean, std) = if augment.mean.len() == channels && augment.std.len() == channels {
            (augment.mean.clone(), augment.std.clone())
        } else {
            (vec![0.0; channels], vec![1.0; channels])
        };
        Ok(Self {
            backend: Backend::from_fast_kernels(trained.config.train.fast_kernels),
            model,
            mean,
            std,
        })
    }

    /// Size of the embeddings the decoder takes: the bottleneck layer's B, or the
    /// encoder's D when the model has none.
    pub fn dim(&self) -> usize {
        self.model.code_dim()
    }

    /// Decodes `embeddings` (row-major, `dim` values per image) in eval mode.
    pub fn decode(&self, embeddings: &[f32], dim: usize) -> Result<DecodedImages> {
        if dim != self.dim() || embeddings.is_empty() || !embeddings.len().is_multiple_of(dim) {
            return Err(TrainError::Input {
                input: "embeddings to decode".into(),
                expected: format!("a non-empty whole number of {}-d rows", self.dim()),
                found: format!("{} values given as {dim}-d rows", embeddings.len()),
            });
        }
        let count = embeddings.len() / dim;
        let code = Tensor::from_slice(embeddings, (count, dim), &Device::Cpu)?;
        let images = self.model.decoder.forward_eval(&code, self.backend)?;
        Ok(DecodedImages {
            count,
            channels: self.model.arch.in_channels,
            size: self.model.image_size(),
            values: images.flatten_all()?.to_vec1()?,
            mean: self.mean.clone(),
            std: self.std.clone(),
        })
    }
}

/// Decodes `embeddings` (`dim` values per image) with the autoencoder in `model_dir`.
pub fn decode(model_dir: &Path, embeddings: &[f32], dim: usize) -> Result<DecodedImages> {
    AutoencoderDecoder::load(model_dir)?.decode(embeddings, dim)
}
