//! The autoencoder's pictures (`--decoder`): walks end exactly at what they walk between,
//! the pictures have their size and content, and a decoder that cannot be used is refused
//! naming the option. The autoencoder is a tiny one trained here in about a second.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use latent_analyze::decoded::{self, Decoder, WALK_STEPS};
use latent_analyze::features::FeatureSet;
use latent_analyze::linalg::Matrix;
use latent_analyze::{AnalyzeOptions, run};
use latent_core::config::{AnalyzeConfig, PipelineConfig};
use latent_core::image_table::{ImageRecord, ImageTable};
use latent_train::views::write_views_stream;
use latent_train::{AutoencoderDecoder, TrainOptions, train};

const CHANNELS: usize = 3;
const SIDE: usize = 8;
/// Bottleneck size of the `small-cnn` autoencoder at width 0.25.
const DIM: usize = 64;

/// A fixed image of values in -1..1 for view `id`.
fn pattern(id: i64) -> Vec<f32> {
    (0..CHANNELS * SIDE * SIDE)
        .map(|i| (i as f32 * 0.37 + id as f32 * 1.3).sin())
        .collect()
}

/// Trains a tiny model with `objective` on 8 images (2 epochs) into `dir/name`.
fn train_model(dir: &Path, name: &str, objective: &str) -> PathBuf {
    let views = dir.join(format!("{name}.arrow"));
    let rows: Vec<_> = (0..2u32)
        .flat_map(|epoch| (0..8i64).map(move |id| (epoch, id, pattern(id), pattern(id + 50))))
        .collect();
    write_views_stream(
        std::fs::File::create(&views).unwrap(),
        CHANNELS,
        SIDE,
        &rows,
        4,
    )
    .unwrap();

    let mut config = PipelineConfig::default();
    config.train.objective = objective.into();
    config.train.width = 0.25;
    config.train.batch_size = 4;
    config.train.lr = 1e-3;
    config.train.fast_kernels = false;
    let out = dir.join(name);
    let options = TrainOptions {
        out: out.clone(),
        config,
        epochs_cap: None,
        resume: false,
    };
    train(&views, &options).unwrap();
    out
}

fn class_names() -> Vec<String> {
    ["cat", "dog", "ship", "airplane"]
        .map(String::from)
        .to_vec()
}

/// `per_class` rows of each of the 4 classes, `DIM`-d, from id `first_id` on.
fn rows(per_class: usize, first_id: i64) -> (Matrix, Vec<i32>, Vec<i64>) {
    let count = per_class * class_names().len();
    let labels: Vec<i32> = (0..count).map(|i| (i % 4) as i32).collect();
    let ids: Vec<i64> = (first_id..first_id + count as i64).collect();
    let data = ids
        .iter()
        .zip(&labels)
        .flat_map(|(id, label)| {
            (0..DIM).map(move |d| *label as f32 + 0.3 * ((d as f32 + *id as f32 * 0.7).cos()))
        })
        .collect();
    (Matrix::from_vec(count, DIM, data), labels, ids)
}

fn bottlenecks() -> FeatureSet {
    let (train, train_labels, train_ids) = rows(5, 0);
    let (test, test_labels, test_ids) = rows(3, 100);
    FeatureSet {
        name: "autoencoder".into(),
        source: PathBuf::from("latent_autoencoder.parquet"),
        train,
        train_labels,
        test,
        test_labels,
        train_ids,
        test_ids,
        skipped_rows: 0,
        description: "encoder, trained".into(),
    }
}

/// An 8x8 RGB image for every row, coloured by class with a gradient.
fn image_table(set: &FeatureSet) -> ImageTable {
    let train = set
        .train_ids
        .iter()
        .zip(&set.train_labels)
        .map(|(i, l)| (*i, *l, "train"));
    let test = set
        .test_ids
        .iter()
        .zip(&set.test_labels)
        .map(|(i, l)| (*i, *l, "test"));
    let records = train
        .chain(test)
        .map(|(id, label, split)| ImageRecord {
            id,
            label: Some(label),
            label_name: Some(class_names()[label as usize].clone()),
            split: split.into(),
            height: 8,
            width: 8,
            channels: 3,
            pixels: (0..64)
                .flat_map(|p| [60 * label as u8, (p * 4) as u8, id as u8])
                .collect(),
        })
        .collect();
    ImageTable {
        path: PathBuf::from("images.parquet"),
        records,
    }
}

