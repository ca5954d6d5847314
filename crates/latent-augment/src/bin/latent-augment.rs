//! `latent-augment`: streams two SimCLR views of every training image, epoch after epoch,
//! as an Arrow IPC stream (or draws a preview grid of them).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use latent_augment::preview::write_preview;
use latent_augment::stream::default_workers;
use latent_augment::{Augmenter, StreamOptions, StreamOutcome, TrainImages, write_views};
use latent_core::atomic::AtomicFile;
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "latent-augment",
    version,
    about = "Stream two SimCLR views of every training image as an Arrow IPC stream.",
    long_about = "Reads the image table written by latent-ingest (rows with split \"train\") and \
                  writes, epoch after epoch, an Arrow IPC stream with columns epoch, id, view1 \
                  and view2 (float32, CHW, scaled to 0..1, then normalised when [augment] gives \
                  mean and std), one record batch per `chunk` images. Views depend only on the \
                  seed, the epoch, the image id and the view index, so the stream is the same \
                  whatever the number of workers. A reader that closes the pipe ends the stream \
                  quietly. With --preview it writes a PNG grid of views instead of the stream.",
    after_help = "Examples:\n  \
                  latent-augment runs/x/images.parquet --config pipelines/x.toml | latent-train ...\n  \
                  latent-augment runs/x/images.parquet --epochs 2 --out views.arrows\n  \
                  latent-augment runs/x/images.parquet --preview grid.png --preview-images 8 --preview-views 6"
)]
struct Cli {
    /// The image table (a Parquet file or a folder of shards) written by latent-ingest.
    images: PathBuf,

    /// Where to write the stream: a file (written atomically) or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    out: String,

    /// Pipeline config; its [augment] and [run] sections are used (default: built-in
    /// defaults, SimCLR's CIFAR setting).
    #[arg(long, short)]
    config: Option<PathBuf>,

    /// Seed of every random choice (default: [run] seed).
    #[arg(long)]
    seed: Option<u64>,

    /// Side of the square views in pixels (default: [augment] size).
    #[arg(long)]
    size: Option<u32>,

    /// Passes over the training images (default: [augment] epochs).
    #[arg(long)]
    epochs: Option<u32>,

    /// Worker threads (default: [augment] workers, or the cores minus one).
    #[arg(long, env = "LATENT_WORKERS")]
    workers: Option<usize>,

    /// Images per record batch (default: [augment] chunk).
    #[arg(long)]
    chunk: Option<usize>,

    /// Instead of the stream, write a PNG grid to this file: each source image (rows,
    /// spread over the table) beside several of its epoch-0 views, before normalisation.
    #[arg(long, value_name = "PNG")]
    preview: Option<PathBuf>,

    /// Rows of the preview grid.
    #[arg(long, default_value_t = 8, requires = "preview")]
    preview_images: usize,

    /// Views per row of the preview grid.
    #[arg(long, default_value_t = 6, requires = "preview")]
    preview_views: usize,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn main() {
    let cli = Cli::parse();
    logging::init(cli.verbosity);
    if let Err(error) = run(&cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> Result<()> {
    let mut config = match &cli.config {
        Some(path) => PipelineConfig::load(path)
            .with_context(|| format!("loading the config {}", path.display()))?,
        None => PipelineConfig::default(),
    };
    let seed = cli.seed.unwrap_or(config.run.seed);
    let settings = &mut config.augment;
    if let Some(size) = cli.size {
        settings.size = size;
    }
    if let Some(epochs) = cli.epochs {
        settings.epochs = epochs;
    }
    if let Some(workers) = cli.workers {
        settings.workers = workers;
    }
    if let Some(chunk) = cli.chunk {
        settings.chunk = chunk;
    }

    let images = latent_augment::load_train_images(&cli.images)
        .with_context(|| format!("reading the image table {}", cli.images.display()))?;
    info!(
        images = images.len(),
        channels = images.channels,
        "read the training images of {}",
        cli.images.display()
    );
    let augmenter = Augmenter::new(settings, images.channels)?;

    match &cli.preview {
        Some(png) => preview(cli, png, &images, &augmenter, seed),
        None => stream(&cli.out, &images, &augmenter, seed),
    }
}

fn preview(
    cli: &Cli,
    png: &Path,
    images: &TrainImages,
    augmenter: &Augmenter,
    seed: u64,
) -> Result<()> {
    let (rows, views) = (cli.preview_images, cli.preview_views);
    let written = write_preview(png, images, augmenter, seed, rows, views)
        .with_context(|| format!("writing the preview {}", png.display()))?;
    info!("wrote the preview grid to {}", written.display());
    Ok(())
}

fn stream(out: &str, images: &TrainImages, augmenter: &Augmenter, seed: u64) -> Result<()> {
    let settings = augmenter.config();
    let options = StreamOptions {
        seed,
        epochs: settings.epochs,
        workers: match settings.workers {
            0 => default_workers(),
            n => n,
        },
        chunk: settings.chunk,
    };

    let outcome = if out == "-" {
        write_views(
            images,
            augmenter,
            &options,
            std::io::stdout().lock(),
            "stdout",
        )?
    } else {
        let file = AtomicFile::create(out).with_context(|| format!("creating {out}"))?;
        let handle = file.try_clone()?;
        let outcome = write_views(images, augmenter, &options, handle, out)?;
        if matches!(outcome, StreamOutcome::Complete { .. }) {
            file.commit().with_context(|| format!("finishing {out}"))?;
        }
        outcome
    };
    if let StreamOutcome::ReaderClosed { rows } = outcome {
        info!(rows, "the reader closed the stream");
    }
    Ok(())
}
