//! Manifests: CSV and Parquet tables listing image files, with labels and splits.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::{read_rejects, read_rows, write_png};
use latent_ingest::{IngestOptions, SourceFormat, detect_format, ingest};
use parquet::arrow::ArrowWriter;

/// Five images under `dir/img`, one of them not an image.
fn write_images(dir: &Path) -> Vec<Vec<u8>> {
    let pixels = (0..4u8)
        .map(|i| write_png(&dir.join(format!("img/{i}.png")), i))
        .collect();
    std::fs::write(dir.join("img/notes.png"), b"not a picture").unwrap();
    pixels
}

fn write_parquet_manifest(path: &Path, paths: &[&str], labels: &[Option<&str>]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(paths.to_vec())),
            Arc::new(StringArray::from(labels.to_vec())),
        ],
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn csv_manifest_keeps_row_order_labels_and_splits_and_rejects_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = write_images(dir.path());
    let absolute = dir.path().join("img/3.png");
    let manifest = dir.path().join("list.csv");
    std::fs::write(
        &manifest,
        format!(
            "path,label,split\n\
             img/1.png,dog,test\n\
             img/0.png,cat,train\n\
             img/gone.png,cat,train\n\
             img/2.png,,train\n\
             {},dog,\n\
             img/notes.png,cat,train\n",
            absolute.display()
        ),
    )
    .unwrap();
    assert_eq!(detect_format(&manifest).unwrap(), SourceFormat::Manifest);
    let out = dir.path().join("out/images.parquet");
    let mut options = IngestOptions::new(&manifest, &out);
    options.split.test_fraction = 0.0;

    let summary = ingest(&options).unwrap();

    assert_eq!(summary.format, Some(SourceFormat::Manifest));
    assert_eq!(
        (summary.seen, summary.ingested, summary.rejected),
        (6, 4, 2)
    );
    assert_eq!(summary.class_names, ["cat", "dog"]);
    let (rows, _) = read_rows(&out);
    let got: Vec<(i64, Option<i32>, Option<&str>, &str)> = rows
        .iter()
        .map(|r| (r.id, r.label, r.label_name.as_deref(), r.split.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, Some(1), Some("dog"), "test"),
            (1, Some(0), Some("cat"), "train"),
            (3, None, None, "train"),
            (4, Some(1), Some("dog"), "train"),
        ]
    );
    assert_eq!(rows[0].pixels, pixels[1]);
    assert_eq!(rows[3].pixels, pixels[3]);
    assert_eq!(rows[0].source, "img/1.png");

    let (rejects, _) = read_rejects(&options.rejects_path());
    let reasons: Vec<(&str, &str)> = rejects
        .iter()
        .map(|(path, reason, _)| (path.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("img/gone.png", "missing-file"),
            ("img/notes.png", "not-an-image")
        ]
    );
}

#[test]
fn parquet_manifest_with_a_null_label_is_detected_and_read() {
    let dir = tempfile::tempdir().unwrap();
    write_images(dir.path());
    let manifest = dir.path().join("list.parquet");
    write_parquet_manifest(
        &manifest,
        &["img/0.png", "img/1.png", "img/missing.png", "img/2.png"],
        &[Some("b"), None, Some("a"), Some("b")],
    );
    assert_eq!(detect_format(&manifest).unwrap(), SourceFormat::Manifest);
    let out = dir.path().join("images.parquet");
    let mut options = IngestOptions::new(&manifest, &out);
    options.split.test_fraction = 0.0;

    let summary = ingest(&options).unwrap();

    assert_eq!(
        (summary.seen, summary.ingested, summary.rejected),
        (4, 3, 1)
    );
    assert_eq!(summary.reasons.get("missing-file"), Some(&1));
    // "a" names a class even though its only file is missing, so "b" is label 1.
    assert_eq!(summary.class_names, ["a", "b"]);
    let (rows, _) = read_rows(&out);
    let labels: Vec<(i64, Option<i32>)> = rows.iter().map(|r| (r.id, r.label)).collect();
    assert_eq!(labels, [(0, Some(1)), (1, None), (3, Some(1))]);

    // The image table just written has pixels, so it is read as an image table.
    assert_eq!(detect_format(&out).unwrap(), SourceFormat::Parquet);
}

#[test]
fn manifest_errors_name_the_file_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let no_path = dir.path().join("a.csv");
    std::fs::write(&no_path, "file,label\nx.png,cat\n").unwrap();
    let bad_split = dir.path().join("b.csv");
    std::fs::write(&bad_split, "path,split\nx.png,train\ny.png,holdout\n").unwrap();
    let out = dir.path().join("images.parquet");

    let error = ingest(&IngestOptions::new(&no_path, &out))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("a.csv") && error.contains("'path' column"),
        "{error}"
    );
    assert!(error.contains("[file, label]"), "{error}");

    let error = ingest(&IngestOptions::new(&bad_split, &out))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("b.csv") && error.contains("line 3"),
        "{error}"
    );
    assert!(error.contains("'holdout'"), "{error}");
    assert!(!out.exists());
}
