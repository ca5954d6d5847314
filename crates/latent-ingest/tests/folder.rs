//! Image folders: layouts, splits, determinism, policies and the table contract.

mod common;

use std::path::Path;

use common::{count, read_rejects, read_rows, write_png};
use latent_ingest::{ColorMode, Dedupe, IngestOptions, Resize, ResizeFilter, Shard, ingest};

fn options(source: &Path, out: &Path) -> IngestOptions {
    IngestOptions::new(source, out)
}

#[test]
fn split_folders_give_their_splits_sorted_labels_and_exact_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let cat0 = write_png(&root.join("train/cat/0.png"), 1);
    write_png(&root.join("train/cat/1.png"), 2);
    write_png(&root.join("train/ant/0.png"), 3);
    let test_ant = write_png(&root.join("test/ant/5.png"), 4);
    let out = dir.path().join("out/images.parquet");

    let summary = ingest(&options(&root, &out)).unwrap();

    assert_eq!(
        (summary.seen, summary.ingested, summary.rejected),
        (4, 4, 0)
    );
    assert_eq!(summary.class_names, ["ant", "cat"]);
    let (rows, metadata) = read_rows(&out);
    assert_eq!(
        metadata.get("latent.table").map(String::as_str),
        Some("images")
    );
    // Sorted paths: test/ant/5, train/ant/0, train/cat/0, train/cat/1.
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(
        sources,
        [
            "test/ant/5.png",
            "train/ant/0.png",
            "train/cat/0.png",
            "train/cat/1.png"
        ]
    );
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(rows[0].split, "test");
    assert_eq!(rows[0].label, Some(0));
    assert_eq!(rows[0].pixels, test_ant);
    assert_eq!(rows[2].label, Some(1));
    assert_eq!(rows[2].label_name.as_deref(), Some("cat"));
    assert_eq!((rows[2].height, rows[2].width, rows[2].channels), (3, 4, 3));
    assert_eq!(rows[2].pixels, cat0);

    let (rejects, rejects_metadata) = read_rejects(&dir.path().join("out/images.rejects.parquet"));
    assert!(rejects.is_empty());
    assert_eq!(
        rejects_metadata.get("latent.table").map(String::as_str),
        Some("rejects")
    );
}

#[test]
fn without_split_folders_each_class_holds_out_its_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..10 {
        write_png(&root.join(format!("a/{i}.png")), i);
    }
    for i in 0..5 {
        write_png(&root.join(format!("b/{i}.png")), 100 + i);
    }
    let out = dir.path().join("t.parquet");
    let mut opts = options(&root, &out);
    opts.split.test_fraction = 0.2;

    ingest(&opts).unwrap();

    let (rows, _) = read_rows(&out);
    // round(0.2 * 10) = 2 and round(0.2 * 5) = 1 test images.
    assert_eq!(
        (count(&rows, "a", "train"), count(&rows, "a", "test")),
        (8, 2)
    );
    assert_eq!(
        (count(&rows, "b", "train"), count(&rows, "b", "test")),
        (4, 1)
    );
}

#[test]
fn two_runs_give_identical_rows_and_another_seed_another_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..20 {
        write_png(&root.join(format!("c{}/{i:02}.png", i % 2)), i);
    }
    let run = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        let mut opts = options(&root, &out);
        opts.split.seed = seed;
        opts.row_group_size = 3; // several row groups and parallel chunks
        ingest(&opts).unwrap();
        read_rows(&out).0
    };

    let first = run("a.parquet", 7);
    let second = run("b.parquet", 7);
    let other = run("c.parquet", 8);

    assert_eq!(first.len(), 20);
    assert_eq!(first, second);
    let splits = |rows: &[common::Row]| rows.iter().map(|r| r.split.clone()).collect::<Vec<_>>();
    assert_ne!(splits(&first), splits(&other));
}