fn size_and_colours(path: &Path) -> ((u32, u32), usize) {
    let picture = image::open(path).unwrap().to_rgb8();
    let colours: HashSet<[u8; 3]> = picture.pixels().map(|p| p.0).collect();
    (picture.dimensions(), colours.len())
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "largest difference {worst}");
}

#[test]
fn class_centroids_are_the_mean_train_rows_of_each_class() {
    let train = Matrix::from_vec(4, 2, vec![1.0, 2.0, 3.0, 6.0, 10.0, 0.0, -1.0, 4.0]);
    let centroids = decoded::class_centroids(&train, &[0, 0, 2, 0], 3);
    // Class 0: rows (1, 2), (3, 6), (-1, 4); class 1 has no rows; class 2: (10, 0).
    assert_eq!(
        centroids,
        vec![Some(vec![1.0, 4.0]), None, Some(vec![10.0, 0.0])]
    );
}

#[test]
fn class_pairs_prefer_look_alikes_else_consecutive_classes() {
    let names = class_names();
    assert_eq!(
        decoded::class_pairs(&names, &[true; 4]),
        vec![(3, 2), (0, 1)]
    );
    // Without a centroid for "dog", cat -> dog is not walked.
    assert_eq!(
        decoded::class_pairs(&names, &[true, false, true, true]),
        vec![(3, 2)]
    );

    let other: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    assert_eq!(
        decoded::class_pairs(&other, &[true; 5]),
        vec![(0, 1), (2, 3)]
    );
    assert_eq!(
        decoded::class_pairs(&other, &[true, false, true, true, true]),
        vec![(0, 2), (3, 4)]
    );
    assert!(decoded::class_pairs(&other[..1], &[true]).is_empty());
}

#[test]
fn a_straight_walk_is_evenly_spaced_and_ends_exactly_at_its_ends() {
    let walk = decoded::straight_walk(&[0.0, 2.0], &[4.0, -2.0], 3);
    assert_eq!(walk, vec![0.0, 2.0, 2.0, 0.0, 4.0, -2.0]);
    let walk = decoded::straight_walk(&[0.1, 0.7], &[0.3, -0.9], WALK_STEPS);
    assert_eq!(walk[..2], [0.1, 0.7]);
    assert_eq!(walk[walk.len() - 2..], [0.3, -0.9]);
}

#[test]
fn walks_decode_the_centroids_and_test_images_at_their_ends_and_pictures_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_model(dir.path(), "ae", "autoencoder");
    let decoder = Decoder::load("autoencoder", &model).unwrap();
    let direct = AutoencoderDecoder::load(&model).unwrap();
    let set = bottlenecks();
    let names = class_names();

    let (walks, decoded) = decoded::decoded_walks(&set, &decoder, &names, 7).unwrap();
    assert_eq!(walks.len(), 2 + decoded::IMAGE_WALKS);
    assert_eq!(
        (walks[0].from.as_str(), walks[0].to.as_str()),
        ("airplane", "ship")
    );
    assert_eq!(decoded.count, walks.len() * WALK_STEPS);
    let image_len = CHANNELS * SIDE * SIDE;
    let unit = decoded.to_unit_range();
    let decoded_image = |walk: usize, step: usize| {
        let at = (walk * WALK_STEPS + step) * image_len;
        unit[at..at + image_len].to_vec()
    };
    let decode_alone = |row: &[f32]| direct.decode(row, DIM).unwrap().to_unit_range();

    // The mean of the airplane (3) and ship (2) train rows, computed here on its own.
    let centroid = |label: i32| {
        let members: Vec<usize> = (0..set.train.rows)
            .filter(|&r| set.train_labels[r] == label)
            .collect();
        (0..DIM)
            .map(|d| {
                members.iter().map(|&r| set.train.row(r)[d]).sum::<f32>() / members.len() as f32
            })
            .collect::<Vec<f32>>()
    };
    assert_close(&decoded_image(0, 0), &decode_alone(&centroid(3)));
    assert_close(
        &decoded_image(0, WALK_STEPS - 1),
        &decode_alone(&centroid(2)),
    );
    // Different ends give different images: the comparison above can fail.
    assert_ne!(decoded_image(0, 0), decoded_image(0, WALK_STEPS - 1));

    let image_walk = 2;
    let (from_id, to_id) = walks[image_walk].test_ids.expect("an image walk");
    assert_ne!(from_id, to_id);
    let test_row = |id: i64| {
        set.test
            .row(set.test_ids.iter().position(|&i| i == id).unwrap())
    };
    assert_close(
        &decoded_image(image_walk, 0),
        &decode_alone(test_row(from_id)),
    );
    assert_close(
        &decoded_image(image_walk, WALK_STEPS - 1),
        &decode_alone(test_row(to_id)),
    );

    let out = tempfile::tempdir().unwrap();
    let table = image_table(&set);
    let interpolation =
        decoded::interpolation_picture(&set, &decoder, &table, &names, 7, out.path())
            .unwrap()
            .expect("there are classes to walk between");
    let reconstructions =
        decoded::reconstructions_picture(&set, &decoder, &table, &names, 7, out.path())
            .unwrap()
            .expect("every test image is in the table");
    assert_eq!(interpolation.file, "interpolation_autoencoder.png");
    assert_eq!(reconstructions.file, "reconstructions_autoencoder.png");
    assert!(
        interpolation
            .caption
            .contains("airplane -> ship, cat -> dog")
    );

    let (size, colours) = size_and_colours(&out.path().join(&interpolation.file));
    assert_eq!(size, decoded::interpolation_size(4));
    assert_eq!(size, (1096, 40 + 4 * 122));
    assert!(colours > 50, "{colours} colours");
    let (size, colours) = size_and_colours(&out.path().join(&reconstructions.file));
    assert_eq!(size, decoded::reconstructions_size());
    assert_eq!(size, (840, 284));
    assert!(colours > 50, "{colours} colours");
}

