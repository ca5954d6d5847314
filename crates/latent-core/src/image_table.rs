//! Reading the image table that `ingest` writes.
//!
//! `augment`, `export` and `analyze` (for the raw-pixel baseline) all read images the same
//! way, so the reading and the schema check live here. A table is either one Parquet file
//! or a folder of Parquet files (the shards of `ingest --shard I/N`), read as one table in
//! file-name order.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::schema::{self, images};
use crate::{Error, Result};

/// One decoded image, pixels in HWC order.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: i64,
    pub label: Option<i32>,
    pub label_name: Option<String>,
    pub split: String,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub pixels: Vec<u8>,
}

/// An image table held in memory.
#[derive(Debug, Clone)]
pub struct ImageTable {
    pub path: PathBuf,
    pub records: Vec<ImageRecord>,
}

impl ImageTable {
    /// The class names indexed by label id (labels without a name get `class_<id>`).
    pub fn class_names(&self) -> Vec<String> {
        let max = self.records.iter().filter_map(|r| r.label).max();
        let Some(max) = max else { return Vec::new() };
        let mut names: Vec<Option<String>> = vec![None; max as usize + 1];
        for r in &self.records {
            if let (Some(l), Some(n)) = (r.label, &r.label_name) {
                names[l as usize].get_or_insert_with(|| n.clone());
            }
        }
        names
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.unwrap_or_else(|| format!("class_{i}")))
            .collect()
    }

    /// The common (height, width, channels) of all images, or an error naming one that
    /// differs.
    pub fn uniform_shape(&self) -> Result<(u32, u32, u32)> {
        let first = self.records.first().ok_or_else(|| {
            Error::Invalid(format!("{}: the table has no images", self.path.display()))
        })?;
        let shape = (first.height, first.width, first.channels);
        if let Some(r) = self
            .records
            .iter()
            .find(|r| (r.height, r.width, r.channels) != shape)
        {
            return Err(Error::Invalid(format!(
                "{}: images differ in shape: id {} is {}x{}x{}, id {} is {}x{}x{}; \
                 ingest with --resize to make them uniform",
                self.path.display(),
                first.id,
                shape.0,
                shape.1,
                shape.2,
                r.id,
                r.height,
                r.width,
                r.channels
            )));
        }
        Ok(shape)
    }
}

/// The Parquet files that make up a table at `path` (a file, or a folder of shards).
pub fn table_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "opening the table", e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, "listing the table's shards", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                // `ingest --shard` writes each shard's rejects table beside it.
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".rejects.parquet"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the folder holds no .parquet files",
            path.display()
        )));
    }
    Ok(files)
}

/// Reads a whole image table, checking its schema first.
pub fn read_image_table(path: &Path) -> Result<ImageTable> {
    let mut records = Vec::new();
    for file in table_files(path)? {
        for batch in open_batches(&file)? {
            let batch = batch.map_err(|e| Error::Arrow {
                path: file.clone(),
                source: e,
            })?;
            records.extend(records_from_batch(&file, &batch)?);
        }
    }
    Ok(ImageTable {
        path: path.to_path_buf(),
        records,
    })
}

/// Opens one Parquet file as an image table and returns its record batches.
pub fn open_batches(file: &Path) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let handle = File::open(file).map_err(|e| Error::io(file, "opening the image table", e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| Error::Parquet {
        path: file.to_path_buf(),
        source: e,
    })?;
    schema::check_columns(
        file,
        "image table written by latent-ingest",
        &required_image_columns(),
        builder.schema(),
    )?;
    builder
        .with_batch_size(1024)
        .build()
        .map_err(|e| Error::Parquet {
            path: file.to_path_buf(),
            source: e,
        })
}

/// The columns every reader needs (`source` is optional so peers' tables are accepted).
fn required_image_columns() -> arrow::datatypes::Schema {
    let full = schema::image_table_schema();
    let fields: Vec<_> = full
        .fields()
        .iter()
        .filter(|f| f.name() != images::SOURCE)
        .cloned()
        .collect();
    arrow::datatypes::Schema::new(fields)
}

/// Converts one record batch of an image table into records, validating each row.
pub fn records_from_batch(file: &Path, batch: &RecordBatch) -> Result<Vec<ImageRecord>> {
    let arrow_err = |e| Error::Arrow {
        path: file.to_path_buf(),
        source: e,
    };
    let column = |name: &str| batch.column_by_name(name).expect("checked by the schema");
    let ints = |name: &str, ty: &DataType| cast(column(name), ty).map_err(arrow_err);

    let ids = ints(images::ID, &DataType::Int64)?;
    let ids = ids.as_primitive::<Int64Type>();
    let labels = ints(images::LABEL, &DataType::Int32)?;
    let labels = labels.as_primitive::<Int32Type>();
    let heights = ints(images::HEIGHT, &DataType::Int32)?;
    let heights = heights.as_primitive::<Int32Type>();
    let widths = ints(images::WIDTH, &DataType::Int32)?;
    let widths = widths.as_primitive::<Int32Type>();
    let channels = ints(images::CHANNELS, &DataType::Int32)?;
    let channels = channels.as_primitive::<Int32Type>();
    let names = cast(column(images::LABEL_NAME), &DataType::Utf8).map_err(arrow_err)?;
    let names = names.as_string::<i32>();
    let splits = cast(column(images::SPLIT), &DataType::Utf8).map_err(arrow_err)?;
    let splits = splits.as_string::<i32>();
    let pixels = cast(column(images::PIXELS), &DataType::Binary).map_err(arrow_err)?;
    let pixels = pixels.as_binary::<i32>();

    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let (h, w, c) = (heights.value(row), widths.value(row), channels.value(row));
        let id = ids.value(row);
        let bytes = pixels.value(row);
        let bad = |why: String| {
            Error::Invalid(format!(
                "{}: image id {id} (row {row}): {why}",
                file.display()
            ))
        };
        if h <= 0 || w <= 0 || !matches!(c, 1 | 3) {
            return Err(bad(format!("shape {h}x{w}x{c} is not a valid image shape")));
        }
        if bytes.len() != (h * w * c) as usize {
            return Err(bad(format!(
                "pixels hold {} bytes, the shape {h}x{w}x{c} needs {}",
                bytes.len(),
                h * w * c
            )));
        }
        if splits.is_null(row) {
            return Err(bad("split is null".into()));
        }
        out.push(ImageRecord {
            id,
            label: (!labels.is_null(row)).then(|| labels.value(row)),
            label_name: (!names.is_null(row)).then(|| names.value(row).to_string()),
            split: splits.value(row).to_string(),
            height: h as u32,
            width: w as u32,
            channels: c as u32,
            pixels: bytes.to_vec(),
        });
    }
    Ok(out)
}
