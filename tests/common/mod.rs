//! Helpers shared by the end-to-end tests: where the repository and the built binaries
//! are, and running a binary with its output captured.

// Each test binary compiles this module and uses only some of its helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where the Makefile is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A stage binary built by `cargo build --release --workspace --bins` (`make test` does that
/// before running the tests).
pub fn bin(name: &str) -> PathBuf {
    let path = repo().join("target/release").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `make test` (it builds the binaries before testing)",
        path.display()
    );
    path
}

/// Runs a command in the repository root and returns its output.
pub fn run(command: &mut Command) -> Output {
    command
        .current_dir(repo())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
}

/// stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Copies the first `per_class` PNGs of `classes` from the embedded training data into
/// `root/<class>/`, so a test gets a small real image folder of its own.
pub fn copy_real_images(root: &Path, classes: &[&str], per_class: usize) {
    for class in classes {
        let from = repo().join("data/cifar10-small/train").join(class);
        let to = root.join(class);
        std::fs::create_dir_all(&to).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&from)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files.into_iter().take(per_class) {
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    }
}

/// Runs `latent-ingest` on `source` into `out`, asserting it succeeds.
pub fn ingest(source: &Path, out: &Path) {
    let output = run(Command::new(bin("latent-ingest"))
        .arg(source)
        .arg("--out")
        .arg(out));
    assert!(
        output.status.success(),
        "latent-ingest failed: {}",
        stderr(&output)
    );
}

/// Runs `latent-export --random-init` on the image table `images` into `out`, asserting it
/// succeeds.
pub fn export_random_init(images: &Path, out: &Path) {
    let output = run(Command::new(bin("latent-export"))
        .arg(images)
        .arg("--random-init")
        .arg("--out")
        .arg(out));
    assert!(
        output.status.success(),
        "latent-export failed: {}",
        stderr(&output)
    );
}
