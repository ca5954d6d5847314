//! The image operations a SimCLR view is made of, each a plain function of an image and
//! explicit parameters.
//!
//! Randomness lives elsewhere ([`crate::view`] draws the parameters); here every operation
//! is deterministic, so tests can pin each one against hand-computed values and against
//! torchvision's functional API (`transforms.v2.functional`), whose semantics these
//! follow: values are floats in 0..1, colour operations clamp to that range, contrast and
//! saturation blend with the grayscale image, hue rotates in HSV, blur pads by
//! reflection.

use rand::{Rng, RngExt};

/// Luma weights of ITU-R BT.601, used for grayscale (torchvision rounds the red weight to
/// 0.2989; the difference is below 0.03 grey levels).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// A float image in CHW order, values nominally in 0..1.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// An image of the given shape filled with `value`.
    pub fn filled(channels: usize, height: usize, width: usize, value: f32) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![value; channels * height * width],
        }
    }

    /// Converts HWC bytes (as the image table stores them) to CHW floats in 0..1.
    pub fn from_hwc_u8(height: usize, width: usize, channels: usize, pixels: &[u8]) -> Self {
        assert_eq!(pixels.len(), height * width * channels, "pixel count");
        let plane = height * width;
        let mut data = vec![0.0; pixels.len()];
        for (pixel, values) in pixels.chunks_exact(channels).enumerate() {
            for (c, &v) in values.iter().enumerate() {
                data[c * plane + pixel] = f32::from(v) / 255.0;
            }
        }
        Self {
            channels,
            height,
            width,
            data,
        }
    }

    /// HWC bytes, rounded and clamped to 0..255 (for PNG previews and fixtures).
    pub fn to_hwc_u8(&self) -> Vec<u8> {
        let plane = self.height * self.width;
        let mut out = vec![0u8; self.data.len()];
        for pixel in 0..plane {
            for c in 0..self.channels {
                let v = self.data[c * plane + pixel];
                out[pixel * self.channels + c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    fn plane_len(&self) -> usize {
        self.height * self.width
    }

    /// One channel as a slice of `height * width` values.
    pub fn plane(&self, channel: usize) -> &[f32] {
        let n = self.plane_len();
        &self.data[channel * n..(channel + 1) * n]
    }
}

/// A rectangle of the source image, in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Draws a random resized crop box the way torchvision's `RandomResizedCrop` does.
///
/// Up to ten times: an area fraction uniform in `scale`, an aspect ratio log-uniform in
/// `ratio`, the sides rounded; the first box that fits is placed uniformly. If none fits,
/// the whole image is cropped to the nearest allowed aspect ratio, centred.
pub fn sample_crop_box(
    rng: &mut impl Rng,
    height: usize,
    width: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
) -> CropBox {
    let area = (height * width) as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];

    for _ in 0..10 {
        let target_area = area * uniform(rng, scale[0], scale[1]);
        let aspect = uniform(rng, log_ratio[0], log_ratio[1]).exp();
        let w = (target_area * aspect).sqrt().round() as usize;
        let h = (target_area / aspect).sqrt().round() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }

    centre_crop_box(height, width, ratio)
}

/// The fallback of [`sample_crop_box`]: the largest centred box within the ratio range.
pub fn centre_crop_box(height: usize, width: usize, ratio: [f64; 2]) -> CropBox {
    let in_ratio = width as f64 / height as f64;
    let (min_ratio, max_ratio) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (h, w) = if in_ratio < min_ratio {
        ((width as f64 / min_ratio).round() as usize, width)
    } else if in_ratio > max_ratio {
        (height, (height as f64 * max_ratio).round() as usize)
    } else {
        (height, width)
    };
    let (h, w) = (h.clamp(1, height), w.clamp(1, width));
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// A float uniform in `[low, high)` (or exactly `low` when the range is empty).
pub fn uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.random::<f64>()
}

/// Taps of one output sample along one axis: the first source index and its weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Antialiased bilinear (triangle filter) taps mapping `in_size` source samples to
/// `out_size`, as torch's `interpolate(bilinear, antialias=True, align_corners=False)`:
/// when shrinking, the filter widens by the scale so every source pixel contributes.
fn bilinear_taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let support = scale.max(1.0);
    let inv_scale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };

    (0..out_size)
        .map(|i| {
            let centre = scale * (i as f64 + 0.5);
            let start = ((centre - support + 0.5).trunc() as i64).max(0) as usize;
            let end = ((centre + support + 0.5).trunc() as usize).min(in_size);
            let mut weights: Vec<f64> = (start..end)
                .map(|j| {
                    let x = (j as f64 - centre + 0.5) * inv_scale;
                    (1.0 - x.abs()).max(0.0)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps {
                start,
                weights: weights.into_iter().map(|w| w as f32).collect(),
            }
        })
        .collect()
}

/// Crops `crop` out of `image` and resizes it to `out_height` x `out_width` with
/// antialiased bilinear resampling (torchvision's `resized_crop`, bilinear, antialias).
pub fn resized_crop(image: &Image, crop: CropBox, out_height: usize, out_width: usize) -> Image {
    assert!(
        crop.top + crop.height <= image.height && crop.left + crop.width <= image.width,
        "crop box {crop:?} outside a {}x{} image",
        image.height,
        image.width
    );
    let columns = bilinear_taps(crop.width, out_width);
    let rows = bilinear_taps(crop.height, out_height);

    // Horizontal pass over the crop's rows, then a vertical pass.
    let mut wide = vec![0.0f32; crop.height * out_width];
    let mut out = Image::filled(image.channels, out_height, out_width, 0.0);
    for c in 0..image.channels {
        let plane = image.plane(c);
        for y in 0..crop.height {
            let row_start = (crop.top + y) * image.width + crop.left;
            let row = &plane[row_start..row_start + crop.width];
            for (x, taps) in columns.iter().enumerate() {
                let source = &row[taps.start..taps.start + taps.weights.len()];
                wide[y * out_width + x] = dot(source, &taps.weights);
            }
        }

        let out_plane = &mut out.data[c * out_height * out_width..(c + 1) * out_height * out_width];
        for (y, taps) in rows.iter().enumerate() {
            let out_row = &mut out_plane[y * out_width..(y + 1) * out_width];
            out_row.fill(0.0);
            for (k, &w) in taps.weights.iter().enumerate() {
                let source_row =
                    &wide[(taps.start + k) * out_width..(taps.start + k + 1) * out_width];
                for (o, &s) in out_row.iter_mut().zip(source_row) {
                    *o += w * s;
                }
            }
        }
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mirrors the image left to right.
pub fn hflip(image: &mut Image) {
    let width = image.width;
    for row in image.data.chunks_exact_mut(width) {
        row.reverse();
    }
}

/// Multiplies every value by `factor` and clamps to 0..1 (`adjust_brightness`).
pub fn adjust_brightness(image: &mut Image, factor: f32) {
    for v in &mut image.data {
        *v = (*v * factor).clamp(0.0, 1.0);
    }
}

/// Blends with the mean grey level of the image (`adjust_contrast`): factor 0 gives a
/// flat grey image, 1 the image itself.
pub fn adjust_contrast(image: &mut Image, factor: f32) {
    let mean = if image.channels == 3 {
        let n = image.plane_len();
        let mut sum = 0.0f64;
        for i in 0..n {
            sum += f64::from(luma_at(image, i));
        }
        (sum / n as f64) as f32
    } else {
        (image.data.iter().map(|&v| f64::from(v)).sum::<f64>() / image.data.len() as f64) as f32
    };
    let offset = (1.0 - factor) * mean;
    for v in &mut image.data {
        *v = (factor * *v + offset).clamp(0.0, 1.0);
    }
}

/// Blends each pixel with its own grey level (`adjust_saturation`): factor 0 gives the
/// grayscale image. Only defined for RGB; gray images are left as they are.
pub fn adjust_saturation(image: &mut Image, factor: f32) {
    if image.channels != 3 {
        return;
    }
    let n = image.plane_len();
    for i in 0..n {
        let grey = (1.0 - factor) * luma_at(image, i);
        for c in 0..3 {
            let v = &mut image.data[c * n + i];
            *v = (factor * *v + grey).clamp(0.0, 1.0);
        }
    }
}

/// Rotates the hue by `shift` turns (in -0.5..0.5) in HSV space (`adjust_hue`).
/// Only defined for RGB; gray images are left as they are.
pub fn adjust_hue(image: &mut Image, shift: f32) {
    if image.channels != 3 {
        return;
    }
    let n = image.plane_len();
    let (r, rest) = image.data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for i in 0..n {
        let (h, s, v) = rgb_to_hsv(
            r[i].clamp(0.0, 1.0),
            g[i].clamp(0.0, 1.0),
            b[i].clamp(0.0, 1.0),
        );
        let h = wrap_turn(h + shift);
        (r[i], g[i], b[i]) = hsv_to_rgb(h, s, v);
    }
}

/// Hue (turns, 0..1), saturation and value of an RGB colour.
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let range = max - min;
    if range == 0.0 {
        return (0.0, 0.0, max);
    }
    let saturation = range / max;
    let sector = if max == r {
        (g - b) / range
    } else if max == g {
        2.0 + (b - r) / range
    } else {
        4.0 + (r - g) / range
    };
    (wrap_turn(sector / 6.0), saturation, max)
}

/// A hue in -1..2 turns brought into 0..1 (cheaper than `rem_euclid`, which is a libm
/// call on baseline x86-64 and dominated the cost of hue jitter).
fn wrap_turn(h: f32) -> f32 {
    let h = if h < 0.0 {
        h + 1.0
    } else if h >= 1.0 {
        h - 1.0
    } else {
        h
    };
    if h >= 1.0 { 0.0 } else { h }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    // h is in 0..1, so truncation is the floor.
    // h is in 0..1, so truncation is the floor; h just below 1 may round to sector 6,
    // which is sector 0 again.
    let h6 = h * 6.0;
    let (sector, f) = match h6 as i32 {
        6.. => (0, 0.0),
        s => (s, h6 - s as f32),
    };
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

fn luma_at(image: &Image, pixel: usize) -> f32 {
    let n = image.plane_len();
    LUMA[0] * image.data[pixel]
        + LUMA[1] * image.data[n + pixel]
        + LUMA[2] * image.data[2 * n + pixel]
}

/// Replaces every channel of an RGB image by its luma, keeping three channels
/// (`RandomGrayscale`). Gray images are already gray and are left as they are.
pub fn grayscale(image: &mut Image) {
    if image.channels != 3 {
        return;
    }
    let n = image.plane_len();
    for i in 0..n {
        let grey = luma_at(image, i);
        for c in 0..3 {
            image.data[c * n + i] = grey;
        }
    }
}

/// SimCLR's blur kernel size for a view of side `size`: 10% of it, at least 3, made odd.
pub fn blur_kernel_size(size: usize) -> usize {
    let kernel = (size / 10).max(3);
    if kernel % 2 == 1 { kernel } else { kernel + 1 }
}

/// The normalised 1-D Gaussian kernel of `size` taps (odd) and standard deviation `sigma`.
pub fn gaussian_kernel(size: usize, sigma: f32) -> Vec<f32> {
    let half = (size / 2) as f32;
    let raw: Vec<f32> = (0..size)
        .map(|i| {
            let x = (i as f32 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f32 = raw.iter().sum();
    raw.into_iter().map(|v| v / total).collect()
}

/// Index `i` (possibly outside 0..len) mirrored into range without repeating the edge
/// (PyTorch's "reflect" padding, repeated for kernels wider than the image).
fn reflect(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let m = i.rem_euclid(period);
    (if m < len as isize { m } else { period - m }) as usize
}

/// Gaussian blur with a square kernel of `kernel_size` taps and `sigma`, reflection at the
/// borders (`gaussian_blur`), done as two separable passes.
pub fn gaussian_blur(image: &mut Image, kernel_size: usize, sigma: f32) {
    let kernel = gaussian_kernel(kernel_size, sigma);
    let half = (kernel_size / 2) as isize;
    let (h, w) = (image.height, image.width);

    // Source row of each padded row index, and a padded copy of one row at a time, so the
    // inner loops are plain multiply-adds over contiguous memory.
    let source_rows: Vec<usize> = (0..h as isize + 2 * half)
        .map(|i| reflect(i - half, h))
        .collect();
    let mut padded = vec![0.0f32; w + 2 * half as usize];
    let mut temp = vec![0.0f32; h * w];

    for c in 0..image.channels {
        let plane = &mut image.data[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            let row = &plane[y * w..(y + 1) * w];
            for (i, p) in padded.iter_mut().enumerate() {
                *p = row[reflect(i as isize - half, w)];
            }
            let out = &mut temp[y * w..(y + 1) * w];
            out.fill(0.0);
            for (k, &weight) in kernel.iter().enumerate() {
                for (o, &p) in out.iter_mut().zip(&padded[k..k + w]) {
                    *o += weight * p;
                }
            }
        }

        for y in 0..h {
            let out = &mut plane[y * w..(y + 1) * w];
            out.fill(0.0);
            for (k, &weight) in kernel.iter().enumerate() {
                let sy = source_rows[y + k];
                for (o, &t) in out.iter_mut().zip(&temp[sy * w..(sy + 1) * w]) {
                    *o += weight * t;
                }
            }
        }
    }
}

/// Inverts every value at or above `threshold` (`solarize`).
pub fn solarize(image: &mut Image, threshold: f32) {
    for v in &mut image.data {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latent_core::rng::rng_for;

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// A 3-channel image whose values vary with position and channel.
    fn gradient(height: usize, width: usize) -> Image {
        let mut image = Image::filled(3, height, width, 0.0);
        for (i, v) in image.data.iter_mut().enumerate() {
            *v = ((i * 37) % 101) as f32 / 100.0;
        }
        image
    }

    #[test]
    fn crop_boxes_stay_inside_and_cover_the_scale_and_ratio_ranges() {
        let (height, width) = (32, 40);
        let mut rng = rng_for(1, &[9]);
        let (mut small, mut large, mut wide, mut tall, mut log_ratio_sum) = (0, 0, 0, 0, 0.0);
        let draws = 4000;

        for _ in 0..draws {
            let b = sample_crop_box(&mut rng, height, width, [0.08, 1.0], [3.0 / 4.0, 4.0 / 3.0]);
            assert!(b.height >= 1 && b.width >= 1, "{b:?}");
            assert!(
                b.top + b.height <= height && b.left + b.width <= width,
                "{b:?}"
            );

            // Sides are rounded, so allow half a pixel on each side of the limits.
            let area = (b.height * b.width) as f64 / (height * width) as f64;
            let (w, h) = (b.width as f64, b.height as f64);
            assert!(
                ((w + 0.5) * (h + 0.5)) / (height * width) as f64 >= 0.08,
                "{b:?}"
            );
            assert!(
                (w - 0.5) / (h + 0.5) <= 4.0 / 3.0 && (w + 0.5) / (h - 0.5) >= 0.75,
                "{b:?}"
            );

            small += usize::from(area < 0.2);
            large += usize::from(area > 0.8);
            wide += usize::from(w / h > 1.15);
            tall += usize::from(w / h < 0.87);
            log_ratio_sum += (w / h).ln();
        }

        assert!(
            small > draws / 10 && large > draws / 20,
            "small {small}, large {large}"
        );
        assert!(
            wide > draws / 10 && tall > draws / 10,
            "wide {wide}, tall {tall}"
        );
        assert!(
            (log_ratio_sum / draws as f64).abs() < 0.03,
            "log-uniform ratio is centred"
        );
    }

    #[test]
    fn crop_falls_back_to_a_centred_box_when_nothing_fits() {
        // A ratio of 3..4 can never fit 90-100% of a square image.
        let mut rng = rng_for(0, &[]);
        let b = sample_crop_box(&mut rng, 30, 30, [0.9, 1.0], [3.0, 4.0]);
        let expected = CropBox {
            top: 10,
            left: 0,
            height: 10,
            width: 30,
        };
        assert_eq!(b, expected);
    }

    #[test]
    fn resize_matches_hand_computed_bilinear_values() {
        let row = Image {
            channels: 1,
            height: 1,
            width: 4,
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        let whole = CropBox {
            top: 0,
            left: 0,
            height: 1,
            width: 4,
        };

        // Shrinking 4 -> 2: triangle filter twice as wide, weights (3, 3, 1)/7 and (1, 3, 3)/7.
        let half = resized_crop(&row, whole, 1, 2);
        assert!(
            max_diff(&half.data, &[5.0 / 7.0, 16.0 / 7.0]) < 1e-6,
            "{:?}",
            half.data
        );

        // Growing the middle pair 2 -> 4: samples at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        let pair = CropBox {
            left: 1,
            width: 2,
            ..whole
        };
        let grown = resized_crop(&row, pair, 1, 4);
        assert!(
            max_diff(&grown.data, &[1.0, 1.25, 1.75, 2.0]) < 1e-6,
            "{:?}",
            grown.data
        );

        // The whole image at its own size is itself.
        let image = gradient(5, 7);
        let same = resized_crop(
            &image,
            CropBox {
                top: 0,
                left: 0,
                height: 5,
                width: 7,
            },
            5,
            7,
        );
        assert!(max_diff(&same.data, &image.data) < 1e-6);
    }

    #[test]
    fn flipping_twice_is_the_identity_and_once_mirrors_rows() {
        let image = gradient(3, 5);
        let mut flipped = image.clone();
        hflip(&mut flipped);
        assert_eq!(flipped.data[0], image.data[4]);
        assert_eq!(flipped.data[5 + 1], image.data[5 + 3]);
        assert_ne!(flipped, image);
        hflip(&mut flipped);
        assert_eq!(flipped, image);
    }

    #[test]
    fn brightness_multiplies_and_clamps() {
        let mut image = Image {
            channels: 1,
            height: 1,
            width: 2,
            data: vec![0.8, 0.2],
        };
        adjust_brightness(&mut image, 0.5);
        assert!(max_diff(&image.data, &[0.4, 0.1]) < 1e-6);
        adjust_brightness(&mut image, 3.0);
        assert!(max_diff(&image.data, &[1.0, 0.3]) < 1e-6);
    }

    #[test]
    fn contrast_blends_with_the_mean_grey_level() {
        // Pixels pure red and black: greys 0.299 and 0, mean 0.1495.
        let mut image = Image {
            channels: 3,
            height: 1,
            width: 2,
            data: vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        };
        adjust_contrast(&mut image, 0.5);
        let m = 0.5 * 0.1495;
        let expected = [0.5 + m, m, m, m, m, m];
        assert!(max_diff(&image.data, &expected) < 1e-6, "{:?}", image.data);

        let mut flat = gradient(4, 4);
        adjust_contrast(&mut flat, 0.0);
        assert!(flat.data.iter().all(|&v| (v - flat.data[0]).abs() < 1e-6));
    }

    #[test]
    fn zero_saturation_and_grayscale_give_equal_channels_with_luma_weights() {
        let (r, g, b) = (0.9f32, 0.5, 0.1);
        let luma = 0.299 * r + 0.587 * g + 0.114 * b;
        let pixel = Image {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![r, g, b],
        };

        let mut gray = pixel.clone();
        grayscale(&mut gray);
        assert!(max_diff(&gray.data, &[luma; 3]) < 1e-6, "{:?}", gray.data);

        let mut desaturated = pixel.clone();
        adjust_saturation(&mut desaturated, 0.0);
        assert!(max_diff(&desaturated.data, &[luma; 3]) < 1e-6);

        let mut unchanged = pixel.clone();
        adjust_saturation(&mut unchanged, 1.0);
        assert!(max_diff(&unchanged.data, &pixel.data) < 1e-6);
    }

    #[test]
    fn hue_rotation_maps_pure_red_to_known_colours() {
        let red = Image {
            channels: 3,
            height: 1,
            width: 1,
            data: vec![1.0, 0.0, 0.0],
        };
        for (shift, expected) in [
            (1.0 / 6.0, [1.0, 1.0, 0.0]),
            (1.0 / 3.0, [0.0, 1.0, 0.0]),
            (-1.0 / 3.0, [0.0, 0.0, 1.0]),
            (0.5, [0.0, 1.0, 1.0]),
        ] {
            let mut image = red.clone();
            adjust_hue(&mut image, shift);
            assert!(
                max_diff(&image.data, &expected) < 1e-5,
                "{shift}: {:?}",
                image.data
            );
        }

        // A dull orange (hue 30 degrees) turned by a quarter turn becomes hue 120 degrees.
        let mut orange = Image {
            data: vec![0.8, 0.5, 0.2],
            ..red
        };
        adjust_hue(&mut orange, 0.25);
        assert!(
            max_diff(&orange.data, &[0.2, 0.8, 0.2]) < 1e-5,
            "{:?}",
            orange.data
        );
    }

    #[test]
    fn gray_images_are_left_alone_by_colour_only_operations() {
        let gray = Image {
            channels: 1,
            height: 2,
            width: 2,
            data: vec![0.1, 0.4, 0.6, 0.9],
        };
        let mut image = gray.clone();
        adjust_hue(&mut image, 0.3);
        adjust_saturation(&mut image, 0.2);
        grayscale(&mut image);
        assert_eq!(image, gray);
    }

    #[test]
    fn blur_keeps_a_constant_image_and_spreads_an_impulse_with_unit_sum() {
        let mut flat = Image::filled(3, 9, 11, 0.37);
        gaussian_blur(&mut flat, 5, 1.3);
        assert!(flat.data.iter().all(|&v| (v - 0.37).abs() < 1e-6));

        let mut impulse = Image::filled(1, 15, 15, 0.0);
        impulse.data[7 * 15 + 7] = 1.0;
        gaussian_blur(&mut impulse, 9, 1.5);
        let total: f32 = impulse.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(impulse.data[7 * 15 + 7] < 1.0 && impulse.data[7 * 15 + 8] > 0.0);
        assert!((impulse.data[7 * 15 + 6] - impulse.data[7 * 15 + 8]).abs() < 1e-7);
    }

    #[test]
    fn blur_kernel_is_ten_percent_of_the_side_made_odd() {
        assert_eq!(blur_kernel_size(96), 9);
        assert_eq!(blur_kernel_size(64), 7);
        assert_eq!(blur_kernel_size(224), 23);
        assert_eq!(blur_kernel_size(32), 3);
        let k = gaussian_kernel(3, 1.0);
        let e = (-0.5f32).exp();
        assert!(
            max_diff(
                &k,
                &[
                    e / (1.0 + 2.0 * e),
                    1.0 / (1.0 + 2.0 * e),
                    e / (1.0 + 2.0 * e)
                ]
            ) < 1e-6
        );
    }

    #[test]
    fn solarize_inverts_values_at_or_above_the_threshold() {
        let mut image = Image {
            channels: 1,
            height: 1,
            width: 3,
            data: vec![0.2, 0.5, 0.9],
        };
        solarize(&mut image, 0.5);
        assert!(max_diff(&image.data, &[0.2, 0.5, 0.1]) < 1e-6);
    }

    #[test]
    fn bytes_round_trip_through_chw_floats() {
        let pixels: Vec<u8> = (0..2 * 3 * 3).map(|v| (v * 13) as u8).collect();
        let image = Image::from_hwc_u8(2, 3, 3, &pixels);
        assert_eq!(
            image.data[1],
            39.0 / 255.0,
            "CHW: second value is the red of pixel 1"
        );
        assert_eq!(image.to_hwc_u8(), pixels);
    }
}
