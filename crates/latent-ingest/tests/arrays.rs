//! IDX and CIFAR binary sources built by hand: layouts, labels and refused files.

mod common;

use std::path::Path;

use common::read_rows;
use latent_ingest::{IngestOptions, SourceFormat, ingest};

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn run(source: &Path, dir: &Path) -> latent_ingest::Result<Vec<common::Row>> {
    let out = dir.join("out.parquet");
    ingest(&IngestOptions::new(source, &out))?;
    Ok(read_rows(&out).0)
}

#[test]
fn raw_and_gzipped_idx_pairs_give_one_row_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("idx");
    std::fs::create_dir_all(&src).unwrap();
    // Two 2x3 training images (raw) and one test image (gzipped).
    let train: Vec<u8> = (0..12).collect();
    std::fs::write(src.join("train-images-idx3-ubyte"), idx(&[2, 2, 3], &train)).unwrap();
    std::fs::write(src.join("train-labels-idx1-ubyte"), idx(&[2], &[4, 1])).unwrap();
    std::fs::write(
        src.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx(&[1, 2, 3], &[9; 6])),
    )
    .unwrap();
    std::fs::write(
        src.join("t10k-labels-idx1-ubyte.gz"),
        gzip(&idx(&[1], &[7])),
    )
    .unwrap();

    let rows = run(&src, dir.path()).unwrap();

    // Files in name order: t10k first, then train.
    let summary: Vec<(i64, Option<i32>, &str, &str)> = rows
        .iter()
        .map(|r| (r.id, r.label, r.split.as_str(), r.source.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (0, Some(7), "test", "t10k-images-idx3-ubyte.gz#0"),
            (1, Some(4), "train", "train-images-idx3-ubyte#0"),
            (2, Some(1), "train", "train-images-idx3-ubyte#1"),
        ]
    );
    assert_eq!((rows[2].height, rows[2].width, rows[2].channels), (2, 3, 1));
    assert_eq!(rows[2].pixels, (6..12).collect::<Vec<u8>>());
}

#[test]
fn idx_label_count_that_differs_from_the_image_count_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("idx");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("train-images-idx3-ubyte"),
        idx(&[2, 1, 1], &[0, 0]),
    )
    .unwrap();
    std::fs::write(src.join("train-labels-idx1-ubyte"), idx(&[3], &[0, 0, 0])).unwrap();
    let err = run(&src, dir.path()).unwrap_err().to_string();
    assert!(err.contains("train-labels-idx1-ubyte"), "{err}");
    assert!(err.contains("expected 2 labels"), "{err}");
}

#[test]
fn cifar100_batches_use_fine_labels_and_planes_become_hwc() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("c100");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("fine_label_names.txt"), "apple\nbee\nchair\n").unwrap();
    // One record: coarse label 0, fine label 2, then the R, G and B planes of 32x32.
    let mut record = vec![0u8, 2];
    record.extend(std::iter::repeat_n(10u8, 1024));
    record.extend(std::iter::repeat_n(20u8, 1024));
    record.extend(std::iter::repeat_n(30u8, 1024));
    std::fs::write(src.join("train.bin"), &record).unwrap();

    let out = dir.path().join("out.parquet");
    let summary = ingest(&IngestOptions::new(&src, &out)).unwrap();

    assert_eq!(summary.format, Some(SourceFormat::Cifar));
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].label, rows[0].label_name.as_deref()),
        (Some(2), Some("chair"))
    );
    assert_eq!(&rows[0].pixels[..6], &[10, 20, 30, 10, 20, 30]);
}

#[test]
fn cifar_batch_that_is_not_whole_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("c10");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("batches.meta.txt"), "a\nb\n").unwrap();
    std::fs::write(src.join("data_batch_1.bin"), vec![0u8; 3073 + 5]).unwrap();
    let err = run(&src, dir.path()).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin"), "{err}");
    assert!(
        err.contains("3078 bytes is not a whole number of 3073-byte records"),
        "{err}"
    );
}
