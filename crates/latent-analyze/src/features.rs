//! Turning inputs into feature matrices: latent tables (read with Polars) and the raw
//! pixels of the image table, split into train and test rows and standardised.
//!
//! Rows without a label, or in a split other than `train` and `test`, cannot be scored
//! and are left out (and counted).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use latent_core::image_table::{self, ImageTable};
use latent_core::schema::{latent, split};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::*;
use tracing::warn;

use crate::error::{AnalyzeError, Result};
use crate::linalg::Matrix;

/// One set of features to score, split into train and test rows.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    /// The name it is reported under ("raw-pixels", or the `--latent` name).
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    pub train: Matrix,
    pub train_labels: Vec<i32>,
    pub test: Matrix,
    pub test_labels: Vec<i32>,
    /// The `id` of each train row and of each test row (the image table's id).
    pub train_ids: Vec<i64>,
    pub test_ids: Vec<i64>,
    /// Rows left out: no label, or a split other than train and test.
    pub skipped_rows: usize,
    /// What the features are, for the report: "raw pixels", or the model output a latent
    /// table says it holds (its `latent.representation` and `latent.model.kind` metadata,
    /// e.g. "encoder, trained"), or "unknown" when the table does not say.
    pub description: String,
}

impl FeatureSet {
    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.train.cols
    }

    /// Number of classes: one more than the largest label seen in either split.
    pub fn classes(&self) -> usize {
        self.train_labels
            .iter()
            .chain(&self.test_labels)
            .max()
            .map_or(0, |&m| m as usize + 1)
    }
}

/// Collects labelled rows into train and test matrices.
struct Splitter {
    dim: usize,
    train: Vec<f32>,
    train_labels: Vec<i32>,
    train_ids: Vec<i64>,
    test: Vec<f32>,
    test_labels: Vec<i32>,
    test_ids: Vec<i64>,
    skipped: usize,
}

impl Splitter {
    fn new(dim: usize) -> Self {
        Self {
            dim,
            train: Vec::new(),
            train_labels: Vec::new(),
            train_ids: Vec::new(),
            test: Vec::new(),
            test_labels: Vec::new(),
            test_ids: Vec::new(),
            skipped: 0,
        }
    }

    fn push(
        &mut self,
        id: i64,
        label: Option<i32>,
        split_name: &str,
        values: impl Iterator<Item = f32>,
    ) {
        match (label, split_name) {
            (Some(l), split::TRAIN) => {
                self.train.extend(values);
                self.train_labels.push(l);
                self.train_ids.push(id);
            }
            (Some(l), split::TEST) => {
                self.test.extend(values);
                self.test_labels.push(l);
                self.test_ids.push(id);
            }
            _ => self.skipped += 1,
        }
    }

    fn finish(self, name: &str, source: &Path, description: String) -> Result<FeatureSet> {
        if self.train_labels.is_empty() || self.test_labels.is_empty() {
            return Err(AnalyzeError::invalid(
                source,
                format!(
                    "needs labelled rows in both the train and the test split, found {} train \
                     and {} test ({} rows without a label or in another split)",
                    self.train_labels.len(),
                    self.test_labels.len(),
                    self.skipped
                ),
            ));
        }
        if let Some(bad) = self
            .train_labels
            .iter()
            .chain(&self.test_labels)
            .find(|&&l| l < 0)
        {
            return Err(AnalyzeError::invalid(
                source,
                format!("labels must be class ids >= 0, found {bad}"),
            ));
        }
        Ok(FeatureSet {
            name: name.to_string(),
            source: source.to_path_buf(),
            train: Matrix::from_vec(self.train_labels.len(), self.dim, self.train),
            train_labels: self.train_labels,
            train_ids: self.train_ids,
            test: Matrix::from_vec(self.test_labels.len(), self.dim, self.test),
            test_labels: self.test_labels,
            test_ids: self.test_ids,
            skipped_rows: self.skipped,
            description,
        })
    }
}

/// Raw pixels of the image table: flattened HWC bytes scaled to 0..1.
pub fn read_raw_pixels(path: &Path) -> Result<FeatureSet> {
    raw_pixels(&image_table::read_image_table(path)?)
}

/// Raw pixels of an image table already read (from `table.path`).
pub fn raw_pixels(table: &ImageTable) -> Result<FeatureSet> {
    let path = table.path.as_path();
    let (height, width, channels) = table.uniform_shape()?;
    let mut rows = Splitter::new((height * width * channels) as usize);
    for record in &table.records {
        let pixels = record.pixels.iter().map(|&p| f32::from(p) / 255.0);
        rows.push(record.id, record.label, &record.split, pixels);
    }
    rows.finish("raw-pixels", path, "raw pixels".into())
}

