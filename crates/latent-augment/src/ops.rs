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
        let h = (h + shift).rem_euclid(1.0);
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
    ((sector / 6.0).rem_euclid(1.0), saturation, max)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let sector = h6.floor();
    let f = h6 - sector;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (sector as i32).rem_euclid(6) {
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
    let mut temp = vec![0.0f32; h * w];

    for c in 0..image.channels {
        let plane = &mut image.data[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &weight) in kernel.iter().enumerate() {
                    let sx = reflect(x as isize + k as isize - half, w);
                    acc += weight * plane[y * w + sx];
                }
                temp[y * w + x] = acc;
            }
        }
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for (k, &weight) in kernel.iter().enumerate() {
                    let sy = reflect(y as isize + k as isize - half, h);
                    acc += weight * temp[sy * w + x];
                }
                plane[y * w + x] = acc;
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
