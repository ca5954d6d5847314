//! Export of tiny trained (SimCLR and autoencoder) and random-init models: rows, ids,
//! embeddings, refusals.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float32Type, Int32Type, Int64Type};
use candle_core::{Device, Tensor};
use latent_core::config::PipelineConfig;
use latent_core::rng::rng_for;
use latent_export::{ExportOptions, ModelSource, Shard, export, keys};
use latent_train::model::{Backend, Model};
use latent_train::views::write_views_stream;
use latent_train::{TrainOptions, load_model_dir, train};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::RngExt;

const SIZE: usize = 8;
const IMAGES: usize = 7;

/// Pixels of image `id`: seeded random bytes, HWC.
fn pixels(id: usize) -> Vec<u8> {
    let mut rng = rng_for(id as u64, &[7]);
    (0..SIZE * SIZE * 3).map(|_| rng.random::<u8>()).collect()
}

fn split_of(id: usize) -> &'static str {
    if id < 5 { "train" } else { "test" }
}

/// The default tiny table: `IMAGES` images of `SIZE`, ids from 100, split by [`split_of`].
fn write_image_table(path: &Path) {
    let images: Vec<(usize, &str)> = (0..IMAGES).map(|i| (SIZE, split_of(i))).collect();
    write_images(path, 100, &images);
}

fn train_tiny_model(dir: &Path) -> std::path::PathBuf {
    train_tiny_model_with(dir, "simclr")
}

/// Trains a tiny model of the given `[train] objective` into `dir/<objective>`.
fn train_tiny_model_with(dir: &Path, objective: &str) -> std::path::PathBuf {
    let views = dir.join(format!("views_{objective}.arrow"));
    let rows: Vec<(u32, i64, Vec<f32>, Vec<f32>)> = (0..6)
        .map(|id| {
            let mut rng = rng_for(id, &[8]);
            let mut view = || {
                (0..3 * SIZE * SIZE)
                    .map(|_| rng.random::<f32>() - 0.5)
                    .collect()
            };
            (0, id as i64, view(), view())
        })
        .collect();
    write_views_stream(std::fs::File::create(&views).unwrap(), 3, SIZE, &rows, 4).unwrap();

    let mut config = PipelineConfig::default();
    config.train.objective = objective.to_string();
    config.train.width = 0.25;
    config.train.projection_dim = 8;
    config.train.batch_size = 3;
    config.train.fast_kernels = false;
    config.augment.size = SIZE as u32;
    config.augment.mean = vec![0.4, 0.5, 0.6];
    config.augment.std = vec![0.2, 0.25, 0.3];
    let out = dir.join(objective);
    train(
        &views,
        &TrainOptions {
            out: out.clone(),
            config,
            epochs_cap: None,
            resume: false,
        },
    )
    .unwrap();
    out
}

fn read_table(path: &Path) -> (RecordBatch, std::collections::HashMap<String, String>) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let metadata = schema.metadata().clone();
    (
        arrow::compute::concat_batches(&schema, &batches).unwrap(),
        metadata.into(),
    )
}

