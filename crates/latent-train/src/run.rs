//! The training loop and the files a run leaves in its output folder.
//!
//! A reader thread decodes the views stream into training batches while the main thread
//! trains, so Arrow decoding overlaps the model's work; the time the main thread spends
//! waiting for the next batch is measured and reported. Outputs appear only when the run
//! ends, each written atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, UInt32Type, UInt64Type};
use candle_core::{Device, Tensor};
use latent_core::atomic::{self, AtomicFile};
use latent_core::config::{AugmentConfig, PipelineConfig};
use latent_core::schema;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use tracing::{debug, info, info_span, warn};

use crate::autoencoder::{AutoencoderModel, mse};
use crate::checkpoint;
use crate::error::{Result, TrainError};
use crate::loss::{nt_xent, positive_top1};
use crate::model::{Architecture, Backend, Model, Objective, SimclrModel};
use crate::optim::{LrScaling, Optimizer, OptimizerKind, Schedule};
use crate::views::{ViewBatch, ViewsInfo, ViewsStream};

/// File names inside a model folder.
pub mod files {
    pub const MODEL: &str = "model.safetensors";
    /// The encoder (backbone) alone, for tools that want only the feature extractor.
    pub const ENCODER: &str = "encoder.safetensors";
    pub const CONFIG: &str = "config.toml";
    pub const STEPS: &str = "steps.parquet";
    pub const SUMMARY: &str = "summary.json";
}

/// What a training run needs besides the views.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Output folder.
    pub out: PathBuf,
    /// The pipeline config; `[train]` and `[run] seed` are used.
    pub config: PipelineConfig,
    /// Stop after this many epochs of the stream even if it holds more.
    pub epochs_cap: Option<u32>,
    /// Continue from the checkpoint in `out` (the stream must be the same one again).
    pub resume: bool,
}

/// The numbers `summary.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub input: String,
    pub steps: u64,
    pub epochs: u32,
    /// Images trained on, counting the runs this one resumed.
    pub images_seen: u64,
    /// Wall time of this invocation (a resumed run counts only its own part).
    pub wall_s: f64,
    /// Images per second of this invocation, data waits included.
    pub images_per_s: f64,
    pub final_loss: Option<f64>,
    /// None for the autoencoder, which has no pairs of views to match.
    pub final_positive_top1: Option<f64>,
    /// Mean loss of the last epoch trained.
    pub last_epoch_loss: Option<f64>,
    /// Fraction of the wall time spent waiting for the next batch of views.
    pub data_wait_fraction: f64,
    pub stopped_by: String,
    /// "simclr" or "autoencoder".
    pub objective: String,
    pub seed: u64,
    pub backend: String,
    pub views_channels: usize,
    pub views_size: usize,
    pub views_seed: Option<u64>,
    pub encoder_channels: [usize; 4],
    pub version: String,
}

/// One row of `steps.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub step: u64,
    pub epoch: u32,
    /// NT-Xent for SimCLR, mean squared error (normalised units) for the autoencoder.
    pub loss: f64,
    pub lr: f64,
    /// Fraction of views whose pair ranks first; None (null) for the autoencoder.
    pub positive_top1: Option<f64>,
    pub images_per_s: f64,
}

/// The parts of `[train]` that are choices, parsed.
struct Settings {
    objective: Objective,
    arch: Architecture,
    /// Size of the autoencoder's code (0: the encoder's pooled output).
    bottleneck: usize,
    schedule: Schedule,
    optimizer: OptimizerKind,
    /// Peak learning rate after scaling with the batch size.
    peak_lr: f64,
    backend: Backend,
}

