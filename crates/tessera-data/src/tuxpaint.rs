//! Tux Paint's stamps as a small real image–caption set (`shared/reference/data.md`): Debian
//! `tuxpaint-stamps-default` 2022.06.04-1, 796 RGBA PNG photos and drawings under
//! `usr/share/tuxpaint/stamps/<category>/…`, 785 with a same-stem `.txt` whose first line is an
//! English caption ("A blackbird."; further lines are translations, ignored).
//!
//! - [`fetch_tuxpaint`]: `apt-get download`, sha256 of the .deb, only the `.png` and `.txt` files
//!   unpacked (the package is mostly audio) into `<cache>/tuxpaint/`.
//! - [`TuxPaint`]: the captioned stamps, each composited onto a background colour, padded to a
//!   square with it (a crop would cut the cut-out object) and resized; a deterministic split by a
//!   hash of each file's path (one in ten to validation), stable whatever the file order.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{imageops, Rgb, RgbImage};
use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};
use crate::fetch::{apt_download, run, verify_sha256, FetchOutcome};
use crate::mnist64::Split;

pub const TUXPAINT_PACKAGE: &str = "tuxpaint-stamps-default";
pub const TUXPAINT_DEB_SHA256: &str = "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34";
/// Stamps with a caption in the pinned package.
pub const TUXPAINT_CAPTIONED: usize = 785;
const STAMPS: &str = "usr/share/tuxpaint/stamps";

/// Directory of the unpacked stamps inside the data cache.
pub fn tuxpaint_dir(root: &Path) -> PathBuf {
    root.join("tuxpaint")
}

/// Fetch the stamps into `<root>/tuxpaint/` (PNG and caption files only), verifying the .deb.
pub fn fetch_tuxpaint(root: &Path) -> Result<FetchOutcome> {
    let dir = tuxpaint_dir(root);
    let done = dir.join(".complete");
    if done.is_file() {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;
    let tmp = tempfile::tempdir_in(root).map_err(|e| DataError::io(root, e))?;
    let deb = apt_download(TUXPAINT_PACKAGE, tmp.path())?;
    verify_sha256(&deb, TUXPAINT_DEB_SHA256)?;
    let staging = tmp.path().join("x");
    std::fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards '*.png' '*.txt'";
    run(Command::new("sh").args(["-c", script, "sh"]).arg(&deb).arg(&staging), "dpkg-deb | tar (stamps)")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).map_err(|e| DataError::io(&dir, e))?;
    let n = captioned_stamps(&dir)?.len();
    if n != TUXPAINT_CAPTIONED {
        return Err(DataError::Fetch(format!(
            "{TUXPAINT_PACKAGE}: {n} captioned stamps, expected {TUXPAINT_CAPTIONED}"
        )));
    }
    std::fs::write(&done, format!("{TUXPAINT_DEB_SHA256}\n")).map_err(|e| DataError::io(&done, e))?;
    Ok(FetchOutcome::Fetched)
}

/// Every stamp with a caption, sorted by path: (PNG, first line of its `.txt`).
fn captioned_stamps(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let stamps = dir.join(STAMPS);
    let mut out = Vec::new();
    for png in crate::folder::list_images(&stamps)? {
        let Ok(text) = std::fs::read_to_string(png.with_extension("txt")) else { continue };
        if let Some(caption) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            out.push((png, caption.to_string()));
        }
    }
    Ok(out)
}