#[test]
fn corrupt_files_are_rejected_with_reasons_and_every_good_image_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    let mut good = Vec::new();
    for i in 0..6 {
        good.push(write_png(&root.join(format!("train/k/{i}.png")), i));
    }
    let whole = std::fs::read(root.join("train/k/0.png")).unwrap();
    std::fs::write(
        root.join("train/k/truncated.png"),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    std::fs::write(root.join("train/k/zero.png"), b"").unwrap();
    std::fs::write(root.join("train/k/text.png"), b"this is not a picture\n").unwrap();
    let out = dir.path().join("images.parquet");

    let summary = ingest(&options(&root, &out)).unwrap();

    assert_eq!(summary.seen, 9);
    assert_eq!(summary.ingested, 6);
    assert_eq!(summary.rejected, 3);
    assert_eq!(
        summary.seen,
        summary.ingested + summary.rejected + summary.duplicates_dropped
    );
    let (rows, _) = read_rows(&out);
    let pixels: Vec<Vec<u8>> = rows.iter().map(|r| r.pixels.clone()).collect();
    assert_eq!(pixels, good);

    let (mut rejects, _) = read_rejects(&dir.path().join("images.rejects.parquet"));
    rejects.sort();
    let reasons: Vec<(&str, &str)> = rejects
        .iter()
        .map(|(p, r, _)| (p.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("train/k/text.png", "not-an-image"),
            ("train/k/truncated.png", "decode-error"),
            ("train/k/zero.png", "empty-file"),
        ]
    );
    assert!(rejects.iter().all(|(_, _, detail)| !detail.is_empty()));
}

#[test]
fn failed_run_leaves_no_output_files() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // An IDX source whose header promises more images than the file holds.
    let src = dir.path().join("idx");
    std::fs::create_dir_all(&src).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for d in [5u32, 2, 2] {
        images.extend(d.to_be_bytes());
    }
    images.extend([0u8; 8]); // 2 images' worth, the header says 5
    std::fs::write(src.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(
        src.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 5, 0, 1, 2, 3, 4],
    )
    .unwrap();

    let err = ingest(&options(&src, &out_dir.join("images.parquet"))).unwrap_err();

    let message = err.to_string();
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert!(message.contains("needs 36 bytes"), "{message}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn rejects_table_that_cannot_be_written_leaves_no_image_table_either() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    write_png(&root.join("a/0.png"), 1);
    let out_dir = dir.path().join("out");
    // A non-empty folder where the rejects table should go: the final rename fails.
    std::fs::create_dir_all(out_dir.join("r.parquet/x")).unwrap();
    let mut opts = options(&root, &out_dir.join("images.parquet"));
    opts.rejects = Some(out_dir.join("r.parquet"));

    let err = ingest(&opts).unwrap_err().to_string();

    assert!(err.contains("r.parquet"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["r.parquet"]);
}

#[test]
fn duplicates_are_counted_and_dropped_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    write_png(&root.join("train/a/0.png"), 1);
    write_png(&root.join("train/a/1.png"), 1);
    write_png(&root.join("train/b/0.png"), 1);
    write_png(&root.join("train/b/1.png"), 2);

    let out = dir.path().join("keep.parquet");
    let kept = ingest(&options(&root, &out)).unwrap();
    assert_eq!(
        (kept.ingested, kept.duplicates, kept.duplicates_dropped),
        (4, 2, 0)
    );

    let out = dir.path().join("drop.parquet");
    let mut opts = options(&root, &out);
    opts.dedupe = Dedupe::Drop;
    let dropped = ingest(&opts).unwrap();
    assert_eq!(
        (dropped.seen, dropped.ingested, dropped.duplicates_dropped),
        (4, 2, 2)
    );
    let (rejects, _) = read_rejects(&dir.path().join("drop.rejects.parquet"));
    let paths: Vec<(&str, &str)> = rejects
        .iter()
        .map(|(p, r, _)| (p.as_str(), r.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("train/a/1.png", "duplicate"),
            ("train/b/0.png", "duplicate")
        ]
    );
    // Both repeat train/a/0.png, which has id 0 and is kept in the image table.
    assert_eq!(rejects[0].2, "same pixels as id 0, which is kept");
    assert_eq!(rejects[1].2, "same pixels as id 0, which is kept");
}

#[test]
fn shards_together_hold_the_whole_table_with_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..7 {
        write_png(&root.join(format!("x/{i}.png")), i);
    }
    let whole = dir.path().join("whole.parquet");
    ingest(&options(&root, &whole)).unwrap();
    let mut parts = Vec::new();
    for index in 0..3 {
        let out = dir.path().join(format!("shards/{index}.parquet"));
        let mut opts = options(&root, &out);
        opts.split.shard = Some(Shard { index, count: 3 });
        ingest(&opts).unwrap();
        parts.extend(read_rows(&out).0);
    }
    parts.sort_by_key(|r| r.id);
    assert_eq!(parts, read_rows(&whole).0);

    // The shard folder reads as one table; the rejects tables beside the shards are skipped.
    assert!(dir.path().join("shards/0.rejects.parquet").exists());
    let table = latent_core::image_table::read_image_table(&dir.path().join("shards")).unwrap();
    assert_eq!(table.records.len(), 7);

    // And a shard folder given as a source is taken as one image table again.
    let merged = dir.path().join("merged.parquet");
    let summary = ingest(&options(&dir.path().join("shards"), &merged)).unwrap();
    assert_eq!(summary.format, Some(latent_ingest::SourceFormat::Parquet));
    assert_eq!(summary.ingested, 7);
}