fn parse_settings(config: &PipelineConfig, name: &str, info: &ViewsInfo) -> Result<Settings> {
    let train = &config.train;
    let expect = |key: &'static str, value: &str, allowed: &'static str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(TrainError::Setting {
                key,
                value: value.to_string(),
                expected: allowed,
            })
        }
    };
    let objective = Objective::parse(&train.objective)?;
    if objective == Objective::Autoencoder && !info.size.is_multiple_of(8) {
        return Err(TrainError::Input {
            input: format!("{name} ([train] objective = \"autoencoder\")"),
            expected: "views whose side is a multiple of 8 (the decoder doubles it 3 times)".into(),
            found: format!("{0}x{0} views", info.size),
        });
    }
    expect(
        "bottleneck",
        &train.bottleneck.to_string(),
        "0 unless objective = \"autoencoder\" (a SimCLR model has no bottleneck layer)",
        train.bottleneck == 0 || objective == Objective::Autoencoder,
    )?;
    expect(
        "batch_size",
        &train.batch_size.to_string(),
        "at least 2",
        train.batch_size >= 2,
    )?;
    expect(
        "width",
        &train.width.to_string(),
        "a positive number",
        train.width > 0.0,
    )?;
    expect(
        "temperature",
        &train.temperature.to_string(),
        "a positive number",
        train.temperature > 0.0,
    )?;

    Ok(Settings {
        objective,
        arch: Architecture::from_config(info.channels, train)?,
        bottleneck: train.bottleneck,
        schedule: Schedule::parse(&train.schedule, train.warmup)?,
        optimizer: OptimizerKind::parse(&train.optimizer)?,
        peak_lr: LrScaling::parse(&train.lr_scaling)?.apply(train.lr, train.batch_size),
        backend: Backend::from_fast_kernels(train.fast_kernels),
    })
}

/// Steps the run is expected to take, when the stream says how long it is.
fn planned_steps(info: &ViewsInfo, batch_size: usize, epochs_cap: Option<u32>) -> Option<u64> {
    let epochs = info.epochs?.min(epochs_cap.unwrap_or(u32::MAX)) as u64;
    let per_epoch = info.images_per_epoch?;
    let batch = batch_size as u64;
    let short_last = u64::from(per_epoch % batch >= 2);
    Some(epochs * (per_epoch / batch + short_last))
}

