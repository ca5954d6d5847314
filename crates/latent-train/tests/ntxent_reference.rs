//! NT-Xent agrees with the PyTorch peer's definition on fixed inputs: the loss and its
//! gradient from candle's autograd against `fixtures/ntxent_reference.json`, which
//! `fixtures/make_ntxent_fixtures.py` computed with torch in float64.

use candle_core::{Device, Tensor, Var};
use latent_train::loss::nt_xent;
use serde_json::Value;

/// Replays the fixture script's `lcg_inputs`: first views U[-1, 1) from a 32-bit LCG,
/// second views = first + 4 * further draws, all in f32.
fn lcg_inputs(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed as u32;
    let mut draw = || {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    };

    let n = rows / 2;
    let first: Vec<f32> = (0..n * dim).map(|_| draw()).collect();
    let noise: Vec<f32> = (0..n * dim).map(|_| draw()).collect();
    let second = first.iter().zip(&noise).map(|(a, b)| a + 4.0 * b);
    first.iter().copied().chain(second).collect()
}

fn matrix(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/ntxent_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    document["cases"].as_array().unwrap().clone()
}

#[test]
fn loss_and_gradient_match_pytorch() {
    let cases = cases();
    assert_eq!(
        cases.len(),
        12,
        "the fixture holds 4 input sets x 3 temperatures"
    );

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let rows = case["rows"].as_u64().unwrap() as usize;
        let dim = case["dim"].as_u64().unwrap() as usize;
        let temperature = case["temperature"].as_f64().unwrap();

        let inputs: Vec<f32> = match case.get("lcg_seed") {
            Some(seed) => lcg_inputs(rows, dim, seed.as_u64().unwrap()),
            None => matrix(&case["inputs"])
                .concat()
                .iter()
                .map(|&v| v as f32)
                .collect(),
        };
        let z = Var::from_vec(inputs, (rows, dim), &Device::Cpu).unwrap();

        let loss = nt_xent(z.as_tensor(), temperature).unwrap().loss;
        let ours = loss.to_scalar::<f32>().unwrap() as f64;
        let expected = case["loss"].as_f64().unwrap();
        assert!(
            (ours - expected).abs() <= 1e-5 * expected.abs(),
            "{name}: loss {ours} vs PyTorch {expected}"
        );

        let gradient = loss.backward().unwrap().get(z.as_tensor()).unwrap().clone();
        let gradient: Vec<Vec<f32>> = gradient.to_vec2().unwrap();
        let gradient_rows: Vec<usize> = match case.get("gradient_rows") {
            Some(list) => list
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
            None => (0..rows).collect(),
        };
        let reference = matrix(&case["gradient"]);
        let scale = reference.concat().iter().fold(0f64, |m, v| m.max(v.abs()));
        let mut worst = 0f64;
        for (reference_row, &row) in reference.iter().zip(&gradient_rows) {
            for (ours, expected) in gradient[row].iter().zip(reference_row) {
                worst = worst.max((*ours as f64 - expected).abs());
            }
        }
        println!(
            "{name}: loss {ours:.7} vs {expected:.7}, gradient max abs diff {worst:.2e} (max |g| {scale:.2e})"
        );
        assert!(
            worst <= 1e-5 * scale.max(1e-3),
            "{name}: gradient differs by {worst} (max |g| {scale})"
        );

        if let Some(norm) = case.get("gradient_norm") {
            let norm = norm.as_f64().unwrap();
            let ours = gradient
                .concat()
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (ours - norm).abs() <= 1e-4 * norm,
                "{name}: gradient norm {ours} vs {norm}"
            );
        }
    }
}

#[test]
fn replayed_lcg_inputs_pair_the_views() {
    // The second view of image i is its first view plus 4 times a further U[-1, 1) draw.
    let z = lcg_inputs(8, 3, 7);
    let tensor = Tensor::from_vec(z.clone(), (8, 3), &Device::Cpu).unwrap();
    assert_eq!(tensor.dims(), &[8, 3]);
    for i in 0..12 {
        assert!((-1.0..1.0).contains(&z[i]));
        assert!((z[12 + i] - z[i]).abs() <= 4.0);
    }
}
