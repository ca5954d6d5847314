//! `latent-analyze`: parses the command line and runs the analysis in the library.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use latent_analyze::{AnalyzeOptions, run};
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};

/// Scores latent spaces: linear probes (1/10/100% labels), kNN and k-means on the test
/// split, with the raw pixels of the image table as the first baseline.
///
/// Reads the image table (--images) and each latent table (--latent NAME=PATH); writes
/// report.json, report.md and PNG pictures into --out: loss.png (with --steps), and for
/// each latent table map_NAME.png (PCA of the test rows), confusion_NAME.png (10% label
/// probe) and, for the first, neighbours_NAME.png. With --decoder NAME=MODEL_DIR (an
/// autoencoder trained by latent-train) it also draws interpolation_NAME.png (decoded walks
/// between class centroids and between test images) and reconstructions_NAME.png. Input
/// files and model folders are only read. Rows without a label, or in a split other than
/// train and test, are left out (and counted in the report).
#[derive(Debug, Parser)]
#[command(
    name = "latent-analyze",
    version,
    after_help = "Example:\n  latent-analyze --images runs/x/images.parquet \\\n    \
                  --latent simclr=runs/x/latent_simclr.parquet \\\n    \
                  --latent random-init=runs/x/latent_random.parquet \\\n    \
                  --latent autoencoder=runs/x/latent_autoencoder.parquet \\\n    \
                  --decoder autoencoder=runs/x/autoencoder \\\n    \
                  --steps runs/x/simclr/steps.parquet --config pipelines/x.toml \\\n    \
                  --out runs/x/report\n\nThe structure of report.json is described in \
                  crates/latent-analyze/REPORT_FORMAT.md."
)]
struct Cli {
    /// Image table written by latent-ingest (a Parquet file or a folder of shards).
    #[arg(long)]
    images: PathBuf,

    /// A latent table to score, as NAME=PATH (repeatable; NAME is used in the report).
    #[arg(long = "latent", value_name = "NAME=PATH", value_parser = parse_named)]
    latents: Vec<(String, PathBuf)>,

    /// An autoencoder model folder written by latent-train, as NAME=MODEL_DIR, NAME being
    /// the --latent name of its latent table; adds its interpolation and reconstructions
    /// pictures (repeatable).
    #[arg(long = "decoder", value_name = "NAME=MODEL_DIR", value_parser = parse_named)]
    decoders: Vec<(String, PathBuf)>,

    /// Steps table of the training run, for the final loss and positive top-1 and loss.png.
    #[arg(long)]
    steps: Option<PathBuf>,

    /// Pipeline config; its [analyze] section and [run].seed set the protocol.
    #[arg(long)]
    config: Option<PathBuf>,

    /// Folder to write report.json, report.md and the pictures into (created if missing).
    #[arg(long)]
    out: PathBuf,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn parse_named(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, found '{text}'")),
    }
}

fn main() {
    let cli = Cli::parse();
    logging::init(cli.verbosity);
    if let Err(error) = run_cli(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => PipelineConfig::load(path)
            .with_context(|| format!("loading the pipeline config {}", path.display()))?,
        None => PipelineConfig::default(),
    };
    if cli.latents.is_empty() {
        tracing::warn!("no --latent given: only the raw pixels are scored");
    }
    let options = AnalyzeOptions {
        images: cli.images,
        latents: cli.latents,
        decoders: cli.decoders,
        steps: cli.steps,
        config_path: cli.config,
        config: config.analyze,
        seed: config.run.seed,
        out: cli.out,
    };
    let report = match run(&options) {
        Ok(report) => report,
        Err(error) => bail!(
            anyhow::Error::new(error).context(format!("analysing into {}", options.out.display()))
        ),
    };
    tracing::info!(
        "wrote {} and {} in {:.1} s",
        options.out.join(latent_analyze::REPORT_JSON).display(),
        options.out.join(latent_analyze::REPORT_MD).display(),
        report.timings_s.total
    );
    Ok(())
}
