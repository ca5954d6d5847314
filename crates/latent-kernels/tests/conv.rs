//! `conv2d` and `conv_transpose2d` against candle's own ops: values and gradients.

mod common;

use candle_core::{DType, Tensor};
use common::{assert_close, pseudo_random, pseudo_random_var};

/// One convolution case: input [n, c_in, h, w], kernel k, stride, padding, c_out.
#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    padding: usize,
}

const fn case(n: usize, c_in: usize, hw: (usize, usize), c_out: usize, ksp: [usize; 3]) -> Case {
    Case {
        n,
        c_in,
        h: hw.0,
        w: hw.1,
        c_out,
        k: ksp[0],
        stride: ksp[1],
        padding: ksp[2],
    }
}

const CASES: &[Case] = &[
    case(2, 3, (7, 7), 4, [3, 1, 1]),
    case(1, 1, (5, 5), 1, [3, 1, 0]),
    // candle's own input gradient fails when height and width need different output
    // paddings in its transposed convolution (e.g. 9x8, stride 2, padding 1), so the odd
    // and even stride-2 cases keep both sides alike.
    case(3, 2, (9, 11), 5, [3, 2, 1]),
    case(2, 3, (8, 6), 4, [3, 2, 1]),
    case(2, 3, (7, 9), 6, [3, 2, 0]),
    case(2, 4, (7, 9), 3, [1, 1, 0]),
    case(2, 3, (7, 5), 2, [1, 2, 0]),
    case(2, 3, (6, 6), 2, [1, 2, 0]),
    case(1, 5, (11, 11), 6, [3, 2, 0]),
    case(4, 8, (4, 4), 16, [3, 2, 1]),
    case(2, 2, (3, 3), 3, [3, 1, 2]),
    case(3, 2, (1, 1), 4, [1, 1, 0]),
    // One image per chunk (1024 output pixels per image).
    case(3, 2, (32, 32), 3, [3, 1, 1]),
    // Many images per chunk (9 pixels each) with a short last chunk.
    case(130, 3, (5, 5), 4, [3, 2, 1]),
];

