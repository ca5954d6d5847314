//! The parallel part of every source: decode chunks, then dedupe, count and write.
//!
//! A source turns into an iterator of chunks of [`Job`]s (one row group each). Each chunk
//! is decoded by the rayon pool while a writer thread deduplicates, counts and writes the
//! previous one, so decoding and Parquet encoding overlap and at most a few row groups are
//! in memory at once.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use indicatif::ProgressBar;
use latent_core::logging::progress_bar;
use rayon::prelude::*;

use crate::decode::{self, ColorMode, Pixels, Reason, Rejection, Resize};
use crate::error::Result;
use crate::writer::{self, ImageRow, ImageTableWriter, RejectRow};
use crate::{CLASS_NAMES_KEY, Dedupe, IngestOptions, OPTIONS_KEY, SOURCE_KEY, Summary};

/// One row to produce: where it comes from and what it is.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: i64,
    pub label: Option<i32>,
    pub split: &'static str,
    pub source: String,
    pub input: Input,
}

#[derive(Debug)]
pub(crate) enum Input {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Pixels(Pixels),
    Rejected(Rejection),
}

enum Outcome {
    Image(ImageRow),
    Reject(RejectRow),
}

#[derive(Clone, Copy)]
struct Policy {
    mode: ColorMode,
    resize: Option<Resize>,
}

fn process(job: Job, policy: Policy) -> Outcome {
    let decoded = match job.input {
        Input::Path(path) => decode_file(&path),
        Input::Bytes(bytes) => decode::decode_image(&bytes),
        Input::Pixels(pixels) => Ok(pixels),
        Input::Rejected(rejection) => Err(rejection),
    };
    match decoded {
        Ok(pixels) => {
            let pixels = decode::apply_policy(pixels, policy.mode, policy.resize);
            Outcome::Image(ImageRow {
                id: job.id,
                label: job.label,
                split: job.split,
                source: job.source,
                height: pixels.height,
                width: pixels.width,
                channels: pixels.channels,
                pixels: pixels.data,
            })
        }
        Err(rejection) => Outcome::Reject(RejectRow {
            path: job.source,
            reason: rejection.reason.as_str(),
            detail: rejection.detail,
        }),
    }
}

thread_local! {
    /// File bytes are read into one reused buffer per decoding thread: no allocation and
    /// no size query per file.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn decode_file(path: &Path) -> Result<Pixels, Rejection> {
    READ_BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        std::fs::File::open(path)
            .and_then(|mut file| std::io::Read::read_to_end(&mut file, buffer))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Rejection::new(Reason::MissingFile, e.to_string()),
                _ => Rejection::new(Reason::Unreadable, e.to_string()),
            })?;
        decode::decode_image(buffer)
    })
}

/// The sequential end of the pipeline: dedupes, counts, writes.
pub(crate) struct Sink {
    writer: ImageTableWriter,
    dedupe: Dedupe,
    /// The id of the first image with each pixel hash (ids, not names, keep this small).
    first_with_hash: HashMap<u64, i64>,
    rejects: Vec<RejectRow>,
    summary: Summary,
    progress: ProgressBar,
}

impl Sink {
    pub(crate) fn create(
        options: &IngestOptions,
        class_names: &[String],
        expected_rows: usize,
    ) -> Result<Self> {
        let metadata = HashMap::from([
            (SOURCE_KEY.to_string(), options.source.display().to_string()),
            (OPTIONS_KEY.to_string(), options_json(options)),
            (
                CLASS_NAMES_KEY.to_string(),
                serde_json::to_string(class_names).expect("strings serialise"),
            ),
        ]);
        let writer = ImageTableWriter::create(
            &options.out,
            class_names.to_vec(),
            metadata,
            options.codec,
            options.row_group_size,
        )?;
        Ok(Self {
            writer,
            dedupe: options.dedupe,
            first_with_hash: HashMap::new(),
            rejects: Vec::new(),
            summary: Summary {
                class_names: class_names.to_vec(),
                ..Summary::default()
            },
            progress: progress_bar(expected_rows as u64, "ingest"),
        })
    }

    fn accept(&mut self, outcomes: Vec<Outcome>) -> Result<()> {
        self.progress.inc(outcomes.len() as u64);
        for outcome in outcomes {
            self.summary.seen += 1;
            match outcome {
                Outcome::Image(row) => self.accept_image(row)?,
                Outcome::Reject(reject) => {
                    tracing::debug!("{}: {} ({})", reject.path, reject.reason, reject.detail);
                    self.summary.rejected += 1;
                    *self.summary.reasons.entry(reject.reason).or_default() += 1;
                    self.rejects.push(reject);
                }
            }
        }
        Ok(())
    }

