//! `latent` turns a folder of images into a learned latent space, without Python.
//!
//! The work is done by one binary per pipeline stage, each in its own crate under
//! `crates/`: `latent-ingest`, `latent-augment`, `latent-train`, `latent-export` and
//! `latent-analyze`, with the shared schemas and config in `latent-core`. This root
//! package only carries the end-to-end tests in `tests/`; see the README for how the
//! stages fit together.
