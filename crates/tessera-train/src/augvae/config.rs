//! An AugVAE run's configuration: `[data]`, `[model]`, `[quantizer]`, `[loss]`, `[optim]`,
//! `[train]`, `[eval]`, and `init_from` for AugVAE-SL. Defaults are L-Verse's
//! `imagenet_augvae_ml.yaml` with `train_vae.py`'s defaults (spec §4.5): 256 px, levels
//! 64/32/16/8, 8192 EMA codes of 256 dims, `lpips_l2` with weight 0.1, AdamW (0.9, 0.999) with
//! weight decay 1e-5 at 4.5e-6 × batch size, ReduceLROnPlateau.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tessera_core::validate::{Check, Validate};
use tessera_data::DataConfig;
use tessera_models::augvae::loss::AugVaeLossConfig;
use tessera_models::augvae::{lverse_quantizer, AugVaeConfig};
use tessera_nn::optim::AdamConfig;
use tessera_quant::VqConfig;

use crate::error::{Result, TrainError};
use crate::plateau::PlateauConfig;
use crate::runner::LoopConfig;
use crate::tokenizer::EvalConfig;

/// `[optim]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugVaeOptimConfig {
    /// Base learning rate (`--learning_rate`, 4.5e-6 in both configs).
    pub learning_rate: f64,
    /// Multiply by batch size × accumulation (`train_vae.py`: `learning_rate · world_size ·
    /// batch_size`).
    pub scale_lr: bool,
    pub adam: AdamConfig,
    /// ReduceLROnPlateau on the training loss (`--lr_decay`, on in both configs); absent = a
    /// constant learning rate.
    pub plateau: Option<PlateauConfig>,
}

impl Default for AugVaeOptimConfig {
    fn default() -> Self {
        AugVaeOptimConfig {
            learning_rate: 4.5e-6,
            scale_lr: true,
            adam: AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-5, decoupled: true },
            plateau: Some(PlateauConfig::default()),
        }
    }
}

impl Validate for AugVaeOptimConfig {
    fn check(&self, c: &mut Check) {
        c.float_above("learning_rate", self.learning_rate, 0.0, 10.0, "L-Verse: 4.5e-6 × batch size");
        c.section("adam", &self.adam);
        if let Some(p) = &self.plateau {
            c.section("plateau", p);
        }
    }
}

/// A whole AugVAE run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugVaeRunConfig {
    /// AugVAE-SL: the AugVAE-ML run whose weights it starts from (`--pretrained_path`).
    pub init_from: Option<PathBuf>,
    pub data: DataConfig,
    pub model: AugVaeConfig,
    pub quantizer: VqConfig,
    pub loss: AugVaeLossConfig,
    pub optim: AugVaeOptimConfig,
    pub train: LoopConfig,
    pub eval: EvalConfig,
    /// LG-VQ's language-guided losses on the decoded level's codes (spec §5); absent = off.
    pub lg: Option<tessera_models::lg::LgConfig>,
}

impl Default for AugVaeRunConfig {
    fn default() -> Self {
        AugVaeRunConfig {
            init_from: None,
            data: DataConfig { image_size: 256, ..DataConfig::default() },
            model: AugVaeConfig::default(),
            quantizer: lverse_quantizer(8192, 256),
            loss: AugVaeLossConfig::default(),
            optim: AugVaeOptimConfig::default(),
            train: LoopConfig::default(),
            eval: EvalConfig { trans_eq: false, ..EvalConfig::default() },
            lg: None,
        }
    }
}

impl Validate for AugVaeRunConfig {
    fn check(&self, c: &mut Check) {
        c.section("data", &self.data);
        c.section("model", &self.model);
        c.section("quantizer", &self.quantizer);
        c.section("loss", &self.loss);
        c.section("optim", &self.optim);
        c.section("train", &self.train);
        c.section("eval", &self.eval);
        c.rule(
            self.quantizer.codebook_dim.is_none(),
            "quantizer.codebook_dim",
            "AugVAE's pre-/post-quant convs set the code width: use quantizer.dim",
        );
        match (&self.init_from, self.model.single_level) {
            (None, Some(s)) => c.rule(false, "init_from", format_args!(
                "is missing: model.single_level = {s} makes this an AugVAE-SL run, which fine-tunes an AugVAE-ML run (give its directory)"
            )),
            (Some(p), None) => c.rule(false, "init_from", format_args!(
                "= {}: only an AugVAE-SL run (model.single_level) starts from another run", p.display()
            )),
            _ => {}
        }
        let r = self.model.resolution as u32;
        c.rule(
            self.data.source == tessera_data::SourceKind::Mnist64 && r == 64
                || self.data.source != tessera_data::SourceKind::Mnist64 && self.data.image_size == r,
            "model.resolution",
            format_args!("= {r}: must equal the data's image side (data.image_size; MNIST64x64 is 64)"),
        );
    }
}

impl AugVaeRunConfig {
    /// Every key's range and the rules between keys; no data needed.
    pub fn validate(&self) -> Result<()> {
        Validate::validate(self).map_err(TrainError::Invalid)
    }

    /// The learning rate AdamW starts with: base × batch × accumulation when `scale_lr`.
    pub fn effective_lr(&self) -> f64 {
        let o = &self.optim;
        if o.scale_lr {
            o.learning_rate * (self.data.loader.batch_size * self.train.accumulate.max(1)) as f64
        } else {
            o.learning_rate
        }
    }
}
