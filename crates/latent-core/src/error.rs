//! The error type shared by the library crates.
//!
//! Messages name the file (or row) and say what was expected and what was found, because
//! they are what a user sees when a stage refuses an input.

use std::path::PathBuf;

/// Errors raised by `latent-core` helpers and reused by the stage libraries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a {expected}: {found}")]
    Schema {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error("{path}: cannot read Parquet")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("{path}: Arrow data is malformed")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("{path}: invalid pipeline config")]
    Config {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },

    #[error("{0}")]
    Invalid(String),
}

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `path` while doing `action` ("reading", "creating", ...).
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// A file that is readable but is not the kind of table that was expected.
    pub fn schema(
        path: impl Into<PathBuf>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Schema {
            path: path.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}

/// Formats an error with all its sources, "outer: inner: innermost", as binaries print it.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
