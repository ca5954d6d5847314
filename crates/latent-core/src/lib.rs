//! Shared pieces of the `latent` pipeline.
//!
//! Every stage binary depends on this crate and nothing else of ours needs to be shared
//! between them: the Arrow schemas of the tables that flow between stages ([`schema`]),
//! the pipeline config file ([`config`]), seeded randomness that does not depend on
//! thread scheduling ([`rng`]), output files that only appear once complete
//! ([`atomic`]), logging set-up ([`logging`]) and the shared error type ([`Error`]).

pub mod atomic;
pub mod config;
pub mod error;
pub mod image_table;
pub mod logging;
pub mod rng;
pub mod schema;

pub use error::{Error, Result};

/// The product version written into every table and report this toolkit produces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
