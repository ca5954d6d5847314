//! The views stream and the binary end to end, on small tables written here.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};
use arrow::ipc::reader::StreamReader;
use latent_augment::stream::epoch_order;
use latent_augment::{Augmenter, StreamOptions, StreamOutcome, load_train_images, write_views};
use latent_core::config::AugmentConfig;
use latent_core::schema::{self, views};
use parquet::arrow::ArrowWriter;

/// Writes an image table of `train` + `test` images of `side` px with `channels` channels;
/// pixel values are a simple function of (id, index) so every image differs.
fn write_table(dir: &Path, train: usize, test: usize, side: usize, channels: usize) -> PathBuf {
    let n = train + test;
    let len = side * side * channels;
    let pixels: Vec<Vec<u8>> = (0..n)
        .map(|id| (0..len).map(|i| ((i * 7 + id * 31) % 256) as u8).collect())
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| 100 + i))),
        Arc::new(Int32Array::from_iter_values((0..n as i32).map(|i| i % 2))),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("c{}", i % 2)),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| if i < train { "train" } else { "test" }),
        )),
        Arc::new(Int32Array::from(vec![side as i32; n])),
        Arc::new(Int32Array::from(vec![side as i32; n])),
        Arc::new(Int32Array::from(vec![channels as i32; n])),
        Arc::new(BinaryArray::from_iter_values(pixels.iter())),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("img{i}.png")),
        )),
    ];
    let batch = RecordBatch::try_new(schema::image_table_schema(), columns).unwrap();
    let path = dir.join("images.parquet");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

fn stream_bytes(
    table: &Path,
    config: &AugmentConfig,
    seed: u64,
    epochs: u32,
    workers: usize,
) -> Vec<u8> {
    let images = load_train_images(table).unwrap();
    let augmenter = Augmenter::new(config, images.channels).unwrap();
    let options = StreamOptions {
        seed,
        epochs,
        workers,
        chunk: config.chunk,
    };
    let mut out = Vec::new();
    let outcome = write_views(&images, &augmenter, &options, &mut out, "memory").unwrap();
    let rows = u64::from(epochs) * images.len() as u64;
    assert_eq!(outcome, StreamOutcome::Complete { rows });
    out
}

fn read_stream(bytes: &[u8]) -> (arrow::datatypes::SchemaRef, Vec<RecordBatch>) {
    let reader = StreamReader::try_new(bytes, None).unwrap();
    let schema = reader.schema();
    (schema, reader.map(Result::unwrap).collect())
}

fn small_config() -> AugmentConfig {
    AugmentConfig {
        size: 8,
        chunk: 3,
        ..AugmentConfig::default()
    }
}

#[test]
fn streams_are_byte_identical_whatever_the_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 10, 2, 12, 3);
    let config = small_config();

    let one = stream_bytes(&table, &config, 7, 3, 1);
    let three = stream_bytes(&table, &config, 7, 3, 3);
    assert!(one == three, "1 and 3 workers differ");

    let other_seed = stream_bytes(&table, &config, 8, 3, 3);
    assert!(one != other_seed, "the seed changes the views");
}

#[test]
fn every_epoch_holds_each_training_image_once_in_a_shuffled_order() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 10, 2, 12, 3);
    let (schema, batches) = read_stream(&stream_bytes(&table, &small_config(), 1, 2, 2));

    assert_eq!(
        schema.fields(),
        schema::views_schema(3, 8, HashMap::new()).fields()
    );
    let meta = schema.metadata();
    assert_eq!(meta[schema::TABLE_KIND_KEY], schema::kind::VIEWS);
    assert_eq!(meta[views::SIZE_KEY], "8");
    assert_eq!(meta[views::CHANNELS_KEY], "3");
    assert_eq!(meta[views::EPOCHS_KEY], "2");
    assert_eq!(meta[views::IMAGES_PER_EPOCH_KEY], "10");
    assert_eq!(meta[views::SEED_KEY], "1");
    assert!(meta[views::CONFIG_KEY].contains("\"jitter_strength\":0.5"));

    // 10 images in chunks of 3: batches of 3, 3, 3, 1 per epoch.
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [3, 3, 3, 1, 3, 3, 3, 1]);

    let mut per_epoch: Vec<Vec<i64>> = vec![Vec::new(); 2];
    for batch in &batches {
        let epochs = batch.column(0).as_primitive::<UInt32Type>();
        let ids = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            per_epoch[epochs.value(row) as usize].push(ids.value(row));
        }
        for column in [2, 3] {
            let values = batch.column(column).as_fixed_size_list().values().clone();
            let values = values.as_primitive::<Float32Type>();
            assert_eq!(values.len(), batch.num_rows() * 3 * 8 * 8);
            assert!(values.values().iter().all(|v| (0.0..=1.0).contains(v)));
        }
        assert_ne!(
            batch.column(2).to_data(),
            batch.column(3).to_data(),
            "two views differ"
        );
    }

    let expected: Vec<i64> = (100..110).collect();
    for (epoch, ids) in per_epoch.iter().enumerate() {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "epoch {epoch} covers the train split once"
        );
        let order: Vec<i64> = epoch_order(1, epoch as u32, 10)
            .iter()
            .map(|&i| 100 + i as i64)
            .collect();
        assert_eq!(ids, &order, "epoch {epoch} follows the seeded shuffle");
    }
    assert_ne!(
        per_epoch[0], per_epoch[1],
        "epochs are shuffled differently"
    );
}

