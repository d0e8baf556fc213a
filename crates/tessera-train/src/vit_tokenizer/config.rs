//! A ViT-VQGAN run's configuration: `[data]`, `[model]`, `[quantizer]`, `[disc]`, `[loss]`,
//! `[optim]`, `[train]`, `[eval]`. Defaults are the paper's ViT-VQGAN-SS (spec §6.1): 256 px,
//! 8-px patches, 8192 l2-normalised 32-d codes, AdamW (0.9, 0.99) with decoupled weight decay
//! 1e-4, linear warm-up over 50k steps to 1e-4, then cosine to 5e-5 at 500k steps.

use serde::{Deserialize, Serialize};
use tessera_core::validate::{Check, Validate, MAX_STEPS};
use tessera_data::DataConfig;
use tessera_models::stylegan_disc::StyleDiscConfig;
use tessera_models::vit::loss::VitLossConfig;
use tessera_models::vit::VitConfig;
use tessera_nn::optim::AdamConfig;
use tessera_quant::{CodebookInit, Distance, StraightThrough, VqConfig};

use crate::error::{Result, TrainError};
use crate::runner::LoopConfig;
use crate::schedule::Decay;
use crate::tokenizer::EvalConfig;

/// `[optim]`: one AdamW for the autoencoder and one for the discriminator, same schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitOptimConfig {
    pub learning_rate: f64,
    pub warmup_steps: i64,
    pub decay: Decay,
    /// The learning rate decays to `min_lr_ratio · learning_rate` (paper: 5e-5 / 1e-4).
    pub min_lr_ratio: f64,
    pub adam: AdamConfig,
}

impl Default for VitOptimConfig {
    fn default() -> Self {
        VitOptimConfig {
            learning_rate: 1e-4,
            warmup_steps: 50_000,
            decay: Decay::Cosine,
            min_lr_ratio: 0.5,
            adam: AdamConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 1e-4, decoupled: true },
        }
    }
}

impl Validate for VitOptimConfig {
    fn check(&self, c: &mut Check) {
        c.float_above("learning_rate", self.learning_rate, 0.0, 10.0, "paper: 1e-4");
        c.int("warmup_steps", self.warmup_steps, 0, MAX_STEPS, "");
        c.float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, "");
        c.section("adam", &self.adam);
    }
}

/// The paper's codebook: 8192 codes, 32-d, l2-normalised lookup, upstream's straight-through
/// estimator, N(0, 1) initialisation.
pub fn paper_quantizer() -> VqConfig {
    VqConfig {
        num_codes: 8192,
        dim: 32,
        distance: Distance::Cosine,
        straight_through: StraightThrough::Raw,
        init: CodebookInit::Normal,
        ..VqConfig::default()
    }
}

/// A whole ViT-VQGAN run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VitRunConfig {
    pub data: DataConfig,
    pub model: VitConfig,
    pub quantizer: VqConfig,
    pub disc: StyleDiscConfig,
    pub loss: VitLossConfig,
    pub optim: VitOptimConfig,
    pub train: LoopConfig,
    pub eval: EvalConfig,
    /// LG-VQ's language-guided losses (spec §5); absent = off.
    pub lg: Option<tessera_models::lg::LgConfig>,
}

impl Default for VitRunConfig {
    fn default() -> Self {
        VitRunConfig {
            data: DataConfig { image_size: 256, ..DataConfig::default() },
            model: VitConfig::default(),
            quantizer: paper_quantizer(),
            disc: StyleDiscConfig::default(),
            loss: VitLossConfig::default(),
            optim: VitOptimConfig::default(),
            train: LoopConfig { max_steps: 500_000, ..LoopConfig::default() },
            eval: EvalConfig::default(),
            lg: None,
        }
    }
}

impl Validate for VitRunConfig {
    fn check(&self, c: &mut Check) {
        c.section("data", &self.data);
        c.section("model", &self.model);
        c.section("quantizer", &self.quantizer);
        c.section("disc", &self.disc);
        c.section("loss", &self.loss);
        c.section("optim", &self.optim);
        c.section("train", &self.train);
        c.section("eval", &self.eval);
        let (dim, width) = (self.quantizer.dim, self.model.encoder.dim.min(self.model.decoder.dim));
        c.rule(
            dim <= width,
            "quantizer.dim",
            format_args!(
            "= {dim}: a code is a projection of a token, so it must not be wider than the model (dim {width})"
        ),
        );
        let r = self.model.resolution;
        c.rule(r >= 8 && (r & (r - 1)) == 0, "model.resolution", format_args!(
            "= {r}: the StyleGAN2 discriminator halves the image down to 4 px, so it must be a power of two ≥ 8"
        ));
    }
}

impl VitRunConfig {
    /// Every key's range and the rules between keys; no data needed.
    pub fn validate(&self) -> Result<()> {
        Validate::validate(self).map_err(TrainError::Invalid)
    }
}
