//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions `n`, then
//! `n` big-endian u32 sizes, then the data in row-major order. Images have magic 2051 (three
//! dimensions), labels 2049 (one dimension).

use std::io::Read;
use std::path::Path;

use crate::error::{DataError, Result};

pub const IMAGES_MAGIC: u32 = 2051;
pub const LABELS_MAGIC: u32 = 2049;

/// An unsigned-byte IDX array.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub magic: u32,
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// The most bytes a gzipped IDX file may decompress to (MNIST's largest file holds 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 30;

/// Read an IDX file, decompressing it first if it starts with the gzip magic bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..]).take(MAX_IDX_BYTES + 1).read_to_end(&mut out).map_err(
            |e| DataError::Idx { path: path.into(), reason: format!("gzip stream is corrupt: {e}") },
        )?;
        if out.len() as u64 > MAX_IDX_BYTES {
            return Err(DataError::Idx {
                path: path.into(),
                reason: format!("it decompresses to more than {} MiB (a gzip bomb?)", MAX_IDX_BYTES >> 20),
            });
        }
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|reason| DataError::Idx { path: path.into(), reason })
}

/// Parse IDX bytes; the error is a reason without the file name.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!("only {} bytes, too short for a header", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!("wrong magic: first bytes {:02x} {:02x}, expected 00 00", bytes[0], bytes[1]));
    }
    if bytes[2] != 0x08 {
        return Err(format!("data type 0x{:02x} is not unsigned byte (0x08)", bytes[2]));
    }
    let ndim = bytes[3] as usize;
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let header = 4 + 4 * ndim;
    if ndim == 0 || bytes.len() < header {
        return Err(format!("header declares {ndim} dimensions but the file has {} bytes", bytes.len()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} multiply past the address space"))?;
    let body = &bytes[header..];
    if body.len() < expected {
        return Err(format!(
            "truncated: dimensions {dims:?} need {expected} data bytes, found {}",
            body.len()
        ));
    }
    if body.len() > expected {
        return Err(format!(
            "{} trailing bytes after the {expected} data bytes of {dims:?}",
            body.len() - expected
        ));
    }
    Ok(IdxArray { magic, dims, data: body.to_vec() })
}

/// A stack of grayscale images, `count × rows × cols` bytes.
#[derive(Clone, Debug)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The `i`-th image, row-major.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// Read an image file (magic 2051, three dimensions).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    let a = read_idx(path)?;
    if a.magic != IMAGES_MAGIC || a.dims.len() != 3 {
        return Err(DataError::Idx {
            path: path.into(),
            reason: format!(
                "expected an image file (magic {IMAGES_MAGIC}, 3 dims), found magic {} with dims {:?}",
                a.magic, a.dims
            ),
        });
    }
    Ok(IdxImages { count: a.dims[0], rows: a.dims[1], cols: a.dims[2], pixels: a.data })
}

/// Read a label file (magic 2049, one dimension).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let a = read_idx(path)?;
    if a.magic != LABELS_MAGIC || a.dims.len() != 1 {
        return Err(DataError::Idx {
            path: path.into(),
            reason: format!(
                "expected a label file (magic {LABELS_MAGIC}, 1 dim), found magic {} with dims {:?}",
                a.magic, a.dims
            ),
        });
    }
    Ok(a.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_raw_and_gzip_identically() {
        let bytes = idx_bytes(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("x-idx3-ubyte");
        std::fs::write(&raw, &bytes).unwrap();
        let gz = dir.path().join("x-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let a = read_images(&raw).unwrap();
        let b = read_images(&gz).unwrap();
        assert_eq!((a.count, a.rows, a.cols), (2, 2, 3));
        assert_eq!(a.image(1), &[7, 8, 9, 10, 11, 12]);
        assert_eq!(a.pixels, b.pixels);
    }

    /// Four dimensions of 2^16 multiply to 2^64, which wraps to 0 in `usize`: an empty body would
    /// then pass as "complete" and hold 65,536 images of no bytes.
    #[test]
    fn dimensions_whose_product_overflows_are_refused() {
        let e = parse_idx(&idx_bytes(&[1 << 16; 4], &[])).unwrap_err();
        assert!(e.contains("multiply past"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad-labels");
        std::fs::write(&p, idx_bytes(&[5], &[1, 2, 3])).unwrap();
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("bad-labels") && e.contains("truncated"), "{e}");

        std::fs::write(&p, [1, 0, 8, 1, 0, 0, 0, 0]).unwrap();
        assert!(read_labels(&p).unwrap_err().to_string().contains("wrong magic"));

        std::fs::write(&p, idx_bytes(&[1, 1, 1], &[0])).unwrap();
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("expected a label file"), "{e}");

        std::fs::write(&p, idx_bytes(&[2], &[1, 2, 3])).unwrap();
        assert!(read_labels(&p).unwrap_err().to_string().contains("trailing"));

        std::fs::write(&p, [0x1f, 0x8b, 0, 0]).unwrap();
        assert!(read_labels(&p).unwrap_err().to_string().contains("gzip"));
    }
}
