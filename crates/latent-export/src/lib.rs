//! `export`: encodes every image of an image table once and writes the latent table.
//!
//! The encoder is the one `latent-train` trained (read from its model folder), or an
//! untrained one of the same architecture whose batch-norm statistics are calibrated on
//! the train split: the random-init baseline that a learned latent space has to beat.
//! Images go through the encoder in eval mode without augmentation, scaled to 0..1 and
//! normalised with the mean and std the model was trained with. The embedding is the
//! encoder's pooled output: not the projection head's (SimCLR), and for an autoencoder
//! its bottleneck (the decoder is not run). Rows are written in row groups as
//! they are encoded, to a temporary file renamed into place at the end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field};
use candle_core::{Device, Tensor};
use latent_core::atomic::AtomicFile;
use latent_core::config::PipelineConfig;
use latent_core::image_table::{self, ImageRecord, ImageTable};
use latent_core::schema::{self, latent};
use latent_train::model::{Architecture, Backend, Encoder, HeadKind, Objective, SimclrModel};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn};

/// Metadata keys of the latent table that `export` adds.
pub mod keys {
    /// The pipeline config of the model, as TOML.
    pub const MODEL_CONFIG: &str = "latent.model.config";
    /// sha256 of the weights (the file's bytes, or the serialised random-init weights).
    pub const WEIGHTS_SHA256: &str = "latent.model.weights_sha256";
    /// Which output of the model the embedding is: "encoder" (SimCLR, random init) or
    /// "autoencoder-bottleneck".
    pub const REPRESENTATION: &str = "latent.representation";
    /// "trained" or "random-init".
    pub const MODEL_KIND: &str = "latent.model.kind";
    /// The per-channel mean and std the images were normalised with, as JSON.
    pub const NORMALISATION: &str = "latent.normalisation";
}

/// Errors of the export stage.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Core(#[from] latent_core::Error),

    #[error(transparent)]
    Model(#[from] latent_train::TrainError),

    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),

    #[error("{path}: expected {expected}, found {found}")]
    Input {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("{path}: cannot write the latent table")]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result with [`ExportError`].
pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// Where the encoder comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A model folder written by `latent-train`.
    Trained(PathBuf),
    /// An untrained encoder (seeded PyTorch-default init) with batch-norm statistics
    /// calibrated on the train split; `config` gives the width and the normalisation.
    RandomInit {
        seed: u64,
        config: Box<PipelineConfig>,
    },
}

/// What to export, from where, to where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub images: PathBuf,
    pub out: PathBuf,
    pub source: ModelSource,
    /// Images per encoder batch (None: `[export] batch_size` of the model's config).
    pub batch_size: Option<usize>,
    /// Rows per Parquet row group (None: `[export] row_group`).
    pub row_group: Option<usize>,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub rows: usize,
    pub dim: usize,
    pub seconds: f64,
}

/// The encoder with everything needed to feed it.
pub struct PreparedEncoder {
    pub encoder: Encoder,
    pub in_channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub config: PipelineConfig,
    pub weights_sha256: String,
    pub kind: &'static str,
    /// What the embedding is, for the table's metadata ([`keys::REPRESENTATION`]).
    pub representation: &'static str,
}

/// Encodes every image of `options.images` and writes the latent table.
pub fn export(options: &ExportOptions) -> Result<ExportSummary> {
    let started = Instant::now();
    refuse_non_parquet(&options.images)?;
    let table = image_table::read_image_table(&options.images)?;
    let (height, width, channels) = table.uniform_shape()?;
    info!(
        images = table.records.len(),
        shape = format!("{height}x{width}x{channels}"),
        table = %options.images.display(),
        "read the image table"
    );

    let prepared = prepare_encoder(&options.source, &table, options.batch_size)?;
    if channels as usize != prepared.in_channels && channels != 1 {
        return Err(ExportError::Input {
            path: options.images.clone(),
            expected: format!(
                "images with {} channels (or grey ones, which are repeated), as the model was trained on",
                prepared.in_channels
            ),
            found: format!("{channels} channels"),
        });
    }
    if prepared.config.augment.size != height || height != width {
        warn!(
            "images are {height}x{width}, the model was trained on {0}x{0} views; encoding at the images' size",
            prepared.config.augment.size
        );
    }

    let batch_size = options
        .batch_size
        .unwrap_or(prepared.config.export.batch_size)
        .max(1);
    let row_group = options
        .row_group
        .unwrap_or(prepared.config.export.row_group)
        .max(1);
    let dim = write_latent_table(&options.out, &table, &prepared, batch_size, row_group)?;

    let seconds = started.elapsed().as_secs_f64();
    info!(
        rows = table.records.len(),
        dim,
        seconds = format!("{seconds:.1}"),
        out = %options.out.display(),
        "wrote the latent table"
    );
    Ok(ExportSummary {
        rows: table.records.len(),
        dim,
        seconds,
    })
}

