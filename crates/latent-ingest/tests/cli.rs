//! The `latent-ingest` binary: config merging, default paths, the summary line and errors.

mod common;

use std::process::Command;

use common::{read_rows, write_png};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latent-ingest"))
}

#[test]
fn config_gives_defaults_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("src");
    for i in 0..10 {
        write_png(&root.join(format!("a/{i}.png")), i);
    }
    std::fs::write(root.join("a/broken.png"), b"").unwrap();
    let config = dir.path().join("x.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nseed = 4\n[ingest]\nsource = {:?}\ntest_fraction = 0.5\n",
            root.display().to_string()
        ),
    )
    .unwrap();
    let out = dir.path().join("out/images.parquet");

    let output = binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--test-fraction",
            "0.3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("seen 11 = ingested 10 + rejected 1"),
        "{stderr}"
    );
    let (rows, metadata) = read_rows(&out);
    assert!(metadata["latent.ingest.options"].contains("\"seed\":4"));

    // The same run through the library with seed 4 (config) and fraction 0.3 (flag).
    let expected = dir.path().join("expected.parquet");
    let mut options = latent_ingest::IngestOptions::new(&root, &expected);
    options.split.seed = 4;
    options.split.test_fraction = 0.3;
    latent_ingest::ingest(&options).unwrap();
    assert_eq!(rows, read_rows(&expected).0);
    assert!(dir.path().join("out/images.rejects.parquet").exists());
}

#[test]
fn bad_source_exits_nonzero_with_the_whole_error_chain() {
    let dir = tempfile::tempdir().unwrap();
    let output = binary()
        .arg(dir.path().join("nothing-here"))
        .arg("--out")
        .arg(dir.path().join("o.parquet"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nothing-here: opening the source: No such file"),
        "{stderr}"
    );
}

#[test]
fn help_says_what_is_read_and_written() {
    let output = binary().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("Reads:") && text.contains("Writes:") && text.contains("Examples:"));
}

#[test]
fn manifest_with_unlabelled_flag_gives_null_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_png(&dir.path().join("img/0.png"), 1);
    write_png(&dir.path().join("img/1.png"), 2);
    // Without an extension the format must be named.
    let manifest = dir.path().join("list");
    std::fs::write(&manifest, "path,label\nimg/0.png,cat\nimg/1.png,dog\n").unwrap();
    let out = dir.path().join("images.parquet");

    let output = binary()
        .arg(&manifest)
        .args(["--format", "manifest", "--unlabelled", "--out"])
        .arg(&out)
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (rows, _) = read_rows(&out);
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.label.is_none() && r.label_name.is_none())
    );
}
