//! Autoencoder runs on tiny generated views streams: it learns, it reads only view1, its
//! steps table has no top-1, and its decoder turns embeddings back into images.

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use candle_core::{Device, Tensor};
use latent_core::config::PipelineConfig;
use latent_core::rng::rng_for;
use latent_train::model::{Backend, Model};
use latent_train::representation::{Embedder, Representation};
use latent_train::views::write_views_stream;
use latent_train::{AutoencoderDecoder, TrainOptions, decode, load_model_dir, train};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::RngExt;

type Row = (u32, i64, Vec<f32>, Vec<f32>);

const C: usize = 3;
const S: usize = 8;

/// The fixed pattern of image `id`, values in -1..1.
fn pattern(id: i64) -> Vec<f32> {
    let mut rng = rng_for(id as u64, &[41]);
    (0..C * S * S)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect()
}

/// `epochs` passes over `images` images; view1 is the image, view2 whatever `second` says.
fn rows(epochs: u32, images: i64, second: impl Fn(u32, i64) -> Vec<f32>) -> Vec<Row> {
    let mut out = Vec::new();
    for epoch in 0..epochs {
        for id in 0..images {
            out.push((epoch, id, pattern(id), second(epoch, id)));
        }
    }
    out
}

fn write_stream(path: &Path, size: usize, rows: &[Row]) {
    let file = std::fs::File::create(path).unwrap();
    write_views_stream(file, C, size, rows, 4).unwrap();
}

fn ae_config(batch_size: usize, lr: f64) -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.train.objective = "autoencoder".into();
    config.train.width = 0.25;
    config.train.batch_size = batch_size;
    config.train.lr = lr;
    config.train.weight_decay = 0.0;
    config.train.fast_kernels = false;
    config
}

fn options(out: &Path, config: PipelineConfig) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        config,
        epochs_cap: None,
        resume: false,
    }
}

fn read_steps(path: &Path) -> RecordBatch {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

#[test]
fn repeated_images_are_reconstructed_better_and_top1_is_null() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(40, 8, |_, id| pattern(id)));
    let out = dir.path().join("ae");
    let summary = train(&views, &options(&out, ae_config(8, 1e-2))).unwrap();

    assert_eq!(summary.steps, 40);
    assert_eq!(summary.objective, "autoencoder");
    assert_eq!(summary.final_positive_top1, None);

    let steps = read_steps(&out.join("steps.parquet"));
    let loss = steps
        .column_by_name("loss")
        .unwrap()
        .as_primitive::<Float64Type>();
    let (first, last) = (loss.value(0), loss.value(loss.len() - 1));
    // The inputs are uniform on -1..1 (mean square 1/3): an untrained decoder's output is
    // unrelated to them, so the first loss is at least about 1/3.
    assert!(first > 0.3, "first loss {first}");
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let top1 = steps.column_by_name("positive_top1").unwrap();
    assert_eq!(top1.null_count(), steps.num_rows());

    // Eval-mode reconstructions of the training images beat predicting zero (the MSE of
    // which is the images' mean square).
    let trained = load_model_dir(&out).unwrap();
    let Model::Autoencoder(model) = &trained.model else {
        panic!("loaded a {:?} model", trained.model.objective());
    };
    let images: Vec<f32> = (0..8).flat_map(pattern).collect();
    let x = Tensor::from_vec(images.clone(), (8, C, S, S), &Device::Cpu).unwrap();
    let code = model.encoder.forward_eval(&x, Backend::Candle).unwrap();
    let code: Vec<f32> = code.flatten_all().unwrap().to_vec1().unwrap();
    let decoded = decode(&out, &code, 64).unwrap();
    assert_eq!((decoded.count, decoded.channels, decoded.size), (8, C, S));
    let mean_square = |values: &mut dyn Iterator<Item = f32>| -> f32 {
        let all: Vec<f32> = values.collect();
        all.iter().map(|v| v * v).sum::<f32>() / all.len() as f32
    };
    let error = mean_square(&mut decoded.values.iter().zip(&images).map(|(a, b)| a - b));
    let baseline = mean_square(&mut images.iter().copied());
    assert!(
        error < 0.7 * baseline,
        "reconstruction MSE {error} vs {baseline}, train loss {last}"
    );

    // The backbone file holds the autoencoder's encoder under the names a SimCLR model
    // file uses (no `encoder.` prefix), so one loader reads either family's backbone.
    let load = |name: &str| candle_core::safetensors::load(out.join(name), &Device::Cpu).unwrap();
    let (whole, backbone) = (load("model.safetensors"), load("encoder.safetensors"));
    let mut expected: Vec<String> = whole
        .keys()
        .filter_map(|k| k.strip_prefix("encoder.").map(String::from))
        .collect();
    let mut found: Vec<String> = backbone.keys().cloned().collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    let first = &backbone["features.0.0.weight"];
    let same = (first - &whole["encoder.features.0.0.weight"])
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(same, 0.0);
}

