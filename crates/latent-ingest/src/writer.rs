//! Writing the image table and the rejects table.
//!
//! Both are written through [`AtomicFile`], so they appear under their final names only
//! when complete. The image table is written as it goes, one row group per
//! `row_group_size` rows, so memory stays flat however large the source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use latent_core::atomic::AtomicFile;
use latent_core::schema::{self, kind};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{IngestError, Result};

/// One image ready for the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    pub id: i64,
    pub label: Option<i32>,
    pub split: &'static str,
    pub source: String,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub pixels: Vec<u8>,
}

/// One refused input: its path, the reason name and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub path: String,
    pub reason: &'static str,
    pub detail: String,
}

/// Parquet compression codec of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Codec {
    #[default]
    Snappy,
    Zstd,
    None,
}

impl Codec {
    fn parquet(self) -> Compression {
        match self {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")),
            Codec::None => Compression::UNCOMPRESSED,
        }
    }
}

fn properties(codec: Codec, row_group_size: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(codec.parquet())
        .set_max_row_group_row_count(Some(row_group_size))
        .set_created_by(format!("latent-ingest {}", latent_core::VERSION))
        .build()
}

/// Streams image rows into a Parquet image table.
pub struct ImageTableWriter {
    path: PathBuf,
    file: AtomicFile,
    writer: ArrowWriter<std::fs::File>,
    schema: SchemaRef,
    class_names: Vec<String>,
    row_group_size: usize,
    pending: Vec<ImageRow>,
    rows: usize,
}

impl ImageTableWriter {
    /// Opens `path` for writing; `extra_metadata` is added to the table's metadata.
    pub fn create(
        path: &Path,
        class_names: Vec<String>,
        extra_metadata: HashMap<String, String>,
        codec: Codec,
        row_group_size: usize,
    ) -> Result<Self> {
        let base = schema::image_table_schema();
        let mut metadata = base.metadata().clone();
        metadata.extend(extra_metadata);
        let schema = Arc::new(Schema::new(base.fields().clone()).with_metadata(metadata));

        let file = AtomicFile::create(path)?;
        let handle = file.try_clone()?;
        let writer = ArrowWriter::try_new(
            handle,
            schema.clone(),
            Some(properties(codec, row_group_size)),
        )
        .map_err(|e| parquet_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            writer,
            schema,
            class_names,
            row_group_size,
            pending: Vec::with_capacity(row_group_size),
            rows: 0,
        })
    }

    /// Adds a row; a full row group is written out at once.
    pub fn push(&mut self, row: ImageRow) -> Result<()> {
        self.pending.push(row);
        if self.pending.len() >= self.row_group_size {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Rows added so far.
    pub fn rows(&self) -> usize {
        self.rows + self.pending.len()
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = self.batch()?;
        self.pending.clear();
        self.rows += batch.num_rows();
        self.writer
            .write(&batch)
            .map_err(|e| parquet_error(&self.path, e))?;
        self.writer
            .flush()
            .map_err(|e| parquet_error(&self.path, e))
    }

    fn batch(&self) -> Result<RecordBatch> {
        let n = self.pending.len();
        let pixel_bytes: usize = self.pending.iter().map(|r| r.pixels.len()).sum();
        let source_bytes: usize = self.pending.iter().map(|r| r.source.len()).sum();
        let mut ids = Int64Builder::with_capacity(n);
        let mut labels = Int32Builder::with_capacity(n);
        let mut names = StringBuilder::with_capacity(n, n * 8);
        let mut splits = StringBuilder::with_capacity(n, n * 5);
        let mut heights = Int32Builder::with_capacity(n);
        let mut widths = Int32Builder::with_capacity(n);
        let mut channels = Int32Builder::with_capacity(n);
        let mut pixels = BinaryBuilder::with_capacity(n, pixel_bytes);
        let mut sources = StringBuilder::with_capacity(n, source_bytes);

        for row in &self.pending {
            ids.append_value(row.id);
            labels.append_option(row.label);
            names.append_option(row.label.and_then(|l| self.class_names.get(l as usize)));
            splits.append_value(row.split);
            heights.append_value(row.height as i32);
            widths.append_value(row.width as i32);
            channels.append_value(row.channels as i32);
            pixels.append_value(&row.pixels);
            sources.append_value(&row.source);
        }

        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(labels.finish()),
            Arc::new(names.finish()),
            Arc::new(splits.finish()),
            Arc::new(heights.finish()),
            Arc::new(widths.finish()),
            Arc::new(channels.finish()),
            Arc::new(pixels.finish()),
            Arc::new(sources.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| IngestError::Arrow {
            path: self.path.clone(),
            source: e,
        })
    }

    /// Writes the last row group and the footer. The file keeps its temporary name until
    /// the caller commits it, so that the image table and the rejects table appear together.
    pub fn finish(mut self) -> Result<AtomicFile> {
        self.write_pending()?;
        self.writer
            .close()
            .map_err(|e| parquet_error(&self.path, e))?;
        Ok(self.file)
    }
}

/// The rejects table schema: path, reason, detail.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
        ])
        .with_metadata(schema::table_metadata(kind::REJECTS)),
    )
}

/// Writes the rejects table (also when there are no rejects), uncommitted.
pub fn write_rejects(path: &Path, rejects: &[RejectRow], codec: Codec) -> Result<AtomicFile> {
    let schema = rejects_schema();
    let mut paths = StringBuilder::new();
    let mut reasons = StringBuilder::new();
    let mut details = StringBuilder::new();
    for reject in rejects {
        paths.append_value(&reject.path);
        reasons.append_value(reject.reason);
        details.append_value(&reject.detail);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(paths.finish()),
        Arc::new(reasons.finish()),
        Arc::new(details.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| IngestError::Arrow {
        path: path.to_path_buf(),
        source: e,
    })?;

    let file = AtomicFile::create(path)?;
    let mut writer = ArrowWriter::try_new(file.try_clone()?, schema, Some(properties(codec, 8192)))
        .map_err(|e| parquet_error(path, e))?;
    writer.write(&batch).map_err(|e| parquet_error(path, e))?;
    writer.close().map_err(|e| parquet_error(path, e))?;
    Ok(file)
}

fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> IngestError {
    IngestError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}
