//! A generator run's configuration: `[model]`, `[optim]`, `[text]`, `[codes]`, `[sample]`,
//! `[eval]`, `[train]`, `[data]` and the tokenizer run it trains on. Defaults are Bi-DALL-E's
//! MNIST64x64 run (spec §3.4).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tessera_core::validate::{Check, Validate, MAX_BATCH, MAX_IMAGES, MAX_STEPS};
use tessera_data::mnist64::Split;
use tessera_data::DataConfig;
use tessera_models::biart::sample::SampleConfig;
use tessera_models::biart::BiartConfig;
use tessera_nn::optim::AdamConfig;

use crate::runner::LoopConfig;
use crate::schedule::Decay;

/// How the two directions share a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectionSteps {
    /// One optimiser step on `(L_t2i + L_i2t)/2`.
    Joint,
    /// Bi-DALL-E's `alternate`: an i2t step, then a t2i step.
    Separate,
    /// Text→image only: VIM's class-conditional generation (ViT-VQGAN §4, a class token before
    /// the image codes). The image→text direction is not trained.
    T2i,
}

impl DirectionSteps {
    /// The directions a run trains and validates.
    pub fn trained(self) -> &'static [tessera_models::biart::Direction] {
        use tessera_models::biart::Direction;
        match self {
            DirectionSteps::Joint | DirectionSteps::Separate => &Direction::BOTH,
            DirectionSteps::T2i => &[Direction::T2i],
        }
    }
}

/// `[optim]` of a generator run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenOptimConfig {
    pub learning_rate: f64,
    pub adam: AdamConfig,
    pub warmup_steps: i64,
    pub decay: Decay,
    /// Cycles of `decay = "cosine-hard-restarts"` (Bi-DALL-E: 6).
    pub restart_cycles: u32,
    pub min_lr_ratio: f64,
    /// 0 = no clipping.
    pub clip_grad_norm: f64,
}

impl Default for GenOptimConfig {
    /// Bi-DALL-E's lr 1e-3 and clip 1.0 (spec §3.4); minGPT's AdamW (0.9, 0.95), decay 0.01.
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            adam: AdamConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.01, decoupled: true },
            warmup_steps: 200,
            decay: Decay::Cosine,
            restart_cycles: 1,
            min_lr_ratio: 0.1,
            clip_grad_norm: 1.0,
        }
    }
}

/// `[text]`: the caption tokenizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    /// Use this `tokenizer.json` instead of training one.
    pub tokenizer: Option<PathBuf>,
    /// BPE vocabulary target (MNIST64x64's 17 words end near 78, as Bi-DALL-E).
    pub vocab_size: usize,
    /// Training images whose captions train the BPE.
    pub corpus_images: usize,
    /// Probability that a training caption is replaced by the empty caption `[CLS] [SEP]`, so the
    /// model also learns the unconditional p(image): the null condition of classifier-free
    /// guidance, and the view of an image VIM's linear probe reads. 0 = off (Bi-DALL-E).
    pub drop_caption: f64,
    /// Mark pieces that continue a word (`##`) so captions decode as words. Unset: marked for
    /// free-text data (`tuxpaint`, `caption-folder`), Bi-DALL-E's unmarked BPE otherwise
    /// (MNIST64x64's words are all whole tokens).
    pub mark_subwords: Option<bool>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self { tokenizer: None, vocab_size: 128, corpus_images: 5000, drop_caption: 0.0, mark_subwords: None }
    }
}

/// `[codes]`: which training images the generator sees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodesConfig {
    /// The first N training images (0 = all).
    pub train_images: usize,
    pub batch_size: usize,
}

impl Default for CodesConfig {
    fn default() -> Self {
        Self { train_images: 0, batch_size: 64 }
    }
}