#[test]
fn reconstruction_rows_are_distinct_and_fixed_by_the_seed() {
    let rows = decoded::reconstruction_rows(30, 3);
    assert_eq!(rows.len(), decoded::RECONSTRUCTIONS);
    assert_eq!(rows.iter().collect::<HashSet<_>>().len(), rows.len());
    assert_eq!(rows, decoded::reconstruction_rows(30, 3));
    assert_ne!(rows, decoded::reconstruction_rows(30, 4));
    assert_eq!(decoded::reconstruction_rows(5, 3).len(), 5);
}

fn options(dir: &Path, decoders: Vec<(String, PathBuf)>) -> AnalyzeOptions {
    AnalyzeOptions {
        images: dir.join("images.parquet"),
        latents: vec![
            ("simclr".into(), dir.join("latent_simclr.parquet")),
            ("autoencoder".into(), dir.join("latent_autoencoder.parquet")),
        ],
        decoders,
        steps: None,
        config_path: None,
        config: AnalyzeConfig::default(),
        seed: 0,
        out: dir.join("report"),
    }
}

#[test]
fn a_decoder_for_a_name_that_is_not_a_latent_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let decoders = vec![("autoencodr".into(), dir.path().join("ae"))];
    let err = run(&options(dir.path(), decoders)).unwrap_err().to_string();
    assert!(
        err.contains("--decoder autoencodr=")
            && err.contains("not the name of a --latent")
            && err.contains("simclr, autoencoder"),
        "{err}"
    );

    let twice = vec![
        ("autoencoder".into(), dir.path().join("a")),
        ("autoencoder".into(), dir.path().join("b")),
    ];
    let err = run(&options(dir.path(), twice)).unwrap_err().to_string();
    assert!(err.contains("already has a decoder"), "{err}");
}

#[test]
fn a_folder_without_an_autoencoder_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let simclr = train_model(dir.path(), "simclr", "simclr");
    let decoders = vec![("autoencoder".into(), simclr.clone())];
    let err = run(&options(dir.path(), decoders)).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(
        chain.contains(&format!("--decoder autoencoder={}", simclr.display()))
            && chain.contains("simclr model")
            && chain.contains("decoder"),
        "{chain}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = run(&options(dir.path(), vec![("simclr".into(), empty.clone())])).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(
        chain.contains(&format!("--decoder simclr={}", empty.display())),
        "{chain}"
    );
}

