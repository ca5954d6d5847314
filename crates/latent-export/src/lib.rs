//! `export`: encodes every image of an image table once and writes the latent table.
//!
//! The model is the one `latent-train` trained (read from its model folder), or an
//! untrained encoder of the same architecture whose batch-norm statistics are calibrated
//! on the train split: the random-init baseline that a learned latent space has to beat.
//! Images go through the model in eval mode without augmentation, scaled to 0..1 and
//! normalised with the mean and std the model was trained with. Which output is the
//! embedding is a choice ([`Representation`]): the encoder's pooled output (the default
//! for SimCLR), a layer of the projection head, or the autoencoder's bottleneck (its
//! default; the decoder is not run).
//!
//! The image table is read a record batch at a time and the latent table written in row
//! groups as images are encoded, so memory does not grow with the table. `shard` exports
//! one contiguous slice of the rows. The output goes to a temporary file renamed into
//! place at the end.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, SchemaRef};
use candle_core::{Device, Tensor};
use latent_core::atomic::AtomicFile;
use latent_core::config::PipelineConfig;
use latent_core::image_table::{self, ImageRecord};
use latent_core::schema::{self, latent};
use latent_train::model::{Architecture, Backend, Encoder, SimclrModel};
pub use latent_train::representation::{Embedder, Representation};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn};

/// Metadata keys of the latent table that `export` adds.
pub mod keys {
    /// The pipeline config of the model, as TOML.
    pub const MODEL_CONFIG: &str = "latent.model.config";
    /// sha256 of the weights (the file's bytes, or the serialised random-init weights).
    pub const WEIGHTS_SHA256: &str = "latent.model.weights_sha256";
    /// Which output of the model the embedding is: "encoder", "head:K" or "bottleneck"
    /// (see [`super::Representation`]).
    pub const REPRESENTATION: &str = "latent.representation";
    /// "trained" or "random-init".
    pub const MODEL_KIND: &str = "latent.model.kind";
    /// The per-channel mean and std the images were normalised with, as JSON.
    pub const NORMALISATION: &str = "latent.normalisation";
    /// Which rows of the image table the file holds, as "I/N" (shard I of N, 0-based);
    /// absent when the file holds every row.
    pub const SHARD: &str = "latent.shard";
    /// The product version that wrote the table.
    pub const VERSION: &str = "latent.version";
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

    #[error("invalid shard '{0}': expected I/N with 0 <= I < N, e.g. 0/4")]
    Shard(String),

    #[error("{0}")]
    Setting(String),
}

/// Result with [`ExportError`].
pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// Where the model comes from.
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

/// One of N contiguous, near-equal slices of a table's rows (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses "I/N".
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || ExportError::Shard(text.to_string());
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// The rows of a table of `rows` rows that this shard holds: shards tile the table
    /// in order, and their sizes differ by at most one.
    pub fn rows(&self, rows: usize) -> Range<usize> {
        let start = rows * self.index / self.count;
        let end = rows * (self.index + 1) / self.count;
        start..end
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
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
    /// Which output to export (None: `[export] representation` of the model's config).
    pub representation: Option<String>,
    /// Export only this shard of the rows (None: every row).
    pub shard: Option<Shard>,
}

impl ExportOptions {
    /// Every row, the config's batch sizes and representation.
    pub fn new(images: PathBuf, out: PathBuf, source: ModelSource) -> Self {
        Self {
            images,
            out,
            source,
            batch_size: None,
            row_group: None,
            representation: None,
            shard: None,
        }
    }
}

/// What an export did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    pub rows: usize,
    pub dim: usize,
    pub seconds: f64,
}

/// The model with everything needed to feed it.
pub struct PreparedEncoder {
    pub embedder: Embedder,
    pub in_channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub config: PipelineConfig,
    pub weights_sha256: String,
    pub kind: &'static str,
}

