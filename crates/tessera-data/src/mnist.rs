//! MNIST (or Fashion-MNIST) loaded from the data cache into memory.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::idx::{read_images, read_labels, IdxImages};

/// One MNIST split: 28×28 grayscale images and their labels.
#[derive(Clone, Debug)]
pub struct MnistSplit {
    pub images: IdxImages,
    pub labels: Vec<u8>,
}

impl MnistSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        self.images.image(i)
    }
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }
    /// Mean pixel value in [0, 1] (0.1307 for MNIST train).
    pub fn pixel_mean(&self) -> f64 {
        self.images.pixels.iter().map(|&p| p as f64).sum::<f64>() / (self.images.pixels.len() as f64 * 255.0)
    }
    /// How many examples each of the ten classes has.
    pub fn label_counts(&self) -> [usize; 10] {
        let mut c = [0; 10];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }
}

/// The train and test splits.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: MnistSplit,
    pub test: MnistSplit,
}

impl Mnist {
    /// Load from a directory holding the four IDX files (raw or `.gz`).
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_named(dir, "MNIST", "tessera data fetch")
    }

    /// As [`Mnist::load`], naming the data set (`what`) and the command that fetches it in the
    /// error when a file is missing (Fashion-MNIST uses the same file names).
    pub fn load_named(dir: &Path, what: &str, fetch: &str) -> Result<Self> {
        let split = |prefix: &str| -> Result<MnistSplit> {
            let find = |stem: String| -> Result<std::path::PathBuf> {
                [dir.join(&stem), dir.join(format!("{stem}.gz"))]
                    .into_iter()
                    .find(|p| p.is_file())
                    .ok_or_else(|| DataError::Missing {
                        what: format!("{what} file {stem}"),
                        path: dir.join(&stem),
                        fetch: fetch.into(),
                    })
            };
            let images = read_images(&find(format!("{prefix}-images-idx3-ubyte"))?)?;
            let labels_path = find(format!("{prefix}-labels-idx1-ubyte"))?;
            let labels = read_labels(&labels_path)?;
            if labels.len() != images.count || images.rows != 28 || images.cols != 28 {
                return Err(DataError::Idx {
                    path: labels_path,
                    reason: format!(
                        "{} labels for {} images of {}×{} (expected 28×28)",
                        labels.len(),
                        images.count,
                        images.rows,
                        images.cols
                    ),
                });
            }
            if let Some(bad) = labels.iter().find(|&&l| l > 9) {
                return Err(DataError::Idx {
                    path: labels_path,
                    reason: format!("label {bad} is not a digit class 0-9"),
                });
            }
            Ok(MnistSplit { images, labels })
        };
        Ok(Self { train: split("train")?, test: split("t10k")? })
    }
}
