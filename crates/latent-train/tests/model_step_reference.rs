//! One training step of the small-cnn encoder + 2-layer head agrees with the PyTorch peer's
//! modules: loss, projections, gradients and the updated running variance, against
//! `fixtures/model_step_reference.json` (written by `fixtures/make_model_step_fixture.py`
//! with torch in float64), on both backends.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use latent_train::loss::nt_xent;
use latent_train::model::{Architecture, Backend, EncoderKind, HeadKind, SimclrModel};
use serde_json::Value;

/// The fixture script's LCG: U[-1, 1) values, exact in f32.
struct Lcg(u32);

impl Lcg {
    fn draw(&mut self, count: usize) -> Vec<f32> {
        (0..count)
            .map(|_| {
                self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
                (self.0 >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Largest |ours - reference| relative to the reference's largest magnitude.
fn relative_error(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

fn run_step(reference: &Value, backend: Backend) {
    let arch = Architecture {
        encoder: EncoderKind::SmallCnn,
        in_channels: 3,
        width: 1.0,
        head: HeadKind::TwoLayer,
        projection_dim: 128,
    };
    let mut model = SimclrModel::new(arch, 0).unwrap();

    let vars: HashMap<String, _> = model
        .trainable()
        .into_iter()
        .map(|v| (v.name, v.var))
        .collect();
    let mut stream = Lcg(reference["seed"].as_u64().unwrap() as u32);
    for weight in reference["weights"].as_array().unwrap() {
        let name = weight["name"].as_str().unwrap();
        let fan_in = weight["fan_in"].as_u64().unwrap() as f64;
        let shape: Vec<usize> = floats(&weight["shape"])
            .iter()
            .map(|&d| d as usize)
            .collect();
        let bound = (1.0 / fan_in.sqrt()) as f32;
        let values: Vec<f32> = stream
            .draw(shape.iter().product())
            .into_iter()
            .map(|v| v * bound)
            .collect();
        let var = &vars[name];
        var.set(&Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
    }

    let images = stream.draw(2 * 3 * 8 * 8);
    let noise = stream.draw(2 * 3 * 8 * 8);
    let second = images.iter().zip(&noise).map(|(a, b)| a + 0.25 * b);
    let views: Vec<f32> = images.iter().copied().chain(second).collect();
    let views = Tensor::from_vec(views, (4, 3, 8, 8), &Device::Cpu).unwrap();

    let z = model.forward_train(&views, backend).unwrap();
    let loss = nt_xent(&z, reference["temperature"].as_f64().unwrap())
        .unwrap()
        .loss;
    let grads = loss.backward().unwrap();

    let what = format!("{backend:?}");
    let ours = loss.to_scalar::<f32>().unwrap() as f64;
    let expected = reference["loss"].as_f64().unwrap();
    assert!(
        (ours - expected).abs() <= 1e-5 * expected,
        "{what}: loss {ours} vs {expected}"
    );

    let projections: Vec<f64> = reference["projections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(floats)
        .collect();
    let error = relative_error(&flat(&z), &projections);
    assert!(error <= 1e-5, "{what}: projections off by {error:e}");

    for (name, values) in reference["gradients"].as_object().unwrap() {
        let grad = grads.get(vars[name].as_tensor()).unwrap();
        let error = relative_error(&flat(grad), &floats(values));
        println!("{what}: {name} gradient relative error {error:.1e}");
        assert!(error <= 1e-4, "{what}: {name} gradient off by {error:e}");
    }

    let head_grad = grads.get(vars["head.0.weight"].as_tensor()).unwrap();
    let first_row = flat(&head_grad.get(0).unwrap());
    let error = relative_error(
        &first_row,
        &floats(&reference["head.0.weight gradient first row"]),
    );
    assert!(
        error <= 1e-4,
        "{what}: head.0.weight gradient row off by {error:e}"
    );
    let norm = flat(head_grad).iter().map(|v| v * v).sum::<f64>().sqrt();
    let expected_norm = reference["head.0.weight gradient norm"].as_f64().unwrap();
    assert!(
        (norm - expected_norm).abs() <= 1e-4 * expected_norm,
        "{what}: head.0.weight gradient norm {norm} vs {expected_norm}"
    );

    let running_var = &model.encoder.small_cnn().unwrap().blocks[1]
        .norm
        .running_var;
    let error = relative_error(
        &flat(running_var),
        &floats(&reference["features.1.1.running_var"]),
    );
    assert!(error <= 1e-5, "{what}: running variance off by {error:e}");
}

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/model_step_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn one_step_matches_pytorch_with_the_fast_kernels() {
    run_step(&reference(), Backend::Fast);
}

#[test]
fn one_step_matches_pytorch_with_candles_ops() {
    run_step(&reference(), Backend::Candle);
}
