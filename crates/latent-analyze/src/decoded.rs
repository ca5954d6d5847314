//! Pictures drawn by an autoencoder's decoder (`--decoder NAME=MODEL_DIR`): straight walks
//! through the latent space, between class centroids and between test images, and test
//! images above their reconstructions.
//!
//! The decoder takes the autoencoder's bottleneck as the latent table holds it, so these
//! pictures use the raw rows of the table, never the standardised ones the probes score.
//! Thumbnails are nearest-pixel scaled, like those of the neighbours picture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow::datatypes::DataType;
use latent_core::image_table::{ImageRecord, ImageTable};
use latent_core::rng::{rng_for, stream};
use latent_core::schema::latent;
use latent_train::{AutoencoderDecoder, DecodedImages};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::RngExt;

use crate::error::{AnalyzeError, Result};
use crate::features::FeatureSet;
use crate::linalg::Matrix;
use crate::pictures::{
    self, DrawResult, FONT, QUERY_GAP, THUMB, THUMB_GAP, THUMB_LABEL, TITLE_BAND, class_name,
    draw_scaled, draw_thumbnail, render,
};
use crate::report::Picture;

/// Decoded images along each walk, both ends included.
pub const WALK_STEPS: usize = 8;
/// At most this many walks between class centroids, then this many between test images.
pub const CLASS_WALKS: usize = 4;
pub const IMAGE_WALKS: usize = 2;
/// Test images shown above their reconstructions.
pub const RECONSTRUCTIONS: usize = 8;

/// Class pairs walked between when the image table has these class names (CIFAR-10's
/// look-alike pairs); other data walk between classes 0 -> 1, 2 -> 3, and so on.
pub const PREFERRED_PAIRS: [(&str, &str); 4] = [
    ("airplane", "ship"),
    ("automobile", "truck"),
    ("cat", "dog"),
    ("deer", "horse"),
];

/// Second elements of the PROBE stream paths the walked and the reconstructed test images
/// are drawn from (far from the small subset seeds the probe's own paths start with).
const IMAGE_WALK_PATH: u64 = 0x7761_6c6b_5f69_6d67;
const RECONSTRUCTION_PATH: u64 = 0x7265_636f_6e73_7472;

/// Colour of the small text under the titles (step fractions, "reconstruction").
const NOTE_GREY: RGBColor = RGBColor(90, 90, 90);

/// An autoencoder's decoder, loaded once, for the `--latent` table it decodes.
#[derive(Debug)]
pub struct Decoder {
    /// The `--latent` name whose rows it decodes.
    pub name: String,
    /// The model folder it was loaded from.
    pub model_dir: PathBuf,
    pub decoder: AutoencoderDecoder,
}

impl Decoder {
    /// Loads the autoencoder in `model_dir` (written by `latent-train` with `objective =
    /// "autoencoder"`); any other folder is refused, naming it.
    pub fn load(name: &str, model_dir: &Path) -> Result<Self> {
        let decoder = AutoencoderDecoder::load(model_dir)
            .map_err(|source| decoder_error(name, model_dir, "loading the autoencoder", source))?;
        Ok(Self {
            name: name.to_string(),
            model_dir: model_dir.to_path_buf(),
            decoder,
        })
    }

    /// Refuses a latent table whose rows are not the size of this decoder's bottleneck.
    pub fn check_dim(&self, set: &FeatureSet) -> Result<()> {
        self.check_width(&set.source, set.dim())
    }

    /// The same check from the Parquet schema of the latent table at `path` alone, so a
    /// mismatch is refused before the long analysis; a file whose schema cannot be read
    /// here passes (reading the whole table reports it, naming the file).
    pub fn check_table(&self, path: &Path) -> Result<()> {
        let Ok(file) = std::fs::File::open(path) else {
            return Ok(());
        };
        let Ok(reader) = ParquetRecordBatchReaderBuilder::try_new(file) else {
            return Ok(());
        };
        match reader
            .schema()
            .field_with_name(latent::EMBEDDING)
            .map(|f| f.data_type())
        {
            Ok(DataType::FixedSizeList(_, width)) => self.check_width(path, *width as usize),
            _ => Ok(()),
        }
    }

