//! `batch_norm_train` against candle_nn's `BatchNorm` (train mode) and hand-computed values.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::BatchNorm;
use common::{assert_close, pseudo_random, pseudo_random_var};

const EPS: f64 = 1e-5;

/// Compares y, dx, dgamma, dbeta and the running-stat update with candle_nn's batch norm
/// (followed by candle's ReLU when `relu`), for the loss `sum(y * r)`.
fn check_against_candle_nn(x: &Tensor, x_leaf: &candle_core::Var, relu: bool, what: &str) {
    let channels = x.dim(1).unwrap();
    let gamma = pseudo_random_var(&[channels], 21);
    let beta = pseudo_random_var(&[channels], 22);

    let (y, mean, variance) =
        latent_kernels::batch_norm_train(x, &gamma, &beta, EPS, relu).unwrap();

    let zeros = Tensor::zeros(channels, DType::F32, &Device::Cpu).unwrap();
    let ones = Tensor::ones(channels, DType::F32, &Device::Cpu).unwrap();
    let reference = BatchNorm::new(
        channels,
        zeros,
        ones,
        gamma.as_tensor().clone(),
        beta.as_tensor().clone(),
        EPS,
    )
    .unwrap();
    let y_ref = reference.forward_train(x).unwrap();
    let y_ref = if relu { y_ref.relu().unwrap() } else { y_ref };
    assert_close(&y, &y_ref, &format!("{what}: y"));

    // candle_nn updated its running stats from zeros and ones with momentum 0.1; the
    // caller's update from our statistics must give the same.
    let n = (x.elem_count() / channels) as f64;
    let running_mean = (mean.clone() * 0.1).unwrap();
    let running_var = ((variance.clone() * (0.1 * n / (n - 1.0))).unwrap() + 0.9).unwrap();
    assert_close(
        &running_mean,
        reference.running_mean(),
        &format!("{what}: running mean"),
    );
    assert_close(
        &running_var,
        reference.running_var(),
        &format!("{what}: running var"),
    );
    assert!(
        !mean.track_op() && !variance.track_op(),
        "{what}: statistics must be detached"
    );

    let r = pseudo_random(y.dims(), 23);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_ref = (&y_ref * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in [("dx", x_leaf), ("dgamma", &gamma), ("dbeta", &beta)] {
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        assert_close(got, grads_ref.get(var).unwrap(), &format!("{what}: {name}"));
    }
}

#[test]
fn batch_norm_matches_candle_nn_at_many_shapes() {
    let shapes: &[&[usize]] = &[
        &[2, 3, 4, 5],
        &[1, 1, 3, 3],
        &[5, 7, 1, 1],
        &[7, 3, 5, 3],
        &[3, 2, 33, 17],
        &[16, 4],
        &[9, 1],
        &[3, 2, 6],
    ];
    for dims in shapes {
        for relu in [false, true] {
            let x = pseudo_random_var(dims, 20);
            check_against_candle_nn(x.as_tensor(), &x, relu, &format!("{dims:?} relu {relu}"));
        }
    }
}

#[test]
fn batch_norm_handles_a_non_contiguous_input() {
    let base = pseudo_random_var(&[4, 3, 5, 6], 24);
    let x = base.transpose(2, 3).unwrap();
    assert!(!x.is_contiguous());
    check_against_candle_nn(&x, &base, true, "transposed");
}

#[test]
fn batch_norm_is_stable_for_a_large_offset() {
    // Mean 100, spread 1: a one-pass E[x^2] - E[x]^2 in f32 would lose most digits.
    let base = pseudo_random_var(&[8, 2, 6, 6], 25);
    let x = (base.as_tensor() + 100.0).unwrap();
    check_against_candle_nn(&x, &base, false, "offset 100");
}

#[test]
fn batch_norm_of_a_hand_computed_case() {
    // One channel holding 1, 2, 3, 4: mean 2.5, biased variance 1.25.
    let x = Tensor::new(&[[1.0f32], [2.0], [3.0], [4.0]], &Device::Cpu).unwrap();
    let gamma = Tensor::new(&[2.0f32], &Device::Cpu).unwrap();
    let beta = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let (y, mean, variance) =
        latent_kernels::batch_norm_train(&x, &gamma, &beta, 0.0, true).unwrap();

    assert_eq!(mean.to_vec1::<f32>().unwrap(), [2.5]);
    assert_eq!(variance.to_vec1::<f32>().unwrap(), [1.25]);
    let inv_std = 1.0 / 1.25f32.sqrt();
    let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .map(|v| (2.0 * (v - 2.5) * inv_std + 0.5).max(0.0))
        .collect();
    assert_close(
        &y.flatten_all().unwrap(),
        &Tensor::new(expected, &Device::Cpu).unwrap(),
        "y",
    );
}

#[test]
fn batch_norm_other_dtypes_fall_back_to_composed_ops() {
    let x = pseudo_random(&[4, 3, 5, 5], 26);
    let gamma = pseudo_random(&[3], 27);
    let beta = pseudo_random(&[3], 28);
    let as_f64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap();

    let (y32, mean32, var32) =
        latent_kernels::batch_norm_train(&x, &gamma, &beta, EPS, true).unwrap();
    let (y64, mean64, var64) =
        latent_kernels::batch_norm_train(&as_f64(&x), &as_f64(&gamma), &as_f64(&beta), EPS, true)
            .unwrap();
    assert_eq!(y64.dtype(), DType::F64);
    let as_f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    assert_close(&as_f32(&y64), &y32, "y");
    assert_close(&as_f32(&mean64), &mean32, "mean");
    assert_close(&as_f32(&var64), &var32, "variance");
}

#[test]
fn batch_norm_rejects_mismatched_parameters() {
    let x = pseudo_random(&[4, 3, 2, 2], 29);
    let gamma = pseudo_random(&[4], 30);
    let beta = pseudo_random(&[3], 31);
    let error = latent_kernels::batch_norm_train(&x, &gamma, &beta, EPS, false).unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("gamma") && message.contains("[3]"),
        "{message}"
    );

    let flat = pseudo_random(&[12], 32);
    let error = latent_kernels::batch_norm_train(&flat, &beta, &beta, EPS, false).unwrap_err();
    assert!(format!("{error:#}").contains("[N, C, ...]"), "{error:#}");
}