#[test]
fn view2_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let train_with = |name: &str, noise_seed: u64| {
        let views = dir.path().join(format!("{name}.arrow"));
        let second = |epoch: u32, id: i64| -> Vec<f32> {
            let mut rng = rng_for(noise_seed, &[epoch as u64, id as u64]);
            (0..C * S * S).map(|_| rng.random::<f32>()).collect()
        };
        write_stream(&views, S, &rows(2, 6, second));
        let out = dir.path().join(name);
        train(&views, &options(&out, ae_config(3, 1e-3))).unwrap();
        std::fs::read(out.join("model.safetensors")).unwrap()
    };
    assert_eq!(train_with("a", 1), train_with("b", 2));
}

#[test]
fn decoding_undoes_the_recorded_normalisation_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(1, 4, |_, id| pattern(id)));
    let out = dir.path().join("ae");
    let mut config = ae_config(4, 1e-3);
    config.augment.mean = vec![0.5, 0.4, 0.3];
    config.augment.std = vec![0.25, 0.2, 0.1];
    train(&views, &options(&out, config)).unwrap();

    let decoder = AutoencoderDecoder::load(&out).unwrap();
    assert_eq!(decoder.dim(), 64);
    let decoded = decoder.decode(&[0.1; 128], 64).unwrap();
    assert_eq!(decoded.count, 2);
    assert_eq!(decoded.mean, vec![0.5, 0.4, 0.3]);
    let unit = decoded.to_unit_range();
    let plane = S * S;
    for (i, &v) in decoded.values.iter().enumerate() {
        let c = (i / plane) % C;
        let expected = (v * decoded.std[c] + decoded.mean[c]).clamp(0.0, 1.0);
        assert_eq!(unit[i], expected);
    }
    // The two embeddings are equal and eval mode does not mix rows: equal images.
    let half = decoded.values.len() / 2;
    assert_eq!(decoded.values[..half], decoded.values[half..]);

    let err = decoder.decode(&[0.0; 100], 64).unwrap_err().to_string();
    assert!(err.contains("64-d") && err.contains("100 values"), "{err}");
    let err = decoder.decode(&[0.0; 32], 32).unwrap_err().to_string();
    assert!(err.contains("64-d"), "{err}");
}

#[test]
fn a_simclr_model_has_no_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(1, 4, |_, id| pattern(id)));
    let out = dir.path().join("simclr");
    let mut config = ae_config(4, 1e-3);
    config.train.objective = "simclr".into();
    train(&views, &options(&out, config)).unwrap();

    let err = AutoencoderDecoder::load(&out).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("simclr") && err.contains("decoder"),
        "{err}"
    );
}

