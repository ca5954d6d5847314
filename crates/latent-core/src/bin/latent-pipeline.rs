//! `latent-pipeline`: checks a pipeline config and slices it per stage for the Makefile.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latent_core::config::PipelineConfig;
use latent_core::logging::{self, Verbosity};

/// Checks pipeline configs and prepares them for the Makefile.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:
  latent-pipeline check pipelines/default.toml
  latent-pipeline slice pipelines/default.toml --out-dir runs/default/config"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    verbosity: Verbosity,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads a config, refuses unknown keys, and prints it with every default filled in.
    Check {
        /// The pipeline config (TOML).
        config: PathBuf,
    },
    /// Writes one file per stage (`ingest.toml`, `augment.toml`, `train.toml`,
    /// `export.toml`, `analyze.toml`, each with `[run]` and that stage's section) and
    /// `pipeline.toml` (the whole resolved config) into a folder. A file is rewritten
    /// only when its content changes, so Make reruns only the stages whose settings
    /// changed.
    Slice {
        /// The pipeline config (TOML).
        config: PathBuf,
        /// Folder for the slices (created if missing).
        #[arg(long)]
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbosity);
    let result = match cli.command {
        Command::Check { config } => {
            PipelineConfig::load(&config).map(|c| print!("{}", c.to_toml()))
        }
        Command::Slice { config, out_dir } => PipelineConfig::load(&config)
            .and_then(|c| latent_core::config::write_slices(&c, &out_dir))
            .map(|changed| {
                for path in changed {
                    tracing::info!("config changed: {}", path.display());
                }
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", latent_core::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
