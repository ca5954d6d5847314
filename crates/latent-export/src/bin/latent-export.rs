//! `latent-export`: encodes every image once and writes the latent table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};
use latent_export::{ExportOptions, ModelSource, Shard, export};

/// Embed every image of an image table with a trained (or random-init) encoder.
///
/// Reads IMAGES (a Parquet image table from latent-ingest, or a folder of its shards) and
/// the model folder written by latent-train (model.safetensors + config.toml), and writes
/// the latent table (id, label, label_name, split, embedding) as Parquet. Images are
/// encoded once, in eval mode, without augmentation. By default the embedding is, for a
/// SimCLR model, the encoder's pooled output before the projection head, and for an
/// autoencoder its bottleneck; --representation picks another output. The choice is
/// recorded as latent.representation in the table's metadata.
///
/// Large tables stream: memory does not grow with the number of images. --shard I/N
/// exports the I-th of N slices of the rows, so N processes (or machines) can share the
/// work; Polars and pyarrow read a folder of such files as one table.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  latent-export runs/x/images.parquet --model runs/x/simclr --out runs/x/latent.parquet\n  latent-export runs/x/images.parquet --model runs/x/autoencoder --out runs/x/latent_ae.parquet\n  latent-export runs/x/images.parquet --random-init --seed 0 --out runs/x/latent_random.parquet\n  latent-export runs/x/images.parquet --model runs/x/simclr --representation head:1 --out runs/x/latent_head1.parquet\n  latent-export runs/x/images.parquet --model runs/x/simclr --shard 0/4 --out runs/x/latent/part-0.parquet"
)]
struct Args {
    /// Image table (Parquet file or folder of shards).
    images: PathBuf,

    /// Model folder written by latent-train.
    #[arg(
        long,
        required_unless_present = "random_init",
        conflicts_with = "random_init"
    )]
    model: Option<PathBuf>,

    /// Use an untrained encoder with batch norm calibrated on the train split instead.
    #[arg(long)]
    random_init: bool,

    /// Seed of the random-init encoder (default: `[run] seed` of --config, else 0).
    #[arg(long, requires = "random_init")]
    seed: Option<u64>,

    /// Pipeline config: its `[export]` section (batch size, row group, representation)
    /// overrides the trained model's; with --random-init it also gives the width and the
    /// normalisation. Flags override both.
    #[arg(long)]
    config: Option<PathBuf>,

    /// Latent table to write.
    #[arg(long)]
    out: PathBuf,

    /// Which output is the embedding: encoder (the pooled encoder output), head:K (layer K
    /// of the projection head, after its batch norm and ReLU; the last layer is the
    /// projection) or bottleneck (an autoencoder's code). Default: `[export]
    /// representation` of the model's config, "auto" = encoder for SimCLR, bottleneck for an
    /// autoencoder.
    #[arg(long, value_name = "encoder|head:K|bottleneck")]
    representation: Option<String>,

    /// Export only shard I of N (0-based): the I-th of N contiguous, near-equal slices of
    /// the image table's rows.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,

    /// Images per encoder batch (default `[export] batch_size`).
    #[arg(long)]
    batch_size: Option<usize>,

    /// Rows per Parquet row group (default `[export] row_group`).
    #[arg(long)]
    row_group: Option<usize>,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(
            PipelineConfig::load(path)
                .with_context(|| format!("reading the config {}", path.display()))?,
        ),
        None => None,
    };
    let export_section = config.as_ref().map(|c| c.export.clone());
    let source = match args.model {
        Some(dir) => ModelSource::Trained(dir),
        None => {
            let config = config.unwrap_or_default();
            let seed = args.seed.unwrap_or(config.run.seed);
            ModelSource::RandomInit {
                seed,
                config: Box::new(config),
            }
        }
    };
    let options = ExportOptions {
        batch_size: args
            .batch_size
            .or(export_section.as_ref().map(|e| e.batch_size)),
        row_group: args
            .row_group
            .or(export_section.as_ref().map(|e| e.row_group)),
        representation: args
            .representation
            .or(export_section.map(|e| e.representation)),
        shard: args.shard,
        ..ExportOptions::new(args.images.clone(), args.out.clone(), source)
    };
    export(&options).with_context(|| {
        format!(
            "exporting embeddings of {} to {}",
            args.images.display(),
            args.out.display()
        )
    })?;
    Ok(())
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    logging::init(args.verbosity);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
