//! Turning the bytes of one image file into HWC pixels, or into a reason it was refused.
//!
//! This is the per-image hot path, run in parallel by rayon, so it avoids work it does not
//! need: 8-bit grey and RGB images (almost all real data) are decoded straight into their
//! final buffer; only other colour types go through a `DynamicImage` conversion. Decoding
//! runs under size limits, so a file whose header claims 100000x100000 pixels is refused
//! before anything is allocated for it.

use std::io::Cursor;

use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};

/// Why an input file did not become a row of the image table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The file has no bytes.
    EmptyFile,
    /// The bytes do not start with the signature of any image format we decode.
    NotAnImage,
    /// The format was recognised but decoding failed (truncated or corrupt data).
    DecodeError,
    /// The image is larger than the decode limits allow.
    TooLarge,
    /// The file could not be opened or read (permissions, I/O error).
    Unreadable,
    /// A file named by a manifest does not exist.
    MissingFile,
    /// A symbolic link that points nowhere or into a loop.
    BrokenLink,
    /// The file or folder name is not valid UTF-8, so it cannot be recorded as `source`.
    NonUtf8Name,
    /// Same pixels as an earlier image (only with `--dedupe drop`).
    Duplicate,
}

impl Reason {
    /// The name written in the `reason` column of the rejects table.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyFile => "empty-file",
            Reason::NotAnImage => "not-an-image",
            Reason::DecodeError => "decode-error",
            Reason::TooLarge => "too-large",
            Reason::Unreadable => "unreadable",
            Reason::MissingFile => "missing-file",
            Reason::BrokenLink => "broken-link",
            Reason::NonUtf8Name => "non-utf8-name",
            Reason::Duplicate => "duplicate",
        }
    }
}

/// A refused file: the reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Decoded pixels, HWC, 8-bit, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub data: Vec<u8>,
}

/// Largest width or height accepted (CIFAR is 32, ImageNet photos a few thousand).
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation accepted, in bytes.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Decodes one encoded image. Grey stays one channel (alpha dropped); every other colour
/// type becomes 8-bit RGB (16-bit values scaled down, alpha dropped).
pub fn decode_image(bytes: &[u8]) -> Result<Pixels, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::new(Reason::EmptyFile, "the file has 0 bytes"));
    }

    let format = image::guess_format(bytes).map_err(|_| {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Rejection::new(
            Reason::NotAnImage,
            format!(
                "no known image signature; the file starts with bytes [{}]",
                head.join(" ")
            ),
        )
    })?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let decoder = reader.into_decoder().map_err(rejection_from)?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_large(width, height));
    }

    match decoder.color_type() {
        ColorType::L8 | ColorType::Rgb8 => {
            let channels = decoder.color_type().channel_count() as u32;
            let mut data = vec![0u8; decoder.total_bytes() as usize];
            decoder.read_image(&mut data).map_err(rejection_from)?;
            Ok(Pixels {
                height,
                width,
                channels,
                data,
            })
        }
        other => {
            let image = DynamicImage::from_decoder(decoder).map_err(rejection_from)?;
            let grey = matches!(other, ColorType::L16 | ColorType::La8 | ColorType::La16);
            Ok(if grey {
                grey_pixels(image)
            } else {
                rgb_pixels(image)
            })
        }
    }
}

fn too_large(width: u32, height: u32) -> Rejection {
    Rejection::new(
        Reason::TooLarge,
        format!("the header says {width}x{height}; the limit is {MAX_SIDE} pixels a side"),
    )
}

fn rejection_from(error: ImageError) -> Rejection {
    match error {
        ImageError::Limits(e) => Rejection::new(
            Reason::TooLarge,
            format!("{e} (limit {MAX_SIDE} pixels a side, {MAX_ALLOC} bytes)"),
        ),
        ImageError::IoError(e) => {
            Rejection::new(Reason::DecodeError, format!("data ends early: {e}"))
        }
        other => Rejection::new(Reason::DecodeError, other.to_string()),
    }
}

fn grey_pixels(image: DynamicImage) -> Pixels {
    let grey = image.into_luma8();
    Pixels {
        height: grey.height(),
        width: grey.width(),
        channels: 1,
        data: grey.into_raw(),
    }
}

fn rgb_pixels(image: DynamicImage) -> Pixels {
    let rgb = image.into_rgb8();
    Pixels {
        height: rgb.height(),
        width: rgb.width(),
        channels: 3,
        data: rgb.into_raw(),
    }
}

/// Which channels the table stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorMode {
    /// Grey images stay 1 channel, colour images 3.
    #[default]
    Keep,
    /// Every image becomes 1 channel (ITU-R BT.709 luma, as the `image` crate computes it).
    Gray,
    /// Every image becomes 3 channels (grey repeated).
    Rgb,
}

