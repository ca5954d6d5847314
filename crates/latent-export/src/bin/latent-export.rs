//! `latent-export`: encodes every image once and writes the latent table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};
use latent_export::{ExportOptions, ModelSource, export};

/// Embed every image of an image table with a trained (or random-init) small-cnn encoder.
///
/// Reads IMAGES (a Parquet image table from latent-ingest, or a folder of its shards) and
/// the model folder written by latent-train (model.safetensors + config.toml), and writes
/// the latent table (id, label, label_name, split, embedding) as Parquet. The embedding
/// is the encoder's pooled output in eval mode, without augmentation: for a SimCLR model
/// the encoder before the projection head, for an autoencoder model ([train] objective =
/// "autoencoder") its bottleneck, recorded as latent.representation =
/// "autoencoder-bottleneck" in the table's metadata.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  latent-export runs/x/images.parquet --model runs/x/simclr --out runs/x/latent.parquet\n  latent-export runs/x/images.parquet --model runs/x/autoencoder --out runs/x/latent_ae.parquet\n  latent-export runs/x/images.parquet --random-init --seed 0 --out runs/x/latent_random.parquet"
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

    /// Pipeline config for --random-init (width, normalisation, batch sizes).
    #[arg(long, requires = "random_init")]
    config: Option<PathBuf>,

    /// Latent table to write.
    #[arg(long)]
    out: PathBuf,

    /// Images per encoder batch (default `[export] batch_size`).
    #[arg(long)]
    batch_size: Option<usize>,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn run(args: Args) -> anyhow::Result<()> {
    let source = match args.model {
        Some(dir) => ModelSource::Trained(dir),
        None => {
            let config = match &args.config {
                Some(path) => PipelineConfig::load(path)
                    .with_context(|| format!("reading the config {}", path.display()))?,
                None => PipelineConfig::default(),
            };
            let seed = args.seed.unwrap_or(config.run.seed);
            ModelSource::RandomInit {
                seed,
                config: Box::new(config),
            }
        }
    };
    let options = ExportOptions {
        images: args.images.clone(),
        out: args.out.clone(),
        source,
        batch_size: args.batch_size,
        row_group: None,
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