/// FNV-1a of a path's bytes below the stamps folder: the split does not depend on where the
/// cache is or on the listing order.
fn path_hash(rel: &Path) -> u64 {
    rel.to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The captioned stamps of one split.
#[derive(Debug)]
pub struct TuxPaint {
    entries: Vec<(PathBuf, String)>,
    split: Split,
    size: u32,
    background: [u8; 3],
}

impl TuxPaint {
    /// `split` is `Train` (nine in ten) or `Validation` (one in ten); images are `size`×`size`.
    pub fn open(root: &Path, split: Split, size: u32, background: [u8; 3]) -> Result<Self> {
        let dir = tuxpaint_dir(root);
        if !dir.join(".complete").is_file() {
            return Err(DataError::Invalid(format!(
                "no Tux Paint stamps in {}: run `tessera data fetch --tuxpaint`",
                dir.display()
            )));
        }
        let want_val = match split {
            Split::Train => false,
            Split::Validation => true,
            other => {
                return Err(DataError::Invalid(format!(
                    "Tux Paint has train and validation splits, not {}",
                    other.name()
                )))
            }
        };
        let stamps = dir.join(STAMPS);
        let entries = captioned_stamps(&dir)?
            .into_iter()
            .filter(|(p, _)| path_hash(p.strip_prefix(&stamps).unwrap_or(p)).is_multiple_of(10) == want_val)
            .collect();
        Ok(TuxPaint { entries, split, size, background })
    }

    /// The stamp at `path` over the background, padded to a square, resized.
    fn render(&self, path: &Path) -> Result<RgbImage> {
        let rgba =
            crate::image_file::decode_checked(path, crate::image_file::DEFAULT_MAX_IMAGE_PIXELS)?.to_rgba8();
        let (w, h) = rgba.dimensions();
        let side = w.max(h);
        let [br, bg, bb] = self.background.map(f32::from);
        let mut canvas = RgbImage::from_pixel(side, side, Rgb(self.background));
        let (x0, y0) = ((side - w) / 2, (side - h) / 2);
        for (x, y, p) in rgba.enumerate_pixels() {
            let a = f32::from(p[3]) / 255.0;
            let mix = |c: u8, b: f32| (f32::from(c) * a + b * (1.0 - a)).round() as u8;
            canvas.put_pixel(x0 + x, y0 + y, Rgb([mix(p[0], br), mix(p[1], bg), mix(p[2], bb)]));
        }
        Ok(imageops::resize(&canvas, self.size, self.size, imageops::FilterType::Triangle))
    }
}

impl Dataset for TuxPaint {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn get(&self, index: usize, _rng: &mut ChaCha8Rng) -> Result<Sample> {
        let (path, caption) = self.entries.get(index).ok_or_else(|| {
            DataError::Invalid(format!("Tux Paint index {index} out of range (len {})", self.len()))
        })?;
        Ok(Sample { image: self.render(path)?, captions: vec![caption.clone()] })
    }
    fn describe(&self) -> String {
        format!(
            "Tux Paint stamps {} ({} captioned images at {}×{})",
            self.split.name(),
            self.len(),
            self.size,
            self.size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cache with three stamps: a half-transparent red square with a caption, one without a
    /// caption file, one whose caption file has translations after the English line.
    fn fake_cache() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let stamps = tuxpaint_dir(d.path()).join(STAMPS).join("animals");
        std::fs::create_dir_all(&stamps).unwrap();
        let img =
            image::RgbaImage::from_fn(4, 2, |x, _| image::Rgba([255, 0, 0, if x < 2 { 255 } else { 128 }]));
        for name in ["a", "b", "c"] {
            img.save(stamps.join(format!("{name}.png"))).unwrap();
        }
        std::fs::write(stamps.join("a.txt"), "A red thing.\nfr.utf8=Une chose rouge.\n").unwrap();
        std::fs::write(stamps.join("c.txt"), "\nA second thing.\n").unwrap();
        std::fs::write(tuxpaint_dir(d.path()).join(".complete"), "x").unwrap();
        d
    }

    #[test]
    fn captions_are_first_lines_and_uncaptioned_stamps_are_left_out() {
        let d = fake_cache();
        let all = captioned_stamps(&tuxpaint_dir(d.path())).unwrap();
        let caps: Vec<&str> = all.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(caps, ["A red thing.", "A second thing."]);
        let train = TuxPaint::open(d.path(), Split::Train, 8, [255, 255, 255]).unwrap();
        let val = TuxPaint::open(d.path(), Split::Validation, 8, [255, 255, 255]).unwrap();
        assert_eq!(train.len() + val.len(), 2, "each captioned stamp in exactly one split");
        let e = TuxPaint::open(d.path(), Split::Test, 8, [0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("train and validation"), "{e}");
        let e =
            TuxPaint::open(Path::new("/nonexistent"), Split::Train, 8, [0, 0, 0]).unwrap_err().to_string();
        assert!(e.contains("tessera data fetch --tuxpaint"), "{e}");
    }

    #[test]
    fn stamps_are_composited_padded_and_resized() {
        let d = fake_cache();
        let ds = TuxPaint {
            entries: captioned_stamps(&tuxpaint_dir(d.path())).unwrap(),
            split: Split::Train,
            size: 4,
            background: [0, 0, 255],
        };
        let path = ds.entries[0].0.clone();
        let ds4 = TuxPaint { size: 4, ..ds };
        let img = ds4.render(&path).unwrap();
        assert_eq!(img.dimensions(), (4, 4));
        // 4×2 stamp padded to 4×4: rows 0 and 3 are background; opaque red on the left, half
        // red / half blue on the right.
        assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 255]));
        assert_eq!(img.get_pixel(0, 1), &Rgb([255, 0, 0]));
        assert_eq!(img.get_pixel(3, 1), &Rgb([128, 0, 127]));
        assert_eq!(img.get_pixel(3, 3), &Rgb([0, 0, 255]));
    }

    #[test]
    fn the_split_is_a_function_of_the_path() {
        let a = path_hash(Path::new("animals/birds/blackbird.png"));
        assert_eq!(a, path_hash(Path::new("animals/birds/blackbird.png")));
        assert_ne!(a, path_hash(Path::new("animals/birds/robin.png")));
    }
}
