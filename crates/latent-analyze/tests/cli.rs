//! The `latent-analyze` binary end to end on tiny tables: the report it writes, the
//! tables it refuses, and that it never touches its inputs.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use latent_core::schema::{image_table_schema, latent, latent_table_schema};
use parquet::arrow::ArrowWriter;

const TRAIN_PER_CLASS: usize = 12;
const TEST_PER_CLASS: usize = 4;
const CLASSES: usize = 3;

/// (label, split) of every row: train rows first, then test rows.
fn rows() -> Vec<(i32, &'static str)> {
    let mut rows = Vec::new();
    for (split, per_class) in [("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)] {
        for i in 0..per_class * CLASSES {
            rows.push(((i % CLASSES) as i32, split));
        }
    }
    rows
}

fn write_parquet(path: &Path, batch: RecordBatch) {
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// 4x4 RGB images whose brightness depends on the class, plus a pixel that never changes.
fn write_image_table(path: &Path) {
    let rows = rows();
    let n = rows.len();
    let pixels: Vec<Vec<u8>> = rows
        .iter()
        .enumerate()
        .map(|(i, (label, _))| {
            let mut p: Vec<u8> = (0..48)
                .map(|j| (40 * *label as usize + (i * 7 + j * 13) % 30) as u8)
                .collect();
            p[0] = 200;
            p
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..n as i64)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| format!("class{}", r.0)),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Int32Array::from(vec![4; n])),
        Arc::new(Int32Array::from(vec![4; n])),
        Arc::new(Int32Array::from(vec![3; n])),
        Arc::new(BinaryArray::from_iter_values(pixels.iter())),
        Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("img{i}.png")),
        )),
    ];
    write_parquet(
        path,
        RecordBatch::try_new(image_table_schema(), columns).unwrap(),
    );
}

/// 8-d embeddings with one strong class direction.
fn write_latent_table(path: &Path) {
    write_parquet(path, latent_batch());
}

/// The tiny latent table: class signal in dimension `label`, small deterministic noise.
fn latent_batch() -> RecordBatch {
    let rows = rows();
    let dim = 8;
    let values: Vec<f32> = rows
        .iter()
        .enumerate()
        .flat_map(|(i, (label, _))| {
            (0..dim).map(move |j| {
                let signal = if j == *label as usize { 3.0 } else { 0.0 };
                signal + ((i * 31 + j * 17) % 11) as f32 / 11.0
            })
        })
        .collect();
    let item = Arc::new(Field::new(latent::EMBEDDING_ITEM, DataType::Float32, false));
    let embedding =
        FixedSizeListArray::new(item, dim as i32, Arc::new(Float32Array::from(values)), None);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| format!("class{}", r.0)),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(embedding),
    ];
    let metadata = HashMap::from([
        ("latent.representation".to_string(), "head:1".to_string()),
        ("latent.model.kind".to_string(), "trained".to_string()),
    ]);
    let schema = latent_table_schema(dim, metadata);
    RecordBatch::try_new(schema, columns).unwrap()
}

fn write_steps_table(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("step", DataType::Int64, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("positive_top1", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![0, 1, 2])),
        Arc::new(Float64Array::from(vec![5.0, 4.5, 4.25])),
        Arc::new(Float64Array::from(vec![0.1, 0.3, 0.5])),
    ];
    write_parquet(path, RecordBatch::try_new(schema, columns).unwrap());
}

struct Inputs {
    _dir: tempfile::TempDir,
    root: PathBuf,
    images: PathBuf,
    latent: PathBuf,
    steps: PathBuf,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let images = root.join("images.parquet");
    let latent = root.join("latent_simclr.parquet");
    let steps = root.join("steps.parquet");
    write_image_table(&images);
    write_latent_table(&latent);
    write_steps_table(&steps);
    Inputs {
        _dir: dir,
        root,
        images,
        latent,
        steps,
    }
}