fn embeddings(batch: &RecordBatch) -> Vec<f32> {
    let list = batch
        .column_by_name("embedding")
        .unwrap()
        .as_fixed_size_list();
    list.values()
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

#[test]
fn trained_export_has_one_row_per_image_and_the_encoders_output() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let model_dir = train_tiny_model(dir.path());
    let out = dir.path().join("latent.parquet");

    let summary = export(&ExportOptions {
        images: images.clone(),
        out: out.clone(),
        source: ModelSource::Trained(model_dir.clone()),
        batch_size: Some(3),
        row_group: Some(4),
        representation: None,
        shard: None,
    })
    .unwrap();
    assert_eq!((summary.rows, summary.dim), (IMAGES, 64));

    let (table, metadata) = read_table(&out);
    assert_eq!(table.num_rows(), IMAGES);
    let ids: Vec<i64> = table
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, (100..100 + IMAGES as i64).collect::<Vec<_>>());
    let labels = table.column(1).as_primitive::<Int32Type>();
    assert_eq!(labels.value(3), 1);
    let splits = table.column(3).as_string::<i32>();
    assert_eq!(splits.value(4), "train");
    assert_eq!(splits.value(5), "test");
    assert_eq!(
        metadata.get("latent.table").map(String::as_str),
        Some("latent")
    );
    assert_eq!(
        metadata.get(keys::REPRESENTATION).map(String::as_str),
        Some("encoder")
    );
    assert_eq!(metadata.get(keys::WEIGHTS_SHA256).unwrap().len(), 64);
    let row_groups = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap())
        .unwrap()
        .metadata()
        .num_row_groups();
    assert_eq!(row_groups, 2);

    // The same images normalised by hand with the trained config's mean and std, run
    // through the loaded encoder directly.
    let trained = load_model_dir(&model_dir).unwrap();
    let (mean, std) = ([0.4f32, 0.5, 0.6], [0.2f32, 0.25, 0.3]);
    let mut values = Vec::new();
    for id in 0..IMAGES {
        let p = pixels(id);
        for c in 0..3 {
            for i in 0..SIZE * SIZE {
                values.push((p[i * 3 + c] as f32 / 255.0 - mean[c]) / std[c]);
            }
        }
    }
    let x = Tensor::from_vec(values, (IMAGES, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let direct: Vec<f32> = trained
        .model
        .encoder()
        .forward_eval(&x, Backend::Candle)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let exported = embeddings(&table);
    assert_eq!(exported.len(), direct.len());
    let worst = exported
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");
    assert!(exported.iter().any(|v| *v > 0.0));
}

#[test]
fn random_init_export_is_seeded_and_calibrated() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let mut config = PipelineConfig::default();
    config.train.width = 0.25;
    let run = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        export(&ExportOptions {
            images: images.clone(),
            out: out.clone(),
            source: ModelSource::RandomInit {
                seed,
                config: Box::new(config.clone()),
            },
            batch_size: None,
            row_group: None,
            representation: None,
            shard: None,
        })
        .unwrap();
        let (table, metadata) = read_table(&out);
        assert_eq!(
            metadata.get(keys::MODEL_KIND).map(String::as_str),
            Some("random-init")
        );
        embeddings(&table)
    };
    let a = run("a.parquet", 1);
    assert_eq!(a, run("b.parquet", 1));
    assert_ne!(a, run("c.parquet", 2));
    assert!(a.iter().all(|v| v.is_finite()));

    // Calibrated batch norm centres each channel on the train split before the ReLU, so
    // pooled outputs are neither all zero nor huge.
    let mean_abs = a.iter().map(|v| v.abs()).sum::<f32>() / a.len() as f32;
    assert!(mean_abs > 0.05 && mean_abs < 5.0, "{mean_abs}");
}

#[test]
fn views_stream_given_as_images_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_views_stream(
        std::fs::File::create(&views).unwrap(),
        3,
        4,
        &[(0, 1, vec![0.0; 48], vec![0.0; 48])],
        1,
    )
    .unwrap();
    let err = export(&ExportOptions {
        images: views,
        out: dir.path().join("latent.parquet"),
        source: ModelSource::RandomInit {
            seed: 0,
            config: Box::default(),
        },
        batch_size: None,
        row_group: None,
        representation: None,
        shard: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("views.arrow") && err.contains("Arrow IPC stream"),
        "{err}"
    );
    assert!(!dir.path().join("latent.parquet").exists());
}

#[test]
fn latent_table_given_as_images_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let mut config = PipelineConfig::default();
    config.train.width = 0.25;
    let latent = dir.path().join("latent.parquet");
    let options = |input: &Path, out: &Path| ExportOptions {
        images: input.to_path_buf(),
        out: out.to_path_buf(),
        source: ModelSource::RandomInit {
            seed: 0,
            config: Box::new(config.clone()),
        },
        batch_size: None,
        row_group: None,
        representation: None,
        shard: None,
    };
    export(&options(&images, &latent)).unwrap();

    let err = export(&options(&latent, &dir.path().join("again.parquet")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("latent.parquet") && err.contains("missing column"),
        "{err}"
    );
    assert_eq!(table_len(&latent), IMAGES);
}

fn table_len(path: &Path) -> usize {
    read_table(path).0.column(0).len()
}

