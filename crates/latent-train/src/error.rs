//! The error type of the train library (and of the model code that `export` reuses).

use std::path::PathBuf;

/// What can go wrong while reading views, building a model or training it.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A shared-core failure: I/O on a named file, a schema mismatch, a bad config.
    #[error(transparent)]
    Core(#[from] latent_core::Error),

    /// A tensor operation failed (shape mismatch, unsupported op).
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),

    /// The input is readable but is not what the stage expects.
    #[error("{input}: expected {expected}, found {found}")]
    Input {
        input: String,
        expected: String,
        found: String,
    },

    /// The Arrow stream is malformed or cut short.
    #[error("{input}: the Arrow stream is malformed")]
    Arrow {
        input: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// A model folder or weights file does not hold what the model needs.
    #[error("{path}: {what}")]
    Model { path: PathBuf, what: String },

    /// Writing an output file failed.
    #[error("{path}: cannot write")]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A config value is not one of the accepted choices.
    #[error("[train] {key} = {value:?} is not supported (expected {expected})")]
    Setting {
        key: &'static str,
        value: String,
        expected: &'static str,
    },

    /// The representation asked for is not one this model has.
    #[error("cannot export the representation '{asked}': {reason}")]
    Representation { asked: String, reason: String },
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