/// What a latent table must hold, for error messages.
const LATENT_COLUMNS: &str = "latent table with columns id, label (integer), label_name \
     (string), split (string), embedding (fixed_size_list<float32>[d])";

/// Reads a latent table (one Parquet file, or a folder of the shards `latent-export
/// --shard` writes) with Polars, refusing any table without the latent columns.
pub fn read_latent_table(name: &str, path: &Path) -> Result<FeatureSet> {
    let polars_error = |source| AnalyzeError::Polars {
        path: path.to_path_buf(),
        source,
    };
    let files = image_table::table_files(path)?;
    let mut frame: Option<DataFrame> = None;
    let mut dim = 0;
    for file in &files {
        let part = File::open(file)
            .map_err(|e| latent_core::Error::io(file, "opening the latent table", e))?;
        let part = ParquetReader::new(part)
            .finish()
            .map_err(|source| AnalyzeError::Polars {
                path: file.clone(),
                source,
            })?;
        let part_dim = check_latent_columns(file, &part)?;
        match frame.as_mut() {
            None => (frame, dim) = (Some(part), part_dim),
            Some(_) if part_dim != dim => {
                return Err(AnalyzeError::invalid(
                    file,
                    format!(
                        "embeddings of dimension {part_dim}, but {} has {dim}",
                        files[0].display()
                    ),
                ));
            }
            Some(whole) => {
                whole.vstack_mut_owned(part).map_err(polars_error)?;
            }
        }
    }
    let frame = frame.expect("table_files returns at least one file");
    let description = check_shards_agree(&files)?;

    let column = |name: &str| {
        frame
            .column(name)
            .map(Column::as_materialized_series)
            .map_err(polars_error)
    };
    let ids = column(latent::ID)?
        .cast(&DataType::Int64)
        .map_err(polars_error)?;
    let ids = ids.i64().map_err(polars_error)?;
    let labels = column(latent::LABEL)?
        .cast(&DataType::Int32)
        .map_err(polars_error)?;
    let labels = labels.i32().map_err(polars_error)?;
    let splits = column(latent::SPLIT)?;
    let splits = splits.str().map_err(polars_error)?;
    let embeddings = column(latent::EMBEDDING)?.array().map_err(polars_error)?;
    if embeddings.null_count() > 0 {
        return Err(AnalyzeError::invalid(
            path,
            format!("{} rows have a null embedding", embeddings.null_count()),
        ));
    }
    let values = embeddings.get_inner();
    let values = values.f32().map_err(polars_error)?;
    if values.null_count() > 0 {
        return Err(AnalyzeError::invalid(
            path,
            "the embeddings hold null values",
        ));
    }
    let values: Vec<f32> = values.into_no_null_iter().collect();
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(AnalyzeError::invalid(
            path,
            format!("row {} has a non-finite embedding value", at / dim.max(1)),
        ));
    }

    let mut rows = Splitter::new(dim);
    let mut seen = HashSet::with_capacity(ids.len());
    let rows_with_labels = ids.iter().zip(labels.iter()).zip(splits.iter());
    for (row, ((id, label), split_name)) in rows_with_labels.enumerate() {
        if let Some(id) = id
            && !seen.insert(id)
        {
            return Err(AnalyzeError::invalid(
                path,
                format!(
                    "image id {id} appears more than once (in a folder of shards: is a shard \
                     there twice?)"
                ),
            ));
        }
        let values = values[row * dim..(row + 1) * dim].iter().copied();
        rows.push(id.unwrap_or(-1), label, split_name.unwrap_or(""), values);
    }
    rows.finish(name, path, description)
}

/// The metadata keys that say which model output a latent table holds.
const ORIGIN_KEYS: [&str; 3] = [
    "latent.representation",
    "latent.model.kind",
    "latent.model.weights_sha256",
];

