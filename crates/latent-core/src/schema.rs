//! The Arrow schemas of the tables that flow between stages.
//!
//! These are public contracts: users open the image and latent tables in Polars and
//! pyarrow, and the README documents them column by column. Every table we write carries
//! a `latent.table` key in its metadata saying which kind it is, so that a stage given
//! the wrong file can say what it found instead of failing on a missing column.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::{Error, Result};

/// Metadata key naming the kind of table ("images", "latent", "views", "rejects", "steps").
pub const TABLE_KIND_KEY: &str = "latent.table";
/// Metadata key holding the product version that wrote a table.
pub const VERSION_KEY: &str = "latent.version";

/// Kinds of tables, as written under [`TABLE_KIND_KEY`].
pub mod kind {
    pub const IMAGES: &str = "images";
    pub const LATENT: &str = "latent";
    pub const VIEWS: &str = "views";
    pub const REJECTS: &str = "rejects";
    pub const STEPS: &str = "steps";
}

/// Split names used in the `split` column.
pub mod split {
    pub const TRAIN: &str = "train";
    pub const TEST: &str = "test";
    pub const VAL: &str = "val";
}

/// Columns of the image table written by `ingest`.
pub mod images {
    pub const ID: &str = "id";
    pub const LABEL: &str = "label";
    pub const LABEL_NAME: &str = "label_name";
    pub const SPLIT: &str = "split";
    pub const HEIGHT: &str = "height";
    pub const WIDTH: &str = "width";
    pub const CHANNELS: &str = "channels";
    pub const PIXELS: &str = "pixels";
    pub const SOURCE: &str = "source";
}

/// Columns of the latent table written by `export`.
pub mod latent {
    pub const ID: &str = "id";
    pub const LABEL: &str = "label";
    pub const LABEL_NAME: &str = "label_name";
    pub const SPLIT: &str = "split";
    pub const EMBEDDING: &str = "embedding";
    /// Name of the inner field of the `embedding` fixed-size list (what Polars uses).
    pub const EMBEDDING_ITEM: &str = "item";
}

/// Columns and metadata keys of the views stream written by `augment` and read by `train`.
///
/// Each row is one image of one epoch with its two views, each stored as
/// `fixed_size_list<float32>[channels*size*size]` in CHW order (the layout candle wants),
/// already scaled and normalised.
pub mod views {
    pub const EPOCH: &str = "epoch";
    pub const ID: &str = "id";
    pub const VIEW1: &str = "view1";
    pub const VIEW2: &str = "view2";
    /// Metadata: side of the square views in pixels.
    pub const SIZE_KEY: &str = "latent.views.size";
    /// Metadata: channels per view.
    pub const CHANNELS_KEY: &str = "latent.views.channels";
    /// Metadata: number of epochs the stream holds.
    pub const EPOCHS_KEY: &str = "latent.views.epochs";
    /// Metadata: number of images per epoch.
    pub const IMAGES_PER_EPOCH_KEY: &str = "latent.views.images_per_epoch";
    /// Metadata: the seed the views were drawn from.
    pub const SEED_KEY: &str = "latent.views.seed";
    /// Metadata: the `[augment]` config as JSON.
    pub const CONFIG_KEY: &str = "latent.views.config";
}

/// The views stream schema for views of `channels` x `size` x `size`.
pub fn views_schema(channels: usize, size: usize, metadata: HashMap<String, String>) -> SchemaRef {
    let mut all = table_metadata(kind::VIEWS);
    all.extend(metadata);
    let view = DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        (channels * size * size) as i32,
    );
    Arc::new(
        Schema::new(vec![
            Field::new(views::EPOCH, DataType::UInt32, false),
            Field::new(views::ID, DataType::Int64, false),
            Field::new(views::VIEW1, view.clone(), false),
            Field::new(views::VIEW2, view, false),
        ])
        .with_metadata(all),
    )
}

/// Metadata for a table of the given kind, stamped with the product version.
pub fn table_metadata(kind: &str) -> HashMap<String, String> {
    HashMap::from([
        (TABLE_KIND_KEY.to_string(), kind.to_string()),
        (VERSION_KEY.to_string(), crate::VERSION.to_string()),
    ])
}

