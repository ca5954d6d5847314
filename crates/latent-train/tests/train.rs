//! Training runs on tiny generated views streams: outputs, reproducibility, learning,
//! and refusal of inputs that are not views streams.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, UInt64Type};
use latent_core::config::PipelineConfig;
use latent_core::rng::rng_for;
use latent_train::model::EncoderKind;
use latent_train::views::write_views_stream;
use latent_train::{TrainOptions, load_model_dir, train};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::RngExt;

type Row = (u32, i64, Vec<f32>, Vec<f32>);

const C: usize = 3;
const S: usize = 8;

/// `images` images per epoch; each view is the image's base pattern plus a little noise.
fn rows(epochs: u32, images: i64) -> Vec<Row> {
    let mut out = Vec::new();
    for epoch in 0..epochs {
        for id in 0..images {
            let mut base = rng_for(id as u64, &[99]);
            let pattern: Vec<f32> = (0..C * S * S)
                .map(|_| base.random::<f32>() * 2.0 - 1.0)
                .collect();
            let mut noise = rng_for(id as u64, &[100, epoch as u64]);
            let mut view = || -> Vec<f32> {
                pattern
                    .iter()
                    .map(|p| p + 0.1 * (noise.random::<f32>() - 0.5))
                    .collect()
            };
            out.push((epoch, id, view(), view()));
        }
    }
    out
}

fn write_stream(path: &Path, rows: &[Row]) {
    let file = std::fs::File::create(path).unwrap();
    write_views_stream(file, C, S, rows, 3).unwrap();
}

fn tiny_config(batch_size: usize, lr: f64) -> PipelineConfig {
    let mut config = PipelineConfig::default();
    config.train.width = 0.25;
    config.train.projection_dim = 16;
    config.train.batch_size = batch_size;
    config.train.lr = lr;
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
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

#[test]
fn a_run_writes_every_output_and_trains_the_short_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(2, 10));
    let out = dir.path().join("run");

    let summary = train(&views, &options(&out, tiny_config(4, 1e-3))).unwrap();

    // 10 images at batch 4: 4 + 4 + a short batch of 2, in each of 2 epochs.
    assert_eq!(summary.steps, 6);
    assert_eq!(summary.images_seen, 20);
    assert_eq!(summary.epochs, 2);
    assert!(summary.final_loss.unwrap().is_finite());
    for name in [
        "model.safetensors",
        "encoder.safetensors",
        "config.toml",
        "steps.parquet",
        "summary.json",
    ] {
        assert!(out.join(name).exists(), "{name} missing");
    }

    let steps = read_steps(&out.join("steps.parquet"));
    assert_eq!(steps.num_rows(), 6);
    let numbers: Vec<u64> = steps
        .column(0)
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6]);
    let lr = steps
        .column_by_name("lr")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(lr.values().iter().all(|&v| (v - 1e-3).abs() < 1e-15));
    assert_eq!(
        steps
            .schema()
            .metadata()
            .get("latent.table")
            .map(String::as_str),
        Some("steps")
    );

    let config = PipelineConfig::load(&out.join("config.toml")).unwrap();
    assert_eq!(config.train.width, 0.25);
    let loaded = load_model_dir(&out).unwrap();
    assert_eq!(loaded.model.arch().embedding_dim(), 64);
    assert_eq!(
        loaded.model.encoder().small_cnn().unwrap().blocks[0]
            .norm
            .num_batches_tracked,
        6
    );

    // The backbone file: every encoder tensor of the model file, same names and values,
    // and nothing of the projection head.
    let load = |name: &str| {
        candle_core::safetensors::load(out.join(name), &candle_core::Device::Cpu).unwrap()
    };
    let (model, encoder) = (load("model.safetensors"), load("encoder.safetensors"));
    let mut expected: Vec<&String> = model.keys().filter(|k| !k.starts_with("head.")).collect();
    let mut found: Vec<&String> = encoder.keys().collect();
    expected.sort();
    found.sort();
    assert_eq!(found, expected);
    assert!(found.iter().any(|k| k.starts_with("features.")));
    for (name, tensor) in &encoder {
        let diff = (tensor - &model[name])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
}