/// `[eval]` of a generator run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenEvalConfig {
    /// Validation images for the validation losses.
    pub loss_images: usize,
    /// Validation images captioned during training-time validation (I2T accuracy).
    pub i2t_images: usize,
    /// Validation captions drawn during training-time validation (T2I accuracy; needs
    /// `classifier`).
    pub t2i_images: usize,
    /// Directory of an evaluation classifier (`classifier.safetensors`) that reads generated
    /// images during validation. The study sets it to its shared classifier.
    pub classifier: Option<PathBuf>,
    /// Images per split for `eval generator`.
    pub images: usize,
    pub splits: Vec<Split>,
    pub batch_size: usize,
    /// Seed of evaluation sampling.
    pub seed: u64,
}

impl Default for GenEvalConfig {
    fn default() -> Self {
        Self {
            loss_images: 256,
            i2t_images: 64,
            t2i_images: 64,
            classifier: None,
            images: 500,
            splits: vec![Split::Validation, Split::TestUnseen],
            batch_size: 50,
            seed: 42,
        }
    }
}

/// A generator run's whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeneratorRunConfig {
    /// The tokenizer run whose codes the generator models.
    pub tokenizer: PathBuf,
    pub data: DataConfig,
    pub model: BiartConfig,
    pub optim: GenOptimConfig,
    pub directions: DirectionSteps,
    pub text: TextConfig,
    pub codes: CodesConfig,
    pub sample: SampleConfig,
    pub eval: GenEvalConfig,
    pub train: LoopConfig,
}

impl Default for GeneratorRunConfig {
    fn default() -> Self {
        Self {
            tokenizer: PathBuf::from("runs/quick-te"),
            data: DataConfig::default(),
            model: BiartConfig::default(),
            optim: GenOptimConfig::default(),
            directions: DirectionSteps::Joint,
            text: TextConfig::default(),
            codes: CodesConfig::default(),
            sample: SampleConfig::default(),
            eval: GenEvalConfig::default(),
            train: LoopConfig { max_steps: 20_000, ..LoopConfig::default() },
        }
    }
}

impl Validate for GenOptimConfig {
    fn check(&self, c: &mut Check) {
        c.float_above("learning_rate", self.learning_rate, 0.0, 10.0, "Bi-DALL-E: 1e-3");
        c.int("warmup_steps", self.warmup_steps, 0, MAX_STEPS, "");
        c.int("restart_cycles", self.restart_cycles, 1, 1_000_000, "");
        c.float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, "");
        c.float("clip_grad_norm", self.clip_grad_norm, 0.0, f64::MAX, "0 = no clipping");
        c.section("adam", &self.adam);
    }
}

impl Validate for TextConfig {
    fn check(&self, c: &mut Check) {
        c.int("vocab_size", self.vocab_size, 5, 1 << 20, "BPE target, specials included");
        c.int("corpus_images", self.corpus_images, 1, MAX_IMAGES, "");
        c.float("drop_caption", self.drop_caption, 0.0, 1.0, "a probability");
    }
}

impl Validate for CodesConfig {
    fn check(&self, c: &mut Check) {
        c.int("train_images", self.train_images, 0, MAX_IMAGES, "0 = the whole training split");
        c.int("batch_size", self.batch_size, 1, MAX_BATCH, "");
    }
}

impl Validate for GenEvalConfig {
    fn check(&self, c: &mut Check) {
        c.int("loss_images", self.loss_images, 1, MAX_IMAGES, "");
        c.int("i2t_images", self.i2t_images, 0, MAX_IMAGES, "0 = no I2T during training");
        c.int("t2i_images", self.t2i_images, 0, MAX_IMAGES, "0 = no T2I during training");
        c.int("images", self.images, 1, MAX_IMAGES, "per split");
        c.int("batch_size", self.batch_size, 1, MAX_BATCH, "");
    }
}

impl Validate for GeneratorRunConfig {
    fn check(&self, c: &mut Check) {
        c.section("data", &self.data);
        c.section("model", &self.model);
        c.section("optim", &self.optim);
        c.section("text", &self.text);
        c.section("codes", &self.codes);
        c.section("sample", &self.sample);
        c.section("eval", &self.eval);
        c.section("train", &self.train);
    }
}
