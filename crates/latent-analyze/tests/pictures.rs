//! The pictures written beside the report: each has its fixed pixel size and real
//! content, and the helpers they are drawn from (confusion counts, cosine neighbours,
//! seeded queries) give hand-checked answers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use latent_analyze::features::FeatureSet;
use latent_analyze::linalg::Matrix;
use latent_analyze::pictures::{self, CONFUSION_SIZE, LOSS_SIZE, MAP_SIZE, NEIGHBOUR_QUERIES};
use latent_analyze::steps::StepCurves;
use latent_core::image_table::{ImageRecord, ImageTable};

const CLASSES: usize = 3;

fn class_names() -> Vec<String> {
    // One name outside ASCII (in the font) and one outside the font's subset (drawn as
    // the font's missing-glyph shape, never a failure).
    ["chat é", "dog 狗", "ship"].map(String::from).to_vec()
}

/// `per_class` rows of each class in 4-d: a class direction plus a small spread.
fn rows(per_class: usize, first_id: i64) -> (Matrix, Vec<i32>, Vec<i64>) {
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * CLASSES {
        let label = (i % CLASSES) as i32;
        let mut row = [
            0.1 * (i % 5) as f32,
            -0.05 * (i % 3) as f32,
            0.02 * i as f32,
            0.0,
        ];
        row[label as usize] += 3.0;
        data.extend(row);
        labels.push(label);
    }
    let ids = (first_id..first_id + labels.len() as i64).collect();
    (Matrix::from_vec(labels.len(), 4, data), labels, ids)
}

fn feature_set() -> FeatureSet {
    let (train, train_labels, train_ids) = rows(10, 0);
    let (test, test_labels, test_ids) = rows(4, 100);
    FeatureSet {
        name: "simclr".into(),
        source: PathBuf::from("latent.parquet"),
        train,
        train_labels,
        test,
        test_labels,
        train_ids,
        test_ids,
        skipped_rows: 0,
        description: "encoder, trained".into(),
    }
}

/// An 8x8 RGB image for every row of the feature set, coloured by class with a gradient.
fn image_table(set: &FeatureSet) -> ImageTable {
    let labelled = set
        .train_ids
        .iter()
        .zip(&set.train_labels)
        .map(|(id, l)| (*id, *l, "train"))
        .chain(
            set.test_ids
                .iter()
                .zip(&set.test_labels)
                .map(|(id, l)| (*id, *l, "test")),
        );
    let records = labelled
        .map(|(id, label, split)| {
            let pixels = (0..8 * 8)
                .flat_map(|p| [80 * label as u8, (p * 4) as u8, (id * 2) as u8])
                .collect();
            ImageRecord {
                id,
                label: Some(label),
                label_name: Some(class_names()[label as usize].clone()),
                split: split.into(),
                height: 8,
                width: 8,
                channels: 3,
                pixels,
            }
        })
        .collect();
    ImageTable {
        path: PathBuf::from("images.parquet"),
        records,
    }
}

/// The PNG's size and how many distinct colours it holds.
fn size_and_colours(path: &Path) -> ((u32, u32), usize) {
    let picture = image::open(path).unwrap().to_rgb8();
    let colours: HashSet<[u8; 3]> = picture.pixels().map(|p| p.0).collect();
    (picture.dimensions(), colours.len())
}

/// More distinct colours than a blank or single-shape picture could hold: text is
/// anti-aliased and the data are drawn in several colours.
const FEW_COLOURS: usize = 20;

