//! The one interface every image source implements, so the loader, export and `data show` work
//! on MNIST64x64, users' folders and fake data alike.

use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// One example: an RGB image and its captions (possibly none; several are paraphrases).
#[derive(Clone, Debug)]
pub struct Sample {
    pub image: image::RgbImage,
    pub captions: Vec<String>,
}

/// A finite, indexable source of samples, safe to read from many worker threads.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `index`. `rng` is seeded from (loader seed, epoch, index), so random augmentation is
    /// reproducible whatever thread runs it.
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample>;
    /// One line for logs and reports.
    fn describe(&self) -> String;
    /// Files that could not be read and were skipped so far (folders only).
    fn skipped(&self) -> Vec<(std::path::PathBuf, String)> {
        Vec::new()
    }
}

/// The first `len` samples of another dataset (e.g. the training images a generator's codes were
/// computed for).
#[derive(Clone)]
pub struct Subset {
    pub inner: std::sync::Arc<dyn Dataset>,
    pub len: usize,
}

impl Subset {
    /// `len` 0 or beyond the end means the whole dataset.
    pub fn new(inner: std::sync::Arc<dyn Dataset>, len: usize) -> Self {
        let n = inner.len();
        Self { inner, len: if len == 0 { n } else { len.min(n) } }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize, rng: &mut ChaCha8Rng) -> Result<Sample> {
        self.inner.get(index, rng)
    }
    fn describe(&self) -> String {
        format!("first {} of {}", self.len, self.inner.describe())
    }
    fn skipped(&self) -> Vec<(std::path::PathBuf, String)> {
        self.inner.skipped()
    }
}