    fn check_width(&self, table: &Path, width: usize) -> Result<()> {
        if width == self.decoder.dim() {
            return Ok(());
        }
        Err(AnalyzeError::Usage(format!(
            "--decoder {}={}: the decoder takes {}-d embeddings but the latent table {} holds \
             {width}-d rows; is it this autoencoder's latent table?",
            self.name,
            self.model_dir.display(),
            self.decoder.dim(),
            table.display(),
        )))
    }

    /// Decodes `embeddings` (rows of the decoder's dimension).
    pub fn decode(&self, embeddings: &[f32]) -> Result<DecodedImages> {
        self.decoder
            .decode(embeddings, self.decoder.dim())
            .map_err(|source| {
                decoder_error(&self.name, &self.model_dir, "decoding embeddings", source)
            })
    }
}

fn decoder_error(
    name: &str,
    model_dir: &Path,
    what: &str,
    source: latent_train::TrainError,
) -> AnalyzeError {
    AnalyzeError::Decoder {
        option: format!("--decoder {name}={}", model_dir.display()),
        what: what.to_string(),
        source: Box::new(source),
    }
}

/// The mean train row of each class `0..classes` (`None` for a class without train rows).
pub fn class_centroids(train: &Matrix, labels: &[i32], classes: usize) -> Vec<Option<Vec<f32>>> {
    let mut sums = vec![vec![0.0f64; train.cols]; classes];
    let mut counts = vec![0usize; classes];
    for (r, &label) in labels.iter().enumerate() {
        let Some(sum) = sums.get_mut(label as usize) else {
            continue;
        };
        for (s, &v) in sum.iter_mut().zip(train.row(r)) {
            *s += f64::from(v);
        }
        counts[label as usize] += 1;
    }

    sums.into_iter()
        .zip(counts)
        .map(|(sum, count)| {
            (count > 0).then(|| sum.iter().map(|s| (s / count as f64) as f32).collect())
        })
        .collect()
}

/// The class pairs to walk between: the [`PREFERRED_PAIRS`] whose two names are both
/// classes with a centroid, else consecutive pairs of such classes (0 -> 1, 2 -> 3, ...);
/// at most [`CLASS_WALKS`].
pub fn class_pairs(class_names: &[String], has_centroid: &[bool]) -> Vec<(i32, i32)> {
    let usable = |label: usize| has_centroid.get(label).copied().unwrap_or(false);
    let label_of = |name: &str| {
        class_names
            .iter()
            .position(|n| n == name)
            .filter(|&l| usable(l))
    };
    let preferred: Vec<(i32, i32)> = PREFERRED_PAIRS
        .iter()
        .filter_map(|(from, to)| Some((label_of(from)? as i32, label_of(to)? as i32)))
        .collect();
    if !preferred.is_empty() {
        return preferred;
    }

    let classes: Vec<i32> = (0..has_centroid.len())
        .filter(|&l| usable(l))
        .map(|l| l as i32)
        .collect();
    classes
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .take(CLASS_WALKS)
        .collect()
}

/// `steps` points evenly spaced on the straight line from `from` to `to`, both ends
/// included exactly, as rows of one row-major buffer.
pub fn straight_walk(from: &[f32], to: &[f32], steps: usize) -> Vec<f32> {
    let mut points = Vec::with_capacity(steps * from.len());
    for step in 0..steps {
        let t = if steps > 1 {
            step as f32 / (steps - 1) as f32
        } else {
            0.0
        };
        points.extend(from.iter().zip(to).map(|(a, b)| (1.0 - t) * a + t * b));
    }
    points
}

/// `count` distinct rows of `0..rows` (fewer when there are fewer rows), drawn from the
/// PROBE stream of `seed` under `path`.
fn distinct_rows(rows: usize, count: usize, seed: u64, path: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows).collect();
    let count = count.min(rows);
    let mut rng = rng_for(seed, &[stream::PROBE, path]);
    for i in 0..count {
        let j = rng.random_range(i..order.len());
        order.swap(i, j);
    }
    order.truncate(count);
    order
}

