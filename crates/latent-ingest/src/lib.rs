//! The `ingest` stage: images in, one validated Parquet image table out.
//!
//! Sources are an image folder (`<root>/<class>/<file>`, optionally under `train/`,
//! `test/` and `val/`; images directly in the root are unlabelled), a tar archive of such a
//! folder (read as a stream), MNIST-style IDX files, CIFAR-10/100 binary batches, a CSV or
//! Parquet manifest listing image paths ([`manifest`]), or an existing image table. Every
//! source goes the same way: a plan of rows in id order ([`layout`]), chunks of one row
//! group decoded in parallel with rayon ([`decode`]), then a writer thread that
//! deduplicates, counts and writes the row groups while the next chunk decodes
//! ([`writer`]). A file that cannot be decoded becomes a row of the rejects table and never
//! costs the images beside it.

pub mod arrays;
pub mod decode;
pub mod error;
pub mod folder;
pub mod layout;
pub mod manifest;
mod pipeline;
pub mod tar_source;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use latent_core::schema::split;

pub use crate::decode::{ColorMode, Pixels, Reason, Rejection, Resize, ResizeFilter};
pub use crate::error::{IngestError, Result};
pub use crate::layout::{Shard, SplitOptions};
pub use crate::writer::{Codec, ImageRow, RejectRow};

use crate::layout::Selector;
use crate::pipeline::{Input, Job, Sink, run_pipeline};

/// Metadata key: the source the table was ingested from.
pub const SOURCE_KEY: &str = "latent.ingest.source";
/// Metadata key: the ingest options as JSON (seed, split, policy).
pub const OPTIONS_KEY: &str = "latent.ingest.options";
/// Metadata key: the class names as a JSON list, indexed by label.
pub const CLASS_NAMES_KEY: &str = "latent.ingest.class_names";

/// What kind of source to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SourceFormat {
    /// Decide from the path: `.tar` archive, `.csv` manifest, `.parquet` image table (or
    /// manifest, when it has a `path` column and no pixels), a folder of IDX files or CIFAR
    /// batches, otherwise an image folder.
    #[default]
    Auto,
    /// `<root>/<class>/<image>`, optionally under `train/`, `test/` and `val/`.
    Folder,
    /// An uncompressed tar of such a folder, streamed without extracting.
    Tar,
    /// `<prefix>-images-idx3-ubyte[.gz]` with `<prefix>-labels-idx1-ubyte[.gz]`.
    Idx,
    /// CIFAR-10 or CIFAR-100 binary batches with their class-name file.
    Cifar,
    /// An image table; ids, labels and splits are kept.
    Parquet,
    /// A CSV or Parquet table with a `path` column and optional `label` and `split`.
    Manifest,
}

/// What to do with images whose pixels equal an earlier image's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Dedupe {
    /// Keep them (they are counted and logged).
    #[default]
    Keep,
    /// Leave them out; they are listed in the rejects table as `duplicate`.
    Drop,
}

/// Everything an ingest run needs.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub source: PathBuf,
    pub out: PathBuf,
    /// Rejects table path (default: `<out stem>.rejects.parquet` beside `out`).
    pub rejects: Option<PathBuf>,
    pub format: SourceFormat,
    /// Ignore class folders (and a manifest's labels): every row gets a null label.
    pub unlabelled: bool,
    pub split: SplitOptions,
    pub mode: ColorMode,
    pub resize: Option<Resize>,
    pub dedupe: Dedupe,
    pub codec: Codec,
    /// Rows per Parquet row group, and images decoded per parallel chunk.
    pub row_group_size: usize,
}

impl IngestOptions {
    /// Options with the defaults of the `[ingest]` config section.
    pub fn new(source: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        let defaults = latent_core::config::IngestConfig::default();
        Self {
            source: source.into(),
            out: out.into(),
            rejects: None,
            format: SourceFormat::Auto,
            unlabelled: false,
            split: SplitOptions {
                seed: 0,
                test_fraction: defaults.test_fraction,
                limit_per_class: defaults.limit_per_class,
                shard: None,
            },
            mode: ColorMode::Keep,
            resize: None,
            dedupe: Dedupe::Keep,
            codec: Codec::Snappy,
            row_group_size: 1024,
        }
    }

