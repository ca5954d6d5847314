//! The pipeline config: one TOML file under `pipelines/` holds every knob of a run.
//!
//! Each stage reads its own section (`[ingest]`, `[augment]`, `[train]`, `[export]`,
//! `[analyze]`) plus `[run]` (name and seed). Unknown keys are refused with the file, the
//! section and the key named, because a misspelt knob silently ignored is a run that
//! does not do what its author thinks. Every section has defaults, so a config only
//! needs the keys it changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A whole pipeline config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub run: RunConfig,
    pub ingest: IngestConfig,
    pub augment: AugmentConfig,
    pub train: TrainConfig,
    pub export: ExportConfig,
    pub analyze: AnalyzeConfig,
}

/// `[run]`: what names the run and seeds every random choice in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Name of the run; the Makefile writes outputs to `runs/<name>/`.
    pub name: String,
    /// Seed of every random choice (split, views, init, shuffling, probes).
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            seed: 0,
        }
    }
}

/// `[ingest]`: where images come from and how the splits are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The image folder (or other source) to read.
    pub source: PathBuf,
    /// Fraction of each class held out as the test split when the source has no
    /// `train/` and `test/` folders.
    pub test_fraction: f64,
    /// Keep only the first N images per class and split (0 keeps all): a quick slice
    /// for smoke runs.
    pub limit_per_class: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            source: PathBuf::from("data/cifar10-small"),
            test_fraction: 0.2,
            limit_per_class: 0,
        }
    }
}

/// `[augment]`: how the two views of an image are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Side of the square output views, in pixels.
    pub size: u32,
    /// Passes over the training images.
    pub epochs: u32,
    /// Worker threads making views (0: the machine's cores minus one, at least one).
    pub workers: usize,
    /// Images per Arrow record batch in the stream.
    pub chunk: usize,
    /// Random resized crop: range of the crop's area as a fraction of the image.
    pub crop_scale: [f64; 2],
    /// Random resized crop: range of the crop's aspect ratio (sampled log-uniformly).
    pub crop_ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Colour distortion strength s: brightness, contrast and saturation jitter 0.8 s,
    /// hue jitter 0.2 s.
    pub jitter_strength: f64,
    /// Probability that colour jitter is applied to a view.
    pub jitter_p: f64,
    /// Probability that a view is turned to grayscale.
    pub grayscale_p: f64,
    /// Probability of a Gaussian blur (applied only when `size >= blur_min_size`).
    pub blur_p: f64,
    /// Range of the blur's sigma in pixels, drawn uniformly.
    pub blur_sigma: [f64; 2],
    /// Views smaller than this side get no blur (SimCLR blurs at ImageNet sizes only).
    pub blur_min_size: u32,
    /// Probability of solarizing a view (values at or above `solarize_threshold` are
    /// inverted); 0 in SimCLR v1.
    pub solarize_p: f64,
    /// Solarize threshold, on the 0..1 scale.
    pub solarize_threshold: f64,
    /// Per-channel mean subtracted after scaling to 0..1 (empty: none).
    pub mean: Vec<f32>,
    /// Per-channel std divided after subtracting the mean (empty: none).
    pub std: Vec<f32>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            size: 32,
            epochs: 1,
            workers: 0,
            chunk: 256,
            crop_scale: [0.08, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip_p: 0.5,
            jitter_strength: 0.5,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            blur_p: 0.5,
            blur_sigma: [0.1, 2.0],
            blur_min_size: 64,
            solarize_p: 0.0,
            solarize_threshold: 0.5,
            mean: Vec::new(),
            std: Vec::new(),
        }
    }
}

/// `[train]`: the model and how it is optimised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Model family: "simclr" or "autoencoder".
    pub objective: String,
    /// Encoder architecture: "small-cnn" (the peer's four conv blocks) or "resnet18" (CIFAR-style
    /// ResNet-18 with torchvision's tensor names).
    pub encoder: String,
    /// Width multiplier of the encoder's channels.
    pub width: f64,
    /// Projection head: "2layer" (SimCLR v1) or "3layer" (v2).
    pub head: String,
    /// Output size of the projection head.
    pub projection_dim: usize,
    /// Autoencoder only: size B of the code the decoder reads. 0: the encoder's pooled
    /// output is the code; B > 0: a Linear layer (with bias) maps the pooled output to B
    /// values, and the decoder starts from those.
    pub bottleneck: usize,
    /// Images per batch (each contributes two views).
    pub batch_size: usize,
    /// NT-Xent temperature.
    pub temperature: f64,
    /// Optimiser: "adamw", "sgd" (SGD with momentum 0.9, PyTorch's update) or "lars" (as
    /// in SimCLR: momentum 0.9, trust coefficient 0.001; biases and batch-norm parameters
    /// get neither weight decay nor the trust ratio).
    pub optimizer: String,
    /// Peak learning rate, before `lr_scaling`.
    pub lr: f64,
    /// How the peak learning rate follows the batch size: "none" (`lr` as given),
    /// "linear" (`lr * batch_size / 256`) or "sqrt" (`lr * sqrt(batch_size)`).
    pub lr_scaling: String,
    /// Weight decay of conv and linear weights (decoupled for AdamW, added to the
    /// gradient for SGD and LARS).
    pub weight_decay: f64,
    /// Fraction of the steps used for linear warm-up before cosine decay (0: constant
    /// learning rate after warm-up, no decay when `schedule` is "constant").
    pub warmup: f64,
    /// "constant" or "cosine".
    pub schedule: String,
    /// Stop after this many minutes of training even if the stream has more (0: no cap).
    pub max_minutes: f64,
    /// Write a checkpoint every N steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Use the project's fast CPU kernels for convolution and batch norm (false: candle's
    /// own ops, for comparison).
    pub fast_kernels: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            objective: "simclr".into(),
            encoder: "small-cnn".into(),
            width: 1.0,
            head: "2layer".into(),
            projection_dim: 128,
            bottleneck: 0,
            batch_size: 256,
            temperature: 0.5,
            optimizer: "adamw".into(),
            lr: 1e-3,
            lr_scaling: "none".into(),
            weight_decay: 1e-6,
            warmup: 0.0,
            schedule: "constant".into(),
            max_minutes: 0.0,
            checkpoint_every: 0,
            fast_kernels: true,
        }
    }
}