#[test]
fn same_seed_gives_the_same_weights_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(1, 6));
    let run = |name: &str, seed: u64| {
        let mut config = tiny_config(3, 1e-3);
        config.run.seed = seed;
        let out = dir.path().join(name);
        train(&views, &options(&out, config)).unwrap();
        std::fs::read(out.join("model.safetensors")).unwrap()
    };
    let a = run("a", 1);
    assert_eq!(a, run("b", 1));
    assert_ne!(a, run("c", 2));
}

#[test]
fn repeated_images_are_learned_loss_falls_and_positives_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(12, 8));
    let out = dir.path().join("run");
    let summary = train(&views, &options(&out, tiny_config(8, 1e-2))).unwrap();

    let steps = read_steps(&out.join("steps.parquet"));
    let loss = steps
        .column_by_name("loss")
        .unwrap()
        .as_primitive::<Float64Type>();
    let (first, last) = (loss.value(0), loss.value(loss.len() - 1));
    assert!(last < 0.8 * first, "loss {first} -> {last}");
    assert!(summary.final_positive_top1.unwrap() > 0.5, "{summary:?}");
}

#[test]
fn epochs_cap_stops_early() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(3, 4));
    let mut opts = options(&dir.path().join("run"), tiny_config(4, 1e-3));
    opts.epochs_cap = Some(1);
    let summary = train(&views, &opts).unwrap();
    assert_eq!(summary.steps, 1);
    assert_eq!(summary.stopped_by, "epochs_cap");
}

#[test]
fn parquet_table_given_as_views_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images.parquet");
    std::fs::write(&path, b"PAR1 not really").unwrap();
    let err = train(
        &path,
        &options(&dir.path().join("run"), tiny_config(4, 1e-3)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("images.parquet") && err.contains("Parquet"),
        "{err}"
    );
    assert!(!dir.path().join("run").exists());
}

#[test]
fn arrow_stream_of_another_table_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latent.arrow");
    let schema = latent_core::schema::latent_table_schema(4, HashMap::new());
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
    writer.finish().unwrap();
    let err = train(
        &path,
        &options(&dir.path().join("run"), tiny_config(4, 1e-3)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("latent.arrow") && err.contains("'latent'"),
        "{err}"
    );
}

