//! One SimCLR view: which operations run and with which random parameters.
//!
//! [`Augmenter`] holds the validated `[augment]` settings and turns a source image and a
//! random generator into a view. The order of the draws is fixed, so a view depends only
//! on the generator it is given; the stream seeds that generator from (seed, epoch, image
//! id, view index), which makes views independent of thread scheduling.

use latent_core::config::AugmentConfig;
use rand::{Rng, RngExt};

use crate::AugmentError;
use crate::ops::{self, Image};

/// The colour jitter operations, in the order their factors are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterOp {
    Brightness,
    Contrast,
    Saturation,
    Hue,
}

/// Makes views from source images according to the `[augment]` settings.
#[derive(Debug, Clone)]
pub struct Augmenter {
    config: AugmentConfig,
    size: usize,
    channels: usize,
    blur_kernel: Option<usize>,
}

impl Augmenter {
    /// Validates `config` for sources of `channels` channels; errors name the bad key.
    pub fn new(config: &AugmentConfig, channels: usize) -> Result<Self, AugmentError> {
        let bad = |key: &str, why: String| AugmentError::Config(format!("{key}: {why}"));
        let probability = |key: &str, p: f64| -> Result<(), AugmentError> {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(bad(
                    key,
                    format!("a probability must be in 0..1, found {p}"),
                ))
            }
        };

        if config.size == 0 {
            return Err(bad("size", "must be at least 1".into()));
        }
        if config.chunk == 0 {
            return Err(bad("chunk", "must be at least 1".into()));
        }
        let [lo, hi] = config.crop_scale;
        if !(0.0 < lo && lo <= hi && hi <= 1.0) {
            return Err(bad(
                "crop_scale",
                format!("needs 0 < low <= high <= 1, found [{lo}, {hi}]"),
            ));
        }
        let [lo, hi] = config.crop_ratio;
        if !(0.0 < lo && lo <= hi) {
            return Err(bad(
                "crop_ratio",
                format!("needs 0 < low <= high, found [{lo}, {hi}]"),
            ));
        }
        let [lo, hi] = config.blur_sigma;
        if !(0.0 < lo && lo <= hi) {
            return Err(bad(
                "blur_sigma",
                format!("needs 0 < low <= high, found [{lo}, {hi}]"),
            ));
        }
        if !(0.0..=1.0).contains(&config.jitter_strength) {
            let found = config.jitter_strength;
            return Err(bad(
                "jitter_strength",
                format!("must be in 0..1, found {found}"),
            ));
        }
        probability("flip_p", config.flip_p)?;
        probability("jitter_p", config.jitter_p)?;
        probability("grayscale_p", config.grayscale_p)?;
        probability("blur_p", config.blur_p)?;
        probability("solarize_p", config.solarize_p)?;
        for (key, values) in [("mean", &config.mean), ("std", &config.std)] {
            if !values.is_empty() && values.len() != channels {
                let found = values.len();
                return Err(bad(
                    key,
                    format!("{found} values given, the images have {channels} channels"),
                ));
            }
        }
        if config.mean.is_empty() != config.std.is_empty() {
            return Err(bad("std", "mean and std must be given together".into()));
        }
        if let Some(s) = config.std.iter().find(|s| **s <= 0.0) {
            return Err(bad("std", format!("must be positive, found {s}")));
        }

        let size = config.size as usize;
        let blur_kernel = (config.blur_p > 0.0 && config.size >= config.blur_min_size)
            .then(|| ops::blur_kernel_size(size));
        Ok(Self {
            config: config.clone(),
            size,
            channels,
            blur_kernel,
        })
    }

    /// Side of the square views.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Channels of the views (those of the sources).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Values per view (`channels * size * size`).
    pub fn view_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The settings in use.
    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// A view of `source` with values in 0..1 (not normalised), drawing every random
    /// choice from `rng` in a fixed order.
    pub fn view(&self, source: &Image, rng: &mut impl Rng) -> Image {
        let cfg = &self.config;
        let crop = ops::sample_crop_box(
            rng,
            source.height,
            source.width,
            cfg.crop_scale,
            cfg.crop_ratio,
        );
        let mut view = ops::resized_crop(source, crop, self.size, self.size);

        if rng.random_bool(cfg.flip_p) {
            ops::hflip(&mut view);
        }

        if rng.random_bool(cfg.jitter_p) {
            for (op, factor) in self.draw_jitter(rng) {
                apply_jitter(&mut view, op, factor);
            }
        }

        if rng.random_bool(cfg.grayscale_p) {
            ops::grayscale(&mut view);
        }

        if let Some(kernel) = self.blur_kernel
            && rng.random_bool(cfg.blur_p)
        {
            let sigma = ops::uniform(rng, cfg.blur_sigma[0], cfg.blur_sigma[1]);
            ops::gaussian_blur(&mut view, kernel, sigma as f32);
        }

        if cfg.solarize_p > 0.0 && rng.random_bool(cfg.solarize_p) {
            ops::solarize(&mut view, cfg.solarize_threshold as f32);
        }
        view
    }

    /// The jitter operations in a random order with their factors (hue: a shift in
    /// turns). Gray sources get only brightness and contrast: saturation and hue do not
    /// exist for them.
    pub fn draw_jitter(&self, rng: &mut impl Rng) -> Vec<(JitterOp, f32)> {
        let s = self.config.jitter_strength;
        let mut order = [
            JitterOp::Brightness,
            JitterOp::Contrast,
            JitterOp::Saturation,
            JitterOp::Hue,
        ];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }

        let mut draws = Vec::with_capacity(4);
        for op in order {
            let colour_only = matches!(op, JitterOp::Saturation | JitterOp::Hue);
            if colour_only && self.channels != 3 {
                continue;
            }
            let factor = match op {
                JitterOp::Hue => ops::uniform(rng, -0.2 * s, 0.2 * s),
                _ => ops::uniform(rng, (1.0 - 0.8 * s).max(0.0), 1.0 + 0.8 * s),
            };
            draws.push((op, factor as f32));
        }
        draws
    }

    /// Appends `view` to `out`, normalised with the configured mean and std if any.
    pub fn normalise_into(&self, view: &Image, out: &mut Vec<f32>) {
        if self.config.mean.is_empty() {
            out.extend_from_slice(&view.data);
            return;
        }
        let plane = self.size * self.size;
        for (c, values) in view.data.chunks_exact(plane).enumerate() {
            let (mean, inv_std) = (self.config.mean[c], 1.0 / self.config.std[c]);
            out.extend(values.iter().map(|v| (v - mean) * inv_std));
        }
    }
}