#[test]
fn an_identity_view_is_the_source_scaled_normalised_and_in_chw_order() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 1, 0, 4, 3);
    let config = AugmentConfig {
        size: 4,
        crop_scale: [1.0, 1.0],
        crop_ratio: [1.0, 1.0],
        flip_p: 0.0,
        jitter_p: 0.0,
        grayscale_p: 0.0,
        mean: vec![0.5, 0.4, 0.3],
        std: vec![0.2, 0.25, 0.5],
        ..AugmentConfig::default()
    };
    let (_, batches) = read_stream(&stream_bytes(&table, &config, 0, 1, 1));
    let values = batches[0].column(2).as_fixed_size_list().values().clone();
    let values = values.as_primitive::<Float32Type>().values().to_vec();

    // Image id 100 is row 0: the byte at HWC (pixel p, channel c) is (7 (3p + c)) % 256.
    for c in 0..3 {
        for p in 0..16 {
            let byte = ((3 * p + c) * 7 % 256) as f32;
            let expected = (byte / 255.0 - config.mean[c]) / config.std[c];
            let found = values[c * 16 + p];
            assert!(
                (found - expected).abs() < 1e-5,
                "channel {c} pixel {p}: {found} vs {expected}"
            );
        }
    }
}

#[test]
fn gray_tables_make_one_channel_views() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 4, 1, 10, 1);
    let (schema, batches) = read_stream(&stream_bytes(&table, &small_config(), 0, 1, 2));
    assert_eq!(schema.metadata()[views::CHANNELS_KEY], "1");
    assert_eq!(batches[0].column(2).as_fixed_size_list().value_length(), 64);
}

#[test]
fn a_latent_table_or_a_non_table_file_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();

    let latent = dir.path().join("latent.parquet");
    let schema = schema::latent_table_schema(2, HashMap::new());
    let writer = ArrowWriter::try_new(std::fs::File::create(&latent).unwrap(), schema, None);
    writer.unwrap().close().unwrap();
    let err = format!(
        "{:#}",
        anyhow::Error::new(load_train_images(&latent).unwrap_err())
    );
    assert!(
        err.contains("latent.parquet") && err.contains("missing column"),
        "{err}"
    );

    let text = dir.path().join("notes.parquet");
    std::fs::write(&text, "not a table").unwrap();
    let err = format!(
        "{:#}",
        anyhow::Error::new(load_train_images(&text).unwrap_err())
    );
    assert!(err.contains("notes.parquet"), "{err}");

    let test_only = write_table(dir.path(), 0, 3, 8, 3);
    let err = load_train_images(&test_only).unwrap_err().to_string();
    assert!(
        err.contains("images.parquet") && err.contains("no training images"),
        "{err}"
    );
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latent-augment"))
}

#[test]
fn a_reader_that_stops_early_ends_the_stream_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 10, 0, 12, 3);
    let mut child = binary()
        .args([
            table.to_str().unwrap(),
            "--size",
            "8",
            "--epochs",
            "100000",
            "-q",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut head = [0u8; 4096];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // Dropping the pipe's read end closes it.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}: {stderr}",
        output.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn the_binary_writes_a_file_atomically_and_a_preview_png() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), 6, 0, 12, 3);
    let out = dir.path().join("views.arrows");
    let status = binary()
        .args([
            table.to_str().unwrap(),
            "--size",
            "8",
            "--epochs",
            "2",
            "--workers",
            "2",
        ])
        .args(["--seed", "5", "-q", "--out", out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let config = AugmentConfig {
        size: 8,
        epochs: 2,
        ..AugmentConfig::default()
    };
    let expected = stream_bytes(&table, &config, 5, 2, 1);
    assert!(
        std::fs::read(&out).unwrap() == expected,
        "the file holds the library's stream"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let png = dir.path().join("grid.png");
    let status = binary()
        .args([
            table.to_str().unwrap(),
            "-q",
            "--preview",
            png.to_str().unwrap(),
        ])
        .args(["--preview-images", "3", "--preview-views", "4"])
        .status()
        .unwrap();
    assert!(status.success());
    let grid = image::open(&png).unwrap();
    // 32 px views enlarged 3x: 5 columns and 3 rows of 96 px cells with 4 px gaps.
    assert_eq!(
        (grid.width(), grid.height()),
        (5 * 96 + 6 * 4, 3 * 96 + 4 * 4)
    );
}

#[test]
fn a_missing_table_fails_with_its_path_in_the_message() {
    let output = binary()
        .args(["/nonexistent/images.parquet"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/images.parquet"), "{stderr}");
}