/// One straight walk through the latent space.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// What each end is: a class name (class walks) or the test image's class name.
    pub from: String,
    pub to: String,
    /// The test images' ids at both ends (image walks only).
    pub test_ids: Option<(i64, i64)>,
    /// [`WALK_STEPS`] raw latent rows, from `from` to `to`.
    pub points: Vec<f32>,
}

/// The walks of the interpolation picture, on the raw (not standardised) rows of `raw`:
/// between the centroids of [`class_pairs`], then between [`IMAGE_WALKS`] pairs of test
/// rows drawn with `seed`.
pub fn walks(raw: &FeatureSet, class_names: &[String], seed: u64) -> Vec<Walk> {
    let centroids = class_centroids(&raw.train, &raw.train_labels, raw.classes());
    let has_centroid: Vec<bool> = centroids.iter().map(Option::is_some).collect();
    let mut walks = Vec::new();
    for (from, to) in class_pairs(class_names, &has_centroid) {
        let (Some(a), Some(b)) = (&centroids[from as usize], &centroids[to as usize]) else {
            continue;
        };
        walks.push(Walk {
            from: class_name(class_names, from),
            to: class_name(class_names, to),
            test_ids: None,
            points: straight_walk(a, b, WALK_STEPS),
        });
    }

    let ends = distinct_rows(raw.test.rows, 2 * IMAGE_WALKS, seed, IMAGE_WALK_PATH);
    for pair in ends.chunks_exact(2) {
        let (a, b) = (pair[0], pair[1]);
        walks.push(Walk {
            from: class_name(class_names, raw.test_labels[a]),
            to: class_name(class_names, raw.test_labels[b]),
            test_ids: Some((raw.test_ids[a], raw.test_ids[b])),
            points: straight_walk(raw.test.row(a), raw.test.row(b), WALK_STEPS),
        });
    }
    walks
}

/// The [`walks`] and their decoded images (all walks in one batch, [`WALK_STEPS`] images
/// per walk, in order).
pub fn decoded_walks(
    raw: &FeatureSet,
    decoder: &Decoder,
    class_names: &[String],
    seed: u64,
) -> Result<(Vec<Walk>, DecodedImages)> {
    let walks = walks(raw, class_names, seed);
    let points: Vec<f32> = walks
        .iter()
        .flat_map(|w| w.points.iter().copied())
        .collect();
    let decoded = decoder.decode(&points)?;
    Ok((walks, decoded))
}

/// The pixel size of the interpolation picture with `rows` walks.
pub fn interpolation_size(rows: usize) -> (u32, u32) {
    let width = column_left(WALK_STEPS + 1) + THUMB + THUMB_GAP;
    let height = TITLE_BAND + rows as u32 * (THUMB_LABEL + THUMB + THUMB_GAP);
    (width, height)
}

/// Left edge of column `c` of the interpolation picture: the start in column 0, the
/// decoded steps in columns 1..=WALK_STEPS, the end last, set apart by wider gaps.
fn column_left(c: usize) -> u32 {
    let c = c as u32;
    let steps = WALK_STEPS as u32;
    THUMB_GAP
        + c * (THUMB + THUMB_GAP)
        + if c >= 1 { QUERY_GAP } else { 0 }
        + if c > steps { QUERY_GAP } else { 0 }
}

/// The colour of pixel `(x, y)` of decoded image `index`, from its 0..1 values (CHW; a
/// single channel is drawn grey).
fn decoded_colour(
    decoded: &DecodedImages,
    unit: &[f32],
    index: usize,
) -> impl Fn(u32, u32) -> RGBColor {
    let (size, channels) = (decoded.size, decoded.channels.max(1));
    let plane = size * size;
    let start = index * channels * plane;
    move |x, y| {
        let value = |c: usize| {
            let at = start + c.min(channels - 1) * plane + y as usize * size + x as usize;
            (unit[at] * 255.0).round() as u8
        };
        RGBColor(value(0), value(1), value(2))
    }
}

/// Draws decoded image `index` as a thumbnail at `(left, top)`.
fn draw_decoded(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    decoded: &DecodedImages,
    unit: &[f32],
    index: usize,
    left: u32,
    top: u32,
) -> DrawResult {
    let side = decoded.size as u32;
    draw_scaled(
        root,
        (side, side),
        decoded_colour(decoded, unit, index),
        left,
        top,
    )
}

