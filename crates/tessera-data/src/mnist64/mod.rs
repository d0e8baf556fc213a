//! **MNIST64x64**, the TE-VQGAN / Bi-directional DALL-E data protocol (spec §2.6, §2.7, §9.1),
//! generated deterministically on the fly from (split, seed, index): nothing is written to disk to
//! train, and the same triple always gives the same image and captions.
//!
//! # Splits
//! | split | MNIST source | colours |
//! |---|---|---|
//! | `train` | train images 0..60000 | only *seen* (digit, colour) pairs |
//! | `validation` | test images 0..5000 | only seen pairs |
//! | `test` | test images 5000..10000 | only seen pairs |
//! | `test-unseen` | test images 5000..10000 | at least one *unseen* pair per image |
//!
//! **The unseen rule** (the original's held-out combinations are not known, spec §12): the pair
//! (digit d, colour c) is unseen when `c == COLOURS[d mod 4]` with COLOURS = [white, red, green,
//! blue], i.e. white 0, red 1, green 2, blue 3, white 4, red 5, green 6, blue 7, white 8, red 9.
//! Every digit and every colour still appears in training, only never in these ten combinations;
//! `test-unseen` measures compositional generalisation.
//!
//! # Scenes
//! 1–4 digits, uniformly; one digit goes to any of the five locations (centre included), two or more
//! to distinct quadrants. Each digit is an MNIST image drawn uniformly from the split's source range.
//!
//! # Translated set (spec §2.7)
//! Group g shows one MNIST test digit in one colour at [centre, UL, UR, LL, LR], in that order.

pub mod caption;
pub mod layout;
pub mod parser;

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use caption::{all_captions, caption, Template, VOCABULARY};
pub use layout::{render, Colour, Location, PlacedDigit, Scene};
pub use parser::{parse_caption, parse_segment, Triple};

use crate::dataset::{Dataset, Sample};
use crate::error::Result;
use crate::mnist::{Mnist, MnistSplit};

/// The MNIST64x64 protocol settings (TE-VQGAN data, spec §2.6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mnist64Config {
    /// Seed of the whole data set; TE-VQGAN trains with seed 23.
    pub seed: u64,
    pub train_size: usize,
    pub validation_size: usize,
    pub test_size: usize,
    pub test_unseen_size: usize,
    /// Number of 5-image groups in the translated set.
    pub translated_groups: usize,
    /// At most this many digits per image (1..=4).
    pub max_digits: usize,
}

impl tessera_core::Validate for Mnist64Config {
    fn check(&self, c: &mut tessera_core::Check) {
        use tessera_core::validate::MAX_IMAGES;
        for (key, n) in [
            ("train_size", self.train_size),
            ("validation_size", self.validation_size),
            ("test_size", self.test_size),
            ("test_unseen_size", self.test_unseen_size),
            ("translated_groups", self.translated_groups),
        ] {
            c.int(key, n, 1, MAX_IMAGES, "images are generated on demand");
        }
        c.int("max_digits", self.max_digits, 1, 4, "digits per image");
    }
}

impl Default for Mnist64Config {
    fn default() -> Self {
        Self {
            seed: 23,
            train_size: 60_000,
            validation_size: 5_000,
            test_size: 5_000,
            test_unseen_size: 5_000,
            translated_groups: 200,
            max_digits: 4,
        }
    }
}

/// A split of MNIST64x64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Validation,
    Test,
    TestUnseen,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Validation, Split::Test, Split::TestUnseen];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::TestUnseen => "test-unseen",
        }
    }

    fn tag(self) -> u64 {
        self as u64 + 1
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s || (s == "val" && *x == Split::Validation))
            .ok_or_else(|| format!("unknown split `{s}`: expected train, validation, test, test-unseen"))
    }
}

/// Is (digit, colour) held out of training? See the module docs.
pub fn is_unseen(digit: u8, colour: Colour) -> bool {
    Colour::ALL[digit as usize % 4] == colour
}

/// A reproducible random stream for one (seed, domain, index).
pub fn stream(seed: u64, domain: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&domain.to_le_bytes());
    key[16..24].copy_from_slice(&index.to_le_bytes());
    key[24..].copy_from_slice(b"tessera\0");
    ChaCha8Rng::from_seed(key)
}

const TRANSLATED_DOMAIN: u64 = 100;

/// The MNIST64x64 generator.
#[derive(Clone, Debug)]
pub struct Mnist64 {
    mnist: Arc<Mnist>,
    pub config: Mnist64Config,
}

impl Mnist64 {
    pub fn new(mnist: Arc<Mnist>, config: Mnist64Config) -> Result<Self> {
        if !(1..=4).contains(&config.max_digits) {
            return Err(crate::DataError::Invalid(format!(
                "max_digits must be 1..=4, got {}",
                config.max_digits
            )));
        }
        Ok(Self { mnist, config })
    }