#[test]
fn stream_cut_short_is_refused_instead_of_training_on_part_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.arrow");
    write_stream(&full, &rows(2, 6));
    let bytes = std::fs::read(&full).unwrap();

    // Cut inside a message: Arrow reports it.
    let cut = dir.path().join("cut.arrow");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = train(&cut, &options(&dir.path().join("a"), tiny_config(4, 1e-3))).unwrap_err();
    assert!(format!("{err:#}").contains("cut.arrow"), "{err:#}");

    // Cut at a message boundary (a clean end of stream with rows missing): our count.
    let short = dir.path().join("short.arrow");
    let metadata = HashMap::from([
        ("latent.views.channels".to_string(), C.to_string()),
        ("latent.views.size".to_string(), S.to_string()),
        ("latent.views.epochs".to_string(), "2".to_string()),
        ("latent.views.images_per_epoch".to_string(), "6".to_string()),
    ]);
    let schema = latent_core::schema::views_schema(C, S, metadata);
    let file = std::fs::File::create(&short).unwrap();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
    writer.finish().unwrap();
    let err = train(
        &short,
        &options(&dir.path().join("b"), tiny_config(4, 1e-3)),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("short.arrow") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn the_binary_reads_views_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    write_views_stream(&mut bytes, C, S, &rows(1, 4), 2).unwrap();
    let config = dir.path().join("x.toml");
    std::fs::write(
        &config,
        "[train]\nwidth = 0.25\nbatch_size = 4\nprojection_dim = 8\nfast_kernels = false\n",
    )
    .unwrap();
    let out = dir.path().join("run");

    let mut child = Command::new(env!("CARGO_BIN_EXE_latent-train"))
        .args(["-", "--out"])
        .arg(&out)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 1);
    assert_eq!(summary["input"], "stdin");

    let bad = Command::new(env!("CARGO_BIN_EXE_latent-train"))
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("x.toml"),
        "{stderr}"
    );
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(3, 6));
    let config = tiny_config(3, 1e-2);

    let whole = dir.path().join("whole");
    let summary = train(&views, &options(&whole, config.clone())).unwrap();
    assert_eq!(summary.steps, 6);

    let split = dir.path().join("split");
    let mut first = options(&split, config.clone());
    first.epochs_cap = Some(1);
    assert_eq!(train(&views, &first).unwrap().steps, 2);
    // Another seed: were the checkpoint ignored, the weights would start elsewhere.
    let mut other_seed = config;
    other_seed.run.seed = 99;
    let mut rest = options(&split, other_seed);
    rest.resume = true;
    let resumed = train(&views, &rest).unwrap();
    assert_eq!((resumed.steps, resumed.images_seen), (6, 18));

    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&split), "resumed weights differ");
    let losses = |dir: &Path| -> Vec<f64> {
        let steps = read_steps(&dir.join("steps.parquet"));
        steps
            .column_by_name("loss")
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    };
    assert_eq!(losses(&whole), losses(&split));
}

#[test]
fn resume_without_a_checkpoint_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(1, 4));
    let mut opts = options(&dir.path().join("empty"), tiny_config(4, 1e-3));
    opts.resume = true;
    let err = format!("{:#}", train(&views, &opts).unwrap_err());
    assert!(err.contains("checkpoint.safetensors"), "{err}");
}

#[test]
fn sgd_and_lars_runs_resume_where_uninterrupted_ones_end() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(3, 6));
    for optimizer in ["sgd", "lars"] {
        let mut config = tiny_config(3, 0.1);
        config.train.optimizer = optimizer.into();
        config.train.lr_scaling = "sqrt".into();

        let whole = dir.path().join(format!("{optimizer}-whole"));
        assert_eq!(
            train(&views, &options(&whole, config.clone()))
                .unwrap()
                .steps,
            6
        );
        let split = dir.path().join(format!("{optimizer}-split"));
        let mut first = options(&split, config.clone());
        first.epochs_cap = Some(1);
        assert_eq!(train(&views, &first).unwrap().steps, 2);
        let mut rest = options(&split, config);
        rest.resume = true;
        assert_eq!(train(&views, &rest).unwrap().steps, 6);

        let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
        assert!(
            weights(&whole) == weights(&split),
            "{optimizer}: resumed weights differ"
        );
        // sqrt scaling: the peak learning rate is 0.1 * sqrt(3) at every step (constant).
        let steps = read_steps(&whole.join("steps.parquet"));
        let lr = steps
            .column_by_name("lr")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!(
            lr.values()
                .iter()
                .all(|&lr| (lr - 0.1 * 3f64.sqrt()).abs() < 1e-12)
        );
    }

    // A checkpoint holds the state of the optimiser that wrote it only.
    let mut adamw = tiny_config(3, 0.1);
    adamw.train.optimizer = "adamw".into();
    let mut resume_as_adamw = options(&dir.path().join("lars-split"), adamw);
    resume_as_adamw.resume = true;
    let err = format!("{:#}", train(&views, &resume_as_adamw).unwrap_err());
    assert!(err.contains("adamw.m."), "{err}");

    let mut unknown = tiny_config(3, 0.1);
    unknown.train.optimizer = "adagrad".into();
    let err = format!(
        "{:#}",
        train(&views, &options(&dir.path().join("x"), unknown)).unwrap_err()
    );
    assert!(
        err.contains("adagrad") && err.contains("optimizer"),
        "{err}"
    );
}

