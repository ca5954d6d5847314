//! A PNG grid of views, for checking the augmentations by eye.
//!
//! Each row shows one source image (resized to the view size) followed by several of its
//! views from epoch 0, drawn exactly as the stream draws them but before normalisation.
//! Small images are enlarged with nearest-neighbour sampling so single pixels stay
//! visible.

use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{Rgb, RgbImage};
use latent_core::atomic;

use crate::ops::{self, Image};
use crate::stream::make_view;
use crate::{AugmentError, Augmenter, TrainImages};

/// Pixels between cells of the grid.
const GAP: u32 = 4;
/// Cells are enlarged by a whole factor until they are at least this many pixels wide.
const MIN_CELL: usize = 96;

/// Draws `rows` images (spread evenly over the table) each beside `views` of its views.
pub fn render_preview(
    images: &TrainImages,
    augmenter: &Augmenter,
    seed: u64,
    rows: usize,
    views: usize,
) -> RgbImage {
    let rows = rows.clamp(1, images.len());
    let size = augmenter.size();
    let zoom = MIN_CELL.div_ceil(size).max(1);
    let cell = (size * zoom) as u32;
    let columns = 1 + views as u32;
    let mut grid = RgbImage::from_pixel(
        columns * cell + (columns + 1) * GAP,
        rows as u32 * cell + (rows as u32 + 1) * GAP,
        Rgb([255, 255, 255]),
    );

    for row in 0..rows {
        let index = row * images.len() / rows;
        let id = images.ids[index];
        let source = images.images[index].to_image(images.channels);
        let whole = ops::CropBox {
            top: 0,
            left: 0,
            height: source.height,
            width: source.width,
        };
        let y = GAP + row as u32 * (cell + GAP);

        paint(
            &mut grid,
            &ops::resized_crop(&source, whole, size, size),
            zoom,
            GAP,
            y,
        );
        for v in 0..views {
            let view = make_view(augmenter, &source, seed, 0, id, v as u64);
            let x = GAP + (v as u32 + 1) * (cell + GAP);
            paint(&mut grid, &view, zoom, x, y);
        }
    }
    grid
}

/// Copies `image` into `grid` at (`x`, `y`), each pixel as a `zoom` x `zoom` block.
fn paint(grid: &mut RgbImage, image: &Image, zoom: usize, x: u32, y: u32) {
    let bytes = image.to_hwc_u8();
    let c = image.channels;
    for py in 0..image.height * zoom {
        for px in 0..image.width * zoom {
            let at = ((py / zoom) * image.width + px / zoom) * c;
            let rgb = if c == 3 {
                [bytes[at], bytes[at + 1], bytes[at + 2]]
            } else {
                [bytes[at]; 3]
            };
            grid.put_pixel(x + px as u32, y + py as u32, Rgb(rgb));
        }
    }
}

/// Renders the preview and writes it to `path` as a PNG (atomically).
pub fn write_preview(
    path: &Path,
    images: &TrainImages,
    augmenter: &Augmenter,
    seed: u64,
    rows: usize,
    views: usize,
) -> Result<PathBuf, AugmentError> {
    let grid = render_preview(images, augmenter, seed, rows, views);
    let mut png = Vec::new();
    let encoded = grid.write_with_encoder(PngEncoder::new(&mut png));
    encoded.map_err(|source| AugmentError::Preview {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(atomic::write_bytes(path, &png)?)
}