#[test]
fn views_whose_side_is_not_a_multiple_of_8_are_refused_naming_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views12.arrow");
    let image = || vec![0.5f32; C * 12 * 12];
    let rows: Vec<Row> = (0..4).map(|id| (0, id, image(), image())).collect();
    write_stream(&views, 12, &rows);
    let err = train(&views, &options(&dir.path().join("ae"), ae_config(4, 1e-3)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("views12.arrow") && err.contains("multiple of 8") && err.contains("12x12"),
        "{err}"
    );
}

#[test]
fn an_unknown_objective_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(1, 4, |_, id| pattern(id)));
    let mut config = ae_config(4, 1e-3);
    config.train.objective = "vae".into();
    let err = train(&views, &options(&dir.path().join("x"), config))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("objective") && err.contains("\"vae\""),
        "{err}"
    );
}

#[test]
fn a_resumed_autoencoder_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(4, 6, |_, id| pattern(id)));

    let whole = dir.path().join("whole");
    train(&views, &options(&whole, ae_config(3, 1e-3))).unwrap();

    let parts = dir.path().join("parts");
    let mut first = options(&parts, ae_config(3, 1e-3));
    first.epochs_cap = Some(2);
    train(&views, &first).unwrap();
    let mut rest = options(&parts, ae_config(3, 1e-3));
    rest.resume = true;
    train(&views, &rest).unwrap();

    let read = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert_eq!(read(&whole), read(&parts));
}

#[test]
fn a_bottleneck_run_exports_and_decodes_its_b_dimensional_code() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(40, 8, |_, id| pattern(id)));
    let out = dir.path().join("ae");
    let mut config = ae_config(8, 1e-2);
    config.train.bottleneck = 8;
    train(&views, &options(&out, config)).unwrap();

    let written = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(written.contains("bottleneck = 8"), "{written}");

    let trained = load_model_dir(&out).unwrap();
    let images: Vec<f32> = (0..8).flat_map(pattern).collect();
    let x = Tensor::from_vec(images.clone(), (8, C, S, S), &Device::Cpu).unwrap();
    let embedder = Embedder::new(trained.model, Representation::Bottleneck).unwrap();
    let code = embedder.forward_eval(&x, Backend::Candle).unwrap();
    assert_eq!(code.dims(), &[8, 8]);
    let code: Vec<f32> = code.flatten_all().unwrap().to_vec1().unwrap();

    let decoder = AutoencoderDecoder::load(&out).unwrap();
    assert_eq!(decoder.dim(), 8);
    let decoded = decoder.decode(&code, 8).unwrap();
    assert_eq!((decoded.count, decoded.channels, decoded.size), (8, C, S));
    let error: f32 = decoded
        .values
        .iter()
        .zip(&images)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>();
    let baseline: f32 = images.iter().map(|v| v * v).sum();
    assert!(
        error < 0.7 * baseline,
        "reconstruction error {error} vs {baseline}"
    );

    let err = decoder.decode(&[0.0; 128], 64).unwrap_err().to_string();
    assert!(err.contains("8-d"), "{err}");
}

#[test]
fn a_bottleneck_is_refused_for_simclr() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(1, 4, |_, id| pattern(id)));
    let mut config = ae_config(4, 1e-3);
    config.train.objective = "simclr".into();
    config.train.bottleneck = 16;
    let err = train(&views, &options(&dir.path().join("simclr"), config))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bottleneck") && err.contains("autoencoder"),
        "{err}"
    );
}

#[test]
fn a_config_that_disagrees_with_the_weights_bottleneck_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, S, &rows(1, 4, |_, id| pattern(id)));
    let out = dir.path().join("ae");
    let mut config = ae_config(4, 1e-3);
    config.train.bottleneck = 6;
    train(&views, &options(&out, config)).unwrap();

    let path = out.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("bottleneck = 6", "bottleneck = 0")).unwrap();
    let err = load_model_dir(&out).unwrap_err().to_string();
    assert!(
        err.contains("bottleneck of 6") && err.contains("bottleneck = 0"),
        "{err}"
    );
}
