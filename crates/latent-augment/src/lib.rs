//! `augment`: makes two SimCLR views of every training image, epoch after epoch, and
//! streams them as Arrow IPC record batches for `train` to read from a pipe.
//!
//! The pieces: [`ops`] holds the image operations (crop, flip, colour jitter, grayscale,
//! blur, solarize), [`view`] draws their random parameters to make one view, [`stream`]
//! runs the workers and writes the ordered stream, and [`preview`] draws a PNG grid of
//! views so a person can check them by eye.

use std::path::{Path, PathBuf};

use latent_core::image_table;
use latent_core::schema::split;

pub mod ops;
pub mod preview;
pub mod stream;
pub mod view;

pub use stream::{StreamOptions, StreamOutcome, write_views};
pub use view::Augmenter;

/// Errors of the augment stage.
#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    #[error(transparent)]
    Core(#[from] latent_core::Error),

    #[error("{0}: the table has no training images (rows with split \"train\")")]
    NoTrainImages(PathBuf),

    #[error(
        "{path}: training images differ in channels: id {first_id} has {first}, id {id} has \
         {found}; ingest them as all-RGB or all-gray"
    )]
    MixedChannels {
        path: PathBuf,
        first_id: i64,
        first: usize,
        id: i64,
        found: usize,
    },

    #[error("invalid [augment] setting {0}")]
    Config(String),

    #[error("writing the views stream to {target}")]
    Write {
        target: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("building a record batch of views")]
    Batch(#[source] arrow::error::ArrowError),

    #[error("an augmentation worker failed: {0}")]
    Worker(String),

    #[error("{path}: writing the preview image")]
    Preview {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

/// The training split of an image table, pixels kept as the table stores them.
#[derive(Debug, Clone)]
pub struct TrainImages {
    /// The table the images came from (for messages).
    pub path: PathBuf,
    pub ids: Vec<i64>,
    pub images: Vec<SourceImage>,
    pub channels: usize,
}

/// One source image: HWC bytes and its shape.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
}

impl SourceImage {
    /// The image as CHW floats in 0..1, ready for the operations.
    pub fn to_image(&self, channels: usize) -> ops::Image {
        ops::Image::from_hwc_u8(self.height, self.width, channels, &self.pixels)
    }
}

impl TrainImages {
    /// Number of training images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are none (never true for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// Reads the image table at `path` and keeps its rows with split "train", in table order.
///
/// Images may differ in size (every view is cropped and resized) but not in channels.
pub fn load_train_images(path: &Path) -> Result<TrainImages, AugmentError> {
    let table = image_table::read_image_table(path)?;
    let mut ids = Vec::new();
    let mut images = Vec::new();
    let mut channels = None;

    for record in table.records {
        if record.split != split::TRAIN {
            continue;
        }
        let c = record.channels as usize;
        match channels {
            None => channels = Some((record.id, c)),
            Some((first_id, first)) if first != c => {
                return Err(AugmentError::MixedChannels {
                    path: path.to_path_buf(),
                    first_id,
                    first,
                    id: record.id,
                    found: c,
                });
            }
            Some(_) => {}
        }
        ids.push(record.id);
        images.push(SourceImage {
            height: record.height as usize,
            width: record.width as usize,
            pixels: record.pixels,
        });
    }

    let Some((_, channels)) = channels else {
        return Err(AugmentError::NoTrainImages(path.to_path_buf()));
    };
    Ok(TrainImages {
        path: path.to_path_buf(),
        ids,
        images,
        channels,
    })
}
