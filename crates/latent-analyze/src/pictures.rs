//! PNG pictures written beside the report: the training curves, a 2-D PCA map of each
//! latent space, the nearest training images of a few test images, and the confusion
//! matrix of the linear probe.
//!
//! They are drawn with plotters into an RGB buffer and encoded with `image`, then written
//! atomically. Text uses a subset of DejaVu Sans compiled into the binary
//! (`fonts/DejaVuSans-subset.ttf`, licence beside it), so no system font is needed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use latent_core::image_table::{ImageRecord, ImageTable};
use latent_core::rng::{rng_for, stream};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rand::RngExt;

use crate::error::{AnalyzeError, Result};
use crate::features::FeatureSet;
use crate::linalg::Matrix;
use crate::pca::Pca;
use crate::report::Picture;
use crate::steps::StepCurves;

/// The font every picture's text is drawn with.
const FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans-subset.ttf");
pub(crate) const FONT: &str = "sans-serif";

/// Pixel sizes (width, height) of the pictures of fixed layout.
pub const LOSS_SIZE: (u32, u32) = (900, 500);
pub const MAP_SIZE: (u32, u32) = (900, 700);
pub const CONFUSION_SIZE: (u32, u32) = (820, 760);

/// Test images shown in the neighbours picture, and training neighbours for each.
pub const NEIGHBOUR_QUERIES: usize = 8;
pub const NEIGHBOURS_SHOWN: usize = 6;
/// Side of each (nearest-neighbour resampled) thumbnail, in pixels.
pub(crate) const THUMB: u32 = 96;
/// Space above each thumbnail for its class name, and between thumbnails.
pub(crate) const THUMB_LABEL: u32 = 18;
pub(crate) const THUMB_GAP: u32 = 8;
/// Extra space between the query and its neighbours, and the title band.
pub(crate) const QUERY_GAP: u32 = 24;
pub(crate) const TITLE_BAND: u32 = 40;

/// Second element of the PROBE stream path the neighbour queries are drawn from (far
/// from the small subset seeds that the probe's own paths start with).
const NEIGHBOUR_QUERY_PATH: u64 = 0x6e65_6967_6862_6f75;

/// Ten well-separated colours for classes (the "tableau 10" set), reused in turn.
const CLASS_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;
pub(crate) type DrawResult = std::result::Result<(), DrawingAreaErrorKind<DrawError>>;

/// The file name of a picture of `kind` for the feature set `name`, with every
/// character other than ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
pub fn file_name(kind: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{kind}_{safe}.png")
}

/// The name of class `label`, or `class_<label>` when the image table has none.
pub(crate) fn class_name(names: &[String], label: i32) -> String {
    names
        .get(label as usize)
        .cloned()
        .unwrap_or_else(|| format!("class_{label}"))
}

fn class_colour(label: i32) -> RGBColor {
    CLASS_COLOURS[label.rem_euclid(CLASS_COLOURS.len() as i32) as usize]
}

/// Registers the compiled-in font with plotters once.
fn register_font() {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    assert!(*ok, "the compiled-in font is a valid TrueType font");
}

/// Draws a `size` picture with `draw` and writes it as a PNG to `out/file`.
pub(crate) fn render(
    out: &Path,
    file: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult,
) -> Result<()> {
    register_font();
    let path = out.join(file);
    let mut buffer = vec![255u8; size.0 as usize * size.1 as usize * 3];
    let drawn = {
        let root = BitMapBackend::with_buffer(&mut buffer, size).into_drawing_area();
        root.fill(&WHITE)
            .and_then(|_| draw(&root))
            .and_then(|_| root.present())
    };
    drawn.map_err(|e| AnalyzeError::Picture {
        path: path.clone(),
        message: e.to_string(),
    })?;
    write_png(&path, &buffer, size)
}

/// Encodes an RGB buffer as PNG and writes it atomically.
fn write_png(path: &Path, rgb: &[u8], size: (u32, u32)) -> Result<()> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(rgb, size.0, size.1, image::ExtendedColorType::Rgb8)
        .map_err(|e| AnalyzeError::Picture {
            path: path.to_path_buf(),
            message: format!("encoding the PNG: {e}"),
        })?;
    latent_core::atomic::write_bytes(path, &bytes)?;
    Ok(())
}