/// Resampling filter for `--resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResizeFilter {
    Nearest,
    #[default]
    Bilinear,
    Bicubic,
    Lanczos3,
}

/// A target size for every image (aspect ratio is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    pub width: u32,
    pub height: u32,
    pub filter: ResizeFilter,
}

/// Applies the colour mode and resize policy to decoded pixels.
pub fn apply_policy(pixels: Pixels, mode: ColorMode, resize: Option<Resize>) -> Pixels {
    let pixels = match (mode, pixels.channels) {
        (ColorMode::Gray, 3) => {
            let rgb = image::RgbImage::from_raw(pixels.width, pixels.height, pixels.data)
                .expect("buffer matches its shape");
            grey_pixels(DynamicImage::ImageRgb8(rgb))
        }
        (ColorMode::Rgb, 1) => {
            let data = pixels.data.iter().flat_map(|&v| [v, v, v]).collect();
            Pixels {
                channels: 3,
                data,
                ..pixels
            }
        }
        _ => pixels,
    };

    let Some(resize) = resize else {
        return pixels;
    };
    if (resize.width, resize.height) == (pixels.width, pixels.height) {
        return pixels;
    }
    let filter = match resize.filter {
        ResizeFilter::Nearest => image::imageops::FilterType::Nearest,
        ResizeFilter::Bilinear => image::imageops::FilterType::Triangle,
        ResizeFilter::Bicubic => image::imageops::FilterType::CatmullRom,
        ResizeFilter::Lanczos3 => image::imageops::FilterType::Lanczos3,
    };
    let (w, h) = (pixels.width, pixels.height);
    let data = if pixels.channels == 1 {
        let img = image::GrayImage::from_raw(w, h, pixels.data).expect("buffer matches its shape");
        image::imageops::resize(&img, resize.width, resize.height, filter).into_raw()
    } else {
        let img = image::RgbImage::from_raw(w, h, pixels.data).expect("buffer matches its shape");
        image::imageops::resize(&img, resize.width, resize.height, filter).into_raw()
    };
    Pixels {
        height: resize.height,
        width: resize.width,
        channels: pixels.channels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, color: image::ExtendedColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(data, width, height, color)
            .unwrap();
        out
    }

    use image::ImageEncoder;

    #[test]
    fn rgba_png_loses_alpha_and_keeps_rgb_values() {
        let data = [10, 20, 30, 255, 40, 50, 60, 0];
        let bytes = png(2, 1, image::ExtendedColorType::Rgba8, &data);
        let pixels = decode_image(&bytes).unwrap();
        assert_eq!((pixels.height, pixels.width, pixels.channels), (1, 2, 3));
        assert_eq!(pixels.data, vec![10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn sixteen_bit_grey_is_scaled_to_eight_bits_and_stays_one_channel() {
        // Big-endian 16-bit samples: 0xFFFF -> 255, 0x0000 -> 0, 0x8080 -> 128.
        let data = [0xFF, 0xFF, 0x00, 0x00, 0x80, 0x80];
        let bytes = png(3, 1, image::ExtendedColorType::L16, &data);
        let pixels = decode_image(&bytes).unwrap();
        assert_eq!(pixels.channels, 1);
        assert_eq!(pixels.data, vec![255, 0, 128]);
    }

    #[test]
    fn header_claiming_huge_size_is_too_large() {
        let mut bytes = png(1, 1, image::ExtendedColorType::L8, &[7]);
        // IHDR: length at 8..12, "IHDR" at 12..16, width 16..20, height 20..24, CRC 29..33.
        bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let err = decode_image(&bytes).unwrap_err();
        assert_eq!(err.reason, Reason::TooLarge, "{err:?}");
    }

    #[test]
    fn rgb_mode_repeats_grey_and_gray_mode_uses_luma() {
        let grey = Pixels {
            height: 1,
            width: 1,
            channels: 1,
            data: vec![9],
        };
        let rgb = apply_policy(grey, ColorMode::Rgb, None);
        assert_eq!(rgb.data, vec![9, 9, 9]);
        let back = apply_policy(rgb, ColorMode::Gray, None);
        assert_eq!((back.channels, back.data), (1, vec![9]));
    }

    #[test]
    fn bilinear_downscale_by_two_averages_each_block() {
        let src = Pixels {
            height: 2,
            width: 2,
            channels: 1,
            data: vec![0, 100, 100, 200],
        };
        let resize = Resize {
            width: 1,
            height: 1,
            filter: ResizeFilter::Bilinear,
        };
        let out = apply_policy(src, ColorMode::Keep, Some(resize));
        assert_eq!(out.data, vec![100]);
    }
}
