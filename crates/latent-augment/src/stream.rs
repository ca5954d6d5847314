//! The views stream: worker threads make chunks of views, one writer puts them in order.
//!
//! Each epoch visits the training images in an order shuffled from (seed, epoch) and is
//! cut into chunks of `chunk` images; a chunk becomes one Arrow record batch. Workers take
//! chunks from a bounded queue and the writer reorders what they finish, so the bytes of
//! the stream do not depend on the number of workers. A fixed number of tokens caps the
//! chunks between dispatch and write, so memory stays flat however many epochs are
//! streamed and however slowly the reader drains the pipe.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::StreamWriter;
use crossbeam_channel::bounded;
use latent_core::rng::{rng_for, stream};
use latent_core::schema::{self, views};
use rand::RngExt;
use tracing::{debug, info, info_span};

use crate::ops::Image;
use crate::{AugmentError, Augmenter, TrainImages};

/// How the stream is laid out and computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Seed of every random choice (shuffles and views).
    pub seed: u64,
    /// Passes over the training images.
    pub epochs: u32,
    /// Worker threads (at least 1); does not change the output.
    pub workers: usize,
    /// Images per record batch.
    pub chunk: usize,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Every epoch was written.
    Complete { rows: u64 },
    /// The reader closed the pipe; `rows` were written before it did.
    ReaderClosed { rows: u64 },
}

/// The default worker count: the machine's cores minus one (for the writer or the
/// reader of the pipe), at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// The order in which epoch `epoch` visits `count` images (a Fisher-Yates shuffle seeded
/// from (seed, epoch)).
pub fn epoch_order(seed: u64, epoch: u32, count: usize) -> Vec<usize> {
    let mut rng = rng_for(seed, &[stream::SHUFFLE, u64::from(epoch)]);
    let mut order: Vec<usize> = (0..count).collect();
    for i in (1..count).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order
}

/// View `view_index` (0 or 1 in the stream) of image `id` in epoch `epoch`, values in
/// 0..1: a function of these coordinates and the seed only.
pub fn make_view(
    augmenter: &Augmenter,
    source: &Image,
    seed: u64,
    epoch: u32,
    id: i64,
    view_index: u64,
) -> Image {
    let mut rng = rng_for(
        seed,
        &[stream::VIEW, u64::from(epoch), id as u64, view_index],
    );
    augmenter.view(source, &mut rng)
}

/// The schema of the stream, with its metadata: size, channels, epochs, images per
/// epoch, seed and the `[augment]` settings as JSON (without `workers`, which does not
/// change the views, so that streams made with different worker counts are identical).
pub fn stream_schema(
    images: &TrainImages,
    augmenter: &Augmenter,
    options: &StreamOptions,
) -> SchemaRef {
    let mut config = serde_json::to_value(augmenter.config()).expect("config serialises");
    if let Some(fields) = config.as_object_mut() {
        fields.remove("workers");
    }
    let metadata = HashMap::from([
        (views::SIZE_KEY.to_string(), augmenter.size().to_string()),
        (
            views::CHANNELS_KEY.to_string(),
            augmenter.channels().to_string(),
        ),
        (views::EPOCHS_KEY.to_string(), options.epochs.to_string()),
        (
            views::IMAGES_PER_EPOCH_KEY.to_string(),
            images.len().to_string(),
        ),
        (views::SEED_KEY.to_string(), options.seed.to_string()),
        (views::CONFIG_KEY.to_string(), config.to_string()),
    ]);
    schema::views_schema(augmenter.channels(), augmenter.size(), metadata)
}

/// One chunk of work: the images (indices into the table) of one record batch, in stream
/// order.
struct Job {
    sequence: u64,
    epoch: u32,
    indices: Vec<usize>,
}

/// Builds the record batch of one chunk: for each image its id and two views.
pub fn build_batch(
    schema: &SchemaRef,
    images: &TrainImages,
    augmenter: &Augmenter,
    seed: u64,
    epoch: u32,
    indices: &[usize],
) -> Result<RecordBatch, AugmentError> {
    let view_len = augmenter.view_len();
    let mut first = Vec::with_capacity(indices.len() * view_len);
    let mut second = Vec::with_capacity(indices.len() * view_len);
    let mut ids = Vec::with_capacity(indices.len());

    for &index in indices {
        let id = images.ids[index];
        let source = images.images[index].to_image(images.channels);
        augmenter.normalise_into(
            &make_view(augmenter, &source, seed, epoch, id, 0),
            &mut first,
        );
        augmenter.normalise_into(
            &make_view(augmenter, &source, seed, epoch, id, 1),
            &mut second,
        );
        ids.push(id);
    }

    let list = |values: Vec<f32>| -> Result<ArrayRef, AugmentError> {
        let DataType::FixedSizeList(item, len) = schema.field(2).data_type() else {
            unreachable!("views_schema makes fixed-size lists");
        };
        let values = Arc::new(Float32Array::from(values));
        let array = FixedSizeListArray::try_new(item.clone(), *len, values, None)
            .map_err(AugmentError::Batch)?;
        Ok(Arc::new(array))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(vec![epoch; indices.len()])),
        Arc::new(Int64Array::from(ids)),
        list(first)?,
        list(second)?,
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(AugmentError::Batch)
}