#[test]
fn limit_per_class_keeps_the_first_files_of_each_class_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            for i in 0..4 {
                write_png(&root.join(format!("{split}/{class}/{i}.png")), i);
            }
        }
    }
    let out = dir.path().join("l.parquet");
    let mut opts = options(&root, &out);
    opts.split.limit_per_class = 2;
    ingest(&opts).unwrap();
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 8);
    assert!(
        rows.iter()
            .all(|r| r.source.ends_with("/0.png") || r.source.ends_with("/1.png"))
    );
}

#[test]
fn image_table_source_is_rewritten_without_a_new_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..6 {
        write_png(&root.join(format!("q/{i}.png")), i);
    }
    let first = dir.path().join("first.parquet");
    let mut opts = options(&root, &first);
    opts.split.test_fraction = 0.5;
    ingest(&opts).unwrap();

    let second = dir.path().join("second.parquet");
    let mut again = options(&first, &second);
    again.split.seed = 99; // would give another split if the table were re-split
    ingest(&again).unwrap();

    let strip = |rows: Vec<common::Row>| {
        rows.into_iter()
            .map(|r| (r.id, r.label, r.split, r.pixels))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(read_rows(&second).0), strip(read_rows(&first).0));
}

#[test]
fn rgb_mode_and_resize_apply_to_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir_all(root.join("g")).unwrap();
    let grey = common::png_bytes(2, 2, image::ExtendedColorType::L8, &[10, 10, 10, 10]);
    std::fs::write(root.join("g/0.png"), grey).unwrap();
    let out = dir.path().join("m.parquet");
    let mut opts = options(&root, &out);
    opts.split.test_fraction = 0.0;
    opts.mode = ColorMode::Rgb;
    opts.resize = Some(Resize {
        width: 3,
        height: 1,
        filter: ResizeFilter::Bilinear,
    });
    ingest(&opts).unwrap();
    let (rows, _) = read_rows(&out);
    assert_eq!((rows[0].height, rows[0].width, rows[0].channels), (1, 3, 3));
    // A flat grey image stays flat whatever the filter.
    assert_eq!(rows[0].pixels, vec![10; 9]);
}

#[test]
fn grey_images_stay_one_channel_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    std::fs::create_dir_all(root.join("g")).unwrap();
    let grey = common::png_bytes(2, 1, image::ExtendedColorType::L8, &[3, 250]);
    std::fs::write(root.join("g/0.png"), grey).unwrap();
    let out = dir.path().join("g.parquet");
    ingest(&options(&root, &out)).unwrap();
    let (rows, _) = read_rows(&out);
    assert_eq!(rows[0].channels, 1);
    assert_eq!(rows[0].pixels, vec![3, 250]);
}

#[test]
fn tar_archive_of_a_folder_gives_the_same_rows_as_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..5 {
        write_png(
            &root.join(format!("train/{}/{i}.png", ["b", "a"][i as usize % 2])),
            i,
        );
    }
    write_png(&root.join("test/a/9.png"), 9);
    let from_folder = dir.path().join("folder.parquet");
    let mut opts = options(&root, &from_folder);
    opts.row_group_size = 4; // the last chunk of the stream is a partial one
    ingest(&opts).unwrap();
    let expected = read_rows(&from_folder).0;

    // Entries named ./train/... and pack/train/... (one top folder, taken as the root).
    for top in [".", "pack"] {
        let archive = dir.path().join(format!("src-{top}.tar"));
        let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        builder.append_dir_all(top, &root).unwrap();
        builder.into_inner().unwrap();

        let from_tar = dir.path().join("tar.parquet");
        let mut opts = options(&archive, &from_tar);
        opts.row_group_size = 4;
        let summary = ingest(&opts).unwrap();

        assert_eq!(summary.ingested, 6, "{top}");
        let mut tar_rows = read_rows(&from_tar).0;
        tar_rows.sort_by_key(|r| r.id);
        assert_eq!(tar_rows, expected, "{top}");
    }
}