    /// The rejects table path: the one given, or `<stem>.rejects.parquet` beside `out`.
    pub fn rejects_path(&self) -> PathBuf {
        if let Some(path) = &self.rejects {
            return path.clone();
        }
        let stem = self
            .out
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "images".into());
        self.out.with_file_name(format!("{stem}.rejects.parquet"))
    }

    fn check(&self) -> Result<()> {
        let f = self.split.test_fraction;
        if !(0.0..1.0).contains(&f) {
            return Err(IngestError::Option(format!(
                "test fraction must be in 0..1 (0 included, 1 excluded), found {f}"
            )));
        }
        if self.row_group_size == 0 {
            return Err(IngestError::Option(
                "row group size must be at least 1".into(),
            ));
        }
        if let Some(r) = self.resize
            && (r.width == 0 || r.height == 0)
        {
            return Err(IngestError::Option(format!(
                "resize to {}x{}: both sides must be at least 1",
                r.width, r.height
            )));
        }
        Ok(())
    }
}

/// What a run did. `seen = ingested + rejected + duplicates_dropped` always holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub format: Option<SourceFormat>,
    /// Files or records considered (after `--limit-per-class` and `--shard`).
    pub seen: usize,
    /// Rows written to the image table.
    pub ingested: usize,
    /// Files refused (decode errors and the like), not counting dropped duplicates.
    pub rejected: usize,
    /// Images whose pixels equal an earlier image's (kept or dropped).
    pub duplicates: usize,
    /// Duplicates left out with `--dedupe drop`.
    pub duplicates_dropped: usize,
    /// Rejects per reason name (dropped duplicates included under `duplicate`).
    pub reasons: BTreeMap<&'static str, usize>,
    /// Rows written per split.
    pub per_split: BTreeMap<&'static str, usize>,
    pub class_names: Vec<String>,
    pub out: PathBuf,
    pub rejects: PathBuf,
    pub seconds: f64,
}

/// Picks the source kind from the path when `--format` is `auto`.
pub fn detect_format(source: &Path) -> Result<SourceFormat> {
    let meta =
        std::fs::metadata(source).map_err(|e| IngestError::io(source, "opening the source", e))?;
    if meta.is_file() {
        let name = source.to_string_lossy().to_lowercase();
        return if name.ends_with(".tar") {
            Ok(SourceFormat::Tar)
        } else if name.ends_with(".csv")
            || (name.ends_with(".parquet") && manifest::is_parquet_manifest(source))
        {
            Ok(SourceFormat::Manifest)
        } else if name.ends_with(".parquet") {
            Ok(SourceFormat::Parquet)
        } else {
            Err(IngestError::source(
                source,
                "a file source must be a .tar archive, a .csv manifest or a .parquet image \
                 table or manifest; give --format to say what it is",
            ))
        };
    }
    if is_shard_folder(source) {
        Ok(SourceFormat::Parquet)
    } else if arrays::looks_like_idx(source) {
        Ok(SourceFormat::Idx)
    } else if arrays::looks_like_cifar(source) {
        Ok(SourceFormat::Cifar)
    } else {
        Ok(SourceFormat::Folder)
    }
}

/// A folder holding only `.parquet` files: the shards of an image table.
fn is_shard_folder(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    !names.is_empty() && names.iter().all(|name| name.ends_with(".parquet"))
}

/// Runs the stage: reads `options.source`, writes the image table and the rejects table.
pub fn ingest(options: &IngestOptions) -> Result<Summary> {
    options.check()?;
    let start = Instant::now();
    let format = match options.format {
        SourceFormat::Auto => detect_format(&options.source)?,
        other => other,
    };
    tracing::info!("reading {} as {format:?}", options.source.display());

    let mut summary = match format {
        SourceFormat::Folder | SourceFormat::Auto => ingest_folder(options)?,
        SourceFormat::Tar => tar_source::ingest_tar(options)?,
        SourceFormat::Idx => ingest_arrays(options, arrays::read_idx(&options.source)?)?,
        SourceFormat::Cifar => ingest_arrays(options, arrays::read_cifar(&options.source)?)?,
        SourceFormat::Parquet => ingest_table(options)?,
        SourceFormat::Manifest => ingest_manifest(options)?,
    };
    summary.format = Some(format);
    summary.seconds = start.elapsed().as_secs_f64();
    tracing::info!(
        "{} images in {:.2} s ({:.0} images/s)",
        summary.seen,
        summary.seconds,
        summary.seen as f64 / summary.seconds.max(1e-9)
    );
    Ok(summary)
}

fn ingest_folder(options: &IngestOptions) -> Result<Summary> {
    let listing = folder::list_folder(&options.source, options.unlabelled)?;
    if listing.candidates.is_empty() {
        return Err(IngestError::source(
            &options.source,
            "no files found; expected <root>/<class>/<image>, <root>/<split>/<class>/<image> \
             or unlabelled images in <root>",
        ));
    }
    let plan = layout::plan(listing.candidates, listing.empty_classes, &options.split);
    ingest_files(options, plan)
}

