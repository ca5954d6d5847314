//! Sources that already hold raw pixels: MNIST-style IDX files and CIFAR binary batches.
//!
//! Both are read whole into memory (Fashion-MNIST is 55 MB raw, a CIFAR batch 30 MB) and
//! checked before any row is made: an IDX file whose header promises more or fewer bytes
//! than the file holds, a CIFAR batch that is not a whole number of records or a label
//! outside the class list are errors that name the file and both numbers.

use std::io::Read;
use std::path::{Path, PathBuf};

use latent_core::schema::split;

use crate::error::{IngestError, Result};

/// Pixel order of the records in an [`ArrayFile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelOrder {
    /// Height, width, channels (IDX).
    Hwc,
    /// One plane per channel (CIFAR).
    Chw,
}

/// One file of fixed-size records with a label each.
#[derive(Debug)]
pub struct ArrayFile {
    /// File name, used to build each row's `source` (`<name>#<record>`).
    pub name: String,
    pub split: &'static str,
    pub height: u32,
    pub width: u32,
    pub channels: u32,
    pub order: PixelOrder,
    /// Records back to back, `height * width * channels` bytes each.
    pub pixels: Vec<u8>,
    pub labels: Vec<i32>,
}

impl ArrayFile {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of record `index` in HWC order.
    pub fn record_hwc(&self, index: usize) -> Vec<u8> {
        let size = (self.height * self.width * self.channels) as usize;
        let record = &self.pixels[index * size..(index + 1) * size];
        match self.order {
            PixelOrder::Hwc => record.to_vec(),
            PixelOrder::Chw => {
                let plane = (self.height * self.width) as usize;
                let channels = self.channels as usize;
                let mut out = vec![0u8; size];
                for (c, values) in record.chunks_exact(plane).enumerate() {
                    for (p, &v) in values.iter().enumerate() {
                        out[p * channels + c] = v;
                    }
                }
                out
            }
        }
    }
}

/// A whole array source: its files in id order and its class names (empty if unknown).
#[derive(Debug)]
pub struct ArraySource {
    pub files: Vec<ArrayFile>,
    pub class_names: Vec<String>,
}

fn sorted_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
        .map_err(|e| IngestError::io(dir, "listing the folder", e))?;
    files.retain(|p| p.is_file());
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// True if `dir` holds IDX image files (`*-images-idx3-ubyte`, optionally `.gz`).
pub fn looks_like_idx(dir: &Path) -> bool {
    sorted_files(dir).is_ok_and(|files| files.iter().any(|p| is_idx_images(&file_name(p))))
}

fn is_idx_images(name: &str) -> bool {
    name.contains("images-idx")
}

/// True if `dir` holds CIFAR-10 or CIFAR-100 binary batches.
pub fn looks_like_cifar(dir: &Path) -> bool {
    sorted_files(dir).is_ok_and(|files| {
        files.iter().any(|p| {
            let name = file_name(p);
            name == "batches.meta.txt"
                || name == "fine_label_names.txt"
                || (name.starts_with("data_batch") && name.ends_with(".bin"))
        })
    })
}

/// Reads a file, un-gzipping it if it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| IngestError::io(path, "reading", e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| IngestError::io(path, "un-gzipping", e))?;
    Ok(out)
}

