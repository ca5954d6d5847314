//! Logging and progress set-up shared by the stage binaries.
//!
//! Logs go to stderr (stdout may carry an Arrow stream). The default level is `warn`
//! for dependencies and `info` for our own crates; `-v` raises ours to debug, `-q`
//! lowers them to warnings, and `RUST_LOG` overrides both.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Verbosity flags shared by every binary.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Verbosity {
    /// More detail on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Installs the global tracing subscriber writing to stderr.
pub fn init(verbosity: Verbosity) {
    let ours = match (verbosity.quiet, verbosity.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let default = format!(
        "warn,latent_core={ours},latent_ingest={ours},latent_augment={ours},latent_train={ours},latent_export={ours},latent_analyze={ours},latent_kernels={ours}"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .try_init();
}

/// A progress bar on stderr when it is a terminal, hidden otherwise (pipes, CI, tests).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