#[test]
fn autoencoder_export_gives_the_bottleneck() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let model_dir = train_tiny_model_with(dir.path(), "autoencoder");
    let out = dir.path().join("latent_ae.parquet");

    let summary = export(&ExportOptions {
        images,
        out: out.clone(),
        source: ModelSource::Trained(model_dir.clone()),
        batch_size: Some(4),
        row_group: None,
        representation: None,
        shard: None,
    })
    .unwrap();
    assert_eq!((summary.rows, summary.dim), (IMAGES, 64));

    let (table, metadata) = read_table(&out);
    assert_eq!(
        metadata.get(keys::REPRESENTATION).map(String::as_str),
        Some("bottleneck")
    );
    assert!(
        metadata
            .get(keys::MODEL_CONFIG)
            .unwrap()
            .contains("objective = \"autoencoder\"")
    );

    // The bottleneck: the autoencoder's encoder in eval mode on the normalised images.
    let trained = load_model_dir(&model_dir).unwrap();
    assert!(matches!(trained.model, Model::Autoencoder(_)));
    let (mean, std) = ([0.4f32, 0.5, 0.6], [0.2f32, 0.25, 0.3]);
    let mut values = Vec::new();
    for id in 0..IMAGES {
        let p = pixels(id);
        for c in 0..3 {
            for i in 0..SIZE * SIZE {
                values.push((p[i * 3 + c] as f32 / 255.0 - mean[c]) / std[c]);
            }
        }
    }
    let x = Tensor::from_vec(values, (IMAGES, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let direct: Vec<f32> = trained
        .model
        .encoder()
        .forward_eval(&x, Backend::Candle)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let exported = embeddings(&table);
    assert_eq!(exported.len(), direct.len());
    let worst = exported
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");
}

#[test]
fn shards_tile_the_table_and_equal_the_whole_export() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let model_dir = train_tiny_model(dir.path());
    let run = |name: &str, shard: Option<Shard>| {
        let out = dir.path().join(name);
        let options = ExportOptions {
            batch_size: Some(2),
            shard,
            ..ExportOptions::new(
                images.clone(),
                out.clone(),
                ModelSource::Trained(model_dir.clone()),
            )
        };
        export(&options).unwrap();
        read_table(&out)
    };

    let (whole, whole_metadata) = run("whole.parquet", None);
    assert!(!whole_metadata.contains_key(keys::SHARD));
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut sizes = Vec::new();
    for index in 0..3 {
        let shard = Shard::parse(&format!("{index}/3")).unwrap();
        let (part, metadata) = run(&format!("part-{index}.parquet"), Some(shard));
        assert_eq!(
            metadata.get(keys::SHARD).map(String::as_str),
            Some(format!("{index}/3").as_str())
        );
        sizes.push(part.num_rows());
        ids.extend(
            part.column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
        values.extend(embeddings(&part));
    }
    // 7 rows in 3 shards: sizes 2, 2, 3, in table order, together the whole table.
    assert_eq!(sizes, vec![2, 2, 3]);
    let whole_ids: Vec<i64> = whole
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(ids, whole_ids);
    assert_eq!(values, embeddings(&whole));
}

#[test]
fn shard_text_is_checked() {
    assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
    for bad in ["5/5", "1/0", "1", "a/b", "-1/3", ""] {
        let err = Shard::parse(bad).unwrap_err().to_string();
        assert!(err.contains("I/N"), "{bad}: {err}");
    }
    let shard = Shard { index: 0, count: 4 };
    assert_eq!(shard.rows(0), 0..0);
    let total: usize = (0..4)
        .map(|i| Shard { index: i, count: 4 }.rows(10).len())
        .sum();
    assert_eq!(total, 10);
}

#[test]
fn head_layers_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let model_dir = train_tiny_model(dir.path());
    let run = |representation: &str| {
        let out = dir
            .path()
            .join(format!("{}.parquet", representation.replace(':', "_")));
        let options = ExportOptions {
            representation: Some(representation.to_string()),
            ..ExportOptions::new(
                images.clone(),
                out.clone(),
                ModelSource::Trained(model_dir.clone()),
            )
        };
        export(&options).map(|summary| (summary, read_table(&out).1))
    };

    // Width 0.25: a 64-d encoder output, a 64-d hidden head layer, an 8-d projection.
    for (representation, dim) in [("encoder", 64), ("head:1", 64), ("head:2", 8)] {
        let (summary, metadata) = run(representation).unwrap();
        assert_eq!(summary.dim, dim, "{representation}");
        assert_eq!(
            metadata.get(keys::REPRESENTATION).map(String::as_str),
            Some(representation)
        );
    }
    let err = format!("{:#}", anyhow::Error::new(run("head:3").unwrap_err()));
    assert!(err.contains("head:1 to head:2"), "{err}");
    let err = format!("{:#}", anyhow::Error::new(run("bottleneck").unwrap_err()));
    assert!(err.contains("no bottleneck"), "{err}");
    assert!(!dir.path().join("bottleneck.parquet").exists());

    let mut config = PipelineConfig::default();
    config.train.width = 0.25;
    let options = ExportOptions {
        representation: Some("head:1".into()),
        ..ExportOptions::new(
            images.clone(),
            dir.path().join("random.parquet"),
            ModelSource::RandomInit {
                seed: 0,
                config: Box::new(config),
            },
        )
    };
    let err = format!("{:#}", anyhow::Error::new(export(&options).unwrap_err()));
    assert!(err.contains("random-init"), "{err}");
}