/// Refuses inputs that are Arrow IPC data (a views stream, say) before Parquet does so
/// with a less helpful message.
fn refuse_non_parquet(path: &Path) -> Result<()> {
    for file in image_table::table_files(path)? {
        let mut head = [0u8; 6];
        let read = std::fs::File::open(&file)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .map_err(|e| latent_core::Error::io(&file, "opening the image table", e))?;
        let found = if head[..read].starts_with(&[0xFF, 0xFF, 0xFF, 0xFF]) {
            Some("an Arrow IPC stream (a views stream from latent-augment?)")
        } else if head[..read].starts_with(b"ARROW1") {
            Some("an Arrow IPC file")
        } else {
            None
        };
        if let Some(found) = found {
            return Err(ExportError::Input {
                path: file,
                expected: "an image table (Parquet) written by latent-ingest".into(),
                found: found.into(),
            });
        }
    }
    Ok(())
}

/// Loads the trained encoder, or builds and calibrates a random one.
pub fn prepare_encoder(
    source: &ModelSource,
    table: &ImageTable,
    batch_size: Option<usize>,
) -> Result<PreparedEncoder> {
    match source {
        ModelSource::Trained(dir) => {
            let trained = latent_train::load_model_dir(dir)?;
            let bytes = std::fs::read(&trained.weights).map_err(|e| {
                latent_core::Error::io(&trained.weights, "reading the model weights", e)
            })?;
            let in_channels = trained.model.arch().in_channels;
            let (mean, std) = views_normalisation(&trained.config, in_channels);
            let representation = match trained.model.objective() {
                Objective::Simclr => "encoder",
                Objective::Autoencoder => "autoencoder-bottleneck",
            };
            info!(model = %dir.display(), representation, "encoding with the trained encoder");
            Ok(PreparedEncoder {
                in_channels,
                encoder: trained.model.into_encoder(),
                mean,
                std,
                config: trained.config,
                weights_sha256: hex_sha256(&bytes),
                kind: "trained",
                representation,
            })
        }
        ModelSource::RandomInit { seed, config } => {
            let arch = Architecture {
                in_channels: 3,
                width: config.train.width,
                head: HeadKind::parse(&config.train.head)?,
                projection_dim: config.train.projection_dim,
            };
            let mut model = SimclrModel::new(arch, *seed)?;
            let (mean, std) = normalisation(config, table, arch.in_channels);
            let batch = batch_size.unwrap_or(config.export.batch_size).max(2);
            let backend = Backend::from_fast_kernels(config.train.fast_kernels);
            calibrate_batch_norm(
                &mut model.encoder,
                table,
                arch.in_channels,
                &mean,
                &std,
                batch,
                backend,
            )?;
            let mut config = (**config).clone();
            config.run.seed = *seed;
            info!(
                seed,
                "encoding with a random-init encoder (batch norm calibrated on the train split)"
            );
            Ok(PreparedEncoder {
                weights_sha256: hex_sha256(&model.to_safetensors()?),
                encoder: model.encoder,
                in_channels: arch.in_channels,
                mean,
                std,
                config,
                kind: "random-init",
                representation: "encoder",
            })
        }
    }
}

/// What the trained model's views were normalised with: the `[augment]` mean and std it
/// recorded, or none (mean 0, std 1) when it recorded none, since augment then only scales
/// to 0..1. Using anything else would feed the encoder inputs it never saw.
fn views_normalisation(config: &PipelineConfig, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let (mean, std) = (&config.augment.mean, &config.augment.std);
    if !mean.is_empty() && !std.is_empty() {
        return (mean.clone(), std.clone());
    }
    (vec![0.0; channels], vec![1.0; channels])
}

/// The config's `[augment]` mean and std, or (when empty) the per-channel mean and std
/// of the train split on the 0..1 scale, as the peer computes them.
fn normalisation(
    config: &PipelineConfig,
    table: &ImageTable,
    channels: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mean, std) = (&config.augment.mean, &config.augment.std);
    if !mean.is_empty() && !std.is_empty() {
        return (mean.clone(), std.clone());
    }
    train_split_stats(table, channels)
}

/// Per-channel mean and unbiased std of the train split, on the 0..1 scale.
pub fn train_split_stats(table: &ImageTable, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let mut sum = vec![0f64; channels];
    let mut sum_sq = vec![0f64; channels];
    let mut count = 0u64;
    for record in train_records(table) {
        let pixels = record.height as usize * record.width as usize;
        for p in 0..pixels {
            for c in 0..channels {
                let v = pixel(record, p, c) as f64 / 255.0;
                sum[c] += v;
                sum_sq[c] += v * v;
            }
        }
        count += pixels as u64;
    }
    if count < 2 {
        return (vec![0.0; channels], vec![1.0; channels]);
    }
    let n = count as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sum
        .iter()
        .zip(&sum_sq)
        .map(|(s, q)| (((q - s * s / n) / (n - 1.0)).max(0.0).sqrt() as f32).max(1e-12))
        .collect();
    (mean, std)
}

fn train_records(table: &ImageTable) -> impl Iterator<Item = &ImageRecord> {
    table
        .records
        .iter()
        .filter(|r| r.split == schema::split::TRAIN)
}

/// The value of channel `c` at pixel `p`; grey images repeat their one channel.
fn pixel(record: &ImageRecord, p: usize, c: usize) -> u8 {
    let channels = record.channels as usize;
    record.pixels[p * channels + c.min(channels - 1)]
}

