//! A tokenizer run's configuration: `[data]`, `[model]`, `[quantizer]`, `[disc]`, `[loss]`,
//! `[optim]`, `[train]`, `[eval]`. Defaults are TE-VQGAN's `configs/custom_vqgan.yaml` for
//! MNIST64x64 (wcshin-git/TE-VQGAN@248f883; spec §2.5) with λ_o = 0.

use serde::{Deserialize, Serialize};
use tessera_core::validate::{Check, Validate, MAX_BATCH, MAX_STEPS};
use tessera_data::DataConfig;
use tessera_models::disc::DiscConfig;
pub use tessera_models::vqgan::loss::{DiscInput, DiscLoss, LossConfig, PixelLoss};
use tessera_models::vqgan::VqganConfig;
use tessera_nn::optim::AdamConfig;
use tessera_quant::{OrthoConfig, VqConfig};

use crate::error::{Result, TrainError};
use crate::runner::LoopConfig;
use crate::schedule::Decay;

/// `[optim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// TE-VQGAN: 8e-6 (spec §2.5).
    pub base_learning_rate: f64,
    /// taming: lr = batch × base_lr (× devices × accumulation, both 1 here).
    pub scale_lr: bool,
    pub warmup_steps: i64,
    pub decay: Decay,
    pub min_lr_ratio: f64,
    pub clip_grad_norm: Option<f64>,
    /// Exponential moving average of the autoencoder's weights, used for validation.
    pub weight_ema: Option<f64>,
    pub adam: AdamConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            base_learning_rate: 8e-6,
            scale_lr: true,
            warmup_steps: 0,
            decay: Decay::Constant,
            min_lr_ratio: 0.0,
            clip_grad_norm: None,
            weight_ema: None,
            adam: AdamConfig::default(),
        }
    }
}

/// `[eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Validation batches per validation (0 = the whole split).
    pub val_batches: usize,
    pub batch_size: usize,
    /// Measure Trans_eq_acc on the MNIST64x64 translated set.
    pub trans_eq: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { val_batches: 20, batch_size: 100, trans_eq: true }
    }
}

/// A whole tokenizer run. Defaults: TE-VQGAN's `mnist64x64_vqgan.yaml` (spec §2.5) with λ_o = 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerRunConfig {
    pub data: DataConfig,
    pub model: VqganConfig,
    pub quantizer: VqConfig,
    pub disc: DiscConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub train: LoopConfig,
    pub eval: EvalConfig,
    /// LG-VQ's language-guided losses (spec §5); absent = off.
    pub lg: Option<tessera_models::lg::LgConfig>,
}

impl Default for TokenizerRunConfig {
    fn default() -> Self {
        let mut data = DataConfig::default();
        data.loader.batch_size = 96;
        Self {
            data,
            model: VqganConfig::default(),
            quantizer: VqConfig {
                num_codes: 128,
                dim: 256,
                ortho: OrthoConfig::default(),
                ..VqConfig::default()
            },
            disc: DiscConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            train: LoopConfig::default(),
            eval: EvalConfig::default(),
            lg: None,
        }
    }
}

impl TokenizerRunConfig {
    pub fn learning_rate(&self) -> f64 {
        if self.optim.scale_lr {
            (self.train.accumulate * self.data.loader.batch_size) as f64 * self.optim.base_learning_rate
        } else {
            self.optim.base_learning_rate
        }
    }

    /// Every key's range and the rules between keys ([`Validate`]); no data needed.
    pub fn validate(&self) -> Result<()> {
        Validate::validate(self).map_err(TrainError::Invalid)
    }
}

impl Validate for OptimConfig {
    fn check(&self, c: &mut Check) {
        c.float_above("base_learning_rate", self.base_learning_rate, 0.0, 10.0, "TE-VQGAN: 8e-6");
        c.int("warmup_steps", self.warmup_steps, 0, MAX_STEPS, "");
        c.float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, "");
        if let Some(g) = self.clip_grad_norm {
            c.float_above("clip_grad_norm", g, 0.0, f64::MAX, "");
        }
        if let Some(d) = self.weight_ema {
            c.unit_open("weight_ema", d, "EMA decay");
        }
        c.section("adam", &self.adam);
    }
}

impl Validate for EvalConfig {
    fn check(&self, c: &mut Check) {
        c.int("val_batches", self.val_batches, 0, 1_000_000, "0 = the whole split");
        c.int("batch_size", self.batch_size, 1, MAX_BATCH, "");
    }
}

impl Validate for TokenizerRunConfig {
    fn check(&self, c: &mut Check) {
        c.section("data", &self.data);
        c.section("model", &self.model);
        c.section("quantizer", &self.quantizer);
        c.section("disc", &self.disc);
        c.section("loss", &self.loss);
        c.section("optim", &self.optim);
        c.section("train", &self.train);
        c.section("eval", &self.eval);
        let (res, n) = (self.model.resolution, self.disc.n_layers);
        if (1..=8).contains(&n) {
            c.rule(
                res >> n >= 3,
                "disc.n_layers",
                format_args!(
                "= {n}: a {res}-px image must stay ≥ 3 px after {n} halvings (PatchGAN's last two 4×4 convs)"
            ),
            );
        }
        if self.loss.perceptual_weight > 0.0 && self.loss.perceptual_weights.is_none() {
            c.rule(false, "loss.perceptual_weights", "loss.perceptual_weight > 0 needs it: train the in-domain network \
                with `tessera train perceptual --out RUN` (or supply VGG16 weights), or set loss.perceptual_weight = 0");
        }
    }
}