/// The image table: one row per image, pixels as HWC bytes.
pub fn image_table_schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new(images::ID, DataType::Int64, false),
            Field::new(images::LABEL, DataType::Int32, true),
            Field::new(images::LABEL_NAME, DataType::Utf8, true),
            Field::new(images::SPLIT, DataType::Utf8, false),
            Field::new(images::HEIGHT, DataType::Int32, false),
            Field::new(images::WIDTH, DataType::Int32, false),
            Field::new(images::CHANNELS, DataType::Int32, false),
            Field::new(images::PIXELS, DataType::Binary, false),
            Field::new(images::SOURCE, DataType::Utf8, false),
        ])
        .with_metadata(table_metadata(kind::IMAGES)),
    )
}

/// The data type of an embedding column of dimension `dim`.
pub fn embedding_type(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new(latent::EMBEDDING_ITEM, DataType::Float32, false)),
        dim as i32,
    )
}

/// The latent table: one row per image, the embedding as `fixed_size_list<float32>[dim]`.
pub fn latent_table_schema(dim: usize, extra_metadata: HashMap<String, String>) -> SchemaRef {
    let mut metadata = table_metadata(kind::LATENT);
    metadata.extend(extra_metadata);
    Arc::new(
        Schema::new(vec![
            Field::new(latent::ID, DataType::Int64, false),
            Field::new(latent::LABEL, DataType::Int32, true),
            Field::new(latent::LABEL_NAME, DataType::Utf8, true),
            Field::new(latent::SPLIT, DataType::Utf8, false),
            Field::new(latent::EMBEDDING, embedding_type(dim), false),
        ])
        .with_metadata(metadata),
    )
}

/// The kind recorded in a schema's metadata, if any.
pub fn table_kind(schema: &Schema) -> Option<&str> {
    schema.metadata().get(TABLE_KIND_KEY).map(String::as_str)
}

/// Describes a schema in one line, for error messages ("columns id: Int64, ...").
pub fn describe(schema: &Schema) -> String {
    let kind = table_kind(schema)
        .map(|k| format!("a latent '{k}' table with "))
        .unwrap_or_default();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect();
    format!("{kind}columns [{}]", columns.join(", "))
}

/// Checks that `found` has every column of `expected` with a compatible type.
///
/// Integer columns accept any integer width and string columns accept large strings, so
/// that tables written by other tools (pyarrow, Polars) with the same column names are
/// accepted. Extra columns are allowed.
pub fn check_columns(path: &Path, what: &str, expected: &Schema, found: &Schema) -> Result<()> {
    for field in expected.fields() {
        let Ok(actual) = found.field_with_name(field.name()) else {
            return Err(Error::schema(
                path,
                format!("{what} (missing column '{}')", field.name()),
                describe(found),
            ));
        };
        if !compatible(field.data_type(), actual.data_type()) {
            return Err(Error::schema(
                path,
                format!(
                    "{what} (column '{}' should be {}, is {})",
                    field.name(),
                    field.data_type(),
                    actual.data_type()
                ),
                describe(found),
            ));
        }
    }
    Ok(())
}

fn compatible(expected: &DataType, actual: &DataType) -> bool {
    use DataType::*;
    match (expected, actual) {
        (a, b) if a == b => true,
        (Int32 | Int64, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64) => true,
        (Utf8, LargeUtf8 | Utf8View) => true,
        (Binary, LargeBinary | BinaryView) => true,
        (FixedSizeList(e, n), FixedSizeList(a, m)) => n == m && e.data_type() == a.data_type(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_table_given_as_image_table_is_refused_with_both_sides_named() {
        let err = check_columns(
            Path::new("runs/x/latent.parquet"),
            "image table",
            &image_table_schema(),
            &latent_table_schema(4, HashMap::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("runs/x/latent.parquet"), "{err}");
        assert!(err.contains("missing column 'height'"), "{err}");
        assert!(err.contains("'latent' table"), "{err}");
    }

    #[test]
    fn narrower_integers_are_accepted() {
        let expected = Schema::new(vec![Field::new("label", DataType::Int32, true)]);
        let found = Schema::new(vec![Field::new("label", DataType::Int64, true)]);
        check_columns(Path::new("t"), "table", &expected, &found).unwrap();
    }
}
