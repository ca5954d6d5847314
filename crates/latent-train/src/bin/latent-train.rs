//! `latent-train`: trains SimCLR or the autoencoder on a views stream and writes the model
//! folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};
use latent_train::{TrainOptions, train};

/// Keeps freed tensor buffers for the next step instead of returning them to the kernel
/// (see `latent_kernels::ReusingAllocator`): a step then takes almost no page faults.
#[global_allocator]
static ALLOCATOR: latent_kernels::ReusingAllocator = latent_kernels::ReusingAllocator::new(2 << 30);

/// Train the small-cnn encoder with SimCLR (NT-Xent) or as an autoencoder on views from
/// latent-augment.
///
/// Reads an Arrow IPC views stream (a file, or `-` for stdin so that `latent-augment |
/// latent-train` works) and writes to --out: model.safetensors (encoder, head or decoder,
/// batch-norm statistics, PyTorch state_dict names), config.toml (the config used),
/// steps.parquet (loss, lr, positive top-1 and speed per step), summary.json and
/// checkpoint.safetensors (model + optimiser state + stream position, for --resume; also
/// every `[train] checkpoint_every` steps).
///
/// `[train] objective = "simclr"` (default) trains encoder + projection head on NT-Xent
/// between view1 and view2. `[train] objective = "autoencoder"` trains encoder + mirrored
/// decoder (views' side a multiple of 8) on the mean squared error between the decoder's
/// output and view1; view2 is read but ignored, because an autoencoder reconstructs one
/// image and has no pairs to match, and its positive_top1 column is null. The peer trains
/// the autoencoder on the plain images, so give it views with `[augment]` crop_scale =
/// [1.0, 1.0], crop_ratio = [1.0, 1.0], flip_p = 0, jitter_p = 0, grayscale_p = 0,
/// blur_p = 0 (view1 is then the normalised image) and `[train] weight_decay = 0` (AdamW
/// without decay is the peer's Adam).
///
/// `[train] optimizer` is "adamw" (default), "sgd" (momentum 0.9) or "lars" (SimCLR's:
/// momentum 0.9, trust coefficient 0.001, biases and batch-norm parameters neither decayed
/// nor scaled; the peer's `--optimizer lars` is lr = 0.075 with `lr_scaling = "sqrt"`,
/// `schedule = "cosine"`, `warmup = 0.1`). `[train] lr_scaling` = "none", "linear"
/// (lr * batch / 256) or "sqrt" (lr * sqrt(batch)).
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Example:\n  latent-augment images.parquet --config pipelines/x.toml \\\n    | latent-train - --out runs/x/simclr --config pipelines/x.toml --max-minutes 10\n  latent-augment images.parquet --config pipelines/ae.toml \\\n    | latent-train - --out runs/x/autoencoder --config pipelines/ae.toml"
)]
struct Args {
    /// Views stream to read (`-`: stdin).
    #[arg(default_value = "-")]
    views: PathBuf,

    /// Output folder for the model and the run's records.
    #[arg(long)]
    out: PathBuf,

    /// Pipeline config; `[train]` and `[run]` are used (defaults without it).
    #[arg(long)]
    config: Option<PathBuf>,

    /// Train at most this many epochs of the stream.
    #[arg(long)]
    epochs_cap: Option<u32>,

    /// Stop after this many minutes of training (overrides `[train] max_minutes`).
    #[arg(long)]
    max_minutes: Option<f64>,

    /// Seed of the weight initialisation (overrides `[run] seed`).
    #[arg(long)]
    seed: Option<u64>,

    /// Continue the run in --out from its checkpoint.safetensors (model, optimiser state
    /// and position in the stream); give it the same views stream again.
    #[arg(long)]
    resume: bool,

    /// Use candle's own convolution and batch norm instead of latent-kernels
    /// (overrides `[train] fast_kernels`).
    #[arg(long)]
    candle_ops: bool,

    #[command(flatten)]
    verbosity: Verbosity,
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => PipelineConfig::load(path)
            .with_context(|| format!("reading the config {}", path.display()))?,
        None => PipelineConfig::default(),
    };
    if let Some(minutes) = args.max_minutes {
        config.train.max_minutes = minutes;
    }
    if let Some(seed) = args.seed {
        config.run.seed = seed;
    }
    if args.candle_ops {
        config.train.fast_kernels = false;
    }

    let options = TrainOptions {
        out: args.out.clone(),
        config,
        epochs_cap: args.epochs_cap,
        resume: args.resume,
    };
    train(&args.views, &options).with_context(|| {
        format!(
            "training on {} into {}",
            args.views.display(),
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
