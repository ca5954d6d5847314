//! Helpers shared by the integration tests: writing small images, reading tables back.

#![allow(dead_code)]

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type};
use image::ImageEncoder;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One row of an image table, every column included.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub label: Option<i32>,
    pub label_name: Option<String>,
    pub split: String,
    pub height: i32,
    pub width: i32,
    pub channels: i32,
    pub pixels: Vec<u8>,
    pub source: String,
}

/// Reads every row of an image table written by the stage, and its schema metadata.
pub fn read_rows(path: &Path) -> (Vec<Row>, Metadata) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let metadata = builder
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut rows = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let ids = col("id");
        let labels = col("label");
        let names = col("label_name");
        let splits = col("split");
        let heights = col("height");
        let widths = col("width");
        let channels = col("channels");
        let pixels = col("pixels");
        let sources = col("source");
        for i in 0..batch.num_rows() {
            let labels = labels.as_primitive::<Int32Type>();
            let names = names.as_string::<i32>();
            rows.push(Row {
                id: ids.as_primitive::<Int64Type>().value(i),
                label: (!labels.is_null(i)).then(|| labels.value(i)),
                label_name: (!names.is_null(i)).then(|| names.value(i).to_string()),
                split: splits.as_string::<i32>().value(i).to_string(),
                height: heights.as_primitive::<Int32Type>().value(i),
                width: widths.as_primitive::<Int32Type>().value(i),
                channels: channels.as_primitive::<Int32Type>().value(i),
                pixels: pixels.as_binary::<i32>().value(i).to_vec(),
                source: sources.as_string::<i32>().value(i).to_string(),
            });
        }
    }
    (rows, metadata)
}

/// Schema metadata of a table.
pub type Metadata = std::collections::HashMap<String, String>;

/// Reads a rejects table as (path, reason, detail) triples, with its metadata.
pub fn read_rejects(path: &Path) -> (Vec<(String, String, String)>, Metadata) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let metadata = builder
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut out = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let text = |name: &str, i: usize| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(i)
                .to_string()
        };
        for i in 0..batch.num_rows() {
            out.push((text("path", i), text("reason", i), text("detail", i)));
        }
    }
    (out, metadata)
}

/// A `w`x`h` RGB image whose pixel values depend on `seed`, so images differ.
pub fn rgb_pixels(w: u32, h: u32, seed: u8) -> Vec<u8> {
    (0..w * h * 3)
        .map(|i| {
            (i as u8)
                .wrapping_mul(7)
                .wrapping_add(seed.wrapping_mul(31))
        })
        .collect()
}

/// Encodes pixels as PNG bytes.
pub fn png_bytes(w: u32, h: u32, color: image::ExtendedColorType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(data, w, h, color)
        .unwrap();
    out
}

/// Writes a 4x3 RGB PNG at `path` (folders created) and returns its pixels.
pub fn write_png(path: &Path, seed: u8) -> Vec<u8> {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data = rgb_pixels(4, 3, seed);
    std::fs::write(path, png_bytes(4, 3, image::ExtendedColorType::Rgb8, &data)).unwrap();
    data
}

/// Count of rows per (label_name, split).
pub fn count(rows: &[Row], class: &str, split: &str) -> usize {
    rows.iter()
        .filter(|r| r.label_name.as_deref() == Some(class) && r.split == split)
        .count()
}