/// Images as a normalised `[N, C, H, W]` tensor: 0..1, minus mean, over std.
pub fn normalised_batch(
    records: &[&ImageRecord],
    channels: usize,
    mean: &[f32],
    std: &[f32],
) -> Result<Tensor> {
    let first = records.first().expect("a batch holds at least one image");
    let (h, w) = (first.height as usize, first.width as usize);
    let mut values = Vec::with_capacity(records.len() * channels * h * w);
    for record in records {
        for c in 0..channels {
            let m = mean.get(c).copied().unwrap_or(0.0);
            let s = std.get(c).copied().unwrap_or(1.0);
            for p in 0..h * w {
                values.push((pixel(record, p, c) as f32 / 255.0 - m) / s);
            }
        }
    }
    Ok(Tensor::from_vec(
        values,
        (records.len(), channels, h, w),
        &Device::Cpu,
    )?)
}

/// One training-mode pass over the train split with cumulative batch-norm averages, as
/// the peer's `calibrate_batch_norm` does (`momentum=None`).
fn calibrate_batch_norm(
    encoder: &mut Encoder,
    table: &ImageTable,
    channels: usize,
    mean: &[f32],
    std: &[f32],
    batch_size: usize,
    backend: Backend,
) -> Result<()> {
    let _span = info_span!("calibrate_batch_norm").entered();
    for norm in encoder.norms_mut() {
        norm.reset_running_stats()?;
        norm.momentum = None;
    }
    let train: Vec<&ImageRecord> = train_records(table).collect();
    for chunk in train.chunks(batch_size) {
        if chunk.len() < 2 {
            continue;
        }
        let x = normalised_batch(chunk, channels, mean, std)?;
        encoder.forward_train(&x, backend)?;
    }
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_latent_table(
    out: &Path,
    table: &ImageTable,
    prepared: &PreparedEncoder,
    batch_size: usize,
    row_group: usize,
) -> Result<usize> {
    let write_err = |e: Box<dyn std::error::Error + Send + Sync>| ExportError::Write {
        path: out.to_path_buf(),
        source: e,
    };
    let dim = prepared
        .encoder
        .blocks
        .last()
        .expect("four blocks")
        .weight
        .dim(0)?;
    let metadata = [
        (keys::MODEL_CONFIG, prepared.config.to_toml()),
        (keys::WEIGHTS_SHA256, prepared.weights_sha256.clone()),
        (keys::REPRESENTATION, prepared.representation.to_string()),
        (keys::MODEL_KIND, prepared.kind.to_string()),
        (
            keys::NORMALISATION,
            serde_json::json!({"mean": prepared.mean, "std": prepared.std}).to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let schema = schema::latent_table_schema(dim, metadata);

    let file = AtomicFile::create(out)?;
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let mut writer = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(properties))
        .map_err(|e| write_err(e.into()))?;

    let backend = Backend::from_fast_kernels(prepared.config.train.fast_kernels);
    let bar = latent_core::logging::progress_bar(table.records.len() as u64, "export");
    let records: Vec<&ImageRecord> = table.records.iter().collect();
    for chunk in records.chunks(batch_size) {
        let embeddings = {
            let _span = info_span!("encode").entered();
            let x = normalised_batch(chunk, prepared.in_channels, &prepared.mean, &prepared.std)?;
            prepared.encoder.forward_eval(&x, backend)?
        };
        let values: Vec<f32> = embeddings.flatten_all()?.to_vec1()?;
        let batch = latent_batch(&schema, chunk, values, dim).map_err(|e| write_err(e.into()))?;
        writer.write(&batch).map_err(|e| write_err(e.into()))?;
        bar.inc(chunk.len() as u64);
    }
    writer.close().map_err(|e| write_err(e.into()))?;
    file.commit()?;
    bar.finish_and_clear();
    Ok(dim)
}

fn latent_batch(
    schema: &arrow::datatypes::SchemaRef,
    records: &[&ImageRecord],
    embeddings: Vec<f32>,
    dim: usize,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let item = Arc::new(Field::new(latent::EMBEDDING_ITEM, DataType::Float32, false));
    let embedding = FixedSizeListArray::try_new(
        item,
        dim as i32,
        Arc::new(Float32Array::from(embeddings)),
        None,
    )?;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.id))),
            Arc::new(Int32Array::from_iter(records.iter().map(|r| r.label))),
            Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.label_name.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.split.as_str()),
            )),
            Arc::new(embedding),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_model_without_recorded_normalisation_sees_plain_0_to_1_pixels() {
        let config = PipelineConfig::default();
        assert_eq!(
            views_normalisation(&config, 3),
            (vec![0.0; 3], vec![1.0; 3])
        );

        let mut config = PipelineConfig::default();
        config.augment.mean = vec![0.5, 0.4, 0.3];
        config.augment.std = vec![0.2, 0.2, 0.2];
        assert_eq!(
            views_normalisation(&config, 3),
            (vec![0.5, 0.4, 0.3], vec![0.2; 3])
        );
    }
}