/// The smallest and largest finite value, widened a little (and to a unit range when
/// they coincide) so the curve does not sit on the frame.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !low.is_finite() {
        return 0.0..1.0;
    }
    if high - low < 1e-12 {
        return low - 0.5..high + 0.5;
    }
    let pad = 0.05 * (high - low);
    low - pad..high + pad
}

/// `loss.png`: the loss of every step (left axis) and the positive top-1 (right axis).
pub fn loss_picture(curves: &StepCurves, out: &Path) -> Result<Picture> {
    let file = "loss.png".to_string();
    render(out, &file, LOSS_SIZE, |root| {
        let steps = padded_range(curves.step.iter().copied());
        let loss_range = padded_range(curves.loss.iter().copied());
        let mut chart = ChartBuilder::on(root)
            .caption("Training loss and positive top-1", (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .right_y_label_area_size(65)
            .build_cartesian_2d(steps.clone(), loss_range)?
            .set_secondary_coord(steps, 0.0..1.0);
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_label_formatter(&|step| format!("{step:.0}"))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;

        // One-pixel lines: plotters' bitmap backend draws wider lines of near-vertical
        // segments (the loss jumps at every short last batch) as spikes across the picture.
        let blue = CLASS_COLOURS[0];
        let points = curves.step.iter().zip(&curves.loss);
        let finite = points.filter(|(s, l)| s.is_finite() && l.is_finite());
        chart
            .draw_series(LineSeries::new(
                finite.map(|(s, l)| (*s, *l)),
                blue.stroke_width(1),
            ))?
            .label("loss (left)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2))
            });

        if let Some((name, top1)) = &curves.positive_top1 {
            chart
                .configure_secondary_axes()
                .y_desc(name.replace('_', " "))
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .draw()?;
            let orange = CLASS_COLOURS[1];
            let points = curves.step.iter().zip(top1);
            let finite = points.filter(|(s, t)| s.is_finite() && t.is_finite());
            chart
                .draw_secondary_series(LineSeries::new(
                    finite.map(|(s, t)| (*s, *t)),
                    orange.stroke_width(1),
                ))?
                .label(format!("{} (right)", name.replace('_', " ")))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
    })?;
    Ok(Picture {
        file,
        kind: "loss".into(),
        feature_set: None,
        caption: format!(
            "Training loss{} over {} steps.",
            if curves.positive_top1.is_some() {
                " and positive top-1"
            } else {
                ""
            },
            curves.loss.len()
        ),
    })
}

/// `map_<name>.png`: the standardised test rows projected on their first two principal
/// components, coloured by class.
pub fn map_picture(set: &FeatureSet, class_names: &[String], out: &Path) -> Result<Picture> {
    let file = file_name("map", &set.name);
    let pca = Pca::fit(&set.test, 2);
    let coordinates: Vec<(f64, f64)> = pca
        .project(&set.test)
        .into_iter()
        .map(|c| (c[0], c.get(1).copied().unwrap_or(0.0)))
        .collect();
    let total_variance: f64 = pca_total_variance(&set.test);
    let explained: Vec<f64> = pca
        .variances
        .iter()
        .map(|v| 100.0 * v / total_variance.max(1e-30))
        .collect();

    render(out, &file, MAP_SIZE, |root| {
        let x = padded_range(coordinates.iter().map(|c| c.0));
        let y = padded_range(coordinates.iter().map(|c| c.1));
        // Room on the right for the legend.
        let x = x.start..x.end + 0.3 * (x.end - x.start);
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}: test rows on the first two principal components",
                    set.name
                ),
                (FONT, 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(format!("PC 1 ({:.1}% of variance)", explained[0]))
            .y_desc(format!(
                "PC 2 ({:.1}% of variance)",
                explained.get(1).copied().unwrap_or(0.0)
            ))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;

        for label in 0..set.classes() as i32 {
            let colour = class_colour(label);
            let points: Vec<(f64, f64)> = coordinates
                .iter()
                .zip(&set.test_labels)
                .filter(|(_, l)| **l == label)
                .map(|(c, _)| *c)
                .collect();
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 2, colour.mix(0.7).filled())),
                )?
                .label(class_name(class_names, label))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
    })?;
    Ok(Picture {
        file,
        kind: "map".into(),
        feature_set: Some(set.name.clone()),
        caption: format!(
            "{}: the {} standardised test rows projected on their first two principal \
             components ({:.1}% and {:.1}% of the variance), coloured by class.",
            set.name,
            set.test.rows,
            explained[0],
            explained.get(1).copied().unwrap_or(0.0)
        ),
    })
}

