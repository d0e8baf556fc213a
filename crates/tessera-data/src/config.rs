//! Which data a command reads, as a config section (`[data]` in a run's TOML).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::fetch::mnist_dir;
use crate::folder::{FakeData, ImageFolder, Resize};
use crate::loader::LoaderConfig;
use crate::mnist::Mnist;
use crate::mnist64::{Mnist64, Mnist64Config, Split, TranslatedSet};

/// Where images come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// MNIST64x64 generated from the MNIST in the data cache.
    Mnist64,
    /// An image folder (`path`), recursive, no captions.
    Folder,
    /// An image folder with same-stem `.txt` captions beside the images or in `text_dir`.
    CaptionFolder,
    /// Random images (`fake_len` of them), for smoke tests.
    Fake,
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
    pub mnist64: Mnist64Config,
    pub loader: LoaderConfig,
}

impl DataConfig {
    /// Values without meaning, named by their key.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.loader.batch_size == 0 {
            return Err("[data.loader] batch_size = 0: it must be at least 1".into());
        }
        if self.image_size == 0 {
            return Err("[data] image_size = 0: it must be at least 1".into());
        }
        Ok(())
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
            SourceKind::Folder => Arc::new(ImageFolder::open(&folder_path()?, resize)?),
            SourceKind::CaptionFolder => {
                Arc::new(ImageFolder::open_captioned(&folder_path()?, self.text_dir.as_deref(), resize)?)
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