#[test]
fn a_latent_table_of_another_size_than_the_bottleneck_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_model(dir.path(), "ae", "autoencoder");
    let decoder = Decoder::load("autoencoder", &model).unwrap();
    assert!(decoder.check_dim(&bottlenecks()).is_ok());

    let mut small = bottlenecks();
    small.train = Matrix::from_vec(small.train.rows, 4, vec![0.0; small.train.rows * 4]);
    let err = decoder.check_dim(&small).unwrap_err().to_string();
    assert!(
        err.contains("--decoder autoencoder=")
            && err.contains("64-d embeddings")
            && err.contains("latent_autoencoder.parquet holds 4-d rows"),
        "{err}"
    );

    // Through `run`, from the table's schema alone, before anything is scored or written.
    let images = dir.path().join("images.parquet");
    let latent = dir.path().join("latent_autoencoder.parquet");
    write_tables(&image_table(&bottlenecks()), &images, &latent, 16);
    let decoders = vec![("autoencoder".into(), model.clone())];
    let err = run(&options(dir.path(), decoders)).unwrap_err().to_string();
    assert!(
        err.contains("64-d embeddings")
            && err.contains("latent_autoencoder.parquet holds 16-d rows"),
        "{err}"
    );
    assert!(!dir.path().join("report").exists());
}

/// Writes `table` and a `dim`-d latent table of its rows (one class direction each) as the
/// Parquet files `images` and `latent`.
fn write_tables(table: &ImageTable, images: &Path, latent: &Path, dim: usize) {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array,
        RecordBatch, StringArray,
    };
    use arrow::datatypes::{DataType, Field};
    use latent_core::schema::{image_table_schema, latent_table_schema};

    let write = |path: &Path, batch: RecordBatch| {
        let file = std::fs::File::create(path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    };
    let records = &table.records;
    let n = records.len();
    let ids = || Arc::new(Int64Array::from_iter_values(records.iter().map(|r| r.id)));
    let labels = || Arc::new(Int32Array::from_iter(records.iter().map(|r| r.label)));
    let names = || {
        Arc::new(StringArray::from_iter(
            records.iter().map(|r| r.label_name.clone()),
        ))
    };
    let splits = || {
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| &r.split),
        ))
    };

    let columns: Vec<ArrayRef> = vec![
        ids(),
        labels(),
        names(),
        splits(),
        Arc::new(Int32Array::from(vec![8; n])),
        Arc::new(Int32Array::from(vec![8; n])),
        Arc::new(Int32Array::from(vec![3; n])),
        Arc::new(BinaryArray::from_iter_values(
            records.iter().map(|r| &r.pixels),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| format!("{}.png", r.id)),
        )),
    ];
    write(
        images,
        RecordBatch::try_new(image_table_schema(), columns).unwrap(),
    );

    let values: Vec<f32> = records
        .iter()
        .flat_map(|r| {
            let label = r.label.unwrap() as usize;
            (0..dim).map(move |d| (d == label) as u8 as f32 + 0.1 * ((d as i64 + r.id) % 5) as f32)
        })
        .collect();
    let item = Arc::new(Field::new(
        latent_core::schema::latent::EMBEDDING_ITEM,
        DataType::Float32,
        false,
    ));
    let embedding =
        FixedSizeListArray::new(item, dim as i32, Arc::new(Float32Array::from(values)), None);
    let columns: Vec<ArrayRef> = vec![ids(), labels(), names(), splits(), Arc::new(embedding)];
    let schema = latent_table_schema(dim, std::collections::HashMap::new());
    write(latent, RecordBatch::try_new(schema, columns).unwrap());
}

#[test]
fn the_binary_lists_and_embeds_the_decoder_pictures_after_the_latent_tables_own() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_model(dir.path(), "ae", "autoencoder");
    let (images, latent) = (
        dir.path().join("images.parquet"),
        dir.path().join("latent.parquet"),
    );
    write_tables(&image_table(&bottlenecks()), &images, &latent, DIM);
    let out = dir.path().join("report");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_latent-analyze"))
        .arg("--images")
        .arg(&images)
        .arg("--latent")
        .arg(format!("ae={}", latent.display()))
        .arg("--decoder")
        .arg(format!("ae={}", model.display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = report["pictures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "map",
            "neighbours",
            "confusion",
            "interpolation",
            "reconstructions"
        ]
    );
    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    for file in ["interpolation_ae.png", "reconstructions_ae.png"] {
        assert!(out.join(file).is_file(), "{file} is missing");
        assert!(
            markdown.contains(&format!("]({file})")),
            "{file} is not embedded"
        );
    }
}