    /// The MNIST split and index range a split draws its digits from.
    pub fn source(&self, split: Split) -> (&MnistSplit, std::ops::Range<usize>) {
        let test = &self.mnist.test;
        let half = test.len() / 2;
        match split {
            Split::Train => (&self.mnist.train, 0..self.mnist.train.len()),
            Split::Validation => (test, 0..half),
            Split::Test | Split::TestUnseen => (test, half..test.len()),
        }
    }

    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.config.train_size,
            Split::Validation => self.config.validation_size,
            Split::Test => self.config.test_size,
            Split::TestUnseen => self.config.test_unseen_size,
        }
    }

    /// The scene of image `index` of `split`.
    pub fn scene(&self, split: Split, index: usize) -> Scene {
        let mut rng = stream(self.config.seed, split.tag(), index as u64);
        let n = rng.gen_range(1..=self.config.max_digits);
        let mut locations: Vec<Location> = if n == 1 {
            vec![*Location::ALL.choose(&mut rng).unwrap()]
        } else {
            Location::QUADRANTS.choose_multiple(&mut rng, n).copied().collect()
        };
        locations.sort();
        let (source, range) = self.source(split);
        let unseen_slot = (split == Split::TestUnseen).then(|| rng.gen_range(0..n));
        let digits = locations
            .into_iter()
            .enumerate()
            .map(|(slot, location)| {
                let mnist_index = rng.gen_range(range.clone());
                let digit = source.label(mnist_index);
                let colour = match unseen_slot {
                    Some(s) if s == slot => Colour::ALL[digit as usize % 4],
                    Some(_) => *Colour::ALL.choose(&mut rng).unwrap(),
                    None => {
                        let seen: Vec<Colour> =
                            Colour::ALL.into_iter().filter(|&c| !is_unseen(digit, c)).collect();
                        *seen.choose(&mut rng).unwrap()
                    }
                };
                PlacedDigit { location, colour, digit, mnist_index }
            })
            .collect();
        Scene { digits }
    }

    /// Paint a scene whose digits come from `split`'s MNIST source.
    pub fn render(&self, split: Split, scene: &Scene) -> image::RgbImage {
        let (source, _) = self.source(split);
        render(scene, |i| source.image(i))
    }

    /// Image and every caption paraphrase of `index` in `split` (plain caption first).
    pub fn sample(&self, split: Split, index: usize) -> Sample {
        let scene = self.scene(split, index);
        Sample { image: self.render(split, &scene), captions: all_captions(&scene) }
    }

    /// Group `g` of the translated set: the same digit and colour at [centre, UL, UR, LL, LR].
    pub fn translated_group(&self, g: usize) -> [Scene; 5] {
        let mut rng = stream(self.config.seed, TRANSLATED_DOMAIN, g as u64);
        let test = &self.mnist.test;
        let mnist_index = rng.gen_range(0..test.len());
        let colour = *Colour::ALL.choose(&mut rng).unwrap();
        let digit = test.label(mnist_index);
        Location::ALL
            .map(|location| Scene { digits: vec![PlacedDigit { location, colour, digit, mnist_index }] })
    }

    /// The five images of translated group `g`.
    pub fn translated_images(&self, g: usize) -> [image::RgbImage; 5] {
        self.translated_group(g).map(|s| render(&s, |i| self.mnist.test.image(i)))
    }

    /// One split as a [`Dataset`].
    pub fn split(self: &Arc<Self>, split: Split) -> Mnist64Split {
        Mnist64Split { generator: self.clone(), split }
    }
}

/// One MNIST64x64 split as a [`Dataset`].
#[derive(Clone, Debug)]
pub struct Mnist64Split {
    pub generator: Arc<Mnist64>,
    pub split: Split,
}

impl Dataset for Mnist64Split {
    fn len(&self) -> usize {
        self.generator.len(self.split)
    }
    fn get(&self, index: usize, _rng: &mut ChaCha8Rng) -> Result<Sample> {
        Ok(self.generator.sample(self.split, index))
    }
    fn describe(&self) -> String {
        format!("MNIST64x64 {} (seed {})", self.split.name(), self.generator.config.seed)
    }
}

/// The translated set as a flat [`Dataset`] of 5·groups images, group-major in [C, UL, UR, LL, LR]
/// order (spec §2.7), each captioned.
#[derive(Clone, Debug)]
pub struct TranslatedSet {
    pub generator: Arc<Mnist64>,
}

impl Dataset for TranslatedSet {
    fn len(&self) -> usize {
        self.generator.config.translated_groups * 5
    }
    fn get(&self, index: usize, _rng: &mut ChaCha8Rng) -> Result<Sample> {
        let scene = &self.generator.translated_group(index / 5)[index % 5];
        Ok(Sample {
            image: render(scene, |i| self.generator.mnist.test.image(i)),
            captions: all_captions(scene),
        })
    }
    fn describe(&self) -> String {
        format!("MNIST64x64 translated set ({} groups of 5)", self.generator.config.translated_groups)
    }
}