/// Encodes every image (of the shard) of `options.images` and writes the latent table.
pub fn export(options: &ExportOptions) -> Result<ExportSummary> {
    let started = Instant::now();
    refuse_non_parquet(&options.images)?;
    let source = ImageSource::open(&options.images)?;
    check_output_path(&options.out, &source)?;
    for (name, value) in [
        ("batch size", options.batch_size),
        ("row group", options.row_group),
    ] {
        if value == Some(0) {
            return Err(ExportError::Setting(format!(
                "the {name} must be at least 1"
            )));
        }
    }
    if source.rows == 0 {
        return Err(ExportError::Input {
            path: options.images.clone(),
            expected: "an image table with at least one image".into(),
            found: "an empty table".into(),
        });
    }
    let rows = match options.shard {
        Some(shard) => shard.rows(source.rows),
        None => 0..source.rows,
    };
    if rows.is_empty() {
        warn!(
            shard = options.shard.map(|s| s.to_string()),
            images = source.rows,
            "this shard holds no rows (more shards than images): writing an empty table"
        );
    }
    info!(
        images = source.rows,
        exported = rows.len(),
        shard = options.shard.map(|s| s.to_string()),
        table = %options.images.display(),
        "opened the image table"
    );

    let prepared = prepare_encoder(
        &options.source,
        &source,
        options.batch_size,
        options.representation.as_deref(),
    )?;
    let batch_size = options
        .batch_size
        .unwrap_or(prepared.config.export.batch_size);
    let row_group = options
        .row_group
        .unwrap_or(prepared.config.export.row_group);
    if batch_size == 0 || row_group == 0 {
        return Err(ExportError::Setting(
            "[export] batch_size and row_group must be at least 1".into(),
        ));
    }

    let mut metadata = table_metadata(&prepared);
    if let Some(shard) = options.shard {
        metadata.push((keys::SHARD.to_string(), shard.to_string()));
    }
    let dim = prepared.output_dim(&source)?;
    let mut writer = LatentWriter::create(&options.out, dim, metadata, row_group)?;
    let backend = Backend::from_fast_kernels(prepared.config.train.fast_kernels);
    let bar = latent_core::logging::progress_bar(rows.len() as u64, "export");
    let mut shape = None;
    source.for_each_chunk(
        rows.clone(),
        batch_size,
        |_| true,
        |chunk| {
            check_image_shapes(&options.images, chunk, prepared.in_channels, &mut shape)?;
            let embeddings = {
                let _span = info_span!("encode").entered();
                let x =
                    normalised_batch(chunk, prepared.in_channels, &prepared.mean, &prepared.std)?;
                prepared.embedder.forward_eval(&x, backend)?
            };
            writer.write(chunk, embeddings.flatten_all()?.to_vec1()?)?;
            bar.inc(chunk.len() as u64);
            Ok(())
        },
    )?;
    writer.finish()?;
    bar.finish_and_clear();
    if let Some((height, width, _)) = shape
        && prepared.kind == "trained"
        && (prepared.config.augment.size != height || height != width)
    {
        warn!(
            "images are {height}x{width}, the model was trained on {0}x{0} views; encoded at the images' size",
            prepared.config.augment.size
        );
    }

    let seconds = started.elapsed().as_secs_f64();
    info!(
        rows = rows.len(),
        dim,
        representation = %prepared.embedder.representation,
        seconds = format!("{seconds:.1}"),
        out = %options.out.display(),
        "wrote the latent table"
    );
    Ok(ExportSummary {
        rows: rows.len(),
        dim,
        seconds,
    })
}