/// The sum of the column variances (the trace of the covariance) of the rows of `x`.
fn pca_total_variance(x: &Matrix) -> f64 {
    let rows = x.rows.max(1) as f64;
    (0..x.cols)
        .map(|c| {
            let mean = (0..x.rows).map(|r| f64::from(x.row(r)[c])).sum::<f64>() / rows;
            (0..x.rows)
                .map(|r| (f64::from(x.row(r)[c]) - mean).powi(2))
                .sum::<f64>()
                / rows
        })
        .sum()
}

/// The pixel size of the neighbours picture.
pub fn neighbours_size() -> (u32, u32) {
    let columns = 1 + NEIGHBOURS_SHOWN as u32;
    let width = 2 * THUMB_GAP + QUERY_GAP + columns * THUMB + (columns - 1) * THUMB_GAP;
    let height = TITLE_BAND + NEIGHBOUR_QUERIES as u32 * (THUMB_LABEL + THUMB + THUMB_GAP);
    (width, height)
}

/// `NEIGHBOUR_QUERIES` distinct test rows, drawn from the PROBE stream of `seed`.
pub fn neighbour_queries(test_rows: usize, seed: u64) -> Vec<usize> {
    let mut rows: Vec<usize> = (0..test_rows).collect();
    let count = NEIGHBOUR_QUERIES.min(test_rows);
    let mut rng = rng_for(seed, &[stream::PROBE, NEIGHBOUR_QUERY_PATH]);
    for i in 0..count {
        let j = rng.random_range(i..rows.len());
        rows.swap(i, j);
    }
    rows.truncate(count);
    rows
}

/// Indices of the `k` train rows most cosine-similar to `query` (most similar first,
/// ties to the lower index).
pub fn nearest_by_cosine(train: &Matrix, query: &[f32], k: usize) -> Vec<usize> {
    let length = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let query_length = length(query).max(1e-12);
    let similarity: Vec<f64> = (0..train.rows)
        .map(|r| {
            let row = train.row(r);
            let dot: f64 = row
                .iter()
                .zip(query)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            dot / (length(row).max(1e-12) * query_length)
        })
        .collect();
    let mut order: Vec<usize> = (0..train.rows).collect();
    order.sort_by(|a, b| similarity[*b].total_cmp(&similarity[*a]).then(a.cmp(b)));
    order.truncate(k);
    order
}

