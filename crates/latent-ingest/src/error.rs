//! Errors that stop an ingest run.
//!
//! A bad *image* never stops a run: it becomes a row of the rejects table. These errors
//! are for a source that cannot be read at all (a missing folder, an IDX file whose header
//! disagrees with its length) and for outputs that cannot be written.

use std::path::PathBuf;

/// Why an ingest run failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },

    #[error("{path}: cannot write Parquet")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("{path}: cannot build the Arrow batch")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error(transparent)]
    Core(#[from] latent_core::Error),

    #[error("invalid option: {0}")]
    Option(String),
}

/// Result with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl IngestError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        IngestError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn source(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        IngestError::Source {
            path: path.into(),
            message: message.into(),
        }
    }
}