#[test]
fn every_picture_has_its_size_and_is_not_blank() {
    let out = tempfile::tempdir().unwrap();
    let set = feature_set();
    let table = image_table(&set);

    let curves = StepCurves {
        step: vec![1.0, 2.0, 3.0, 4.0],
        loss: vec![6.0, 5.5, f64::NAN, 5.0],
        positive_top1: Some(("positive_top1".into(), vec![0.1, 0.2, 0.3, 0.5])),
    };
    let loss = pictures::loss_picture(&curves, out.path()).unwrap();
    let map = pictures::map_picture(&set, &class_names(), out.path()).unwrap();
    let neighbours = pictures::neighbours_picture(&set, &table, &class_names(), 0, out.path())
        .unwrap()
        .expect("every id is in the image table");
    let truth = set.test_labels.clone();
    let predicted: Vec<i32> = truth.iter().map(|l| (l + 1) % CLASSES as i32).collect();
    let matrix = pictures::confusion_matrix(&truth, &predicted, CLASSES);
    let confusion = pictures::confusion_picture(
        "simclr",
        &matrix,
        &class_names(),
        "linear probe at 10% labels (subset seed 0)",
        out.path(),
    )
    .unwrap();

    let expected = [
        (&loss, "loss.png", LOSS_SIZE),
        (&map, "map_simclr.png", MAP_SIZE),
        (
            &neighbours,
            "neighbours_simclr.png",
            pictures::neighbours_size(),
        ),
        (&confusion, "confusion_simclr.png", CONFUSION_SIZE),
    ];
    for (picture, file, size) in expected {
        assert_eq!(picture.file, file);
        let (found_size, colours) = size_and_colours(&out.path().join(file));
        assert_eq!(found_size, size, "{file}");
        assert!(colours > FEW_COLOURS, "{file} has only {colours} colours");
    }
    // 8 thumbnails of 96 px with the 6 neighbours each: room for 7 columns and 8 rows.
    let (width, height) = pictures::neighbours_size();
    assert!(width >= 7 * 96 && height >= 8 * 96, "{width}x{height}");
    // Nothing but the pictures (no temporary files) is left in the folder.
    let mut left: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "confusion_simclr.png",
            "loss.png",
            "map_simclr.png",
            "neighbours_simclr.png"
        ]
    );
}

#[test]
fn a_blank_picture_would_fail_the_colour_check() {
    // The check above must be able to fail: a white PNG has one colour.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("white.png");
    image::RgbImage::from_pixel(50, 40, image::Rgb([255, 255, 255]))
        .save(&path)
        .unwrap();
    assert_eq!(size_and_colours(&path), ((50, 40), 1));
}

#[test]
fn neighbours_picture_is_skipped_when_an_image_is_missing() {
    let out = tempfile::tempdir().unwrap();
    let set = feature_set();
    let mut table = image_table(&set);
    table.records.retain(|r| r.split == "test");
    let drawn = pictures::neighbours_picture(&set, &table, &class_names(), 0, out.path()).unwrap();
    assert!(drawn.is_none());
    assert!(!out.path().join("neighbours_simclr.png").exists());
}

#[test]
fn confusion_counts_are_by_true_then_predicted_class_and_sum_to_the_test_rows() {
    let truth = [0, 0, 1, 2, 2, 2];
    let predicted = [0, 1, 1, 2, 0, 2];
    let matrix = pictures::confusion_matrix(&truth, &predicted, 3);
    assert_eq!(matrix, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 2]]);
    assert_eq!(matrix.iter().flatten().sum::<usize>(), truth.len());
    let diagonal: usize = (0..3).map(|i| matrix[i][i]).sum();
    assert_eq!(diagonal, 4);
}

#[test]
fn nearest_by_cosine_ranks_by_angle_not_length() {
    let train = Matrix::from_vec(
        5,
        2,
        vec![
            1.0, 0.0, // cosine 1
            0.0, 1.0, // 0
            1.0, 1.0, // 0.707
            -1.0, 0.0, // -1
            2.0, 0.1, // 0.9988
        ],
    );
    assert_eq!(
        pictures::nearest_by_cosine(&train, &[3.0, 0.0], 5),
        vec![0, 4, 2, 1, 3]
    );
    assert_eq!(
        pictures::nearest_by_cosine(&train, &[3.0, 0.0], 2),
        vec![0, 4]
    );
}

#[test]
fn neighbour_queries_are_distinct_and_fixed_by_the_seed() {
    let first = pictures::neighbour_queries(100, 0);
    assert_eq!(first.len(), NEIGHBOUR_QUERIES);
    assert!(first.iter().all(|&r| r < 100));
    assert_eq!(
        first.iter().collect::<HashSet<_>>().len(),
        NEIGHBOUR_QUERIES
    );
    assert_eq!(pictures::neighbour_queries(100, 0), first);
    assert_ne!(pictures::neighbour_queries(100, 1), first);
    // Fewer test rows than queries: every row once.
    let mut few = pictures::neighbour_queries(3, 0);
    few.sort_unstable();
    assert_eq!(few, vec![0, 1, 2]);
}

#[test]
fn file_names_keep_only_safe_characters() {
    assert_eq!(pictures::file_name("map", "simclr"), "map_simclr.png");
    assert_eq!(
        pictures::file_name("map", "my run/v2 (a)"),
        "map_my_run_v2__a_.png"
    );
}
