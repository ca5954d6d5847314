//! Reading the views stream that `latent-augment` writes (and writing one, for tests).
//!
//! The stream is Arrow IPC in streaming format, from a file or a pipe. Its schema is
//! checked before any training starts, so a wrong input (a Parquet table, an Arrow file,
//! a latent table, views of another shape) is refused with what was found. Rows are
//! grouped into training batches of up to `batch_size` images of one epoch; the count
//! of rows the metadata promises is checked at the end, which catches a stream that was
//! cut off between two messages (Arrow itself reads that as a clean end).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use arrow::array::{
    AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt32Array,
};
use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use latent_core::schema::{self, views};

use crate::error::{Result, TrainError};

/// What the stream's metadata says about the views.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewsInfo {
    pub channels: usize,
    pub size: usize,
    /// Epochs the stream holds (None when the writer did not say).
    pub epochs: Option<u32>,
    /// Images per epoch (None when the writer did not say).
    pub images_per_epoch: Option<u64>,
    /// Seed the views were drawn from.
    pub seed: Option<u64>,
    /// The `[augment]` config as JSON, as the writer recorded it.
    pub augment_json: Option<String>,
}

/// A checked views stream, ready to be read.
pub struct ViewsStream {
    /// Name used in messages: the file path or "stdin".
    pub name: String,
    pub info: ViewsInfo,
    reader: StreamReader<BufReader<Box<dyn Read + Send>>>,
}

/// Training batch: up to `batch_size` images of one epoch with both views.
#[derive(Debug, Clone)]
pub struct ViewBatch {
    pub epoch: u32,
    pub ids: Vec<i64>,
    /// `ids.len() * C * S * S` values, CHW per image.
    pub view1: Vec<f32>,
    pub view2: Vec<f32>,
}

impl ViewsStream {
    /// Opens `input` (`-` for stdin) and checks that it is a views stream.
    pub fn open(input: &Path) -> Result<Self> {
        if input.as_os_str() == "-" {
            return Self::from_reader("stdin".into(), Box::new(std::io::stdin()));
        }
        let file = std::fs::File::open(input)
            .map_err(|e| latent_core::Error::io(input, "opening the views stream", e))?;
        Self::from_reader(input.display().to_string(), Box::new(file))
    }

    /// Reads a views stream from any reader; `name` is used in messages.
    pub fn from_reader(name: String, reader: Box<dyn Read + Send>) -> Result<Self> {
        let mut buffered = BufReader::with_capacity(1 << 20, reader);
        let head = buffered.fill_buf().map_err(|e| TrainError::Input {
            input: name.clone(),
            expected: "an Arrow IPC stream of views".into(),
            found: format!("an unreadable input ({e})"),
        })?;
        if let Some(found) = sniff_other_format(head) {
            return Err(TrainError::Input {
                input: name,
                expected: "an Arrow IPC stream of views from latent-augment".into(),
                found: found.into(),
            });
        }

        let reader = StreamReader::try_new(buffered, None).map_err(|e| TrainError::Input {
            input: name.clone(),
            expected: "an Arrow IPC stream of views from latent-augment".into(),
            found: format!("data that is not an Arrow stream ({e})"),
        })?;
        let info = check_schema(&name, &reader.schema())?;
        Ok(Self { name, info, reader })
    }

    /// Splits the stream into training batches of at most `batch_size` images, never
    /// mixing epochs. Errors (malformed or truncated stream) end the iteration.
    pub fn batches(self, batch_size: usize) -> Batches {
        self.batches_after(batch_size, 0)
    }

    /// Like [`ViewsStream::batches`], after skipping the first `skip_rows` rows (the
    /// part of the stream a resumed run has already trained on).
    pub fn batches_after(self, batch_size: usize, skip_rows: u64) -> Batches {
        Batches {
            stream: self,
            batch_size,
            skip_rows,
            pending: None,
            ready: VecDeque::new(),
            rows_seen: 0,
            finished: false,
        }
    }
}