/// Text centred at `(x, y)`.
fn centred(
    text: String,
    (x, y): (u32, u32),
    size: u32,
    colour: RGBColor,
) -> Text<'static, (i32, i32), String> {
    Text::new(
        text,
        (x as i32, y as i32),
        (FONT, size)
            .into_font()
            .color(&colour)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    )
}

fn framed(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    left: u32,
    top: u32,
) -> DrawResult {
    root.draw(&Rectangle::new(
        [
            (left as i32 - 2, top as i32 - 2),
            ((left + THUMB) as i32 + 1, (top + THUMB) as i32 + 1),
        ],
        BLACK.stroke_width(2),
    ))
}

/// `interpolation_<name>.png`: one row per walk of [`walks`], its [`WALK_STEPS`] decoded
/// images between the class names (class walks) or the real test images (image walks).
/// `None` (and a warning) when there is nothing to walk between.
pub fn interpolation_picture(
    raw: &FeatureSet,
    decoder: &Decoder,
    table: &ImageTable,
    class_names: &[String],
    seed: u64,
    out: &Path,
) -> Result<Option<Picture>> {
    let file = pictures::file_name("interpolation", &raw.name);
    let (walks, decoded) = decoded_walks(raw, decoder, class_names, seed)?;
    if walks.is_empty() {
        tracing::warn!(
            "{}: neither two classes nor two test rows to walk between; not drawing {file}",
            raw.name
        );
        return Ok(None);
    }
    let unit = decoded.to_unit_range();
    let by_id: HashMap<i64, &ImageRecord> = table.records.iter().map(|r| (r.id, r)).collect();
    let class_walks = walks.iter().filter(|w| w.test_ids.is_none()).count();

    render(out, &file, interpolation_size(walks.len()), |root| {
        root.draw(&Text::new(
            format!(
                "{}: decoded straight walks through the latent space, between class \
                 centroids and between test images",
                raw.name
            ),
            (THUMB_GAP as i32, 10),
            (FONT, 18),
        ))?;
        for (r, walk) in walks.iter().enumerate() {
            let top = TITLE_BAND + r as u32 * (THUMB_LABEL + THUMB + THUMB_GAP);
            let image_top = top + THUMB_LABEL;
            let band_middle = top + THUMB_LABEL / 2;

            for step in 0..WALK_STEPS {
                let left = column_left(step + 1);
                let t = step as f64 / (WALK_STEPS - 1).max(1) as f64;
                root.draw(&centred(
                    format!("t = {t:.2}"),
                    (left + THUMB / 2, band_middle),
                    12,
                    NOTE_GREY,
                ))?;
                draw_decoded(
                    root,
                    &decoded,
                    &unit,
                    r * WALK_STEPS + step,
                    left,
                    image_top,
                )?;
            }

            let ends = [(0, &walk.from), (WALK_STEPS + 1, &walk.to)];
            for (end, (column, name)) in ends.into_iter().enumerate() {
                let left = column_left(column);
                let Some((from_id, to_id)) = walk.test_ids else {
                    root.draw(&centred(
                        name.clone(),
                        (left + THUMB / 2, image_top + THUMB / 2),
                        16,
                        BLACK,
                    ))?;
                    continue;
                };
                let id = if end == 0 { from_id } else { to_id };
                root.draw(&centred(
                    format!("test: {name}"),
                    (left + THUMB / 2, band_middle),
                    13,
                    BLACK,
                ))?;
                match by_id.get(&id) {
                    Some(record) => {
                        draw_thumbnail(root, record, left, image_top)?;
                        framed(root, left, image_top)?;
                    }
                    None => tracing::warn!(
                        "{}: no image with id {id} in {}; its cell of {file} is left empty",
                        raw.name,
                        table.path.display()
                    ),
                }
            }
        }
        Ok(())
    })?;

    Ok(Some(Picture {
        file,
        kind: "interpolation".into(),
        feature_set: Some(raw.name.clone()),
        caption: format!(
            "{}: the autoencoder's decoder ({}) along straight lines through its latent space, \
             {WALK_STEPS} evenly spaced points per row, ends included: {class_walks} rows \
             between the mean bottlenecks of two classes' train rows ({}), then {} rows \
             between two test images (chosen with seed {seed}; the real images are framed \
             at both ends, their reconstructions are the first and last decoded images).",
            raw.name,
            decoder.model_dir.display(),
            walks
                .iter()
                .filter(|w| w.test_ids.is_none())
                .map(|w| format!("{} -> {}", w.from, w.to))
                .collect::<Vec<_>>()
                .join(", "),
            walks.len() - class_walks
        ),
    }))
}

