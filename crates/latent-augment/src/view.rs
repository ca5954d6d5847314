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