/// Writes `options.epochs` epochs of views of `images` to `out` as one Arrow IPC stream.
///
/// `target` names the output in messages. A reader that closes the pipe early ends the
/// stream quietly with [`StreamOutcome::ReaderClosed`]; any other write error is an error.
pub fn write_views<W: Write>(
    images: &TrainImages,
    augmenter: &Augmenter,
    options: &StreamOptions,
    out: W,
    target: &str,
) -> Result<StreamOutcome, AugmentError> {
    let _span = info_span!("augment", epochs = options.epochs, images = images.len()).entered();
    let schema = stream_schema(images, augmenter, options);
    let workers = options.workers.max(1);
    let chunk = options.chunk.max(1);
    let chunks_per_epoch = images.len().div_ceil(chunk) as u64;
    let total_chunks = chunks_per_epoch * u64::from(options.epochs);
    let in_flight = 2 * workers + 2;
    info!(
        size = augmenter.size(),
        channels = augmenter.channels(),
        workers,
        "streaming views to {target}"
    );

    let write_error = |source| AugmentError::Write {
        target: target.to_string(),
        source,
    };
    let mut writer = match StreamWriter::try_new(BufWriter::with_capacity(1 << 20, out), &schema) {
        Ok(writer) => writer,
        Err(e) if is_broken_pipe(&e) => return Ok(StreamOutcome::ReaderClosed { rows: 0 }),
        Err(e) => return Err(write_error(e)),
    };
    let bar = latent_core::logging::progress_bar(
        images.len() as u64 * u64::from(options.epochs),
        "views",
    );
    let started = Instant::now();

    let outcome = std::thread::scope(|scope| -> Result<StreamOutcome, AugmentError> {
        let (job_tx, job_rx) = bounded::<Job>(in_flight);
        let (done_tx, done_rx) = bounded::<(u64, Result<RecordBatch, AugmentError>)>(in_flight);
        let (token_tx, token_rx) = bounded::<()>(in_flight);
        for _ in 0..in_flight {
            token_tx.send(()).expect("the token queue has room");
        }

        // The dispatcher: one job per chunk, in stream order, each waiting for a token.
        scope.spawn(move || {
            let mut sequence = 0;
            for epoch in 0..options.epochs {
                let order = epoch_order(options.seed, epoch, images.len());
                for indices in order.chunks(chunk) {
                    let job = Job {
                        sequence,
                        epoch,
                        indices: indices.to_vec(),
                    };
                    if token_rx.recv().is_err() || job_tx.send(job).is_err() {
                        return;
                    }
                    sequence += 1;
                }
            }
        });

        for _ in 0..workers {
            let (job_rx, done_tx, schema) = (job_rx.clone(), done_tx.clone(), schema.clone());
            scope.spawn(move || {
                for job in job_rx {
                    let made = catch_unwind(AssertUnwindSafe(|| {
                        let _span = info_span!("chunk", epoch = job.epoch).entered();
                        build_batch(
                            &schema,
                            images,
                            augmenter,
                            options.seed,
                            job.epoch,
                            &job.indices,
                        )
                    }))
                    .unwrap_or_else(|panic| Err(AugmentError::Worker(panic_message(&panic))));
                    if done_tx.send((job.sequence, made)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((job_rx, done_tx));

        // The writer: batches in sequence order, returning a token for each one written.
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut rows = 0u64;
        while next < total_chunks {
            let Ok((sequence, made)) = done_rx.recv() else {
                return Err(AugmentError::Worker("the workers stopped early".into()));
            };
            pending.insert(sequence, made);
            while let Some(made) = pending.remove(&next) {
                let batch = made?;
                match writer.write(&batch) {
                    Ok(()) => {}
                    Err(e) if is_broken_pipe(&e) => {
                        return Ok(StreamOutcome::ReaderClosed { rows });
                    }
                    Err(e) => return Err(write_error(e)),
                }
                rows += batch.num_rows() as u64;
                bar.inc(batch.num_rows() as u64);
                next += 1;
                let _ = token_tx.send(());
            }
        }
        Ok(StreamOutcome::Complete { rows })
    })?;

    bar.finish_and_clear();
    if let StreamOutcome::ReaderClosed { rows } = outcome {
        debug!(rows, "the reader closed the stream; stopping");
        return Ok(outcome);
    }
    let finished = writer.finish().and_then(|()| writer.flush());
    match finished {
        Ok(()) => {}
        Err(e) if is_broken_pipe(&e) => return Ok(outcome),
        Err(e) => return Err(write_error(e)),
    }

    let seconds = started.elapsed().as_secs_f64();
    let views = 2 * images.len() as u64 * u64::from(options.epochs);
    info!(
        views,
        seconds = format!("{seconds:.2}"),
        views_per_s = format!("{:.0}", views as f64 / seconds),
        "wrote the views stream to {target}"
    );
    Ok(outcome)
}

/// Whether a write failed because the reader went away (a closed pipe).
fn is_broken_pipe(error: &ArrowError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a worker panicked".into())
}
