//! Latent tables open with no glue in Polars (native and through pyarrow) and pyarrow, as
//! `Array(Float32, d)` / `fixed_size_list<float>[d]` with the same row count, for d = 2,
//! for the real encoder's d = 256, for 500,000 rows, and as a folder of shards.
//!
//! The Python side runs in `.venv-test` (polars and pyarrow), which `make test` creates;
//! `LATENT_TEST_PYTHON` points the test at another interpreter.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{FixedSizeListArray, Float32Array};
use latent_core::schema::latent;
use latent_export::{LatentRows, LatentWriter, Shard, keys};
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

/// A latent table of `rows` rows of dimension `dim`, written by the export stage's writer
/// (8,192-row batches and row groups, as `latent-export` writes them) as one file, or as
/// `shards` files `part-I.parquet` in the folder `path`. Returns the first row's embedding.
fn write_latent_table(path: &Path, rows: usize, dim: usize, shards: usize) -> Vec<f32> {
    let value = |i: usize| (i % 997) as f32 * 0.25 - 7.0;
    if shards > 1 {
        std::fs::create_dir_all(path).unwrap();
    }
    for index in 0..shards {
        let shard = Shard {
            index,
            count: shards,
        };
        let out = if shards > 1 {
            path.join(format!("part-{index}.parquet"))
        } else {
            path.to_path_buf()
        };
        let metadata = vec![(keys::SHARD.to_string(), shard.to_string())];
        let mut writer = LatentWriter::create(&out, dim, metadata, 8192).unwrap();
        let range = shard.rows(rows);
        for start in range.clone().step_by(8192) {
            let end = (start + 8192).min(range.end);
            writer
                .write_rows(LatentRows {
                    ids: (start..end).map(|i| i as i64).collect(),
                    labels: (start..end).map(|i| Some((i % 10) as i32)).collect(),
                    label_names: (start..end)
                        .map(|i| Some(format!("class {}", i % 10)))
                        .collect(),
                    splits: (start..end)
                        .map(|i| if i % 5 == 0 { "test" } else { "train" }.to_string())
                        .collect(),
                    embeddings: (start * dim..end * dim).map(value).collect(),
                })
                .unwrap();
        }
        assert_eq!(writer.finish().unwrap(), range.len());
    }
    (0..dim).map(value).collect()
}

#[test]
fn two_dimensional_embeddings_keep_their_row_count_in_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("latent_d2.parquet");
    let first = write_latent_table(&table, 1000, 2, 1);
    read_with_python(&table, 2, 1000, &first);
}

/// Half a million rows, the size at which a row-count bug of Polars' pyarrow route would
/// show in any row group: d = 2 in one file, and d = 128 as a folder of four shards.
#[test]
fn half_a_million_rows_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("latent_d2.parquet");
    let first = write_latent_table(&table, 500_000, 2, 1);
    read_with_python(&table, 2, 500_000, &first);

    let folder = dir.path().join("latent_d128");
    let first = write_latent_table(&folder, 500_000, 128, 4);
    read_with_python(&folder, 128, 500_000, &first);
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
