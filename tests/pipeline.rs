//! The whole DAG through the real binaries: `make smoke` produces a report whose learned
//! embedding beats chance, and a second run redoes only what its config change touched.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use common::{repo, run, stderr};

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .modified()
        .unwrap()
}

fn make_smoke(config: &Path, runs: &Path) {
    let output = run(Command::new("make")
        .arg("run")
        .arg("PIPELINE=smoke")
        .arg(format!("CONFIG={}", config.display()))
        .arg(format!("RUNS={}", runs.display())));
    assert!(
        output.status.success(),
        "make smoke failed:\n{}",
        stderr(&output)
    );
}

#[test]
fn smoke_pipeline_reports_a_learned_embedding_above_chance_and_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smoke.toml");
    std::fs::copy(repo().join("pipelines/smoke.toml"), &config).unwrap();
    let runs = dir.path().join("runs");

    make_smoke(&config, &runs);

    let run_dir = runs.join("smoke");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("report/report.json")).unwrap())
            .expect("report.json parses");
    assert!(run_dir.join("report/report.md").exists());

    let sets = report["feature_sets"]
        .as_array()
        .expect("feature_sets is a list");
    let names: Vec<&str> = sets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "raw-pixels",
            "simclr",
            "simclr-head1",
            "random-init",
            "autoencoder"
        ]
    );
    let layers: Vec<&str> = sets
        .iter()
        .map(|s| s["features"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "raw pixels",
            "encoder, trained",
            "head:1, trained",
            "encoder, random-init",
            "bottleneck, trained"
        ]
    );

    let simclr = &sets[1];
    let classes = simclr["classes"].as_u64().unwrap() as f64;
    let full_labels = simclr["linear_probe"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["fraction"].as_f64() == Some(1.0))
        .expect("a 100% label probe");
    let accuracy = full_labels["mean"].as_f64().unwrap();
    assert!(
        accuracy > 1.5 / classes,
        "the learned embedding's linear probe ({accuracy}) is not above chance (1/{classes})"
    );

    // A change to [analyze] reruns the analysis only: the model is not retrained.
    let model = run_dir.join("simclr/model.safetensors");
    let report_json = run_dir.join("report/report.json");
    let (model_before, report_before) = (mtime(&model), mtime(&report_json));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("seeds = [0]", "seeds = [1]")).unwrap();

    make_smoke(&config, &runs);

    assert_eq!(
        mtime(&model),
        model_before,
        "the model was retrained for an [analyze] change"
    );
    assert!(
        mtime(&report_json) > report_before,
        "the report was not redone"
    );
}
