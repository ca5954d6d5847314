//! `latent-ingest`: images in, one Parquet image table and a rejects table out.
//!
//! Parses arguments, merges them over the `[ingest]` and `[run]` sections of a pipeline
//! config, and calls [`latent_ingest::ingest`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};
use latent_ingest::{
    Codec, ColorMode, Dedupe, IngestOptions, Resize, ResizeFilter, Shard, SourceFormat,
};

const AFTER_HELP: &str = "\
Reads: an image folder <root>/<class>/<image> (or <root>/{train,test,val}/<class>/<image>),
a .tar archive of one, MNIST-style IDX files (raw or .gz), CIFAR-10/100 binary batches,
an existing image table (.parquet; its ids and splits are kept), or a manifest (.csv, or
.parquet without pixels) with a path column (relative to the manifest's folder, or
absolute) and optional label (class name) and split columns; ids are its row numbers and
a missing file is a reject. Images directly in a folder's root are unlabelled.
Writes: the image table (--out) and the rejects table (path, reason, detail), which is
<out stem>.rejects.parquet beside --out unless --rejects is given. Both appear only when
complete. Without split folders, --test-fraction of each class is held out as test.
Ids are positions in the sorted list of files, so they are stable across runs and shards.

Limits: hidden files and folders nested inside a class folder are skipped (with a
warning); duplicates are found within one run, so within one shard only; a broken file is
a row of the rejects table, never an error.

Examples:
  latent-ingest data/cifar10-small --out runs/a/images.parquet
  latent-ingest photos/ --out images.parquet --test-fraction 0.1 --resize 64x64 --mode rgb
  latent-ingest shots/manifest.csv --out images.parquet --resize 32x32
  latent-ingest --config pipelines/smoke.toml --out runs/smoke/images.parquet";

/// Turn a folder of images (or an archive, a manifest, IDX or CIFAR files) into an image table.
#[derive(Debug, Parser)]
#[command(name = "latent-ingest", version, after_help = AFTER_HELP)]
struct Cli {
    /// The source to read (default: `source` in the config's [ingest] section).
    source: Option<PathBuf>,

    /// The image table to write.
    #[arg(long, short)]
    out: PathBuf,

    /// The rejects table to write (default: <out stem>.rejects.parquet beside --out).
    #[arg(long)]
    rejects: Option<PathBuf>,

    /// Pipeline config; [ingest] and [run] give defaults that flags override.
    #[arg(long)]
    config: Option<PathBuf>,

    /// What the source is.
    #[arg(long, value_enum, default_value_t = SourceFormat::Auto)]
    format: SourceFormat,

    /// Ignore class folders and manifest labels: every row gets a null label (images in the
    /// root of a folder are unlabelled without this flag).
    #[arg(long)]
    unlabelled: bool,

    /// Seed of the stratified split (default: [run] seed, else 0).
    #[arg(long)]
    seed: Option<u64>,

    /// Fraction of each class held out as test when there are no split folders
    /// (default: [ingest] test_fraction, else 0.2).
    #[arg(long)]
    test_fraction: Option<f64>,

    /// Keep the first N images per class and split (0 keeps all).
    #[arg(long)]
    limit_per_class: Option<usize>,

    /// Write only shard I of N (rows whose id is I modulo N); ids stay those of the whole source.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,

    /// Resize every image to WIDTHxHEIGHT (aspect ratio not kept).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    resize: Option<(u32, u32)>,

    /// Resampling filter for --resize.
    #[arg(long, value_enum, default_value_t = ResizeFilter::Bilinear)]
    filter: ResizeFilter,

    /// Channels: keep (grey 1, colour 3), gray (all 1) or rgb (all 3).
    #[arg(long, value_enum, default_value_t = ColorMode::Keep)]
    mode: ColorMode,

    /// Images with the same pixels as an earlier one: keep them, or drop them (listed as
    /// `duplicate` in the rejects table).
    #[arg(long, value_enum, default_value_t = Dedupe::Keep)]
    dedupe: Dedupe,

    /// Parquet compression.
    #[arg(long, value_enum, default_value_t = Codec::Snappy)]
    compression: Codec,

    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 1024)]
    row_group_size: usize,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WIDTHxHEIGHT such as 32x32, found '{text}'"))?;
    let side = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a size"))
    };
    Ok((side(w)?, side(h)?))
}

fn options(cli: Cli) -> anyhow::Result<IngestOptions> {
    let config = match &cli.config {
        Some(path) => Some(
            PipelineConfig::load(path)
                .with_context(|| format!("loading the config {}", path.display()))?,
        ),
        None => None,
    };
    let source = match (cli.source, &config) {
        (Some(source), _) => source,
        (None, Some(config)) => config.ingest.source.clone(),
        (None, None) => bail!("give a SOURCE to read, or a --config whose [ingest] names one"),
    };

    let mut options = IngestOptions::new(source, cli.out);
    if let Some(config) = &config {
        options.split.seed = config.run.seed;
        options.split.test_fraction = config.ingest.test_fraction;
        options.split.limit_per_class = config.ingest.limit_per_class;
    }
    options.split.seed = cli.seed.unwrap_or(options.split.seed);
    options.split.test_fraction = cli.test_fraction.unwrap_or(options.split.test_fraction);
    options.split.limit_per_class = cli.limit_per_class.unwrap_or(options.split.limit_per_class);
    options.split.shard = cli.shard;
    options.rejects = cli.rejects;
    options.format = cli.format;
    options.unlabelled = cli.unlabelled;
    options.mode = cli.mode;
    options.resize = cli.resize.map(|(width, height)| Resize {
        width,
        height,
        filter: cli.filter,
    });
    options.dedupe = cli.dedupe;
    options.codec = cli.compression;
    options.row_group_size = cli.row_group_size;
    Ok(options)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbosity);
    let result = options(cli).and_then(|options| {
        latent_ingest::ingest(&options)
            .with_context(|| format!("ingesting {}", options.source.display()))
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
