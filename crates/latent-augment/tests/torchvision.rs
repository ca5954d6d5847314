//! Our operations against torchvision's (`transforms.v2.functional`) on real CIFAR images.
//!
//! The expected outputs come from `fixtures/make_torchvision_fixtures.py`, which ran
//! torchvision on float images in 0..1 and stored every result rounded to grey levels.
//! Every value we compute must be within one grey level of torchvision's; measured, the
//! worst is 0.51 (rounding of the stored value plus torchvision's 0.2989 red weight), so
//! the test holds us to 0.6.

use std::path::{Path, PathBuf};

use latent_augment::ops::{self, CropBox, Image};
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_png(relative: &str) -> Image {
    let path = crate_dir().join("../..").join(relative);
    let rgb = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (width, height) = rgb.dimensions();
    Image::from_hwc_u8(height as usize, width as usize, 3, rgb.as_raw())
}

fn param(case: &Value, name: &str) -> f64 {
    case["params"][name].as_f64().unwrap()
}

fn apply(case: &Value, source: &Image) -> Image {
    let mut image = source.clone();
    match case["op"].as_str().unwrap() {
        "brightness" => ops::adjust_brightness(&mut image, param(case, "factor") as f32),
        "contrast" => ops::adjust_contrast(&mut image, param(case, "factor") as f32),
        "saturation" => ops::adjust_saturation(&mut image, param(case, "factor") as f32),
        "hue" => ops::adjust_hue(&mut image, param(case, "shift") as f32),
        "grayscale" => ops::grayscale(&mut image),
        "blur" => ops::gaussian_blur(
            &mut image,
            param(case, "kernel") as usize,
            param(case, "sigma") as f32,
        ),
        "resized_crop" => {
            let crop = CropBox {
                top: param(case, "top") as usize,
                left: param(case, "left") as usize,
                height: param(case, "height") as usize,
                width: param(case, "width") as usize,
            };
            let size = param(case, "size") as usize;
            return ops::resized_crop(source, crop, size, size);
        }
        other => panic!("unknown op {other} in the fixture"),
    }
    image
}

#[test]
fn every_operation_agrees_with_torchvision_within_one_grey_level() {
    let fixtures = crate_dir().join("fixtures");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("torchvision_cases.json")).unwrap(),
    )
    .unwrap();
    let expected_bytes = std::fs::read(fixtures.join("torchvision_cases.u8")).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the fixture holds all cases");

    let mut ops_seen = std::collections::BTreeSet::new();
    for case in cases {
        let source = load_png(case["image"].as_str().unwrap());
        let ours = apply(case, &source);
        let shape: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            vec![ours.channels, ours.height, ours.width],
            shape,
            "{case}"
        );

        let offset = case["offset"].as_u64().unwrap() as usize;
        let expected = &expected_bytes[offset..offset + ours.data.len()];
        let (worst, at) = ours
            .data
            .iter()
            .zip(expected)
            .map(|(v, &e)| (v * 255.0 - f32::from(e)).abs())
            .enumerate()
            .fold(
                (0.0f32, 0),
                |best, (i, d)| if d > best.0 { (d, i) } else { best },
            );
        if std::env::var_os("SHOW_WORST").is_some() {
            eprintln!("{} {} worst {worst}", case["op"], case["params"]);
        }
        assert!(
            worst <= 0.6,
            "{case}: off by {worst} grey levels at value {at}"
        );
        ops_seen.insert(case["op"].as_str().unwrap().to_string());
    }
    assert_eq!(ops_seen.len(), 7, "{ops_seen:?}");
    assert!(Path::new(&fixtures.join("make_torchvision_fixtures.py")).exists());
}
