//! The training steps table: only its last row is read, for the final loss and the
//! positive top-1 (the fraction of views whose most similar other view is their pair).
//!
//! The table must have a `loss` column; the top-1 is read from the first column whose
//! name contains `top1` (for example `positive_top1`), and is reported as absent when no
//! column does.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::error::{AnalyzeError, Result};
use crate::report::TrainingSummary;

/// The last step's loss and positive top-1 from the steps table at `path`.
pub fn summarise(path: &Path) -> Result<TrainingSummary> {
    let polars_error = |source| AnalyzeError::Polars {
        path: path.to_path_buf(),
        source,
    };
    let file =
        File::open(path).map_err(|e| latent_core::Error::io(path, "opening the steps table", e))?;
    let frame = ParquetReader::new(file).finish().map_err(polars_error)?;
    let columns: Vec<String> = frame
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    if frame.column("loss").is_err() {
        return Err(latent_core::Error::schema(
            path,
            "a steps table with a 'loss' column",
            format!("columns [{}]", columns.join(", ")),
        )
        .into());
    }
    let steps = frame.height();
    if steps == 0 {
        return Err(AnalyzeError::invalid(path, "the steps table has no rows"));
    }

    let last = |name: &str| -> Result<Option<f64>> {
        let column = frame.column(name).map_err(polars_error)?;
        let values = column
            .as_materialized_series()
            .cast(&DataType::Float64)
            .map_err(polars_error)?;
        Ok(values.f64().map_err(polars_error)?.get(steps - 1))
    };
    let final_loss =
        last("loss")?.ok_or_else(|| AnalyzeError::invalid(path, "the last step's loss is null"))?;
    let top1_column = columns.iter().find(|c| c.contains("top1")).cloned();
    let final_positive_top1 = match &top1_column {
        Some(name) => last(name)?,
        None => None,
    };
    Ok(TrainingSummary {
        path: path.to_path_buf(),
        steps,
        final_loss,
        positive_top1_column: top1_column,
        final_positive_top1,
    })
}

/// The training curves of a steps table, one entry per row.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCurves {
    /// The `step` column, or the row number when the table has none.
    pub step: Vec<f64>,
    pub loss: Vec<f64>,
    /// The first column whose name contains `top1`, with its name.
    pub positive_top1: Option<(String, Vec<f64>)>,
}

/// Reads the loss and positive top-1 of every step from the steps table at `path`
/// (null values are read as NaN and left out of the plot).
pub fn read_curves(path: &Path) -> Result<StepCurves> {
    let polars_error = |source| AnalyzeError::Polars {
        path: path.to_path_buf(),
        source,
    };
    let file =
        File::open(path).map_err(|e| latent_core::Error::io(path, "opening the steps table", e))?;
    let frame = ParquetReader::new(file).finish().map_err(polars_error)?;
    let floats = |name: &str| -> Result<Option<Vec<f64>>> {
        let Ok(column) = frame.column(name) else {
            return Ok(None);
        };
        let values = column
            .as_materialized_series()
            .cast(&DataType::Float64)
            .map_err(polars_error)?;
        let values = values.f64().map_err(polars_error)?;
        Ok(Some(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect()))
    };

    let loss = floats("loss")?.ok_or_else(|| {
        AnalyzeError::invalid(path, "a steps table needs a 'loss' column to plot")
    })?;
    let step = floats("step")?.unwrap_or_else(|| (1..=loss.len()).map(|s| s as f64).collect());
    let top1_name = frame
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .find(|name| name.contains("top1"));
    let positive_top1 = match top1_name {
        Some(name) => floats(&name)?.map(|values| (name, values)),
        None => None,
    };
    Ok(StepCurves {
        step,
        loss,
        positive_top1,
    })
}
