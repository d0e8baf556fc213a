//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) as an image + caption source, for ViT-VQGAN's
//! quick presets and class-conditional VIM (spec §6, §9.4).
//!
//! Each 28×28 gray article is centred on a black 32×32 canvas (2 pixels of padding, the usual
//! way to give a patch-4 or patch-8 ViT a divisible side), then resized to `size` if that is not
//! 32, and repeated over three channels. Its caption is one word, the class name of
//! [`FASHION_CLASSES`], so a BPE caption tokenizer gives one class token: `[CLS] class [SEP]`.
//!
//! Splits: train is the first 55,000 training images, validation the last 5,000, and test (and
//! test-unseen, which has no meaning here) the 10,000 test images.

use std::path::Path;
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;

use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};
use crate::fetch::fashion_dir;
use crate::mnist::{Mnist, MnistSplit};
use crate::mnist64::Split;

/// Class names, one word each, in label order (0 "T-shirt/top" … 9 "Ankle boot").
pub const FASHION_CLASSES: [&str; 10] =
    ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"];

/// Training images held out as the validation split.
pub const FASHION_VALIDATION: usize = 5000;

/// The label of a caption written by this source, if it is one.
pub fn fashion_label(caption: &str) -> Option<usize> {
    FASHION_CLASSES.iter().position(|c| *c == caption.trim())
}

/// One split of Fashion-MNIST at one image size.
#[derive(Clone, Debug)]
pub struct FashionMnist {
    data: Arc<Mnist>,
    from_train: bool,
    range: std::ops::Range<usize>,
    size: u32,
    split: Split,
}

impl FashionMnist {
    /// Load all splits' source files from the data cache under `root`.
    pub fn load(root: &Path) -> Result<Arc<Mnist>> {
        Ok(Arc::new(Mnist::load_named(&fashion_dir(root), "Fashion-MNIST", "tessera data fetch --fashion")?))
    }

    /// `split` of the loaded files, at `size`×`size` (at least 28).
    pub fn split(data: &Arc<Mnist>, split: Split, size: u32) -> Result<Self> {
        if size < 28 {
            return Err(DataError::Invalid(format!(
                "data.image_size = {size}: Fashion-MNIST images are 28×28, so the size must be at least 28"
            )));
        }
        let n = data.train.len();
        if n <= FASHION_VALIDATION {
            return Err(DataError::Invalid(format!(
                "Fashion-MNIST train has {n} images, fewer than the {FASHION_VALIDATION} held out for validation"
            )));
        }
        let (from_train, range) = match split {
            Split::Train => (true, 0..n - FASHION_VALIDATION),
            Split::Validation => (true, n - FASHION_VALIDATION..n),
            Split::Test | Split::TestUnseen => (false, 0..data.test.len()),
        };
        Ok(Self { data: data.clone(), from_train, range, size, split })
    }

    fn images(&self) -> &MnistSplit {
        if self.from_train {
            &self.data.train
        } else {
            &self.data.test
        }
    }

    /// Class label of item `index`.
    pub fn label(&self, index: usize) -> usize {
        usize::from(self.images().label(self.range.start + index))
    }

    /// Item `index` as an RGB image of the configured size.
    pub fn image(&self, index: usize) -> image::RgbImage {
        let src = self.images().image(self.range.start + index);
        let mut canvas = image::GrayImage::new(32, 32);
        for (i, &v) in src.iter().enumerate() {
            canvas.put_pixel(2 + (i % 28) as u32, 2 + (i / 28) as u32, image::Luma([v]));
        }
        let gray = if self.size == 32 {
            canvas
        } else {
            image::imageops::resize(&canvas, self.size, self.size, image::imageops::FilterType::Triangle)
        };
        image::DynamicImage::ImageLuma8(gray).to_rgb8()
    }
}

impl Dataset for FashionMnist {
    fn len(&self) -> usize {
        self.range.len()
    }
    fn get(&self, index: usize, _rng: &mut ChaCha8Rng) -> Result<Sample> {
        if index >= self.len() {
            return Err(DataError::Invalid(format!(
                "Fashion-MNIST {} index {index} out of range (len {})",
                self.split.name(),
                self.len()
            )));
        }
        Ok(Sample {
            image: self.image(index),
            captions: vec![FASHION_CLASSES[self.label(index)].to_string()],
        })
    }
    fn describe(&self) -> String {
        format!("Fashion-MNIST {} ({} images at {}×{})", self.split.name(), self.len(), self.size, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::IdxImages;

    fn toy(n_train: usize) -> Arc<Mnist> {
        let split = |n: usize| MnistSplit {
            images: IdxImages {
                count: n,
                rows: 28,
                cols: 28,
                pixels: (0..n * 784).map(|i| (i % 251) as u8).collect(),
            },
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
        };
        Arc::new(Mnist { train: split(n_train), test: split(20) })
    }

    #[test]
    fn splits_hold_out_the_last_training_images_and_captions_name_the_class() {
        let data = toy(FASHION_VALIDATION + 30);
        let train = FashionMnist::split(&data, Split::Train, 32).unwrap();
        let val = FashionMnist::split(&data, Split::Validation, 32).unwrap();
        let test = FashionMnist::split(&data, Split::Test, 64).unwrap();
        assert_eq!((train.len(), val.len(), test.len()), (30, FASHION_VALIDATION, 20));
        assert_eq!(val.label(0), 30 % 10);
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let s = val.get(3, &mut rng).unwrap();
        assert_eq!(fashion_label(&s.captions[0]), Some(33 % 10));
        assert_eq!(s.image.dimensions(), (32, 32));
        assert_eq!(test.get(0, &mut rng).unwrap().image.dimensions(), (64, 64));
        assert!(val.get(FASHION_VALIDATION, &mut rng).is_err());
    }

    #[test]
    fn the_article_sits_centred_on_a_black_border() {
        let data = toy(FASHION_VALIDATION + 1);
        let img = FashionMnist::split(&data, Split::Train, 32).unwrap().image(0);
        let src = data.train.image(0);
        assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(31, 31).0, [0, 0, 0]);
        let v = src[5 * 28 + 7];
        assert_eq!(img.get_pixel(2 + 7, 2 + 5).0, [v, v, v]);
    }

    #[test]
    fn sizes_below_the_article_and_unknown_captions_are_refused() {
        let data = toy(FASHION_VALIDATION + 1);
        let e = FashionMnist::split(&data, Split::Train, 16).unwrap_err().to_string();
        assert!(e.contains("image_size = 16"), "{e}");
        assert_eq!(fashion_label("hat"), None);
        assert_eq!(FASHION_CLASSES.iter().filter_map(|c| fashion_label(c)).count(), 10);
    }
}