/// The dimensions of an unsigned-byte IDX file, checked against its length.
pub fn idx_dims(path: &Path, bytes: &[u8]) -> Result<Vec<usize>> {
    let bad = |message: String| IngestError::source(path, message);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(
            "not an IDX file: it must start with two zero bytes".into()
        ));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "IDX data type 0x{:02x} is not supported (expected 0x08, unsigned bytes)",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad(format!(
            "the header declares {ndim} dimensions ({header} bytes), the file has {} bytes",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims.iter().product::<usize>() + header;
    if expected != bytes.len() {
        return Err(bad(format!(
            "the header says dimensions {dims:?}, which needs {expected} bytes, \
             but the file has {} bytes",
            bytes.len()
        )));
    }
    Ok(dims)
}

/// Reads every `<prefix>-images-idx3-ubyte[.gz]` with its `<prefix>-labels-idx1-ubyte[.gz]`.
/// The prefix names the split: `train...` is train, `t10k...` or `test...` is test.
pub fn read_idx(dir: &Path) -> Result<ArraySource> {
    let all = sorted_files(dir)?;
    let mut files = Vec::new();
    for images_path in all.iter().filter(|p| is_idx_images(&file_name(p))) {
        let name = file_name(images_path);
        let split = if name.starts_with("train") {
            split::TRAIN
        } else if name.starts_with("t10k") || name.starts_with("test") {
            split::TEST
        } else {
            return Err(IngestError::source(
                images_path,
                "cannot tell the split: IDX file names must start with train, test or t10k",
            ));
        };
        let labels_name = name.replace("images-idx3", "labels-idx1");
        let labels_path = all
            .iter()
            .find(|p| file_name(p) == labels_name)
            .ok_or_else(|| {
                IngestError::source(
                    images_path,
                    format!("no labels file {labels_name} beside it"),
                )
            })?;

        let images = read_maybe_gzip(images_path)?;
        let dims = idx_dims(images_path, &images)?;
        let (count, height, width, channels) = match dims[..] {
            [n, h, w] => (n, h, w, 1),
            [n, h, w, c] if c == 1 || c == 3 => (n, h, w, c),
            _ => {
                return Err(IngestError::source(
                    images_path,
                    format!(
                        "IDX images must have dimensions [n, h, w] or [n, h, w, 1|3], found {dims:?}"
                    ),
                ));
            }
        };
        let labels = read_maybe_gzip(labels_path)?;
        let label_dims = idx_dims(labels_path, &labels)?;
        if label_dims != [count] {
            return Err(IngestError::source(
                labels_path,
                format!("expected {count} labels for {name}, the header says {label_dims:?}"),
            ));
        }

        let header = 4 + 4 * dims.len();
        let mut pixels = images;
        pixels.drain(..header);
        files.push(ArrayFile {
            name,
            split,
            height: height as u32,
            width: width as u32,
            channels: channels as u32,
            order: PixelOrder::Hwc,
            pixels,
            labels: labels[8..].iter().map(|&l| l as i32).collect(),
        });
    }
    if files.is_empty() {
        return Err(IngestError::source(
            dir,
            "holds no *-images-idx3-ubyte files",
        ));
    }
    Ok(ArraySource {
        files,
        class_names: Vec::new(),
    })
}

/// Reads CIFAR-10 (`data_batch_*.bin`, `test_batch.bin`, `batches.meta.txt`) or CIFAR-100
/// (`train.bin`, `test.bin`, `fine_label_names.txt`, fine labels) binary batches.
pub fn read_cifar(dir: &Path) -> Result<ArraySource> {
    let all = sorted_files(dir)?;
    let hundred = all.iter().any(|p| file_name(p) == "fine_label_names.txt");
    let (names_file, label_bytes) = match hundred {
        true => ("fine_label_names.txt", 2),
        false => ("batches.meta.txt", 1),
    };
    let names_path = dir.join(names_file);
    let class_names: Vec<String> = std::fs::read_to_string(&names_path)
        .map_err(|e| IngestError::io(&names_path, "reading the class names", e))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();

    let (height, width, channels) = (32u32, 32u32, 3u32);
    let image_size = (height * width * channels) as usize;
    let record_size = label_bytes + image_size;
    let mut files = Vec::new();
    for path in all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
    {
        let name = file_name(path);
        let split = if name.starts_with("test") {
            split::TEST
        } else if name.starts_with("data_batch") || name.starts_with("train") {
            split::TRAIN
        } else {
            tracing::warn!("{}: skipped, not a CIFAR batch name", path.display());
            continue;
        };
        let bytes = std::fs::read(path).map_err(|e| IngestError::io(path, "reading", e))?;
        if bytes.is_empty() || bytes.len() % record_size != 0 {
            return Err(IngestError::source(
                path,
                format!(
                    "{} bytes is not a whole number of {record_size}-byte records",
                    bytes.len()
                ),
            ));
        }
        let count = bytes.len() / record_size;
        let mut labels = Vec::with_capacity(count);
        let mut pixels = Vec::with_capacity(count * image_size);
        for (index, record) in bytes.chunks_exact(record_size).enumerate() {
            let label = record[label_bytes - 1] as usize;
            if label >= class_names.len() {
                return Err(IngestError::source(
                    path,
                    format!(
                        "record {index} has label {label}, but {names_file} names only {} classes",
                        class_names.len()
                    ),
                ));
            }
            labels.push(label as i32);
            pixels.extend_from_slice(&record[label_bytes..]);
        }
        files.push(ArrayFile {
            name,
            split,
            height,
            width,
            channels,
            order: PixelOrder::Chw,
            pixels,
            labels,
        });
    }
    if files.is_empty() {
        return Err(IngestError::source(dir, "holds no CIFAR .bin batches"));
    }
    Ok(ArraySource { files, class_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_header_disagreeing_with_length_names_both_sizes() {
        let mut bytes = vec![0, 0, 8, 3];
        for d in [2u32, 2, 2] {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend([1, 2, 3, 4, 5, 6, 7]); // one byte short of 2*2*2
        let err = idx_dims(Path::new("x-images-idx3-ubyte"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("x-images-idx3-ubyte"), "{err}");
        assert!(err.contains("needs 24 bytes"), "{err}");
        assert!(err.contains("has 23 bytes"), "{err}");
    }

    #[test]
    fn chw_records_come_out_hwc() {
        let file = ArrayFile {
            name: "b".into(),
            split: split::TRAIN,
            height: 1,
            width: 2,
            channels: 3,
            order: PixelOrder::Chw,
            // R plane [1, 2], G plane [3, 4], B plane [5, 6].
            pixels: vec![1, 2, 3, 4, 5, 6],
            labels: vec![0],
        };
        assert_eq!(file.record_hwc(0), vec![1, 3, 5, 2, 4, 6]);
    }
}
