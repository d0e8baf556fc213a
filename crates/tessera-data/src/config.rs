//! Which data a command reads, as a config section (`[data]` in a run's TOML).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_core::validate::{Check, Validate, MAX_IMAGES};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::fashion::FashionMnist;
use crate::fetch::mnist_dir;
use crate::folder::{FakeData, ImageFolder, Resize};
use crate::loader::LoaderConfig;
use crate::mnist::Mnist;
use crate::mnist64::{Mnist64, Mnist64Config, Split, TranslatedSet};

pub use crate::image_file::DEFAULT_MAX_IMAGE_PIXELS;
/// The largest square side a folder or fake source resizes to.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// Where images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// MNIST64x64 generated from the MNIST in the data cache.
    Mnist64,
    /// Fashion-MNIST from the data cache at `image_size` (≥ 28), captioned with its class name.
    FashionMnist,
    /// An image folder (`path`), recursive, no captions.
    Folder,
    /// torchvision's `ImageFolder` layout, as L-Verse's `--train_dir` / `--val_dir`: images in
    /// class sub-folders of `path` (labels unused). A folder without sub-folders is refused.
    ImageFolder,
    /// An image folder with same-stem `.txt` captions beside the images or in `text_dir`.
    CaptionFolder,
    /// Random images (`fake_len` of them), for smoke tests.
    Fake,
    /// Tux Paint's captioned stamps (`tessera data fetch --tuxpaint`) at `image_size`, composited
    /// onto `background`.
    Tuxpaint,
}

impl SourceKind {
    /// Whether the captions are free text (a sentence per image), not a small fixed vocabulary:
    /// their caption tokenizer marks word pieces ([`crate::TextTokenizer::train_marked`]).
    pub fn has_free_text(self) -> bool {
        matches!(self, Self::CaptionFolder | Self::Tuxpaint)
    }
}

/// The `[data]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub source: SourceKind,
    /// Training folder (folder sources).
    pub path: Option<PathBuf>,
    /// Validation folder (folder sources); defaults to `path`.
    pub val_path: Option<PathBuf>,
    /// Caption folder for `caption-folder` when captions are not beside the images.
    pub text_dir: Option<PathBuf>,
    /// Square image side for folder and fake sources (MNIST64x64 is always 64).
    pub image_size: u32,
    pub fake_len: usize,
    /// RGB that transparent pixels are composited onto (Tux Paint stamps; white).
    pub background: [u8; 3],
    /// Image files with more pixels than this (width × height, read from the header before
    /// decoding) are refused, and so is a resize whose intermediate image would exceed it.
    /// The default is Pillow's `MAX_IMAGE_PIXELS` (89,478,485).
    pub max_image_pixels: u64,
    pub mnist64: Mnist64Config,
    pub loader: LoaderConfig,
}

impl Validate for DataConfig {
    fn check(&self, c: &mut Check) {
        c.int("image_size", self.image_size, 1, MAX_IMAGE_SIDE, "square side for folder and fake data");
        c.int("fake_len", self.fake_len, 1, MAX_IMAGES, "");
        c.int("max_image_pixels", self.max_image_pixels, 1, u64::MAX, "a file's width × height");
        c.section("mnist64", &self.mnist64);
        c.section("loader", &self.loader);
        let batch = self.loader.batch_size;
        if self.source == SourceKind::FashionMnist {
            c.rule(
                self.image_size >= 28,
                "image_size",
                format_args!(
                    "= {}: Fashion-MNIST images are 28×28, so it must be at least 28",
                    self.image_size
                ),
            );
        }
        if self.source == SourceKind::Fake && self.loader.drop_last {
            c.rule(
                self.fake_len >= batch,
                "fake_len",
                format_args!(
                    "= {}: below [data.loader] batch_size = {batch}, so drop_last leaves no batch",
                    self.fake_len
                ),
            );
        }
        if self.source == SourceKind::Mnist64 && self.loader.drop_last {
            c.rule(
                self.mnist64.train_size >= batch,
                "mnist64.train_size",
                format_args!(
                    "= {}: below [data.loader] batch_size = {batch}, so drop_last leaves no batch",
                    self.mnist64.train_size
                ),
            );
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: SourceKind::Mnist64,
            path: None,
            val_path: None,
            text_dir: None,
            image_size: 64,
            fake_len: 1024,
            background: [255, 255, 255],
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            mnist64: Mnist64Config::default(),
            loader: LoaderConfig::default(),
        }
    }
}

impl DataConfig {
    /// The MNIST64x64 generator over the MNIST in `root` (the data cache).
    pub fn mnist64(&self, root: &Path) -> Result<Arc<Mnist64>> {
        let mnist = Mnist::load(&mnist_dir(root))?;
        Ok(Arc::new(Mnist64::new(Arc::new(mnist), self.mnist64.clone())?))
    }

    /// The dataset for `split`. Folder sources use `path` for train and `val_path` (or `path`)
    /// otherwise, with training augmentation only on train.
    pub fn open(&self, split: Split, root: &Path) -> Result<Arc<dyn Dataset>> {
        let need_path = |p: &Option<PathBuf>| {
            p.clone()
                .ok_or_else(|| DataError::Invalid(format!("data.source = {:?} needs data.path", self.source)))
        };
        let folder_path = || -> Result<PathBuf> {
            match split {
                Split::Train => need_path(&self.path),
                _ => self.val_path.clone().map_or_else(|| need_path(&self.path), Ok),
            }
        };
        let resize = match split {
            Split::Train => Resize::Train { size: self.image_size },
            _ => Resize::Eval { size: self.image_size },
        };
        Ok(match self.source {
            SourceKind::Mnist64 => Arc::new(self.mnist64(root)?.split(split)),
            SourceKind::FashionMnist => {
                Arc::new(FashionMnist::split(&FashionMnist::load(root)?, split, self.image_size)?)
            }
            SourceKind::Folder => {
                Arc::new(ImageFolder::open(&folder_path()?, resize)?.with_max_pixels(self.max_image_pixels))
            }
            SourceKind::ImageFolder => Arc::new(
                ImageFolder::open_class_folders(&folder_path()?, resize)?
                    .with_max_pixels(self.max_image_pixels),
            ),
            SourceKind::CaptionFolder => Arc::new(
                ImageFolder::open_captioned(&folder_path()?, self.text_dir.as_deref(), resize)?
                    .with_max_pixels(self.max_image_pixels),
            ),
            SourceKind::Tuxpaint => {
                Arc::new(crate::tuxpaint::TuxPaint::open(root, split, self.image_size, self.background)?)
            }
            SourceKind::Fake => {
                Arc::new(FakeData { len: self.fake_len, size: self.image_size, seed: self.loader.seed })
            }
        })
    }

    /// The translated set (MNIST64x64 only).
    pub fn translated(&self, root: &Path) -> Result<Arc<dyn Dataset>> {
        Ok(Arc::new(TranslatedSet { generator: self.mnist64(root)? }))
    }
}
