//! Errors of the analysis: each names the file (and row or column) it is about.

use std::path::PathBuf;

/// Why an analysis could not run.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Core(#[from] latent_core::Error),

    #[error("{path}: cannot read the table with Polars")]
    Polars {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },

    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },

    #[error("{path}: cannot draw the picture: {message}")]
    Picture { path: PathBuf, message: String },

    #[error("{option}: {what}")]
    Decoder {
        /// The `--decoder NAME=MODEL_DIR` option it is about.
        option: String,
        what: String,
        // Boxed: the trainer's error is large and would make every analyzer Result large.
        #[source]
        source: Box<latent_train::TrainError>,
    },

    #[error("{0}")]
    Usage(String),
}

impl AnalyzeError {
    /// A readable input whose content is not usable, with the reason.
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with [`AnalyzeError`].
pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;