/// The analyzer on the tiny image table and one latent table, named `simclr`.
fn analyze_latent(inputs: &Inputs, latent: &Path, out: &Path) -> std::process::Output {
    let latent_arg = format!("simclr={}", latent.display());
    analyze(&[
        "--images",
        inputs.images.to_str().unwrap(),
        "--latent",
        &latent_arg,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ])
}

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_latent-analyze"))
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), std::fs::read(&p).unwrap(), modified)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn report_has_every_feature_set_and_inputs_are_left_untouched() {
    let inputs = inputs();
    let before = snapshot(&inputs.root);
    let out = inputs.root.join("report");
    let latent_arg = format!("simclr={}", inputs.latent.display());

    let output = analyze(&[
        "--images",
        inputs.images.to_str().unwrap(),
        "--latent",
        &latent_arg,
        "--steps",
        inputs.steps.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        snapshot(&inputs.root),
        before,
        "an input file changed or appeared"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let sets = report["feature_sets"].as_array().unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["raw-pixels", "simclr"]);
    assert_eq!(sets[0]["dim"], 48);
    assert_eq!(sets[1]["dim"], 8);
    assert_eq!(sets[1]["train_rows"], TRAIN_PER_CLASS * CLASSES);
    assert_eq!(sets[1]["test_rows"], TEST_PER_CLASS * CLASSES);
    let probes = sets[1]["linear_probe"].as_array().unwrap();
    assert_eq!(probes.len(), 3);
    assert_eq!(probes[0]["per_seed"].as_array().unwrap().len(), 3);
    assert_eq!(probes[2]["per_seed"].as_array().unwrap().len(), 1);
    // The class direction is 3 units strong against noise below 1: the full probe and
    // the kNN get every test row right.
    assert_eq!(probes[2]["mean"], 1.0);
    assert_eq!(sets[1]["knn"]["vote_accuracy"], 1.0);
    for set in sets {
        for probe in set["linear_probe"].as_array().unwrap() {
            assert!(probe["mean"].as_f64().unwrap().is_finite());
        }
    }
    assert_eq!(report["training"]["final_loss"], 4.25);
    assert_eq!(report["training"]["final_positive_top1"], 0.5);
    assert_eq!(report["protocol"]["knn"]["temperature"], 0.1);

    let markdown = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        markdown.contains("| raw-pixels | raw pixels | 48 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| simclr | head:1, trained | 8 |"),
        "{markdown}"
    );
    assert_eq!(sets[1]["features"], "head:1, trained");
    assert!(markdown.contains("## Protocol"), "{markdown}");

    // The confusion counts are of the 10% probe's first seed: they cover every test row
    // and their diagonal is that fit's accuracy.
    let confusion = &sets[1]["confusion"];
    assert_eq!(confusion["fraction"], 0.1);
    assert_eq!(confusion["seed"], 0);
    let counts: Vec<Vec<u64>> = serde_json::from_value(confusion["counts"].clone()).unwrap();
    assert_eq!(counts.len(), CLASSES);
    let total: u64 = counts.iter().flatten().sum();
    assert_eq!(total as usize, TEST_PER_CLASS * CLASSES);
    for (class, row) in counts.iter().enumerate() {
        assert_eq!(row.len(), CLASSES);
        assert_eq!(
            row.iter().sum::<u64>() as usize,
            TEST_PER_CLASS,
            "class {class}"
        );
    }
    let diagonal: u64 = (0..CLASSES).map(|c| counts[c][c]).sum();
    let accuracy = probes[1]["per_seed"][0]["accuracy"].as_f64().unwrap();
    assert_eq!(diagonal as f64 / total as f64, accuracy);

    // Every picture is listed in report.json, embedded in report.md by a relative link
    // and written as a PNG into --out.
    let pictures = report["pictures"].as_array().unwrap();
    let files: Vec<&str> = pictures
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "loss.png",
            "map_simclr.png",
            "neighbours_simclr.png",
            "confusion_simclr.png"
        ]
    );
    for file in files {
        assert!(markdown.contains(&format!("]({file})")), "{markdown}");
        let bytes = std::fs::read(out.join(file)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{file} is not a PNG");
    }
}

