//! Bad inputs given to the real binaries: each is refused or recorded with a message that
//! names the file and the reason, and nothing valid next to it is lost.

mod common;

use std::fs::File;
use std::process::Command;

use arrow::array::{AsArray, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use common::{bin, copy_real_images, export_random_init, ingest, run, stderr};

fn read_parquet(path: &std::path::Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn corrupt_image_is_reported_and_the_others_come_through() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("images");
    copy_real_images(&source, &["cat", "dog"], 5);
    let good = std::fs::read(source.join("cat/0000.png")).unwrap();
    std::fs::write(source.join("cat/truncated.png"), &good[..good.len() / 2]).unwrap();
    std::fs::write(source.join("dog/notes.png"), b"this is not an image").unwrap();

    let out = dir.path().join("images.parquet");
    let rejects = dir.path().join("rejects.parquet");
    let output = run(Command::new(bin("latent-ingest"))
        .arg(&source)
        .arg("--out")
        .arg(&out)
        .arg("--rejects")
        .arg(&rejects));
    assert!(output.status.success(), "{}", stderr(&output));

    let rows: usize = read_parquet(&out).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 10, "every valid image is ingested");

    let rejected = read_parquet(&rejects);
    let paths: Vec<String> = rejected
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("path").expect("rejects has a path column");
            let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
            column
                .as_string::<i32>()
                .iter()
                .map(|p| p.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(
        paths.iter().any(|p| p.ends_with("cat/truncated.png")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.ends_with("dog/notes.png")),
        "{paths:?}"
    );
}

#[test]
fn latent_table_given_to_augment_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("images");
    copy_real_images(&source, &["cat", "dog"], 4);
    let images = dir.path().join("images.parquet");
    let latent = dir.path().join("latent.parquet");
    ingest(&source, &images);
    export_random_init(&images, &latent);

    let output = run(Command::new(bin("latent-augment"))
        .arg(&latent)
        .arg("--out")
        .arg("-"));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("latent.parquet"), "{message}");
    assert!(message.contains("image table"), "{message}");
    assert!(
        output.stdout.is_empty(),
        "nothing may reach stdout on a refused input"
    );
}

#[test]
fn truncated_views_stream_is_refused_and_leaves_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("images");
    copy_real_images(&source, &["cat", "dog"], 8);
    let images = dir.path().join("images.parquet");
    ingest(&source, &images);
    let views = dir.path().join("views.arrows");
    let augment = run(Command::new(bin("latent-augment"))
        .arg(&images)
        .args(["--epochs", "2", "--out"])
        .arg(&views));
    assert!(augment.status.success(), "{}", stderr(&augment));

    let bytes = std::fs::read(&views).unwrap();
    std::fs::write(&views, &bytes[..bytes.len() * 2 / 3]).unwrap();

    let model_dir = dir.path().join("model");
    let output = run(Command::new(bin("latent-train"))
        .arg(&views)
        .arg("--out")
        .arg(&model_dir));
    assert!(
        !output.status.success(),
        "a truncated stream must not train to completion"
    );
    let message = stderr(&output);
    assert!(message.contains("views.arrows"), "{message}");
    assert!(
        !model_dir.join("model.safetensors").exists(),
        "no model from a truncated stream"
    );
}

#[test]
fn config_with_an_unknown_key_is_refused_by_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("typo.toml");
    std::fs::write(&config, "[train]\nbatchsize = 64\n").unwrap();
    let out = dir.path().join("out");

    for (stage, args) in [
        ("latent-ingest", vec!["data/cifar10-small", "--out"]),
        ("latent-augment", vec!["data/cifar10-small", "--out"]),
        ("latent-train", vec!["-", "--out"]),
        ("latent-export", vec!["x.parquet", "--random-init", "--out"]),
    ] {
        let output = run(Command::new(bin(stage))
            .args(&args)
            .arg(&out)
            .arg("--config")
            .arg(&config));
        assert!(
            !output.status.success(),
            "{stage} accepted a config with an unknown key"
        );
        let message = stderr(&output);
        assert!(message.contains("typo.toml"), "{stage}: {message}");
        assert!(message.contains("batchsize"), "{stage}: {message}");
    }
    assert!(!out.exists(), "nothing was written");
}