/// Reads the views stream on its own thread; the receiver yields training batches.
fn spawn_reader(
    stream: ViewsStream,
    batch_size: usize,
    skip_rows: u64,
) -> Receiver<Result<ViewBatch>> {
    let (sender, receiver) = sync_channel(2);
    std::thread::Builder::new()
        .name("views-reader".into())
        .spawn(move || {
            for batch in stream.batches_after(batch_size, skip_rows) {
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        })
        .expect("spawning the views reader thread");
    receiver
}

/// Time spent in each part of a step, summed over the run.
#[derive(Debug, Default)]
struct Timings {
    data_wait: Duration,
    forward: Duration,
    backward: Duration,
    update: Duration,
}

/// Loss, accuracy and speed of the epoch in progress, for the per-epoch log line.
#[derive(Debug, Default)]
struct EpochTally {
    epoch: Option<u32>,
    steps: u64,
    loss: f64,
    /// Sum of the steps' positive top-1 (SimCLR only).
    top1: Option<f64>,
    images: u64,
    started: Option<Instant>,
}

impl EpochTally {
    /// Logs the finished epoch; returns its mean loss.
    fn finish(&mut self) -> Option<f64> {
        let epoch = self.epoch?;
        if self.steps == 0 {
            return None;
        }
        let mean_loss = self.loss / self.steps as f64;
        let seconds = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let images_per_s = format!("{:.1}", self.images as f64 / seconds.max(1e-9));
        let loss = format!("{mean_loss:.4}");
        match self.top1 {
            Some(top1) => info!(
                epoch,
                steps = self.steps,
                loss,
                positive_top1 = format!("{:.3}", top1 / self.steps as f64),
                images_per_s,
                "epoch done"
            ),
            None => info!(epoch, steps = self.steps, loss, images_per_s, "epoch done"),
        }
        *self = EpochTally::default();
        Some(mean_loss)
    }
}

/// Trains on the views at `input` (`-` for stdin) and writes the run's files.
pub fn train(input: &Path, options: &TrainOptions) -> Result<TrainSummary> {
    let stream = ViewsStream::open(input)?;
    train_stream(stream, options)
}

/// Trains on an opened views stream and writes the run's files.
pub fn train_stream(stream: ViewsStream, options: &TrainOptions) -> Result<TrainSummary> {
    let config = &options.config;
    let train_config = &config.train;
    let info = stream.info.clone();
    let input_name = stream.name.clone();
    let settings = parse_settings(config, &input_name, &info)?;

    let seed = config.run.seed;
    let checkpoint_path = options.out.join(checkpoint::FILE);
    let (mut model, mut optimizer, position, mut steps) = if options.resume {
        let (model, optimizer, position) = checkpoint::load(
            &checkpoint_path,
            settings.objective,
            settings.arch,
            settings.optimizer,
            train_config.weight_decay,
        )?;
        let steps_path = options.out.join(files::STEPS);
        let mut steps = read_steps(&steps_path)?;
        if (steps.len() as u64) < position.steps {
            return Err(TrainError::Input {
                input: steps_path.display().to_string(),
                expected: format!(
                    "at least the {} steps that {} records",
                    position.steps,
                    checkpoint_path.display()
                ),
                found: format!("{} steps", steps.len()),
            });
        }
        steps.truncate(position.steps as usize);
        info!(
            steps = position.steps,
            rows_skipped = position.rows_consumed,
            "resuming from {}",
            checkpoint_path.display()
        );
        (model, optimizer, position, steps)
    } else {
        let model = match settings.objective {
            Objective::Simclr => Model::Simclr(SimclrModel::new(settings.arch, seed)?),
            Objective::Autoencoder => Model::Autoencoder(AutoencoderModel::new(
                settings.arch,
                info.size,
                settings.bottleneck,
                seed,
            )?),
        };
        let optimizer = Optimizer::new(
            settings.optimizer,
            model.trainable(),
            train_config.weight_decay,
        )?;
        (
            model,
            optimizer,
            checkpoint::Position::default(),
            Vec::new(),
        )
    };

    let planned = planned_steps(&info, train_config.batch_size, options.epochs_cap);
    let time_cap = (train_config.max_minutes > 0.0)
        .then(|| Duration::from_secs_f64(train_config.max_minutes * 60.0));
    info!(
        input = %input_name,
        views = format!("{}x{}x{}", info.channels, info.size, info.size),
        epochs = ?info.epochs,
        images_per_epoch = ?info.images_per_epoch,
        batch_size = train_config.batch_size,
        planned_steps = ?planned,
        "training {} on {}",
        match settings.objective {
            Objective::Simclr => "SimCLR (NT-Xent on two views)",
            Objective::Autoencoder => "the autoencoder (MSE on view1; view2 is not read)",
        },
        train_config.encoder
    );

    let receiver = spawn_reader(stream, train_config.batch_size, position.rows_consumed);
    let bar = latent_core::logging::progress_bar(planned.unwrap_or(0), "train");
    bar.set_position(steps.len() as u64);
    let started = Instant::now();
    let mut timings = Timings::default();
    let mut tally = EpochTally::default();
    let mut first_epoch = position.first_epoch;
    let mut epochs_done = 0u32;
    let mut images_seen = position.images_seen;
    let mut rows_consumed = position.rows_consumed;
    let mut last_epoch_loss = None;
    let stopped_by;

    loop {
        if time_cap.is_some_and(|cap| started.elapsed() >= cap) {
            stopped_by = "max_minutes".to_string();
            break;
        }

        let step_started = Instant::now();
        let batch = {
            let _span = info_span!("data_wait").entered();
            receiver.recv()
        };
        timings.data_wait += step_started.elapsed();
        let batch = match batch {
            Ok(batch) => batch?,
            Err(_) => {
                stopped_by = "end of stream".to_string();
                break;
            }
        };

        let first = *first_epoch.get_or_insert(batch.epoch);
        if options
            .epochs_cap
            .is_some_and(|cap| batch.epoch >= first + cap)
        {
            stopped_by = "epochs_cap".to_string();
            break;
        }
        if tally.epoch != Some(batch.epoch) {
            last_epoch_loss = tally.finish().or(last_epoch_loss);
            tally.epoch = Some(batch.epoch);
            tally.started = Some(step_started);
            epochs_done = batch.epoch - first + 1;
        }
        let images = batch.ids.len();
        rows_consumed += images as u64;
        if images < 2 {
            debug!(epoch = batch.epoch, "skipping a last batch of one image");
            continue;
        }

        let progress = match (planned, time_cap) {
            (Some(total), _) if total > 0 => steps.len() as f64 / total as f64,
            (_, Some(cap)) => started.elapsed().as_secs_f64() / cap.as_secs_f64(),
            _ => 0.0,
        };
        let lr = settings.peak_lr * settings.schedule.factor(progress.min(1.0));
        let (loss, top1) = train_step(
            &mut model,
            &mut optimizer,
            &batch,
            &info,
            &settings,
            lr,
            train_config.temperature,
            &mut timings,
        )?;

        images_seen += images as u64;
        let record = StepRecord {
            step: steps.len() as u64 + 1,
            epoch: batch.epoch,
            loss,
            lr,
            positive_top1: top1,
            images_per_s: images as f64 / step_started.elapsed().as_secs_f64().max(1e-9),
        };
        debug!(step = record.step, loss, top1 = ?top1, "step");
        tally.steps += 1;
        tally.loss += loss;
        if let Some(top1) = top1 {
            *tally.top1.get_or_insert(0.0) += top1;
        }
        tally.images += images as u64;
        steps.push(record);
        bar.inc(1);

        let every = train_config.checkpoint_every as u64;
        if every > 0 && (steps.len() as u64).is_multiple_of(every) {
            let _span = info_span!("checkpoint").entered();
            let position = checkpoint::Position {
                steps: steps.len() as u64,
                rows_consumed,
                images_seen,
                first_epoch,
            };
            // The steps table first: killed between the two writes, the table is ahead of
            // the checkpoint, and a resumed run cuts it back to the checkpoint's step.
            let steps_path = options.out.join(files::STEPS);
            write_steps(&steps_path, &steps).map_err(|e| TrainError::Write {
                path: steps_path.clone(),
                source: e,
            })?;
            checkpoint::save(&checkpoint_path, &model, &optimizer, position)?;
            debug!(step = steps.len(), "wrote a checkpoint");
        }
    }
    drop(receiver);
    last_epoch_loss = tally.finish().or(last_epoch_loss);
    bar.finish_and_clear();

    let wall = started.elapsed().as_secs_f64();
    let summary = TrainSummary {
        input: input_name,
        steps: steps.len() as u64,
        epochs: epochs_done,
        images_seen,
        wall_s: wall,
        images_per_s: (images_seen - position.images_seen) as f64 / wall.max(1e-9),
        final_loss: steps.last().map(|s| s.loss),
        final_positive_top1: steps.last().and_then(|s| s.positive_top1),
        last_epoch_loss,
        data_wait_fraction: timings.data_wait.as_secs_f64() / wall.max(1e-9),
        stopped_by,
        objective: train_config.objective.clone(),
        seed,
        backend: format!("{:?}", settings.backend).to_lowercase(),
        views_channels: info.channels,
        views_size: info.size,
        views_seed: info.seed,
        encoder_channels: settings.arch.block_channels(),
        version: latent_core::VERSION.to_string(),
    };
    info!(
        steps = summary.steps,
        images = summary.images_seen,
        seconds = format!("{wall:.1}"),
        images_per_s = format!("{:.1}", summary.images_per_s),
        data_wait = format!("{:.1}%", 100.0 * summary.data_wait_fraction),
        forward_s = format!("{:.1}", timings.forward.as_secs_f64()),
        backward_s = format!("{:.1}", timings.backward.as_secs_f64()),
        update_s = format!("{:.1}", timings.update.as_secs_f64()),
        "training done ({})",
        summary.stopped_by
    );

    write_outputs(&options.out, &model, config, &info, &summary, &steps)?;
    let position = checkpoint::Position {
        steps: steps.len() as u64,
        rows_consumed,
        images_seen,
        first_epoch,
    };
    checkpoint::save(&checkpoint_path, &model, &optimizer, position)?;
    info!(out = %options.out.display(), "wrote model.safetensors, encoder.safetensors, config.toml, steps.parquet, summary.json");
    Ok(summary)
}

/// One optimisation step on a batch; returns (loss, positive top-1 for SimCLR).
#[allow(clippy::too_many_arguments)]
fn train_step(
    model: &mut Model,
    optimizer: &mut Optimizer,
    batch: &ViewBatch,
    info: &ViewsInfo,
    settings: &Settings,
    lr: f64,
    temperature: f64,
    timings: &mut Timings,
) -> Result<(f64, Option<f64>)> {
    let n = batch.ids.len();
    let (c, s) = (info.channels, info.size);

    let started = Instant::now();
    let (loss, logits) = {
        let _span = info_span!("forward").entered();
        let view1 = Tensor::from_slice(&batch.view1, (n, c, s, s), &Device::Cpu)?;
        match model {
            Model::Simclr(model) => {
                let view2 = Tensor::from_slice(&batch.view2, (n, c, s, s), &Device::Cpu)?;
                let views = Tensor::cat(&[view1, view2], 0)?;
                let projections = model.forward_train(&views, settings.backend)?;
                let out = nt_xent(&projections, temperature)?;
                (out.loss, Some(out.logits))
            }
            Model::Autoencoder(model) => {
                let (_, reconstruction) = model.forward_train(&view1, settings.backend)?;
                (mse(&reconstruction, &view1)?, None)
            }
        }
    };
    timings.forward += started.elapsed();

    let started = Instant::now();
    let grads = {
        let _span = info_span!("backward").entered();
        loss.backward()?
    };
    timings.backward += started.elapsed();

    let started = Instant::now();
    {
        let _span = info_span!("update").entered();
        optimizer.step(&grads, lr)?;
    }
    timings.update += started.elapsed();

    let loss = loss.to_scalar::<f32>()? as f64;
    let top1 = logits.map(|l| positive_top1(&l)).transpose()?;
    Ok((loss, top1))
}

/// The config written beside the model: the run's config, with `[augment]` replaced by
/// the one the views were made with when the stream recorded it.
fn resolved_config(config: &PipelineConfig, info: &ViewsInfo) -> PipelineConfig {
    let mut resolved = config.clone();
    if let Some(json) = &info.augment_json {
        match serde_json::from_str::<AugmentConfig>(json) {
            Ok(augment) => resolved.augment = augment,
            Err(e) => warn!(
                "the views stream's [augment] config is unreadable ({e}); recording the run's own"
            ),
        }
    }
    resolved
}

fn write_outputs(
    out: &Path,
    model: &Model,
    config: &PipelineConfig,
    info: &ViewsInfo,
    summary: &TrainSummary,
    steps: &[StepRecord],
) -> Result<()> {
    let write_err = |path: PathBuf| {
        move |e: Box<dyn std::error::Error + Send + Sync>| TrainError::Write { path, source: e }
    };

    atomic::write_bytes(out.join(files::MODEL), &model.to_safetensors()?)?;
    atomic::write_bytes(out.join(files::ENCODER), &model.encoder_safetensors()?)?;

    let header = format!(
        "# Written by latent-train {version}: the pipeline config of this run, [augment] as\n\
         # recorded in the views stream. Resolved: views {c}x{s}x{s} (seed {vseed}), encoder\n\
         # channels {channels:?}, backend {backend}, {steps} steps over {epochs} epochs.\n\n",
        version = latent_core::VERSION,
        c = info.channels,
        s = info.size,
        vseed = info.seed.map_or("unknown".into(), |s| s.to_string()),
        channels = summary.encoder_channels,
        backend = summary.backend,
        steps = summary.steps,
        epochs = summary.epochs,
    );
    let toml = header + &resolved_config(config, info).to_toml();
    atomic::write_bytes(out.join(files::CONFIG), toml.as_bytes())?;

    let steps_path = out.join(files::STEPS);
    write_steps(&steps_path, steps).map_err(write_err(steps_path.clone()))?;

    let json = serde_json::to_string_pretty(summary).expect("summary serialises");
    atomic::write_bytes(out.join(files::SUMMARY), json.as_bytes())?;
    Ok(())
}

/// The schema of `steps.parquet`.
pub fn steps_schema() -> Arc<Schema> {
    Arc::new(
        Schema::new(vec![
            Field::new("step", DataType::UInt64, false),
            Field::new("epoch", DataType::UInt32, false),
            Field::new("loss", DataType::Float64, false),
            Field::new("lr", DataType::Float64, false),
            Field::new("positive_top1", DataType::Float64, true),
            Field::new("images_per_s", DataType::Float64, false),
        ])
        .with_metadata(schema::table_metadata(schema::kind::STEPS)),
    )
}

fn write_steps(
    path: &Path,
    steps: &[StepRecord],
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let schema = steps_schema();
    let column =
        |f: fn(&StepRecord) -> f64| Arc::new(Float64Array::from_iter_values(steps.iter().map(f)));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(steps.iter().map(|s| s.step))),
            Arc::new(UInt32Array::from_iter_values(steps.iter().map(|s| s.epoch))),
            column(|s| s.loss),
            column(|s| s.lr),
            Arc::new(Float64Array::from_iter(
                steps.iter().map(|s| s.positive_top1),
            )),
            column(|s| s.images_per_s),
        ],
    )?;
    let file = AtomicFile::create(path)?;
    let mut writer = ArrowWriter::try_new(file.try_clone()?, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    file.commit()?;
    Ok(())
}