/// Recognises inputs that are clearly not an Arrow stream, from their first bytes.
fn sniff_other_format(head: &[u8]) -> Option<&'static str> {
    if head.is_empty() {
        Some("an empty input (did latent-augment fail?)")
    } else if head.starts_with(b"PAR1") {
        Some("a Parquet file (an image or latent table?)")
    } else if head.starts_with(b"ARROW1") {
        Some("an Arrow IPC file (file format, not the stream format)")
    } else {
        None
    }
}

fn check_schema(name: &str, found: &arrow::datatypes::Schema) -> Result<ViewsInfo> {
    let not_views = |why: String| TrainError::Input {
        input: name.to_string(),
        expected: format!("a views stream ({why})"),
        found: schema::describe(found),
    };
    match schema::table_kind(found) {
        Some(schema::kind::VIEWS) => {}
        Some(other) => return Err(not_views(format!("table kind 'views', not '{other}'"))),
        None => {
            return Err(not_views(format!(
                "metadata key {}",
                schema::TABLE_KIND_KEY
            )));
        }
    }

    let meta = found.metadata();
    let number = |key: &str| -> Result<Option<u64>> {
        meta.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| not_views(format!("{key} = {v:?} as a number")))
            })
            .transpose()
    };
    let channels =
        number(views::CHANNELS_KEY)?.ok_or_else(|| not_views(views::CHANNELS_KEY.into()))?;
    let size = number(views::SIZE_KEY)?.ok_or_else(|| not_views(views::SIZE_KEY.into()))?;
    let info = ViewsInfo {
        channels: channels as usize,
        size: size as usize,
        epochs: number(views::EPOCHS_KEY)?.map(|e| e as u32),
        images_per_epoch: number(views::IMAGES_PER_EPOCH_KEY)?,
        seed: number(views::SEED_KEY)?,
        augment_json: meta.get(views::CONFIG_KEY).cloned(),
    };

    let expected = schema::views_schema(info.channels, info.size, HashMap::new());
    schema::check_columns(Path::new(name), "views stream", &expected, found)?;
    Ok(info)
}

/// Iterator over training batches; see [`ViewsStream::batches`].
pub struct Batches {
    stream: ViewsStream,
    batch_size: usize,
    skip_rows: u64,
    pending: Option<ViewBatch>,
    ready: VecDeque<ViewBatch>,
    rows_seen: u64,
    finished: bool,
}

impl Batches {
    /// The name and metadata of the stream being read.
    pub fn info(&self) -> (&str, &ViewsInfo) {
        (&self.stream.name, &self.stream.info)
    }

    fn malformed(&self, e: arrow::error::ArrowError) -> TrainError {
        TrainError::Arrow {
            input: self.stream.name.clone(),
            source: e,
        }
    }

    /// Adds one record batch's rows to `pending`, returning full batches.
    fn absorb(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str| batch.column_by_name(name).expect("schema checked");
        let epochs: &UInt32Array = column(views::EPOCH).as_primitive::<UInt32Type>();
        let ids: &Int64Array = column(views::ID).as_primitive::<Int64Type>();
        let view1 = column(views::VIEW1).as_fixed_size_list();
        let view2 = column(views::VIEW2).as_fixed_size_list();
        let per_view = view1.value_length() as usize;

        for row in 0..batch.num_rows() {
            if self.skip_rows > 0 {
                self.skip_rows -= 1;
                self.rows_seen += 1;
                continue;
            }
            let epoch = epochs.value(row);
            if let Some(p) = &self.pending {
                if epoch < p.epoch {
                    return Err(TrainError::Input {
                        input: self.stream.name.clone(),
                        expected: "epochs in increasing order".into(),
                        found: format!(
                            "epoch {epoch} after epoch {} (row {})",
                            p.epoch, self.rows_seen
                        ),
                    });
                }
                if epoch != p.epoch {
                    self.ready.push_back(self.pending.take().expect("checked"));
                }
            }
            let pending = self.pending.get_or_insert_with(|| ViewBatch {
                epoch,
                ids: Vec::with_capacity(self.batch_size),
                view1: Vec::with_capacity(self.batch_size * per_view),
                view2: Vec::with_capacity(self.batch_size * per_view),
            });
            pending.ids.push(ids.value(row));
            pending.view1.extend_from_slice(row_values(view1, row));
            pending.view2.extend_from_slice(row_values(view2, row));
            self.rows_seen += 1;
            if pending.ids.len() == self.batch_size {
                self.ready
                    .push_back(self.pending.take().expect("just filled"));
            }
        }
        Ok(())
    }

