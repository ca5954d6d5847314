//! Latent tables open with no glue in Polars (native and through pyarrow) and pyarrow, as
//! `Array(Float32, d)` / `fixed_size_list<float>[d]` with the same row count, for d = 2
//! and for the real encoder's d = 256.
//!
//! The Python side runs in `.venv-test` (polars and pyarrow), which `make test` creates;
//! `LATENT_TEST_PYTHON` points the test at another interpreter.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use latent_core::schema::{self, latent};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use common::{copy_real_images, export_random_init, ingest, repo, run, stderr};

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("LATENT_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let path = repo().join(".venv-test/bin/python");
    assert!(
        path.exists(),
        "{} is missing: `make test` creates it (python3 -m venv + pip install polars pyarrow)",
        path.display()
    );
    path
}

fn read_with_python(table: &Path, dim: usize, rows: usize, first: &[f32]) {
    let first = serde_json::to_string(first).unwrap();
    let output = run(Command::new(python())
        .arg(repo().join("tests/python/read_latent.py"))
        .arg(table)
        .arg(dim.to_string())
        .arg(rows.to_string())
        .arg(first));
    assert!(
        output.status.success(),
        "Python readers disagree with the table:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
}

/// A latent table of `rows` rows of dimension `dim` with the schema of latent-core.
fn write_latent_table(path: &Path, rows: usize, dim: usize) -> Vec<f32> {
    let values: Vec<f32> = (0..rows * dim)
        .map(|i| (i % 997) as f32 * 0.25 - 7.0)
        .collect();
    let item = Arc::new(arrow::datatypes::Field::new(
        latent::EMBEDDING_ITEM,
        arrow::datatypes::DataType::Float32,
        false,
    ));
    let embedding = FixedSizeListArray::try_new(
        item,
        dim as i32,
        Arc::new(Float32Array::from(values.clone())),
        None,
    )
    .unwrap();
    let schema = schema::latent_table_schema(dim, Default::default());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows as i64)),
        Arc::new(Int32Array::from_iter(
            (0..rows).map(|i| Some((i % 10) as i32)),
        )),
        Arc::new(StringArray::from_iter(
            (0..rows).map(|i| Some(format!("class {}", i % 10))),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| if i % 5 == 0 { "test" } else { "train" }),
        )),
        Arc::new(embedding),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    values[..dim].to_vec()
}

#[test]
fn two_dimensional_embeddings_keep_their_row_count_in_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("latent_d2.parquet");
    let first = write_latent_table(&table, 1000, 2);
    read_with_python(&table, 2, 1000, &first);
}

#[test]
fn exported_encoder_table_opens_in_polars_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("images");
    copy_real_images(&source, &["cat", "dog", "ship"], 6);
    let images = dir.path().join("images.parquet");
    let latent_table = dir.path().join("latent.parquet");
    ingest(&source, &images);
    export_random_init(&images, &latent_table);

    let reader =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&latent_table).unwrap()).unwrap();
    let batch = reader.build().unwrap().next().unwrap().unwrap();
    let embedding = batch
        .column_by_name(latent::EMBEDDING)
        .unwrap()
        .as_any()
        .downcast_ref::<FixedSizeListArray>()
        .unwrap();
    let dim = embedding.value_length() as usize;
    let first = embedding.value(0);
    let first = first
        .as_any()
        .downcast_ref::<Float32Array>()
        .unwrap()
        .values()
        .to_vec();

    read_with_python(&latent_table, dim, 18, &first);
}