/// Reads `steps.parquet` back (to continue it when resuming).
pub fn read_steps(path: &Path) -> Result<Vec<StepRecord>> {
    let arrow_err = |e: arrow::error::ArrowError| TrainError::Arrow {
        input: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::open(path)
        .map_err(|e| latent_core::Error::io(path, "opening the steps table", e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        latent_core::Error::Parquet {
            path: path.to_path_buf(),
            source: e,
        }
    })?;
    schema::check_columns(path, "steps table", &steps_schema(), builder.schema())?;
    let reader = builder.build().map_err(|e| latent_core::Error::Parquet {
        path: path.to_path_buf(),
        source: e,
    })?;

    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow_err)?;
        let float = |name: &str| {
            batch
                .column_by_name(name)
                .expect("checked")
                .as_primitive::<Float64Type>()
                .clone()
        };
        let step = batch
            .column_by_name("step")
            .expect("checked")
            .as_primitive::<UInt64Type>()
            .clone();
        let epoch = batch
            .column_by_name("epoch")
            .expect("checked")
            .as_primitive::<UInt32Type>()
            .clone();
        let (loss, lr, top1, speed) = (
            float("loss"),
            float("lr"),
            float("positive_top1"),
            float("images_per_s"),
        );
        for row in 0..batch.num_rows() {
            out.push(StepRecord {
                step: step.value(row),
                epoch: epoch.value(row),
                loss: loss.value(row),
                lr: lr.value(row),
                positive_top1: top1.is_valid(row).then(|| top1.value(row)),
                images_per_s: speed.value(row),
            });
        }
    }
    Ok(out)
}