    fn accept_image(&mut self, row: ImageRow) -> Result<()> {
        let mut hasher = std::hash::DefaultHasher::new();
        (row.height, row.width, row.channels).hash(&mut hasher);
        row.pixels.hash(&mut hasher);
        let hash = hasher.finish();

        if let Some(first) = self.first_with_hash.get(&hash) {
            self.summary.duplicates += 1;
            tracing::debug!("{}: same pixels as id {first}", row.source);
            if self.dedupe == Dedupe::Drop {
                self.summary.duplicates_dropped += 1;
                *self
                    .summary
                    .reasons
                    .entry(Reason::Duplicate.as_str())
                    .or_default() += 1;
                self.rejects.push(RejectRow {
                    path: row.source,
                    reason: Reason::Duplicate.as_str(),
                    detail: format!("same pixels as id {first}, which is kept"),
                });
                return Ok(());
            }
        } else {
            self.first_with_hash.insert(hash, row.id);
        }

        self.summary.ingested += 1;
        *self.summary.per_split.entry(row.split).or_default() += 1;
        self.writer.push(row)
    }

    /// Writes both tables, then moves them into place: the rejects table first, so that
    /// the image table (what the next stage trusts) only appears once everything else has.
    fn finish(self, options: &IngestOptions) -> Result<Summary> {
        self.progress.finish_and_clear();
        let mut summary = self.summary;
        let images = self.writer.finish()?;
        let rejects_path = options.rejects_path();
        let rejects = writer::write_rejects(&rejects_path, &self.rejects, options.codec)?;
        summary.rejects = rejects.commit()?;
        summary.out = images.commit()?;
        Ok(summary)
    }
}

fn options_json(options: &IngestOptions) -> String {
    let shard = options
        .split
        .shard
        .map(|s| format!("{}/{}", s.index, s.count));
    let resize = options
        .resize
        .map(|r| format!("{}x{} {:?}", r.width, r.height, r.filter));
    serde_json::json!({
        "seed": options.split.seed,
        "test_fraction": options.split.test_fraction,
        "limit_per_class": options.split.limit_per_class,
        "shard": shard,
        "mode": format!("{:?}", options.mode).to_lowercase(),
        "resize": resize,
        "dedupe": format!("{:?}", options.dedupe).to_lowercase(),
    })
    .to_string()
}

/// Decodes chunks in parallel while a writer thread consumes the previous one.
///
/// `chunks` is pulled on the calling thread (so a tar stream need not be `Send`); each
/// chunk is decoded by the rayon pool and handed to the writer thread through a bounded
/// channel, which keeps at most a few row groups in memory.
pub(crate) fn run_pipeline(
    chunks: impl Iterator<Item = Result<Vec<Job>>>,
    mut sink: Sink,
    options: &IngestOptions,
) -> Result<Summary> {
    let policy = Policy {
        mode: options.mode,
        resize: options.resize,
    };
    let sink = std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<Vec<Outcome>>(2);
        let writer = scope.spawn(move || -> Result<Sink> {
            for outcomes in receiver {
                sink.accept(outcomes)?;
            }
            Ok(sink)
        });

        let mut failure = None;
        for chunk in chunks {
            match chunk {
                Ok(jobs) => {
                    let outcomes = jobs
                        .into_par_iter()
                        .map(|job| process(job, policy))
                        .collect();
                    if sender.send(outcomes).is_err() {
                        break; // the writer stopped; its error is returned below
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(sender);
        let sink = writer.join().expect("the writer thread does not panic")?;
        match failure {
            Some(e) => Err(e),
            None => Ok(sink),
        }
    })?;

    let summary = sink.finish(options)?;
    log_summary(&summary);
    Ok(summary)
}

fn log_summary(summary: &Summary) {
    let splits: Vec<String> = summary
        .per_split
        .iter()
        .map(|(split, n)| format!("{split} {n}"))
        .collect();
    let classes = match summary.class_names.len() {
        0 => "labels without class names".to_string(),
        n => format!("{n} classes"),
    };
    tracing::info!(
        "seen {} = ingested {} + rejected {} + duplicates dropped {} ({} duplicates found); {}; {classes}",
        summary.seen,
        summary.ingested,
        summary.rejected,
        summary.duplicates_dropped,
        summary.duplicates,
        splits.join(", "),
    );
    for (reason, count) in &summary.reasons {
        tracing::info!("rejected as {reason}: {count}");
    }
    tracing::info!(
        "wrote {} and {}",
        summary.out.display(),
        summary.rejects.display()
    );
}