/// The latent table's key-value metadata (without the shard).
fn table_metadata(prepared: &PreparedEncoder) -> Vec<(String, String)> {
    [
        (keys::MODEL_CONFIG, prepared.config.to_toml()),
        (keys::WEIGHTS_SHA256, prepared.weights_sha256.clone()),
        (
            keys::REPRESENTATION,
            prepared.embedder.representation.to_string(),
        ),
        (keys::MODEL_KIND, prepared.kind.to_string()),
        (
            keys::NORMALISATION,
            serde_json::json!({"mean": prepared.mean, "std": prepared.std}).to_string(),
        ),
        (keys::VERSION, env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Checks that every image of `chunk` has the shape of the first image exported, with
/// channels the model can read; an error names the image's id.
fn check_image_shapes(
    table: &Path,
    chunk: &[ImageRecord],
    model_channels: usize,
    shape: &mut Option<(u32, u32, u32)>,
) -> Result<()> {
    for record in chunk {
        let found = (record.height, record.width, record.channels);
        let expected = *shape.get_or_insert(found);
        if found != expected {
            return Err(ExportError::Input {
                path: table.to_path_buf(),
                expected: format!(
                    "images of one shape ({}x{}x{}, as the first one exported)",
                    expected.0, expected.1, expected.2
                ),
                found: format!(
                    "image id {} of {}x{}x{}",
                    record.id, found.0, found.1, found.2
                ),
            });
        }
        if record.channels as usize != model_channels && record.channels != 1 {
            return Err(ExportError::Input {
                path: table.to_path_buf(),
                expected: format!(
                    "images with {model_channels} channels (or grey ones, which are repeated), as the model was trained on"
                ),
                found: format!("image id {} with {} channels", record.id, record.channels),
            });
        }
    }
    Ok(())
}

/// An image table read a record batch at a time: one Parquet file or a folder of shards.
pub struct ImageSource {
    pub path: PathBuf,
    files: Vec<PathBuf>,
    /// Rows in all files, from the Parquet footers.
    pub rows: usize,
}

impl ImageSource {
    /// Lists the table's files and counts their rows without reading any image.
    pub fn open(path: &Path) -> Result<Self> {
        let files = image_table::table_files(path)?;
        let mut rows = 0;
        for file in &files {
            let handle = std::fs::File::open(file)
                .map_err(|e| latent_core::Error::io(file, "opening the image table", e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| {
                latent_core::Error::Parquet {
                    path: file.clone(),
                    source: e,
                }
            })?;
            rows += builder.metadata().file_metadata().num_rows() as usize;
        }
        Ok(Self {
            path: path.to_path_buf(),
            files,
            rows,
        })
    }

    /// Calls `f` with consecutive chunks of up to `chunk` records, in table order, of the
    /// rows in `rows` (indices over the whole table) that `keep` accepts.
    pub fn for_each_chunk(
        &self,
        rows: Range<usize>,
        chunk: usize,
        keep: impl Fn(&ImageRecord) -> bool,
        mut f: impl FnMut(&[ImageRecord]) -> Result<()>,
    ) -> Result<()> {
        let mut buffer: Vec<ImageRecord> = Vec::with_capacity(chunk);
        let mut next_row = 0;
        'files: for file in &self.files {
            for batch in image_table::open_batches(file)? {
                let batch = batch.map_err(|e| latent_core::Error::Arrow {
                    path: file.clone(),
                    source: e,
                })?;
                let batch_rows = next_row..next_row + batch.num_rows();
                next_row = batch_rows.end;
                if batch_rows.end <= rows.start {
                    continue;
                }
                if batch_rows.start >= rows.end {
                    break 'files;
                }
                let records = image_table::records_from_batch(file, &batch)?;
                for (row, record) in batch_rows.zip(records) {
                    if !rows.contains(&row) || !keep(&record) {
                        continue;
                    }
                    buffer.push(record);
                    if buffer.len() == chunk {
                        f(&buffer)?;
                        buffer.clear();
                    }
                }
            }
        }
        if !buffer.is_empty() {
            f(&buffer)?;
        }
        Ok(())
    }

    /// Every train-split record, in chunks.
    fn for_each_train_chunk(
        &self,
        chunk: usize,
        f: impl FnMut(&[ImageRecord]) -> Result<()>,
    ) -> Result<()> {
        self.for_each_chunk(0..self.rows, chunk, is_train, f)
    }
}

fn is_train(record: &ImageRecord) -> bool {
    record.split == schema::split::TRAIN
}

/// Refuses an output path that is a folder or one of the image table's own files, before
/// any encoding is done.
fn check_output_path(out: &Path, images: &ImageSource) -> Result<()> {
    if out.is_dir() {
        return Err(ExportError::Input {
            path: out.to_path_buf(),
            expected: "a file path for the latent table".into(),
            found: "a folder (give a file name inside it)".into(),
        });
    }
    let Ok(out_real) = out.canonicalize() else {
        return Ok(());
    };
    for file in &images.files {
        if file.canonicalize().is_ok_and(|f| f == out_real) {
            return Err(ExportError::Input {
                path: out.to_path_buf(),
                expected: "an output path other than the input".into(),
                found: "the image table being read (it would be overwritten)".into(),
            });
        }
    }
    Ok(())
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

/// The representation to export: the explicit choice, else the config's, where "auto"
/// means the model family's default.
fn choose_representation(
    explicit: Option<&str>,
    config: &PipelineConfig,
    model: &latent_train::model::Model,
) -> Result<Representation> {
    let text = explicit.unwrap_or(&config.export.representation);
    Ok(match text {
        "auto" | "" => Representation::default_for(model),
        other => Representation::parse(other)?,
    })
}

/// Loads the trained model, or builds and calibrates a random encoder.
pub fn prepare_encoder(
    source: &ModelSource,
    images: &ImageSource,
    batch_size: Option<usize>,
    representation: Option<&str>,
) -> Result<PreparedEncoder> {
    match source {
        ModelSource::Trained(dir) => {
            let trained = latent_train::load_model_dir(dir)?;
            let bytes = std::fs::read(&trained.weights).map_err(|e| {
                latent_core::Error::io(&trained.weights, "reading the model weights", e)
            })?;
            let in_channels = trained.model.arch().in_channels;
            let (mean, std) = views_normalisation(&trained.config, in_channels);
            let representation =
                choose_representation(representation, &trained.config, &trained.model)?;
            info!(model = %dir.display(), %representation, "encoding with the trained model");
            Ok(PreparedEncoder {
                in_channels,
                embedder: Embedder::new(trained.model, representation)?,
                mean,
                std,
                config: trained.config,
                weights_sha256: hex_sha256(&bytes),
                kind: "trained",
            })
        }
        ModelSource::RandomInit { seed, config } => {
            // The same choice as for a trained model: only the encoder exists here.
            let asked = representation.unwrap_or(&config.export.representation);
            let encoder = matches!(asked, "auto" | "")
                || Representation::parse(asked)? == Representation::Encoder;
            if !encoder {
                return Err(latent_train::TrainError::Representation {
                    asked: asked.to_string(),
                    reason: "a random-init baseline exports only its encoder".into(),
                }
                .into());
            }
            let arch = Architecture::from_config(3, &config.train)?;
            let mut model = SimclrModel::new(arch, *seed)?;
            let (mean, std) = normalisation(config, images, arch.in_channels)?;
            let batch = batch_size.unwrap_or(config.export.batch_size).max(2);
            let backend = Backend::from_fast_kernels(config.train.fast_kernels);
            calibrate_batch_norm(
                &mut model.encoder,
                images,
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
                embedder: Embedder::encoder_only(model.encoder),
                in_channels: arch.in_channels,
                mean,
                std,
                config,
                kind: "random-init",
            })
        }
    }
}

impl PreparedEncoder {
    /// The embedding's size: the output of one image of the table's shape (or of the
    /// trained view size when the table is empty).
    fn output_dim(&self, images: &ImageSource) -> Result<usize> {
        let mut side = None;
        images.for_each_chunk(
            0..images.rows.min(1),
            1,
            |_| true,
            |chunk| {
                side = Some((chunk[0].height as usize, chunk[0].width as usize));
                Ok(())
            },
        )?;
        let size = self.config.augment.size as usize;
        let (h, w) = side.unwrap_or((size, size));
        let x = Tensor::zeros(
            (1, self.in_channels, h, w),
            candle_core::DType::F32,
            &Device::Cpu,
        )?;
        Ok(self.embedder.forward_eval(&x, Backend::Candle)?.dim(1)?)
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
    images: &ImageSource,
    channels: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (mean, std) = (&config.augment.mean, &config.augment.std);
    if !mean.is_empty() && !std.is_empty() {
        return Ok((mean.clone(), std.clone()));
    }
    train_split_stats(images, channels)
}

/// Per-channel mean and unbiased std of the train split, on the 0..1 scale.
pub fn train_split_stats(images: &ImageSource, channels: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut sum = vec![0f64; channels];
    let mut sum_sq = vec![0f64; channels];
    let mut count = 0u64;
    let mut shape = None;
    images.for_each_train_chunk(1024, |chunk| {
        check_image_shapes(&images.path, chunk, channels, &mut shape)?;
        for record in chunk {
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
        Ok(())
    })?;
    if count < 2 {
        return Ok((vec![0.0; channels], vec![1.0; channels]));
    }
    let n = count as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sum
        .iter()
        .zip(&sum_sq)
        .map(|(s, q)| (((q - s * s / n) / (n - 1.0)).max(0.0).sqrt() as f32).max(1e-12))
        .collect();
    Ok((mean, std))
}

/// The value of channel `c` at pixel `p`; grey images repeat their one channel.
fn pixel(record: &ImageRecord, p: usize, c: usize) -> u8 {
    let channels = record.channels as usize;
    record.pixels[p * channels + c.min(channels - 1)]
}

/// Images as a normalised `[N, C, H, W]` tensor: 0..1, minus mean, over std.
pub fn normalised_batch(
    records: &[ImageRecord],
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
    images: &ImageSource,
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
    let mut shape = None;
    let mut calibrated = 0;
    images.for_each_train_chunk(batch_size, |chunk| {
        check_image_shapes(&images.path, chunk, channels, &mut shape)?;
        calibrated += chunk.len();
        if chunk.len() >= 2 {
            let x = normalised_batch(chunk, channels, mean, std)?;
            encoder.forward_train(&x, backend)?;
        }
        Ok(())
    })?;
    if calibrated < 2 {
        return Err(ExportError::Input {
            path: images.path.clone(),
            expected: "at least two train-split images to calibrate the random-init encoder's batch norm on".into(),
            found: format!("{calibrated}"),
        });
    }
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a latent table (the schema of `latent_core::schema::latent_table_schema`) a
/// batch of rows at a time, in row groups, to a temporary file that [`Self::finish`]
/// renames into place; dropped unfinished, it leaves nothing at the output path.
pub struct LatentWriter {
    out: PathBuf,
    file: AtomicFile,
    writer: ArrowWriter<std::fs::File>,
    schema: SchemaRef,
    dim: usize,
    rows: usize,
}

impl LatentWriter {
    /// Starts a table of `dim`-dimensional embeddings with the given key-value metadata.
    pub fn create(
        out: &Path,
        dim: usize,
        metadata: Vec<(String, String)>,
        row_group: usize,
    ) -> Result<Self> {
        let schema = schema::latent_table_schema(dim, metadata.into_iter().collect());
        let file = AtomicFile::create(out)?;
        // The metadata goes into the Parquet footer as plain key-value pairs too (not only
        // inside the encoded Arrow schema), so `pl.read_parquet_metadata` and readers that
        // know nothing of Arrow see it.
        let mut footer: Vec<KeyValue> = schema
            .metadata()
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        footer.sort_by(|a, b| a.key.cmp(&b.key));
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group.max(1)))
            .set_key_value_metadata(Some(footer))
            .build();
        let writer = ArrowWriter::try_new(file.try_clone()?, schema.clone(), Some(properties))
            .map_err(|e| write_error(out, e))?;
        Ok(Self {
            out: out.to_path_buf(),
            file,
            writer,
            schema,
            dim,
            rows: 0,
        })
    }

    /// Appends the rows of `records` with their embeddings (`records.len() * dim` values,
    /// row-major).
    pub fn write(&mut self, records: &[ImageRecord], embeddings: Vec<f32>) -> Result<()> {
        let rows = LatentRows {
            ids: records.iter().map(|r| r.id).collect(),
            labels: records.iter().map(|r| r.label).collect(),
            label_names: records.iter().map(|r| r.label_name.clone()).collect(),
            splits: records.iter().map(|r| r.split.clone()).collect(),
            embeddings,
        };
        self.write_rows(rows)
    }

    /// Appends rows given column by column.
    pub fn write_rows(&mut self, rows: LatentRows) -> Result<()> {
        let count = rows.ids.len();
        if rows.embeddings.len() != count * self.dim {
            return Err(write_error(
                &self.out,
                format!(
                    "{} embedding values for {count} rows of dimension {}",
                    rows.embeddings.len(),
                    self.dim
                ),
            ));
        }
        let item = Arc::new(Field::new(latent::EMBEDDING_ITEM, DataType::Float32, false));
        let embedding = FixedSizeListArray::try_new(
            item,
            self.dim as i32,
            Arc::new(Float32Array::from(rows.embeddings)),
            None,
        )
        .map_err(|e| write_error(&self.out, e))?;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(Int64Array::from(rows.ids)),
                Arc::new(Int32Array::from(rows.labels)),
                Arc::new(StringArray::from(rows.label_names)),
                Arc::new(StringArray::from(rows.splits)),
                Arc::new(embedding),
            ],
        )
        .map_err(|e| write_error(&self.out, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| write_error(&self.out, e))?;
        self.rows += count;
        Ok(())
    }

    /// Closes the Parquet file and renames it into place; returns the rows written.
    pub fn finish(self) -> Result<usize> {
        self.writer.close().map_err(|e| write_error(&self.out, e))?;
        self.file.commit()?;
        Ok(self.rows)
    }
}

/// The columns of some latent table rows.
#[derive(Debug, Clone, Default)]
pub struct LatentRows {
    pub ids: Vec<i64>,
    pub labels: Vec<Option<i32>>,
    pub label_names: Vec<Option<String>>,
    pub splits: Vec<String>,
    /// `ids.len() * dim` values, row-major.
    pub embeddings: Vec<f32>,
}

fn write_error(out: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ExportError {
    ExportError::Write {
        path: out.to_path_buf(),
        source: e.into(),
    }
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