/// `neighbours_<name>.png`: a few test images (seeded choice), each followed by its
/// nearest training images by cosine similarity of the standardised features. Each
/// thumbnail is titled with its class; a neighbour of the query's class is framed green,
/// another red. `None` (and a warning) when the image table lacks one of the images.
pub fn neighbours_picture(
    set: &FeatureSet,
    table: &ImageTable,
    class_names: &[String],
    seed: u64,
    out: &Path,
) -> Result<Option<Picture>> {
    let file = file_name("neighbours", &set.name);
    let by_id: HashMap<i64, &ImageRecord> = table.records.iter().map(|r| (r.id, r)).collect();
    let queries = neighbour_queries(set.test.rows, seed);
    let mut rows: Vec<Vec<(&ImageRecord, i32)>> = Vec::new();
    for &query in &queries {
        let neighbours = nearest_by_cosine(&set.train, set.test.row(query), NEIGHBOURS_SHOWN);
        let mut row = Vec::new();
        let picks = std::iter::once((set.test_ids[query], set.test_labels[query])).chain(
            neighbours
                .iter()
                .map(|&n| (set.train_ids[n], set.train_labels[n])),
        );
        for (id, label) in picks {
            let Some(record) = by_id.get(&id) else {
                tracing::warn!(
                    "{}: no image with id {id} in {}; not drawing {file}",
                    set.name,
                    table.path.display()
                );
                return Ok(None);
            };
            row.push((*record, label));
        }
        rows.push(row);
    }

    let size = neighbours_size();
    render(out, &file, size, |root| {
        root.draw(&Text::new(
            format!(
                "{}: test image (left), then its {} nearest training images by cosine \
                 similarity",
                set.name, NEIGHBOURS_SHOWN
            ),
            (THUMB_GAP as i32, 10),
            (FONT, 18),
        ))?;
        for (r, row) in rows.iter().enumerate() {
            let top = TITLE_BAND + r as u32 * (THUMB_LABEL + THUMB + THUMB_GAP);
            let query_label = row[0].1;
            for (c, (record, label)) in row.iter().enumerate() {
                let left =
                    THUMB_GAP + c as u32 * (THUMB + THUMB_GAP) + if c > 0 { QUERY_GAP } else { 0 };
                let image_top = top + THUMB_LABEL;
                let name = class_name(class_names, *label);
                let frame = if c == 0 {
                    BLACK
                } else if *label == query_label {
                    RGBColor(0, 150, 0)
                } else {
                    RGBColor(210, 0, 0)
                };
                root.draw(&Text::new(
                    name,
                    ((left + THUMB / 2) as i32, (top + THUMB_LABEL / 2) as i32),
                    (FONT, 13)
                        .into_font()
                        .color(&frame)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
                draw_thumbnail(root, record, left, image_top)?;
                root.draw(&Rectangle::new(
                    [
                        (left as i32 - 2, image_top as i32 - 2),
                        ((left + THUMB) as i32 + 1, (image_top + THUMB) as i32 + 1),
                    ],
                    frame.stroke_width(2),
                ))?;
            }
        }
        Ok(())
    })?;
    Ok(Some(Picture {
        file,
        kind: "neighbours".into(),
        feature_set: Some(set.name.clone()),
        caption: format!(
            "{}: {} test images (left, chosen with seed {seed}) and their {} nearest \
             training images by cosine similarity; green frames share the test image's \
             class, red ones do not.",
            set.name,
            rows.len(),
            NEIGHBOURS_SHOWN
        ),
    }))
}

/// Draws an image scaled (nearest pixel) to fit a `THUMB` square at `(left, top)`.
pub(crate) fn draw_thumbnail(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    record: &ImageRecord,
    left: u32,
    top: u32,
) -> DrawResult {
    let (height, width, channels) = (
        record.height.max(1),
        record.width.max(1),
        record.channels.max(1),
    );
    let colour_at = |x: u32, y: u32| {
        let at = ((y * width + x) * channels) as usize;
        let pixel = |i: u32| record.pixels.get(at + i.min(channels - 1) as usize);
        match (pixel(0), pixel(1), pixel(2)) {
            (Some(&r), Some(&g), Some(&b)) => RGBColor(r, g, b),
            _ => RGBColor(0, 0, 0),
        }
    };
    draw_scaled(root, (width, height), colour_at, left, top)
}

/// Draws a `width x height` image, whose pixel `(x, y)` is `colour_at(x, y)`, scaled
/// (nearest pixel) to fit a `THUMB` square at `(left, top)`.
pub(crate) fn draw_scaled(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    (width, height): (u32, u32),
    colour_at: impl Fn(u32, u32) -> RGBColor,
    left: u32,
    top: u32,
) -> DrawResult {
    let (width, height) = (width.max(1), height.max(1));
    let scale = f64::from(THUMB) / f64::from(height.max(width));
    let (shown_w, shown_h) = (
        (f64::from(width) * scale).round() as u32,
        (f64::from(height) * scale).round() as u32,
    );
    let (offset_x, offset_y) = ((THUMB - shown_w) / 2, (THUMB - shown_h) / 2);
    for y in 0..shown_h {
        let source_y = ((f64::from(y) / scale) as u32).min(height - 1);
        for x in 0..shown_w {
            let source_x = ((f64::from(x) / scale) as u32).min(width - 1);
            root.draw_pixel(
                ((left + offset_x + x) as i32, (top + offset_y + y) as i32),
                &colour_at(source_x, source_y),
            )?;
        }
    }
    Ok(())
}

/// Counts of (true class, predicted class): `matrix[truth][predicted]`, `classes` square.
/// Labels outside `0..classes` are left out.
pub fn confusion_matrix(truth: &[i32], predicted: &[i32], classes: usize) -> Vec<Vec<usize>> {
    let mut matrix = vec![vec![0usize; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        if (0..classes as i32).contains(&t) && (0..classes as i32).contains(&p) {
            matrix[t as usize][p as usize] += 1;
        }
    }
    matrix
}

/// `confusion_<name>.png`: counts in every cell, shaded by the share of the true class's
/// rows (row-normalised), true class down the side, predicted class along the bottom.
pub fn confusion_picture(
    name: &str,
    matrix: &[Vec<usize>],
    class_names: &[String],
    what: &str,
    out: &Path,
) -> Result<Picture> {
    let file = file_name("confusion", name);
    let classes = matrix.len().max(1) as u32;
    let (label_width, title_height, bottom_labels) = (110u32, 60u32, 70u32);
    let cell_w = (CONFUSION_SIZE.0 - label_width - 20) / classes;
    let cell_h = (CONFUSION_SIZE.1 - title_height - bottom_labels) / classes;
    let rows: usize = matrix.iter().flatten().sum();
    let correct: usize = (0..matrix.len()).map(|i| matrix[i][i]).sum();

    render(out, &file, CONFUSION_SIZE, |root| {
        root.draw(&Text::new(
            format!("{name}: confusion matrix of the {what}"),
            (15, 10),
            (FONT, 18),
        ))?;
        root.draw(&Text::new(
            format!("{rows} test rows, {correct} right; shading = share of the true class"),
            (15, 34),
            (FONT, 14).into_font().color(&RGBColor(80, 80, 80)),
        ))?;
        for (t, row) in matrix.iter().enumerate() {
            let row_total = row.iter().sum::<usize>().max(1) as f64;
            let top = title_height + t as u32 * cell_h;
            root.draw(&Text::new(
                class_name(class_names, t as i32),
                ((label_width - 8) as i32, (top + cell_h / 2) as i32),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Center)),
            ))?;
            for (p, &count) in row.iter().enumerate() {
                let left = label_width + p as u32 * cell_w;
                let share = count as f64 / row_total;
                // White to dark blue with the share.
                let shade = |full: u8| (255.0 - share * (255.0 - f64::from(full))) as u8;
                let fill = RGBColor(shade(8), shade(48), shade(107));
                root.draw(&Rectangle::new(
                    [
                        (left as i32, top as i32),
                        ((left + cell_w) as i32, (top + cell_h) as i32),
                    ],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new(
                    [
                        (left as i32, top as i32),
                        ((left + cell_w) as i32, (top + cell_h) as i32),
                    ],
                    RGBColor(200, 200, 200).stroke_width(1),
                ))?;
                let text_colour = if share > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    ((left + cell_w / 2) as i32, (top + cell_h / 2) as i32),
                    (FONT, 13)
                        .into_font()
                        .color(&text_colour)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))?;
            }
        }
        // Predicted class names along the bottom, alternating between two lines so long
        // names do not run into each other.
        let bottom = title_height + classes * cell_h;
        for p in 0..matrix.len() {
            let line = if p % 2 == 0 { 14 } else { 32 };
            root.draw(&Text::new(
                class_name(class_names, p as i32),
                (
                    (label_width + p as u32 * cell_w + cell_w / 2) as i32,
                    (bottom + line) as i32,
                ),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))?;
        }
        root.draw(&Text::new(
            "predicted class",
            (
                (label_width + classes * cell_w / 2) as i32,
                (bottom + 56) as i32,
            ),
            (FONT, 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        root.draw(&Text::new(
            "true class",
            (10, (title_height - 12) as i32),
            (FONT, 15),
        ))
    })?;
    Ok(Picture {
        file,
        kind: "confusion".into(),
        feature_set: Some(name.to_string()),
        caption: format!(
            "{name}: confusion matrix of the {what} on the {rows} test rows (counts; shading \
             is the share of the true class)."
        ),
    })
}