/// An image table of one image per `(side, split)`, ids from `first_id`, 3 channels,
/// seeded pixels, labels alternating cat / dog.
fn write_images(path: &Path, first_id: i64, images: &[(usize, &str)]) {
    let schema = latent_core::schema::image_table_schema();
    let n = images.len();
    let pixels: Vec<Vec<u8>> = images
        .iter()
        .enumerate()
        .map(|(id, (side, _))| pixels(id)[..side * side * 3].to_vec())
        .collect();
    let sides = || images.iter().map(|(side, _)| *side as i32);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| first_id + i),
            )),
            Arc::new(Int32Array::from_iter_values((0..n as i32).map(|i| i % 2))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| if i % 2 == 0 { "cat" } else { "dog" }),
            )),
            Arc::new(StringArray::from_iter_values(
                images.iter().map(|(_, s)| *s),
            )),
            Arc::new(Int32Array::from_iter_values(sides())),
            Arc::new(Int32Array::from_iter_values(sides())),
            Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(3, n))),
            Arc::new(BinaryArray::from_iter_values(pixels.iter())),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("img{i}.png")),
            )),
        ],
    )
    .unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn random_init_options(images: &Path, out: &Path) -> ExportOptions {
    let mut config = PipelineConfig::default();
    config.train.width = 0.25;
    ExportOptions::new(
        images.to_path_buf(),
        out.to_path_buf(),
        ModelSource::RandomInit {
            seed: 0,
            config: Box::new(config),
        },
    )
}

fn error_text(options: &ExportOptions) -> String {
    format!("{:#}", anyhow::Error::new(export(options).unwrap_err()))
}

#[test]
fn an_image_of_another_size_is_named_when_calibrating_and_when_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("mixed.parquet");
    write_images(
        &images,
        0,
        &[(8, "train"), (8, "train"), (4, "train"), (8, "test")],
    );
    let out = dir.path().join("latent.parquet");

    let err = error_text(&random_init_options(&images, &out));
    assert!(err.contains("image id 2 of 4x4x3"), "{err}");
    assert!(!out.exists());

    let model = train_tiny_model(dir.path());
    let options = ExportOptions::new(images.clone(), out.clone(), ModelSource::Trained(model));
    let err = error_text(&options);
    assert!(err.contains("image id 2 of 4x4x3"), "{err}");
    assert!(!out.exists());
}

#[test]
fn outputs_that_would_lose_data_or_work_are_refused_before_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images.parquet");
    write_image_table(&images);
    let before = std::fs::read(&images).unwrap();

    // The input as the output: refused, the input unchanged.
    let err = error_text(&random_init_options(&images, &images));
    assert!(err.contains("would be overwritten"), "{err}");
    assert_eq!(std::fs::read(&images).unwrap(), before);

    // A folder as the output.
    let err = error_text(&random_init_options(&images, dir.path()));
    assert!(err.contains("a folder"), "{err}");

    // Zero batch size or row group.
    let out = dir.path().join("latent.parquet");
    for options in [
        ExportOptions {
            batch_size: Some(0),
            ..random_init_options(&images, &out)
        },
        ExportOptions {
            row_group: Some(0),
            ..random_init_options(&images, &out)
        },
    ] {
        let err = error_text(&options);
        assert!(err.contains("at least 1"), "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn empty_tables_and_random_init_without_train_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("latent.parquet");

    let empty = dir.path().join("empty.parquet");
    write_images(&empty, 0, &[]);
    let err = error_text(&random_init_options(&empty, &out));
    assert!(err.contains("an empty table"), "{err}");

    let test_only = dir.path().join("test_only.parquet");
    write_images(&test_only, 0, &[(8, "test"), (8, "test"), (8, "test")]);
    let err = error_text(&random_init_options(&test_only, &out));
    assert!(err.contains("train-split images"), "{err}");
    assert!(!out.exists());
}