/// Runs `op` and candle's reference with the same loss `sum(y * r)` and compares y, dx, dw.
fn check_against_reference(
    what: &str,
    x_dims: &[usize],
    w_dims: &[usize],
    ours: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    reference: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) {
    let x = pseudo_random_var(x_dims, 1);
    let w = pseudo_random_var(w_dims, 2);

    let y = ours(x.as_tensor(), w.as_tensor()).unwrap();
    let y_ref = reference(x.as_tensor(), w.as_tensor()).unwrap();
    assert_close(&y, &y_ref, &format!("{what}: y"));

    let r = pseudo_random(y_ref.dims(), 3);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_ref = (&y_ref * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in [("dx", &x), ("dw", &w)] {
        let got = grads
            .get(var)
            .unwrap_or_else(|| panic!("{what}: no {name}"));
        let expected = grads_ref.get(var).unwrap();
        assert_close(got, expected, &format!("{what}: {name}"));
    }
}

#[test]
fn conv2d_matches_candle_values_and_gradients() {
    for c in CASES {
        check_against_reference(
            &format!("{c:?}"),
            &[c.n, c.c_in, c.h, c.w],
            &[c.c_out, c.c_in, c.k, c.k],
            |x, w| latent_kernels::conv2d(x, w, c.stride, c.padding),
            |x, w| x.conv2d(w, c.padding, c.stride, 1, 1),
        );
    }
}

#[test]
fn conv2d_handles_non_contiguous_inputs() {
    // x is a transposed view, w a narrowed and transposed view of larger variables.
    let x_base = pseudo_random_var(&[2, 3, 9, 7], 4);
    let w_base = pseudo_random_var(&[5, 6, 3, 3], 5);
    let views = |x: &Tensor, w: &Tensor| {
        let x = x.transpose(2, 3).unwrap();
        let w = w
            .narrow(0, 1, 4)
            .unwrap()
            .narrow(1, 0, 3)
            .unwrap()
            .transpose(2, 3)
            .unwrap();
        assert!(!x.is_contiguous() && !w.is_contiguous());
        (x, w)
    };
    let (x, w) = views(x_base.as_tensor(), w_base.as_tensor());

    let y = latent_kernels::conv2d(&x, &w, 2, 1).unwrap();
    let y_ref = x.conv2d(&w, 1, 2, 1, 1).unwrap();
    assert_close(&y, &y_ref, "y");

    let r = pseudo_random(y.dims(), 6);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_ref = (&y_ref * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in [("dx", &x_base), ("dw", &w_base)] {
        assert_close(grads.get(var).unwrap(), grads_ref.get(var).unwrap(), name);
    }
}

#[test]
fn conv2d_skips_the_gradient_of_an_untracked_input() {
    let images = pseudo_random(&[2, 3, 6, 6], 7);
    let w = pseudo_random_var(&[4, 3, 3, 3], 8);

    let y = latent_kernels::conv2d(&images, &w, 1, 1).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let y_ref = images.conv2d(&w, 1, 1, 1, 1).unwrap();
    let grads_ref = y_ref.sum_all().unwrap().backward().unwrap();

    assert!(grads.get(&images).is_none());
    assert_close(grads.get(&w).unwrap(), grads_ref.get(&w).unwrap(), "dw");
}

#[test]
fn conv2d_of_a_hand_computed_case() {
    // [1 2; 3 4] with an all-ones 3x3 kernel and padding 1: each output is the sum of the
    // whole image (10) because every 3x3 window around a pixel covers all four.
    let x = Tensor::new(&[[[[1.0f32, 2.0], [3.0, 4.0]]]], &candle_core::Device::Cpu).unwrap();
    let w = Tensor::ones((1, 1, 3, 3), DType::F32, &candle_core::Device::Cpu).unwrap();
    let y = latent_kernels::conv2d(&x, &w, 1, 1).unwrap();
    assert_eq!(
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [10.0; 4]
    );

    // Stride 2, no padding, 1x1 kernel of weight 2 on a 3x3 image picks the corners.
    let x = Tensor::arange(0f32, 9.0, &candle_core::Device::Cpu)
        .unwrap()
        .reshape((1, 1, 3, 3));
    let w = Tensor::full(2f32, (1, 1, 1, 1), &candle_core::Device::Cpu).unwrap();
    let y = latent_kernels::conv2d(&x.unwrap(), &w, 2, 0).unwrap();
    assert_eq!(
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [0.0, 4.0, 12.0, 16.0]
    );
}

#[test]
fn conv2d_other_dtypes_fall_back_to_candle() {
    let x = pseudo_random(&[2, 3, 5, 5], 9)
        .to_dtype(DType::F64)
        .unwrap();
    let w = pseudo_random(&[4, 3, 3, 3], 10)
        .to_dtype(DType::F64)
        .unwrap();
    let y = latent_kernels::conv2d(&x, &w, 2, 1).unwrap();
    assert_eq!(y.dtype(), DType::F64);
    let y_ref = x.conv2d(&w, 1, 2, 1, 1).unwrap();
    let diff = (y - y_ref).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff.to_scalar::<f64>().unwrap(), 0.0);
}

#[test]
fn conv2d_rejects_mismatched_shapes_with_a_clear_message() {
    let x = pseudo_random(&[2, 3, 5, 5], 11);
    let message = |w: &[usize], stride, padding| {
        let w = pseudo_random(w, 12);
        format!(
            "{:#}",
            latent_kernels::conv2d(&x, &w, stride, padding).unwrap_err()
        )
    };

    let wrong_channels = message(&[4, 2, 3, 3], 1, 1);
    assert!(
        wrong_channels.contains("3 input channels"),
        "{wrong_channels}"
    );
    assert!(wrong_channels.contains("[4, 2, 3, 3]"), "{wrong_channels}");

    let not_square = message(&[4, 3, 3, 1], 1, 1);
    assert!(not_square.contains("square"), "{not_square}");

    let too_large = message(&[4, 3, 9, 9], 1, 1);
    assert!(
        too_large.contains("larger than the padded input"),
        "{too_large}"
    );

    let zero_stride = message(&[4, 3, 3, 3], 0, 1);
    assert!(zero_stride.contains("stride"), "{zero_stride}");
}

#[test]
fn conv_transpose2d_matches_candle_values_and_gradients() {
    // (n, c_in, h, w, c_out, [k, stride, padding]); k4 s2 p1 is the decoder's layer.
    let cases = [
        case(2, 4, (4, 4), 3, [4, 2, 1]),
        case(3, 2, (5, 3), 5, [4, 2, 1]),
        case(1, 1, (3, 3), 1, [3, 1, 0]),
        case(2, 3, (5, 4), 2, [3, 2, 1]),
        case(2, 3, (4, 5), 4, [1, 1, 0]),
        case(70, 2, (2, 2), 3, [4, 2, 1]),
    ];
    for c in cases {
        check_against_reference(
            &format!("transposed {c:?}"),
            &[c.n, c.c_in, c.h, c.w],
            &[c.c_in, c.c_out, c.k, c.k],
            |x, w| latent_kernels::conv_transpose2d(x, w, c.stride, c.padding),
            |x, w| x.conv_transpose2d(w, c.padding, 0, c.stride, 1),
        );
    }
}

#[test]
fn conv_transpose2d_of_k4_s2_p1_doubles_the_size() {
    let x = pseudo_random(&[2, 8, 5, 7], 13);
    let w = pseudo_random(&[8, 3, 4, 4], 14);
    let y = latent_kernels::conv_transpose2d(&x, &w, 2, 1).unwrap();
    assert_eq!(y.dims(), [2, 3, 10, 14]);
}
