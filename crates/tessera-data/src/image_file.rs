//! Image files from users, read with bounded work: the header's width × height is checked
//! against a pixel limit before anything is decoded, and the decoder is told the same limit, so a
//! small file that claims (or decompresses to) a huge image costs nothing. A resize whose
//! intermediate image would exceed the limit (a 1×60000 strip resized to a 64-px short side is
//! 64 × 3.84 M pixels) is refused the same way.

use std::path::Path;

use crate::error::{DataError, Result};

/// Pillow's `Image.MAX_IMAGE_PIXELS` (`1024 · 1024 · 1024 / 4 / 3`), the default limit.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

fn open(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))
}

/// Width and height from the file's header, without decoding it.
pub fn dimensions(path: &Path) -> Result<(u32, u32)> {
    open(path)?.into_dimensions().map_err(|e| DataError::Image { path: path.into(), reason: e.to_string() })
}

/// Decode `path` after checking its header against `max_pixels` (width × height).
pub fn decode_checked(path: &Path, max_pixels: u64) -> Result<image::DynamicImage> {
    let bad = |reason: String| DataError::Image { path: path.into(), reason };
    let (w, h) = dimensions(path)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(bad(format!(
            "{w}×{h} = {pixels} pixels is more than data.max_image_pixels = {max_pixels}; shrink the file or raise the limit"
        )));
    }
    let mut reader = open(path)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // RGBA at 16 bits per channel, plus the decoder's own buffers.
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    reader.limits(limits);
    reader.decode().map_err(|e| bad(e.to_string()))
}

/// Pixels of the intermediate image when a `w`×`h` image's short side is resized to `size`
/// (Resize + CenterCrop).
pub fn resize_pixels(w: u32, h: u32, size: u32) -> u64 {
    let (short, long) = (u64::from(w.min(h)).max(1), u64::from(w.max(h)));
    let size = u64::from(size);
    size.saturating_mul(long.saturating_mul(size).div_ceil(short))
}

/// Refuse resizing a `w`×`h` image from `path` to a `size` short side when the intermediate image
/// would exceed `max_pixels`.
pub fn check_resize(path: &Path, w: u32, h: u32, size: u32, max_pixels: u64) -> Result<()> {
    let work = resize_pixels(w, h, size);
    if work > max_pixels {
        return Err(DataError::Image {
            path: path.into(),
            reason: format!(
                "{w}×{h} is too elongated: resizing its short side to {size} makes a {work}-pixel image, more than data.max_image_pixels = {max_pixels}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(dir: &Path, name: &str, w: u32, h: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        image::RgbImage::new(w, h).save(&p).unwrap();
        p
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_decoding() {
        let d = tempfile::tempdir().unwrap();
        let p = png(d.path(), "big.png", 100, 50);
        assert_eq!(decode_checked(&p, 5000).unwrap().width(), 100);
        let e = decode_checked(&p, 4999).unwrap_err().to_string();
        assert!(
            e.contains("big.png") && e.contains("100×50 = 5000 pixels") && e.contains("max_image_pixels"),
            "{e}"
        );
    }

    #[test]
    fn a_header_that_lies_is_an_error_not_an_allocation() {
        let d = tempfile::tempdir().unwrap();
        let p = png(d.path(), "lie.png", 4, 4);
        let mut bytes = std::fs::read(&p).unwrap();
        // IHDR width/height at bytes 16..24: claim 60000 × 60000 (3.6 G pixels) in a tiny file.
        bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
        // A valid chunk CRC over type + data, so the header itself is believed.
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(dimensions(&p).unwrap(), (60000, 60000));
        let e = decode_checked(&p, 89_478_485).unwrap_err().to_string();
        assert!(e.contains("lie.png") && e.contains("3600000000 pixels"), "{e}");
    }

    #[test]
    fn an_elongated_strip_is_refused_before_resizing() {
        assert_eq!(resize_pixels(64, 64, 64), 64 * 64);
        assert_eq!(resize_pixels(1, 60000, 64), 64 * 3_840_000);
        assert_eq!(resize_pixels(0, 10, 64), 64 * 640, "a zero side counts as 1");
        let p = Path::new("strip.png");
        assert!(check_resize(p, 100, 200, 64, 89_478_485).is_ok());
        let e = check_resize(p, 1, 60000, 64, 89_478_485).unwrap_err().to_string();
        assert!(e.contains("strip.png") && e.contains("too elongated"), "{e}");
    }
}