/// A trained model read back from its folder, with the config it was trained under.
#[derive(Debug)]
pub struct TrainedModel {
    /// The model, of the family `config.train.objective` names.
    pub model: Model,
    pub config: PipelineConfig,
    /// Path of the weights file.
    pub weights: PathBuf,
}

/// Reads `model.safetensors` and `config.toml` from a folder written by [`train`].
pub fn load_model_dir(dir: &Path) -> Result<TrainedModel> {
    let weights = dir.join(files::MODEL);
    let config = PipelineConfig::load(&dir.join(files::CONFIG))?;
    let objective = Objective::parse(&config.train.objective)?;
    let in_channels = Model::in_channels_of(objective, &weights)?;
    let arch = Architecture::from_config(in_channels, &config.train)?;
    let model = Model::load(objective, arch, &weights)?;

    if let Model::Autoencoder(autoencoder) = &model {
        let in_file = autoencoder
            .bottleneck
            .as_ref()
            .map_or(0, |l| l.weight.dims()[0]);
        if in_file != config.train.bottleneck {
            return Err(TrainError::Model {
                path: weights,
                what: format!(
                    "has a bottleneck of {in_file} (0: none), but its config.toml says \
                     bottleneck = {}",
                    config.train.bottleneck
                ),
            });
        }
    }

    Ok(TrainedModel {
        model,
        config,
        weights,
    })
}