/// Checks that every file of a folder of shards says it holds the same model output
/// (representation, model kind, weights) and warns when `latent.shard` markers show that
/// shards are missing. Returns "REPRESENTATION, KIND" for the report, or "unknown" for
/// tables from elsewhere that record neither.
fn check_shards_agree(files: &[PathBuf]) -> Result<String> {
    let first = latent_metadata(&files[0]);
    let origin =
        |metadata: &HashMap<String, String>| ORIGIN_KEYS.map(|key| metadata.get(key).cloned());
    let mut shards = HashSet::new();
    let mut shard_count = None;
    for file in files {
        let metadata = latent_metadata(file);
        if origin(&metadata) != origin(&first) {
            return Err(AnalyzeError::invalid(
                file,
                format!(
                    "holds {} but {} holds {} (shards of different exports in one folder?)",
                    describe(&metadata),
                    files[0].display(),
                    describe(&first)
                ),
            ));
        }
        let marker = metadata.get("latent.shard").and_then(|s| s.split_once('/'));
        if let Some((index, count)) = marker {
            shards.insert(index.to_string());
            shard_count = count.parse::<usize>().ok();
        }
    }
    if let Some(count) = shard_count
        && shards.len() < count
    {
        warn!(
            folder = %files[0].parent().unwrap_or(Path::new(".")).display(),
            found = shards.len(),
            expected = count,
            "the folder holds only some shards of an export: scores cover those rows only"
        );
    }
    Ok(describe(&first))
}

/// "REPRESENTATION, KIND (weights abcdef12…)" in words.
fn describe(metadata: &HashMap<String, String>) -> String {
    match (
        metadata.get("latent.representation"),
        metadata.get("latent.model.kind"),
    ) {
        (Some(representation), Some(kind)) => format!("{representation}, {kind}"),
        (Some(representation), None) => representation.clone(),
        _ => "unknown".into(),
    }
}

/// A latent table's key-value metadata. The builder's Arrow schema carries the Parquet
/// footer's pairs and those of an encoded Arrow schema alike.
fn latent_metadata(file: &Path) -> HashMap<String, String> {
    File::open(file)
        .ok()
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok())
        .map(|builder| builder.schema().metadata().clone().into())
        .unwrap_or_default()
}

/// Checks the latent columns and returns the embedding dimension.
fn check_latent_columns(path: &Path, frame: &DataFrame) -> Result<usize> {
    let found = || {
        let columns: Vec<String> = frame
            .columns()
            .iter()
            .map(|c| format!("{}: {}", c.name(), c.dtype()))
            .collect();
        format!("columns [{}]", columns.join(", "))
    };
    let refuse = |problem: String| latent_core::Error::schema(path, problem, found());
    let dtype = |name: &str| frame.column(name).ok().map(|c| c.dtype().clone());

    for name in [
        latent::ID,
        latent::LABEL,
        latent::LABEL_NAME,
        latent::SPLIT,
        latent::EMBEDDING,
    ] {
        if dtype(name).is_none() {
            return Err(refuse(format!("{LATENT_COLUMNS} (missing column '{name}')")).into());
        }
    }
    let label = dtype(latent::LABEL).expect("checked above");
    if !label.is_integer() {
        return Err(refuse(format!("{LATENT_COLUMNS} (column 'label' is {label})")).into());
    }
    for name in [latent::LABEL_NAME, latent::SPLIT] {
        let found_type = dtype(name).expect("checked above");
        if found_type != DataType::String {
            return Err(refuse(format!(
                "{LATENT_COLUMNS} (column '{name}' is {found_type})"
            ))
            .into());
        }
    }
    match dtype(latent::EMBEDDING).expect("checked above") {
        DataType::Array(inner, width) if *inner == DataType::Float32 && width > 0 => Ok(width),
        other => Err(refuse(format!("{LATENT_COLUMNS} (column 'embedding' is {other})")).into()),
    }
}

/// Standardises both splits with the train split's mean and (population) std, in place.
///
/// A column constant over the train rows carries no information for a model fitted on
/// them; it is set to 0 in both splits, so it neither produces NaN nor sways the kNN.
pub fn standardise(set: &mut FeatureSet) {
    let (n, d) = (set.train.rows, set.train.cols);
    let mut mean = vec![0.0f64; d];
    for r in 0..n {
        for (m, &v) in mean.iter_mut().zip(set.train.row(r)) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut variance = vec![0.0f64; d];
    for r in 0..n {
        for ((s, &v), m) in variance.iter_mut().zip(set.train.row(r)).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let inverse_std: Vec<f64> = variance
        .iter()
        .map(|&s| {
            let std = (s / n as f64).sqrt();
            if std > 0.0 { 1.0 / std } else { 0.0 }
        })
        .collect();

    for matrix in [&mut set.train, &mut set.test] {
        for row in matrix.data.chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&inverse_std) {
                *v = ((f64::from(*v) - m) * s) as f32;
            }
        }
    }
}