/// The pixel size of the reconstructions picture.
pub fn reconstructions_size() -> (u32, u32) {
    let width = THUMB_GAP + RECONSTRUCTIONS as u32 * (THUMB + THUMB_GAP);
    let height = TITLE_BAND + 2 * (THUMB_LABEL + THUMB + THUMB_GAP);
    (width, height)
}

/// The test rows the reconstructions picture shows: [`RECONSTRUCTIONS`] distinct rows
/// drawn from the PROBE stream of `seed`.
pub fn reconstruction_rows(test_rows: usize, seed: u64) -> Vec<usize> {
    distinct_rows(test_rows, RECONSTRUCTIONS, seed, RECONSTRUCTION_PATH)
}

/// `reconstructions_<name>.png`: a few test images (seeded choice) above what the
/// decoder makes of their bottlenecks. `None` (and a warning) when the image table lacks
/// one of the images.
pub fn reconstructions_picture(
    raw: &FeatureSet,
    decoder: &Decoder,
    table: &ImageTable,
    class_names: &[String],
    seed: u64,
    out: &Path,
) -> Result<Option<Picture>> {
    let file = pictures::file_name("reconstructions", &raw.name);
    let by_id: HashMap<i64, &ImageRecord> = table.records.iter().map(|r| (r.id, r)).collect();
    let rows = reconstruction_rows(raw.test.rows, seed);
    let mut originals = Vec::new();
    for &row in &rows {
        let id = raw.test_ids[row];
        let Some(record) = by_id.get(&id) else {
            tracing::warn!(
                "{}: no image with id {id} in {}; not drawing {file}",
                raw.name,
                table.path.display()
            );
            return Ok(None);
        };
        originals.push((*record, raw.test_labels[row]));
    }
    let bottlenecks: Vec<f32> = rows
        .iter()
        .flat_map(|&r| raw.test.row(r).iter().copied())
        .collect();
    let decoded = decoder.decode(&bottlenecks)?;
    let unit = decoded.to_unit_range();

    render(out, &file, reconstructions_size(), |root| {
        root.draw(&Text::new(
            format!(
                "{}: test images (top) and the autoencoder's reconstructions (below)",
                raw.name
            ),
            (THUMB_GAP as i32, 10),
            (FONT, 18),
        ))?;
        let band = THUMB_LABEL + THUMB + THUMB_GAP;
        for (c, (record, label)) in originals.iter().enumerate() {
            let left = THUMB_GAP + c as u32 * (THUMB + THUMB_GAP);
            let middle = left + THUMB / 2;
            root.draw(&centred(
                class_name(class_names, *label),
                (middle, TITLE_BAND + THUMB_LABEL / 2),
                13,
                BLACK,
            ))?;
            draw_thumbnail(root, record, left, TITLE_BAND + THUMB_LABEL)?;
            framed(root, left, TITLE_BAND + THUMB_LABEL)?;

            root.draw(&centred(
                "reconstruction".into(),
                (middle, TITLE_BAND + band + THUMB_LABEL / 2),
                12,
                NOTE_GREY,
            ))?;
            draw_decoded(
                root,
                &decoded,
                &unit,
                c,
                left,
                TITLE_BAND + band + THUMB_LABEL,
            )?;
        }
        Ok(())
    })?;

    Ok(Some(Picture {
        file,
        kind: "reconstructions".into(),
        feature_set: Some(raw.name.clone()),
        caption: format!(
            "{}: {} test images (top, chosen with seed {seed}) and the autoencoder's \
             decoder ({}) applied to their bottlenecks from the latent table (below).",
            raw.name,
            originals.len(),
            decoder.model_dir.display()
        ),
    }))
}
