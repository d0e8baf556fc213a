//! Users' own data: a folder of images (recursive), optionally with same-stem `.txt` captions.
//!
//! Unreadable files never crash a run: they are skipped (the next file is used in their place),
//! counted and reported through [`Dataset::skipped`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};
use crate::image_file::{check_resize, decode_checked, DEFAULT_MAX_IMAGE_PIXELS};
use crate::transform::{random_resized_crop, resize_center_crop};

pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// All image files below `root`, sorted (so the order, and thus every seed, is stable).
pub fn list_images(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(DataError::io(
            root,
            std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let path = entry.map_err(|e| DataError::io(&dir, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_image(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Refuse a folder without sub-folders where torchvision's `ImageFolder` layout is expected
/// (`root/<class>/<image>`; it raises on a flat folder).
fn require_class_folders(root: &Path) -> Result<()> {
    let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, e))?;
    let has_sub = entries.filter_map(|e| e.ok()).any(|e| e.path().is_dir());
    if has_sub {
        Ok(())
    } else {
        Err(DataError::Invalid(format!(
            "{} has no sub-folders: data.source = \"image-folder\" reads torchvision's ImageFolder layout \
             (as L-Verse's --train_dir), images in class folders like {}/<class>/x.png; move them into one, \
             or use data.source = \"folder\" for a flat folder",
            root.display(),
            root.display()
        )))
    }
}

/// How images are brought to a square `size`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resize {
    /// RandomResizedCrop, scale (0.75, 1), square (L-Verse training).
    Train { size: u32 },
    /// Resize + CenterCrop (L-Verse validation).
    Eval { size: u32 },
}

impl Resize {
    fn apply(self, img: &image::RgbImage, rng: &mut ChaCha8Rng) -> image::RgbImage {
        match self {
            Resize::Train { size } => random_resized_crop(img, size, (0.75, 1.0), rng),
            Resize::Eval { size } => resize_center_crop(img, size),
        }
    }
}

/// Decode an image file to RGB (gray is replicated, alpha dropped, as PIL's `convert('RGB')`),
/// refusing files over `max_pixels` before decoding ([`decode_checked`]).
pub fn load_rgb(path: &Path, max_pixels: u64) -> Result<image::RgbImage> {
    Ok(decode_checked(path, max_pixels)?.to_rgb8())
}

#[derive(Debug, Default)]
struct SkipLog(Mutex<BTreeMap<PathBuf, String>>);

impl SkipLog {
    fn record(&self, path: &Path, reason: String) {
        let mut log = self.0.lock().unwrap();
        if !log.contains_key(path) {
            tracing::warn!("skipping {}: {reason}", path.display());
            log.insert(path.to_path_buf(), reason);
        }
    }
    fn list(&self) -> Vec<(PathBuf, String)> {
        self.0.lock().unwrap().iter().map(|(p, r)| (p.clone(), r.clone())).collect()
    }
}

/// One entry: an image and the captions that go with it.
#[derive(Clone, Debug)]
struct Entry {
    image: PathBuf,
    captions: Vec<String>,
}

/// An image folder, with or without captions.
#[derive(Debug)]
pub struct ImageFolder {
    root: PathBuf,
    entries: Vec<Entry>,
    resize: Resize,
    skipped: SkipLog,
    max_pixels: u64,
}

impl ImageFolder {
    /// Every image below `root`, uncaptioned.
    pub fn open(root: &Path, resize: Resize) -> Result<Self> {
        let entries: Vec<Entry> =
            list_images(root)?.into_iter().map(|image| Entry { image, captions: vec![] }).collect();
        Self::from_entries(root, entries, resize, SkipLog::default(), String::new())
    }

    /// torchvision's `ImageFolder` layout: the images in the sub-folders of `root` (recursively),
    /// not those beside them; a folder without sub-folders is refused.
    pub fn open_class_folders(root: &Path, resize: Resize) -> Result<Self> {
        require_class_folders(root)?;
        let entries: Vec<Entry> = list_images(root)?
            .into_iter()
            .filter(|p| p.parent() != Some(root))
            .map(|image| Entry { image, captions: vec![] })
            .collect();
        Self::from_entries(root, entries, resize, SkipLog::default(), String::new())
    }

    /// Images with captions: each image's `<stem>.txt` is looked up beside it, or in `text_dir`
    /// (Bi-DALL-E's layout: `*_img/` and `*_text/` folders matched by stem). Each non-empty line is
    /// one caption. Images without a readable, non-empty caption file are skipped and reported.
    pub fn open_captioned(root: &Path, text_dir: Option<&Path>, resize: Resize) -> Result<Self> {
        let skipped = SkipLog::default();
        let mut entries = Vec::new();
        for image in list_images(root)? {
            let stem = image.file_stem().unwrap_or_default().to_owned();
            let txt = match text_dir {
                Some(d) => d.join(&stem).with_extension("txt"),
                None => image.with_extension("txt"),
            };
            match std::fs::read(&txt) {
                Err(e) => skipped.record(&image, format!("no caption file {}: {e}", txt.display())),
                Ok(bytes) => match String::from_utf8(bytes) {
                    Err(_) => skipped.record(&image, format!("caption file {} is not UTF-8", txt.display())),
                    Ok(text) => {
                        let captions: Vec<String> =
                            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
                        if captions.is_empty() {
                            skipped.record(&image, format!("caption file {} is empty", txt.display()));
                        } else {
                            entries.push(Entry { image, captions });
                        }
                    }
                },
            }
        }
        let detail = if skipped.list().is_empty() {
            String::new()
        } else {
            format!("; {} image(s) had no usable caption", skipped.list().len())
        };
        Self::from_entries(root, entries, resize, skipped, detail)
    }

    fn from_entries(
        root: &Path,
        entries: Vec<Entry>,
        resize: Resize,
        skipped: SkipLog,
        detail: String,
    ) -> Result<Self> {
        if entries.is_empty() {
            return Err(DataError::EmptyFolder { path: root.into(), detail });
        }
        Ok(Self { root: root.into(), entries, resize, skipped, max_pixels: DEFAULT_MAX_IMAGE_PIXELS })
    }
}

impl ImageFolder {
    /// Refuse image files with more than `max_pixels` pixels, and resizes that would make one
    /// (`data.max_image_pixels`).
    pub fn with_max_pixels(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    fn load(&self, path: &Path) -> Result<image::RgbImage> {
        let img = load_rgb(path, self.max_pixels)?;
        if let Resize::Eval { size } = self.resize {
            check_resize(path, img.width(), img.height(), size, self.max_pixels)?;
        }
        Ok(img)
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// A file that fails to decode is recorded and the next one is used instead.
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        let n = self.entries.len();
        for k in 0..n {
            let e = &self.entries[(index + k) % n];
            match self.load(&e.image) {
                Ok(img) => {
                    return Ok(Sample { image: self.resize.apply(&img, rng), captions: e.captions.clone() })
                }
                Err(err) => self.skipped.record(&e.image, err.to_string()),
            }
        }
        Err(DataError::EmptyFolder {
            path: self.root.clone(),
            detail: format!("; all {n} image(s) failed to decode"),
        })
    }

    fn describe(&self) -> String {
        let captioned = self.entries.iter().any(|e| !e.captions.is_empty());
        format!(
            "{} ({} images{})",
            self.root.display(),
            self.entries.len(),
            if captioned { ", captioned" } else { "" }
        )
    }

    fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.skipped.list()
    }
}

/// Random images for smoke tests, like L-Verse's `--fake_data` (torchvision `FakeData`).
#[derive(Clone, Debug)]
pub struct FakeData {
    pub len: usize,
    pub size: u32,
    pub seed: u64,
}

impl Dataset for FakeData {
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize, _rng: &mut ChaCha8Rng) -> Result<Sample> {
        use rand::RngCore;
        let mut rng = crate::mnist64::stream(self.seed, 200, index as u64);
        let mut buf = vec![0u8; (self.size * self.size * 3) as usize];
        rng.fill_bytes(&mut buf);
        let image =
            image::RgbImage::from_raw(self.size, self.size, buf).expect("buffer has the right length");
        Ok(Sample { image, captions: vec![format!("fake image {index}")] })
    }
    fn describe(&self) -> String {
        format!("fake data ({} random {}×{} images)", self.len, self.size, self.size)
    }
}
