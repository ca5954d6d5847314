//! Reading a manifest: a CSV or Parquet table that lists image files.
//!
//! A manifest has a `path` column (relative to the manifest's folder, or absolute) and
//! optional `label` (a class name) and `split` (train, test or val) columns. An empty or
//! null label leaves the row unlabelled; an empty or null split leaves it to the
//! stratified split. Ids are row positions in the manifest. Files are not opened here: a
//! missing or undecodable file becomes a row of the rejects table when it is decoded.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema};
use latent_core::schema::{self, images, kind};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{IngestError, Result};
use crate::layout::{Candidate, SPLIT_FOLDERS};

/// Column names of a manifest.
pub mod column {
    pub const PATH: &str = "path";
    pub const LABEL: &str = "label";
    pub const SPLIT: &str = "split";
}

/// Whether a Parquet file is a manifest: it has a `path` column and is not an image table.
pub fn is_parquet_manifest(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
        return false;
    };
    let schema = builder.schema();
    let image_table = schema::table_kind(schema) == Some(kind::IMAGES)
        || schema.field_with_name(images::PIXELS).is_ok();
    !image_table && schema.field_with_name(column::PATH).is_ok()
}

/// One manifest row as text, before it is checked.
struct Row {
    path: Option<String>,
    label: Option<String>,
    split: Option<String>,
}

/// Reads a `.csv` or `.parquet` manifest into candidates in row order.
pub fn list_manifest(manifest: &Path, unlabelled: bool) -> Result<Vec<Candidate<PathBuf>>> {
    let is_csv = !starts_with_parquet_magic(manifest)?;
    let rows = if is_csv {
        read_csv(manifest)?
    } else {
        read_parquet(manifest)?
    };
    if rows.is_empty() {
        return Err(IngestError::source(manifest, "the manifest has no rows"));
    }

    let base = manifest.parent().unwrap_or(Path::new("")).to_path_buf();
    let row_name = |index: usize| match is_csv {
        // Line 1 is the header.
        true => format!("line {}", index + 2),
        false => format!("row {index}"),
    };
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            let path = row.path.filter(|p| !p.is_empty()).ok_or_else(|| {
                IngestError::source(manifest, format!("{}: the path is empty", row_name(index)))
            })?;
            let split = match row.split.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(name) => Some(parse_split(name).ok_or_else(|| {
                    IngestError::source(
                        manifest,
                        format!(
                            "{}: split '{name}'; expected train, test, val or empty",
                            row_name(index)
                        ),
                    )
                })?),
            };
            let class = row.label.filter(|label| !label.is_empty() && !unlabelled);
            Ok(Candidate {
                locator: base.join(&path),
                rel: path,
                split,
                class,
                rejected: None,
            })
        })
        .collect()
}

/// Whether the file starts with `PAR1`, as every Parquet file does; anything else is read
/// as CSV, whatever its name.
fn starts_with_parquet_magic(manifest: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let read = File::open(manifest)
        .and_then(|mut file| std::io::Read::read(&mut file, &mut magic))
        .map_err(|e| IngestError::io(manifest, "opening the manifest", e))?;
    Ok(read == 4 && &magic == b"PAR1")
}

fn parse_split(name: &str) -> Option<&'static str> {
    SPLIT_FOLDERS.into_iter().find(|s| *s == name)
}

fn read_csv(manifest: &Path) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(manifest)
        .map_err(|e| csv_error(manifest, e))?;
    let headers = reader
        .headers()
        .map_err(|e| csv_error(manifest, e))?
        .clone();
    let position = |name: &str| headers.iter().position(|h| h.trim() == name);
    let path_column = position(column::PATH).ok_or_else(|| {
        IngestError::source(
            manifest,
            format!(
                "the manifest needs a '{}' column; its header is [{}]",
                column::PATH,
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let label_column = position(column::LABEL);
    let split_column = position(column::SPLIT);

    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(manifest, e))?;
        let field = |index: Option<usize>| index.and_then(|i| record.get(i)).map(String::from);
        rows.push(Row {
            path: field(Some(path_column)),
            label: field(label_column),
            split: field(split_column),
        });
    }
    Ok(rows)
}

fn csv_error(manifest: &Path, error: csv::Error) -> IngestError {
    IngestError::source(manifest, format!("cannot read the CSV manifest: {error}"))
}

fn read_parquet(manifest: &Path) -> Result<Vec<Row>> {
    let file =
        File::open(manifest).map_err(|e| IngestError::io(manifest, "opening the manifest", e))?;
    let parquet_error =
        |e| IngestError::source(manifest, format!("cannot read the Parquet manifest: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_error)?;
    let schema: Schema = builder.schema().as_ref().clone();
    if schema.field_with_name(column::PATH).is_err() {
        return Err(IngestError::source(
            manifest,
            format!(
                "the manifest needs a '{}' column; found {}",
                column::PATH,
                schema::describe(&schema)
            ),
        ));
    }
    let reader = builder.build().map_err(parquet_error)?;

    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::Arrow {
            path: manifest.to_path_buf(),
            source: e,
        })?;
        let paths = text_column(manifest, &batch, column::PATH)?;
        let labels = text_column(manifest, &batch, column::LABEL)?;
        let splits = text_column(manifest, &batch, column::SPLIT)?;
        let value = |column: &Option<arrow::array::ArrayRef>, i: usize| {
            let column = column.as_ref()?;
            let strings = column.as_string::<i32>();
            (!strings.is_null(i)).then(|| strings.value(i).to_string())
        };
        for i in 0..batch.num_rows() {
            rows.push(Row {
                path: value(&paths, i),
                label: value(&labels, i),
                split: value(&splits, i),
            });
        }
    }
    Ok(rows)
}

/// The column as UTF-8 strings (integers and other types are cast), if the batch has it.
fn text_column(
    manifest: &Path,
    batch: &RecordBatch,
    name: &str,
) -> Result<Option<arrow::array::ArrayRef>> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    cast(column, &DataType::Utf8).map(Some).map_err(|e| {
        IngestError::source(
            manifest,
            format!(
                "column '{name}' is {}, which cannot be read as text: {e}",
                column.data_type()
            ),
        )
    })
}