/// Applies one jitter operation with its drawn factor.
pub fn apply_jitter(image: &mut Image, op: JitterOp, factor: f32) {
    match op {
        JitterOp::Brightness => ops::adjust_brightness(image, factor),
        JitterOp::Contrast => ops::adjust_contrast(image, factor),
        JitterOp::Saturation => ops::adjust_saturation(image, factor),
        JitterOp::Hue => ops::adjust_hue(image, factor),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latent_core::rng::rng_for;

    #[test]
    fn zero_strength_jitter_is_the_identity() {
        let config = AugmentConfig {
            jitter_strength: 0.0,
            ..AugmentConfig::default()
        };
        let augmenter = Augmenter::new(&config, 3).unwrap();
        let mut image = Image::filled(3, 4, 4, 0.0);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = (i % 17) as f32 / 16.0;
        }

        for seed in 0..20 {
            let draws = augmenter.draw_jitter(&mut rng_for(seed, &[]));
            assert_eq!(draws.len(), 4);
            let mut jittered = image.clone();
            for (op, factor) in draws {
                assert_eq!(factor, if op == JitterOp::Hue { 0.0 } else { 1.0 });
                apply_jitter(&mut jittered, op, factor);
            }
            let diff = image
                .data
                .iter()
                .zip(&jittered.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(diff < 1e-6, "seed {seed}: {diff}");
        }
    }

    #[test]
    fn jitter_factors_stay_in_their_ranges_and_the_order_varies() {
        let augmenter = Augmenter::new(&AugmentConfig::default(), 3).unwrap();
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..200 {
            let draws = augmenter.draw_jitter(&mut rng_for(seed, &[1]));
            firsts.insert(format!("{:?}", draws[0].0));
            for (op, factor) in draws {
                let (lo, hi) = if op == JitterOp::Hue {
                    (-0.1, 0.1)
                } else {
                    (0.6, 1.4)
                };
                assert!((lo..=hi).contains(&factor), "{op:?} {factor}");
            }
        }
        assert_eq!(firsts.len(), 4, "each operation comes first sometimes");
    }

    #[test]
    fn gray_sources_get_only_brightness_and_contrast() {
        let augmenter = Augmenter::new(&AugmentConfig::default(), 1).unwrap();
        let draws = augmenter.draw_jitter(&mut rng_for(3, &[]));
        let ops: Vec<_> = draws.iter().map(|d| d.0).collect();
        assert_eq!(ops.len(), 2);
        assert!(ops.contains(&JitterOp::Brightness) && ops.contains(&JitterOp::Contrast));
    }

    #[test]
    fn bad_settings_are_refused_with_the_key_named() {
        let cases = [
            (
                AugmentConfig {
                    crop_scale: [0.5, 0.2],
                    ..Default::default()
                },
                "crop_scale",
            ),
            (
                AugmentConfig {
                    flip_p: 1.5,
                    ..Default::default()
                },
                "flip_p",
            ),
            (
                AugmentConfig {
                    mean: vec![0.5; 3],
                    std: vec![0.2; 3],
                    ..Default::default()
                },
                "mean",
            ),
            (
                AugmentConfig {
                    size: 0,
                    ..Default::default()
                },
                "size",
            ),
        ];
        for (config, key) in cases {
            // One channel, so three means are also wrong.
            let err = Augmenter::new(&config, 1).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn normalisation_subtracts_the_mean_and_divides_by_the_std_per_channel() {
        let config = AugmentConfig {
            size: 1,
            mean: vec![0.5, 0.25, 0.0],
            std: vec![0.5, 0.25, 2.0],
            ..Default::default()
        };
        let augmenter = Augmenter::new(&config, 3).unwrap();
        let pixel = Image {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![1.0, 0.5, 1.0],
        };
        let mut out = Vec::new();
        augmenter.normalise_into(&pixel, &mut out);
        assert_eq!(out, vec![1.0, 1.0, 0.5]);
    }
}
