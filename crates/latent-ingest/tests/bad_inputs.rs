//! The bad-input corpus: every kind of broken file gets its own reason, and the valid
//! images beside them are all kept.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};

use common::{read_rejects, read_rows, write_png};
use image::ImageEncoder;
use latent_ingest::{IngestOptions, ingest};

fn jpeg_bytes() -> Vec<u8> {
    let data = common::rgb_pixels(16, 16, 9);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&data, 16, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn huge_header_png() -> Vec<u8> {
    let mut bytes = common::png_bytes(1, 1, image::ExtendedColorType::L8, &[7]);
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

#[test]
fn every_broken_file_has_its_reason_and_no_valid_image_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let bad = root.join("train/bad");
    let mut good = Vec::new();
    for (i, class) in ["bad", "sea lion", "café"].iter().enumerate() {
        for j in 0..2 {
            let path = root.join(format!("train/{class}/good{j}.png"));
            good.push((
                path.strip_prefix(&root).unwrap().display().to_string(),
                write_png(&path, (i * 2 + j) as u8),
            ));
        }
    }
    std::fs::create_dir_all(root.join("train/empty")).unwrap();

    std::fs::write(bad.join("zero.png"), b"").unwrap();
    let png = std::fs::read(bad.join("good0.png")).unwrap();
    std::fs::write(bad.join("truncated.png"), &png[..png.len() - 20]).unwrap();
    let jpeg = jpeg_bytes();
    std::fs::write(bad.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(bad.join("text.png"), b"hello, I am text\n").unwrap();
    std::fs::write(bad.join("huge.png"), huge_header_png()).unwrap();
    symlink(bad.join("loop_a.png"), bad.join("loop_b.png")).unwrap();
    symlink(bad.join("loop_b.png"), bad.join("loop_a.png")).unwrap();
    symlink(bad.join("missing.png"), bad.join("dangling.png")).unwrap();
    let odd_name = std::ffi::OsStr::from_bytes(b"odd\xff.png");
    write_png(&bad.join(odd_name), 50);
    let locked = bad.join("locked.png");
    write_png(&locked, 51);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root (as in our CI containers) can open a mode-000 file, so the file is then a
    // valid image, not a reject.
    let locked_is_unreadable = std::fs::File::open(&locked).is_err();

    let out = dir.path().join("images.parquet");
    let summary = ingest(&IngestOptions::new(&root, &out)).unwrap();

    let (rows, _) = read_rows(&out);
    for (source, pixels) in &good {
        let row = rows.iter().find(|r| &r.source == source).expect(source);
        assert_eq!(&row.pixels, pixels, "{source}");
    }
    assert_eq!(summary.class_names, ["bad", "café", "empty", "sea lion"]);
    let sea_lion = rows.iter().find(|r| r.source.contains("sea lion")).unwrap();
    assert_eq!(
        (sea_lion.label, sea_lion.label_name.as_deref()),
        (Some(3), Some("sea lion"))
    );

    let (rejects, _) = read_rejects(&dir.path().join("images.rejects.parquet"));
    let reason_of = |name: &str| {
        rejects
            .iter()
            .find(|(p, _, _)| p.ends_with(name))
            .map(|(_, r, _)| r.as_str())
    };
    assert_eq!(reason_of("zero.png"), Some("empty-file"));
    assert_eq!(reason_of("truncated.png"), Some("decode-error"));
    assert_eq!(reason_of("truncated.jpg"), Some("decode-error"));
    assert_eq!(reason_of("text.png"), Some("not-an-image"));
    assert_eq!(reason_of("huge.png"), Some("too-large"));
    assert_eq!(reason_of("loop_a.png"), Some("broken-link"));
    assert_eq!(reason_of("loop_b.png"), Some("broken-link"));
    assert_eq!(reason_of("dangling.png"), Some("broken-link"));
    assert_eq!(reason_of("odd\u{fffd}.png"), Some("non-utf8-name"));
    if locked_is_unreadable {
        assert_eq!(reason_of("locked.png"), Some("unreadable"));
    } else {
        assert!(rows.iter().any(|r| r.source.ends_with("locked.png")));
    }

    assert_eq!(summary.seen, summary.ingested + summary.rejected);
    assert_eq!(summary.rejected, rejects.len());
    assert_eq!(summary.ingested, rows.len());
}

#[test]
fn missing_source_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let err = ingest(&IngestOptions::new(&missing, dir.path().join("o.parquet"))).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("nowhere"), "{chain}");
    assert!(chain.contains("No such file"), "{chain}");
    assert!(!dir.path().join("o.parquet").exists());
}

#[test]
fn folder_with_no_images_at_all_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src/train/a")).unwrap();
    let err = ingest(&IngestOptions::new(
        dir.path().join("src"),
        dir.path().join("o.parquet"),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("no files found"), "{err}");
}
