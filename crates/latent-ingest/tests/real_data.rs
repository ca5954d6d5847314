//! The real datasets: the embedded CIFAR-10 subset and, when the shared dataset folder
//! is present, Fashion-MNIST IDX files, CIFAR-10 binary batches and the CIFAR-10 tar.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{count, read_rows};
use latent_ingest::{IngestOptions, SourceFormat, Summary, ingest};

const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn cifar10_small() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cifar10-small")
}

/// The shared datasets live outside the repository; tests that need them say so and
/// pass when they are absent (the embedded subset test always runs).
fn shared(rel: &str) -> Option<PathBuf> {
    let path = Path::new("/work/shared/datasets").join(rel);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("{}: not present, test skipped", path.display());
        None
    }
}

fn run(source: &Path, out: &Path, limit: usize) -> Summary {
    let mut options = IngestOptions::new(source, out);
    options.split.limit_per_class = limit;
    ingest(&options).unwrap()
}

fn png_rgb(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_rgb8().into_raw()
}

#[test]
fn cifar10_small_gives_5000_train_1000_test_and_exact_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.parquet");
    let summary = run(&cifar10_small(), &out, 0);

    assert_eq!(
        (summary.seen, summary.ingested, summary.rejected),
        (6000, 6000, 0)
    );
    assert_eq!(summary.class_names, CLASSES);
    let (rows, _) = read_rows(&out);
    for class in CLASSES {
        assert_eq!(count(&rows, class, "train"), 500, "{class}");
        assert_eq!(count(&rows, class, "test"), 100, "{class}");
    }
    let airplane = rows
        .iter()
        .find(|r| r.source == "train/airplane/0003.png")
        .unwrap();
    assert_eq!(airplane.label, Some(0));
    let cat = rows
        .iter()
        .find(|r| r.source == "test/cat/0042.png")
        .unwrap();
    assert_eq!(
        (cat.label, cat.height, cat.width, cat.channels),
        (Some(3), 32, 32, 3)
    );
    assert_eq!(
        cat.pixels,
        png_rgb(&cifar10_small().join("test/cat/0042.png"))
    );

    // Row groups of 1024 rows: 5 full ones and 6000 - 5120 = 880 in the last.
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let groups: Vec<i64> = parquet::file::reader::FileReader::metadata(&reader)
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [1024, 1024, 1024, 1024, 1024, 880]);
}

#[test]
fn cifar10_binary_batches_match_the_png_subset_exactly() {
    let Some(bin) = shared("cifar10/cifar10-small-bin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bin.parquet");
    let summary = run(&bin, &out, 0);
    assert_eq!(summary.format, Some(SourceFormat::Cifar));
    assert_eq!(summary.class_names, CLASSES);
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 6000);

    let png_out = dir.path().join("png.parquet");
    run(&cifar10_small(), &png_out, 0);
    let by_source: HashMap<String, common::Row> = read_rows(&png_out)
        .0
        .into_iter()
        .map(|r| (r.source.clone(), r))
        .collect();
    for row in &rows {
        // Record r of a batch is image r div 10 of class r mod 10.
        let (file, record) = row.source.split_once('#').unwrap();
        let record: usize = record.parse().unwrap();
        let split = if file.starts_with("test") {
            "test"
        } else {
            "train"
        };
        let png = format!("{split}/{}/{:04}.png", CLASSES[record % 10], record / 10);
        let expected = &by_source[&png];
        assert_eq!(row.label, expected.label, "{}", row.source);
        assert_eq!(row.split, split);
        assert!(
            row.pixels == expected.pixels,
            "{} differs from {png}",
            row.source
        );
    }
}

#[test]
fn fashion_mnist_idx_files_give_grey_28x28_with_official_labels() {
    let Some(idx) = shared("fashion-mnist") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.parquet");
    let summary = run(&idx, &out, 2);
    assert_eq!(summary.format, Some(SourceFormat::Idx));
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.iter().filter(|r| r.split == "train").count(), 20);
    assert!(
        rows.iter()
            .all(|r| (r.height, r.width, r.channels) == (28, 28, 1))
    );
    assert!(rows.iter().all(|r| r.label_name.is_none()));

    // The first test image of Fashion-MNIST is an ankle boot (label 9); its pixels are
    // the 784 bytes after the 16-byte IDX header.
    let first = rows
        .iter()
        .find(|r| r.source == "t10k-images-idx3-ubyte.gz#0")
        .unwrap();
    assert_eq!(first.label, Some(9));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(idx.join("t10k-images-idx3-ubyte.gz")).unwrap(),
    )
    .read_to_end(&mut raw)
    .unwrap();
    assert_eq!(first.pixels, raw[16..16 + 784]);
}

#[test]
fn cifar10_tar_streams_jpegs_close_to_the_png_decode() {
    let Some(tar) = shared("cifar10/cifar10-images.tar") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.parquet");
    let summary = run(&tar, &out, 1);
    assert_eq!(summary.format, Some(SourceFormat::Tar));
    assert_eq!(summary.class_names, CLASSES);
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 20);
    let cat = rows
        .iter()
        .find(|r| r.source == "train/cat/0000.jpg")
        .unwrap();
    assert_eq!((cat.label, cat.split.as_str()), (Some(3), "train"));

    // The PNG subset is Pillow's decode of the same JPEG; decoders differ by a few levels.
    let png = png_rgb(&cifar10_small().join("train/cat/0000.png"));
    let diffs: Vec<i32> = cat
        .pixels
        .iter()
        .zip(&png)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .collect();
    let mean = diffs.iter().sum::<i32>() as f64 / diffs.len() as f64;
    let max = *diffs.iter().max().unwrap();
    assert_eq!(diffs.len(), 32 * 32 * 3);
    assert!(mean < 1.5 && max <= 12, "mean {mean}, max {max}");
}
