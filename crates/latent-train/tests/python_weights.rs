//! Our model.safetensors opens outside Rust: Python reads it with safetensors' numpy loader
//! and re-runs the encoder (small-cnn and resnet18) in numpy (`tests/python/check_weights_numpy.py`),
//! which must match our eval-mode embeddings.
//!
//! The Python side runs in the repository's `.venv-test` (which `make test` creates from
//! `tests/python/requirements.txt`); `LATENT_TEST_PYTHON` points at another interpreter.
//! With `LATENT_WEIGHTS_CASE_DIR` set, the model and case files are written under it (in
//! `small-cnn/` and `resnet18/`) and kept, for `tests/python/load_in_torch.py`.

use std::path::PathBuf;
use std::process::Command;

use candle_core::{Device, Tensor};
use latent_core::rng::rng_for;
use latent_train::model::{Architecture, Backend, EncoderKind, HeadKind, SimclrModel};
use rand::RngExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("LATENT_TEST_PYTHON") {
        return PathBuf::from(path);
    }
    let path = repo().join(".venv-test/bin/python");
    assert!(
        path.exists(),
        "{} is missing: `make test` creates it (python3 -m venv + pip install -r \
         tests/python/requirements.txt)",
        path.display()
    );
    path
}

fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = rng_for(seed, &[7]);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Writes a seeded model of `arch` (batch-norm statistics moved by a few training-mode
/// passes) and its eval-mode embeddings of two images, then has numpy re-run the encoder.
fn check_with_numpy(arch: Architecture, case_name: &str) {
    let mut model = SimclrModel::new(arch, 11).unwrap();

    // A few training-mode passes move the batch-norm running statistics away from 0 and 1,
    // so the check covers them too.
    for seed in 0..3 {
        let batch = random_tensor(&[4, 3, 16, 16], seed)
            .affine(2.0, 0.5)
            .unwrap();
        model.forward_train(&batch, Backend::Fast).unwrap();
    }

    let images = random_tensor(&[2, 3, 16, 16], 100);
    let embedding = model.encoder.forward_eval(&images, Backend::Fast).unwrap();
    assert_eq!(embedding.dims(), &[2, model.encoder.embedding_dim()]);

    let kept = std::env::var("LATENT_WEIGHTS_CASE_DIR")
        .ok()
        .map(PathBuf::from);
    let temporary = tempfile::tempdir().unwrap();
    let dir = kept
        .map(|d| d.join(case_name))
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("model.safetensors");
    std::fs::write(&weights, model.to_safetensors().unwrap()).unwrap();
    let case = serde_json::json!({
        "shape": images.dims(),
        "input": images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "embedding": embedding.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    });
    let case_path = dir.join("case.json");
    std::fs::write(&case_path, case.to_string()).unwrap();

    let output = Command::new(python())
        .arg(repo().join("tests/python/check_weights_numpy.py"))
        .arg(&weights)
        .arg(&case_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "numpy's forward from our safetensors disagrees:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn arch(encoder: EncoderKind) -> Architecture {
    Architecture {
        encoder,
        in_channels: 3,
        width: 1.0,
        head: HeadKind::TwoLayer,
        projection_dim: 128,
    }
}

#[test]
fn numpy_reruns_the_small_cnn_from_our_safetensors() {
    check_with_numpy(arch(EncoderKind::SmallCnn), "small-cnn");
}

#[test]
fn numpy_reruns_the_resnet18_from_our_safetensors() {
    check_with_numpy(arch(EncoderKind::ResNet18), "resnet18");
}