/// `[export]`: how embeddings are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Images encoded per batch.
    pub batch_size: usize,
    /// Rows per Parquet row group.
    pub row_group: usize,
    /// Which model output is the embedding: "auto" (the encoder's pooled output for
    /// SimCLR, the bottleneck for an autoencoder), "encoder", "head:K" (layer K of the
    /// projection head) or "bottleneck".
    pub representation: String,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            row_group: 8192,
            representation: "auto".into(),
        }
    }
}

/// `[analyze]`: which probes run, with which fixed settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzeConfig {
    /// Fractions of the training labels the linear probe may use.
    pub label_fractions: Vec<f64>,
    /// Seeds of the label subsets for fractions below 1.
    pub seeds: Vec<u64>,
    /// Neighbours of the majority-vote kNN classifier.
    pub knn_k: usize,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        Self {
            label_fractions: vec![0.01, 0.1, 1.0],
            seeds: vec![0, 1, 2],
            knn_k: 20,
        }
    }
}

impl PipelineConfig {
    /// Reads and validates a pipeline config; unknown keys are errors naming the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path, "reading the config", e))?;
        Self::parse(path, &text)
    }

    /// Parses config text; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The config as TOML, with every default filled in: what is written beside outputs.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// Writes `pipeline.toml` and one slice per stage into `dir`, each holding `[run]` and the
/// stage's own section. Files whose content is unchanged are left untouched (their
/// modification time is what Make compares). Returns the paths that were written.
pub fn write_slices(config: &PipelineConfig, dir: &Path) -> Result<Vec<PathBuf>> {
    #[derive(Serialize)]
    struct Slice<'a, T: Serialize> {
        run: &'a RunConfig,
        #[serde(flatten)]
        section: std::collections::BTreeMap<&'static str, &'a T>,
    }

    fn render<T: Serialize>(run: &RunConfig, name: &'static str, section: &T) -> String {
        let slice = Slice {
            run,
            section: std::collections::BTreeMap::from([(name, section)]),
        };
        toml::to_string_pretty(&slice).expect("config serialises")
    }

    let files = [
        ("pipeline.toml", config.to_toml()),
        ("ingest.toml", render(&config.run, "ingest", &config.ingest)),
        (
            "augment.toml",
            render(&config.run, "augment", &config.augment),
        ),
        ("train.toml", render(&config.run, "train", &config.train)),
        ("export.toml", render(&config.run, "export", &config.export)),
        (
            "analyze.toml",
            render(&config.run, "analyze", &config.analyze),
        ),
    ];

    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        crate::atomic::write_bytes(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_refused_with_file_and_key_named() {
        let err = PipelineConfig::parse(Path::new("pipelines/x.toml"), "[train]\nbatchsize = 3\n")
            .unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("pipelines/x.toml"), "{chain}");
        assert!(chain.contains("batchsize"), "{chain}");
    }

    #[test]
    fn missing_keys_take_defaults_and_round_trip() {
        let cfg = PipelineConfig::parse(Path::new("x"), "[run]\nseed = 5\n").unwrap();
        assert_eq!(cfg.run.seed, 5);
        assert_eq!(cfg.train, TrainConfig::default());
        let again = PipelineConfig::parse(Path::new("x"), &cfg.to_toml()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn slices_are_rewritten_only_when_their_section_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = PipelineConfig::default();
        let first = write_slices(&cfg, dir.path()).unwrap();
        assert_eq!(first.len(), 6);

        cfg.analyze.knn_k = 7;
        let second = write_slices(&cfg, dir.path()).unwrap();
        let names: Vec<_> = second
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["pipeline.toml", "analyze.toml"]);

        let slice = std::fs::read_to_string(dir.path().join("analyze.toml")).unwrap();
        assert!(
            slice.contains("knn_k = 7") && slice.contains("[run]"),
            "{slice}"
        );
        assert!(!slice.contains("[train]"), "{slice}");
    }
}