    fn check_complete(&self) -> Result<()> {
        let info = &self.stream.info;
        if let (Some(epochs), Some(per_epoch)) = (info.epochs, info.images_per_epoch) {
            let promised = epochs as u64 * per_epoch;
            if self.rows_seen < promised {
                return Err(TrainError::Input {
                    input: self.stream.name.clone(),
                    expected: format!("{promised} rows ({epochs} epochs of {per_epoch} images)"),
                    found: format!(
                        "the stream ended after {} rows (truncated?)",
                        self.rows_seen
                    ),
                });
            }
        }
        Ok(())
    }
}

fn row_values(list: &FixedSizeListArray, row: usize) -> &[f32] {
    let values: &Float32Array = list.values().as_primitive::<Float32Type>();
    let len = list.value_length() as usize;
    let start = list.value_offset_at(row);
    &values.values()[start..start + len]
}

impl Iterator for Batches {
    type Item = Result<ViewBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.ready.is_empty() && !self.finished {
            match self.stream.reader.next() {
                Some(Ok(batch)) => {
                    if let Err(e) = self.absorb(&batch) {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(self.malformed(e)));
                }
                None => {
                    self.finished = true;
                    if let Err(e) = self.check_complete() {
                        return Some(Err(e));
                    }
                    self.ready.extend(self.pending.take());
                }
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// One row of a views stream: (epoch, id, view1, view2).
pub type ViewRow = (u32, i64, Vec<f32>, Vec<f32>);

/// Writes a views stream with the given rows: a helper for tests and examples.
///
/// `rows` are `(epoch, id, view1, view2)`; every view must hold `channels*size*size`
/// values. `chunk` rows go into each record batch.
pub fn write_views_stream<W: Write>(
    writer: W,
    channels: usize,
    size: usize,
    rows: &[ViewRow],
    chunk: usize,
) -> Result<()> {
    let epochs = rows.iter().map(|r| r.0).max().map_or(0, |e| e + 1);
    let per_epoch = rows.iter().filter(|r| r.0 == 0).count();
    let metadata = HashMap::from([
        (views::CHANNELS_KEY.to_string(), channels.to_string()),
        (views::SIZE_KEY.to_string(), size.to_string()),
        (views::EPOCHS_KEY.to_string(), epochs.to_string()),
        (
            views::IMAGES_PER_EPOCH_KEY.to_string(),
            per_epoch.to_string(),
        ),
        (views::SEED_KEY.to_string(), "0".to_string()),
    ]);
    let schema = schema::views_schema(channels, size, metadata);
    let arrow_err = |e| TrainError::Arrow {
        input: "views stream being written".into(),
        source: e,
    };
    let mut out = StreamWriter::try_new(writer, &schema).map_err(arrow_err)?;
    let per_view = (channels * size * size) as i32;
    for part in rows.chunks(chunk.max(1)) {
        let list = |pick: fn(&ViewRow) -> &Vec<f32>| {
            let values: Vec<f32> = part.iter().flat_map(|r| pick(r).iter().copied()).collect();
            FixedSizeListArray::try_new(
                std::sync::Arc::new(arrow::datatypes::Field::new(
                    "item",
                    arrow::datatypes::DataType::Float32,
                    false,
                )),
                per_view,
                std::sync::Arc::new(Float32Array::from(values)),
                None,
            )
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(UInt32Array::from_iter_values(part.iter().map(|r| r.0))),
                std::sync::Arc::new(Int64Array::from_iter_values(part.iter().map(|r| r.1))),
                std::sync::Arc::new(list(|r| &r.2).map_err(arrow_err)?),
                std::sync::Arc::new(list(|r| &r.3).map_err(arrow_err)?),
            ],
        )
        .map_err(arrow_err)?;
        out.write(&batch).map_err(arrow_err)?;
    }
    out.finish().map_err(arrow_err)?;
    Ok(())
}
