//! Shared helpers for the kernel tests: deterministic data and magnitude-relative checks.

use candle_core::{Device, Tensor, Var};

/// A tensor of values in [-1, 1) from a small seeded generator (the same on every run).
pub fn pseudo_random(dims: &[usize], seed: u64) -> Tensor {
    let len: usize = dims.iter().product();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

pub fn pseudo_random_var(dims: &[usize], seed: u64) -> Var {
    Var::from_tensor(&pseudo_random(dims, seed)).unwrap()
}

/// Asserts `actual` equals `expected` up to `1e-4` of the largest magnitude in `expected`.
pub fn assert_close(actual: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let actual: Vec<f32> = actual.flatten_all().unwrap().to_vec1().unwrap();
    let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
    let scale = expected
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let worst = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max difference {worst} exceeds 1e-4 of magnitude {scale}"
    );
}