#[test]
fn an_image_table_given_as_latent_table_is_refused_naming_both_sides() {
    let inputs = inputs();
    let out = inputs.root.join("report");
    let wrong = format!("simclr={}", inputs.images.display());
    let output = analyze(&[
        "--images",
        inputs.images.to_str().unwrap(),
        "--latent",
        &wrong,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(inputs.images.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("missing column 'embedding'"), "{stderr}");
    assert!(
        stderr.contains("pixels: binary"),
        "found columns listed: {stderr}"
    );
    assert!(
        !out.join("report.json").exists(),
        "no report after a refusal"
    );
}

#[test]
fn an_output_folder_that_would_overwrite_an_input_is_refused() {
    let inputs = inputs();
    // A latent table named report.json inside the output folder.
    let out = inputs.root.join("report");
    std::fs::create_dir_all(&out).unwrap();
    let disguised = out.join("report.json");
    std::fs::copy(&inputs.latent, &disguised).unwrap();
    let before = std::fs::read(&disguised).unwrap();
    let output = analyze_latent(&inputs, &disguised, &out);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("would overwrite the input"));
    assert_eq!(std::fs::read(&disguised).unwrap(), before);
}

#[test]
fn a_folder_of_shards_scores_as_the_whole_table() {
    let inputs = inputs();
    let shards = inputs.root.join("latent_shards");
    std::fs::create_dir(&shards).unwrap();
    let whole = latent_batch();
    let first = whole.num_rows() / 3;
    write_parquet(&shards.join("part-0.parquet"), whole.slice(0, first));
    write_parquet(
        &shards.join("part-1.parquet"),
        whole.slice(first, whole.num_rows() - first),
    );

    let scores = |latent: &Path, out: &str| {
        let out = inputs.root.join(out);
        let output = analyze_latent(&inputs, latent, &out);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        let set = report["feature_sets"][1].clone();
        (
            set["train_rows"].clone(),
            set["test_rows"].clone(),
            set["linear_probe"].clone(),
            set["knn"].clone(),
        )
    };
    assert_eq!(
        scores(&shards, "report_shards"),
        scores(&inputs.latent, "report_whole")
    );
}

#[test]
fn a_folder_holding_a_shard_twice_or_shards_of_different_exports_is_refused() {
    let inputs = inputs();
    let whole = latent_batch();

    // The same rows twice: the second copy's ids repeat the first's.
    let doubled = inputs.root.join("doubled");
    std::fs::create_dir(&doubled).unwrap();
    write_parquet(&doubled.join("part-0.parquet"), whole.clone());
    write_parquet(&doubled.join("part-0-copy.parquet"), whole.clone());
    let output = analyze_latent(&inputs, &doubled, &inputs.root.join("report_doubled"));
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("appears more than once"), "{err}");

    // Two halves whose metadata names different representations.
    let mixed = inputs.root.join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    let half = whole.num_rows() / 2;
    write_parquet(&mixed.join("part-0.parquet"), whole.slice(0, half));
    let mut metadata = whole.schema().metadata().clone();
    metadata.insert("latent.representation".to_string(), "encoder".to_string());
    let rest = whole.slice(half, whole.num_rows() - half);
    let schema = Arc::new(whole.schema().as_ref().clone().with_metadata(metadata));
    let other = RecordBatch::try_new(schema, rest.columns().to_vec()).unwrap();
    write_parquet(&mixed.join("part-1.parquet"), other);
    let output = analyze_latent(&inputs, &mixed, &inputs.root.join("report_mixed"));
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("encoder, trained") && err.contains("head:1, trained"),
        "{err}"
    );
}