/// Ingests the files a manifest lists; ids are row positions, given splits are kept.
fn ingest_manifest(options: &IngestOptions) -> Result<Summary> {
    let candidates = manifest::list_manifest(&options.source, options.unlabelled)?;
    let plan = layout::plan_in_order(candidates, [], &options.split);
    ingest_files(options, plan)
}

/// Decodes and writes the planned files of a folder or a manifest.
fn ingest_files(options: &IngestOptions, plan: layout::Plan<PathBuf>) -> Result<Summary> {
    let unlabelled = plan.files.iter().filter(|f| f.label.is_none()).count();
    tracing::info!(
        "{} files in {} classes to read ({unlabelled} unlabelled)",
        plan.files.len(),
        plan.class_names.len()
    );

    let sink = Sink::create(options, &plan.class_names, plan.files.len())?;
    let chunk_size = options.row_group_size;
    let mut files = plan.files.into_iter().peekable();
    let chunks = std::iter::from_fn(move || {
        files.peek()?;
        let chunk: Vec<Job> = files
            .by_ref()
            .take(chunk_size)
            .map(|file| Job {
                id: file.id,
                label: file.label,
                split: file.split,
                source: file.rel,
                input: match file.rejected {
                    Some(rejection) => Input::Rejected(rejection),
                    None => Input::Path(file.locator),
                },
            })
            .collect();
        Some(Ok(chunk))
    });
    run_pipeline(chunks, sink, options)
}

fn ingest_arrays(options: &IngestOptions, source: arrays::ArraySource) -> Result<Summary> {
    let total: usize = source.files.iter().map(|f| f.len()).sum();
    tracing::info!("{total} records in {} files", source.files.len());

    // IDX files carry no class names: their label names stay null.
    let class_names = source.class_names.clone();

    let mut selector = Selector::new(&options.split);
    let mut kept: Vec<(usize, usize, i64)> = Vec::new();
    let mut id = 0i64;
    for (file_index, file) in source.files.iter().enumerate() {
        for (record, &label) in file.labels.iter().enumerate() {
            if selector.keep(id, Some(label), file.split) {
                kept.push((file_index, record, id));
            }
            id += 1;
        }
    }

    let sink = Sink::create(options, &class_names, kept.len())?;
    let files = &source.files;
    let chunks = kept.chunks(options.row_group_size).map(|chunk| {
        Ok(chunk
            .iter()
            .map(|&(file_index, record, id)| {
                let file = &files[file_index];
                Job {
                    id,
                    label: Some(file.labels[record]),
                    split: file.split,
                    source: format!("{}#{record}", file.name),
                    input: Input::Pixels(Pixels {
                        height: file.height,
                        width: file.width,
                        channels: file.channels,
                        data: file.record_hwc(record),
                    }),
                }
            })
            .collect())
    });
    run_pipeline(chunks, sink, options)
}

/// Re-ingests an image table: ids, labels and splits are kept as they are (no re-split);
/// limit, shard, mode, resize and dedupe apply.
fn ingest_table(options: &IngestOptions) -> Result<Summary> {
    let table = latent_core::image_table::read_image_table(&options.source)?;
    let class_names = table.class_names();
    let name = options
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut selector = Selector::new(&options.split);
    let records: Vec<_> = table
        .records
        .into_iter()
        .filter_map(|r| {
            let split = match r.split.as_str() {
                split::TRAIN => split::TRAIN,
                split::TEST => split::TEST,
                split::VAL => split::VAL,
                _ => {
                    return Some(Err(IngestError::source(
                        &options.source,
                        format!(
                            "image id {} has split '{}'; expected train, test or val",
                            r.id, r.split
                        ),
                    )));
                }
            };
            selector
                .keep(r.id, r.label, split)
                .then_some(Ok((r, split)))
        })
        .collect::<Result<_>>()?;

    let sink = Sink::create(options, &class_names, records.len())?;
    let mut records = records.into_iter().peekable();
    let chunk_size = options.row_group_size;
    let chunks = std::iter::from_fn(move || {
        records.peek()?;
        let chunk = records
            .by_ref()
            .take(chunk_size)
            .map(|(r, split)| Job {
                id: r.id,
                label: r.label,
                split,
                source: format!("{name}#{}", r.id),
                input: Input::Pixels(Pixels {
                    height: r.height,
                    width: r.width,
                    channels: r.channels,
                    data: r.pixels,
                }),
            })
            .collect();
        Some(Ok(chunk))
    });
    run_pipeline(chunks, sink, options)
}
