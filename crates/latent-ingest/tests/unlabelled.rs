//! Unlabelled sources: images in the root of a folder or an archive, and `--unlabelled`.

mod common;

use common::{read_rows, write_png};
use latent_ingest::{IngestOptions, ingest};

#[test]
fn images_in_the_root_get_null_labels_and_one_stratified_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..10u8 {
        write_png(&root.join(format!("{i}.png")), i);
    }
    let out = dir.path().join("images.parquet");
    let mut options = IngestOptions::new(&root, &out);
    options.split.test_fraction = 0.3;

    let summary = ingest(&options).unwrap();

    assert_eq!(summary.ingested, 10);
    assert!(summary.class_names.is_empty());
    let (rows, _) = read_rows(&out);
    assert!(
        rows.iter()
            .all(|r| r.label.is_none() && r.label_name.is_none())
    );
    // The ten files form one group: round(0.3 * 10) = 3 of them are test.
    assert_eq!(rows.iter().filter(|r| r.split == "test").count(), 3);
    assert_eq!(rows[0].source, "0.png");
}

#[test]
fn unlabelled_flag_ignores_class_folders_and_root_files_beside_classes_stay_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    write_png(&root.join("cat/0.png"), 1);
    write_png(&root.join("dog/0.png"), 2);
    write_png(&root.join("loose.png"), 3);
    let out = dir.path().join("images.parquet");
    let mut options = IngestOptions::new(&root, &out);
    options.split.test_fraction = 0.0;

    ingest(&options).unwrap();
    let (rows, _) = read_rows(&out);
    let labels: Vec<(String, Option<i32>, Option<String>)> = rows
        .iter()
        .map(|r| (r.source.clone(), r.label, r.label_name.clone()))
        .collect();
    assert_eq!(
        labels,
        [
            ("cat/0.png".to_string(), Some(0), Some("cat".to_string())),
            ("dog/0.png".to_string(), Some(1), Some("dog".to_string())),
            ("loose.png".to_string(), None, None),
        ]
    );

    options.unlabelled = true;
    let summary = ingest(&options).unwrap();
    assert!(summary.class_names.is_empty());
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.label.is_none() && r.label_name.is_none())
    );
}

#[test]
fn tar_with_images_in_its_root_is_unlabelled() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("images.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for i in 0..4u8 {
        let png = dir.path().join(format!("{i}.png"));
        write_png(&png, i);
        builder
            .append_path_with_name(&png, format!("{i}.png"))
            .unwrap();
    }
    builder.finish().unwrap();
    drop(builder);
    let out = dir.path().join("images.parquet");
    let mut options = IngestOptions::new(&archive, &out);
    options.split.test_fraction = 0.5;

    let summary = ingest(&options).unwrap();

    assert_eq!(summary.ingested, 4);
    let (rows, _) = read_rows(&out);
    assert!(rows.iter().all(|r| r.label.is_none()));
    assert_eq!(rows.iter().filter(|r| r.split == "test").count(), 2);
}
