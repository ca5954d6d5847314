//! Checkpoints: the model, the optimiser state and the position in the views stream, so
//! that `latent-train --resume` continues a run where it stopped.
//!
//! A checkpoint is one safetensors file: the model's tensors under their usual names, the
//! optimiser state (AdamW moments under `adamw.m.<name>` / `adamw.v.<name>`, SGD or LARS
//! momentum buffers under `sgd.v.<name>` / `lars.v.<name>`), and the counters in the
//! file's string metadata. The views stream is reproducible (it depends only on the seed,
//! the epoch and the image), so the position is the number of stream rows already
//! trained on; a resumed run skips that many rows of a stream made with the same config.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use latent_core::atomic;

use crate::error::{Result, TrainError};
use crate::model::{Architecture, Model, Objective};
use crate::optim::{Optimizer, OptimizerKind};

/// File name of the checkpoint inside the output folder.
pub const FILE: &str = "checkpoint.safetensors";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Optimiser steps done.
    pub steps: u64,
    /// Rows of the views stream consumed (trained on, or skipped as a one-image batch).
    pub rows_consumed: u64,
    /// Images that went through a training step.
    pub images_seen: u64,
    /// Epoch number of the first batch the run trained on.
    pub first_epoch: Option<u32>,
}

const STEPS_KEY: &str = "latent.train.steps";
const ROWS_KEY: &str = "latent.train.rows_consumed";
const IMAGES_KEY: &str = "latent.train.images_seen";
const FIRST_EPOCH_KEY: &str = "latent.train.first_epoch";

/// Writes the checkpoint atomically to `path`.
pub fn save(path: &Path, model: &Model, optimizer: &Optimizer, position: Position) -> Result<()> {
    let mut tensors = model.tensors()?;
    tensors.extend(optimizer.state());

    let mut metadata = HashMap::from([
        (STEPS_KEY.to_string(), position.steps.to_string()),
        (ROWS_KEY.to_string(), position.rows_consumed.to_string()),
        (IMAGES_KEY.to_string(), position.images_seen.to_string()),
    ]);
    if let Some(first) = position.first_epoch {
        metadata.insert(FIRST_EPOCH_KEY.to_string(), first.to_string());
    }
    let bytes = safetensors::tensor::serialize(
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        Some(metadata),
    )
    .map_err(|e| TrainError::Write {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    atomic::write_bytes(path, &bytes)?;
    Ok(())
}

/// Reads a checkpoint written by [`save`] for a model of family `objective` and
/// architecture `arch`, trained with an optimiser of `kind` (its state must be in the file).
pub fn load(
    path: &Path,
    objective: Objective,
    arch: Architecture,
    kind: OptimizerKind,
    weight_decay: f64,
) -> Result<(Model, Optimizer, Position)> {
    let bad = |what: String| TrainError::Model {
        path: path.to_path_buf(),
        what,
    };
    let bytes = std::fs::read(path)
        .map_err(|e| latent_core::Error::io(path, "reading the checkpoint", e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let number = |key: &str| -> Result<u64> {
        let value = metadata
            .get(key)
            .ok_or_else(|| bad(format!("not a checkpoint: metadata key {key} is missing")))?;
        value
            .parse()
            .map_err(|_| bad(format!("metadata {key} = {value:?} is not a number")))
    };
    let position = Position {
        steps: number(STEPS_KEY)?,
        rows_consumed: number(ROWS_KEY)?,
        images_seen: number(IMAGES_KEY)?,
        first_epoch: metadata.get(FIRST_EPOCH_KEY).and_then(|v| v.parse().ok()),
    };

    let model = Model::load(objective, arch, path)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let mut optimizer = Optimizer::new(kind, model.trainable(), weight_decay)?;
    optimizer
        .restore(&tensors, position.steps)
        .map_err(|e| bad(format!("{e}")))?;
    Ok((model, optimizer, position))
}