/// The (step, lr, loss) rows of a steps table.
fn step_lr_loss(dir: &Path) -> Vec<(u64, f64, f64)> {
    let steps = read_steps(&dir.join("steps.parquet"));
    let column = |name: &str| {
        steps
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec()
    };
    let step = steps
        .column_by_name("step")
        .unwrap()
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec();
    let (lr, loss) = (column("lr"), column("loss"));
    (0..step.len()).map(|i| (step[i], lr[i], loss[i])).collect()
}

#[test]
fn a_run_killed_mid_way_resumes_to_the_same_steps_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    // 8 epochs of 48 images in batches of 4: 96 steps, long enough that the kill lands
    // well before the end. LARS with a cosine schedule, so the momentum buffers and the
    // learning rate's position must both survive the kill.
    write_stream(&views, &rows(8, 48));
    let config = dir.path().join("kill.toml");
    std::fs::write(
        &config,
        "[train]\nwidth = 0.25\nbatch_size = 4\nprojection_dim = 8\nfast_kernels = false\n\
         optimizer = \"lars\"\nlr = 0.3\nschedule = \"cosine\"\nwarmup = 0.1\n\
         checkpoint_every = 2\n",
    )
    .unwrap();
    let command = |out: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latent-train"));
        command
            .arg(&views)
            .arg("--out")
            .arg(out)
            .arg("--config")
            .arg(&config)
            .env("RAYON_NUM_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let succeeded = |command: &mut Command| {
        let result = command.output().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    };

    let whole = dir.path().join("whole");
    succeeded(&mut command(&whole));

    let killed = dir.path().join("killed");
    let mut child = command(&killed).stderr(Stdio::null()).spawn().unwrap();
    let checkpoint = killed.join("checkpoint.safetensors");
    let started = std::time::Instant::now();
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        !killed.join("summary.json").exists(),
        "the kill landed after the run had finished"
    );
    let done_before_kill = step_lr_loss(&killed).len();
    assert!((2..96).contains(&done_before_kill), "{done_before_kill}");
    println!("killed after {done_before_kill} of 96 steps were recorded");

    succeeded(command(&killed).arg("--resume"));

    let expected = step_lr_loss(&whole);
    let resumed = step_lr_loss(&killed);
    assert_eq!(expected.len(), 96);
    assert_eq!(resumed, expected);
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        weights(&whole) == weights(&killed),
        "resumed weights differ"
    );
}

#[test]
fn a_resnet18_run_saves_torchvision_names_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let views = dir.path().join("views.arrow");
    write_stream(&views, &rows(1, 8));
    let out = dir.path().join("run");
    let mut config = tiny_config(4, 1e-3);
    config.train.encoder = "resnet18".into();
    config.train.width = 0.125;
    config.train.fast_kernels = true;

    let summary = train(&views, &options(&out, config)).unwrap();
    assert_eq!(summary.steps, 2);
    assert!(summary.final_loss.unwrap().is_finite());

    let written = PipelineConfig::load(&out.join("config.toml")).unwrap();
    assert_eq!(written.train.encoder, "resnet18");
    let loaded = load_model_dir(&out).unwrap();
    assert_eq!(loaded.model.encoder().kind(), EncoderKind::ResNet18);
    assert_eq!(loaded.model.encoder().embedding_dim(), 64);
    let names: Vec<String> = loaded
        .model
        .tensors()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in [
        "conv1.weight",
        "layer3.0.downsample.1.running_mean",
        "head.3.bias",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing");
    }

    let mut unknown = tiny_config(4, 1e-3);
    unknown.train.encoder = "resnet50".into();
    let err = train(&views, &options(&dir.path().join("bad"), unknown))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resnet50") && err.contains("resnet18"),
        "{err}"
    );
}
