//! AugVAE's training loss (spec §4.4; `latent_verse/models/vqvae.py` `setup_loss` /
//! `training_step` and `modules/losses/lpips.py` `RecPerceptualLoss`@e52ed9f):
//!
//! ```text
//! L = mean( ℓ(x̂, x) + w_p · LPIPS(x, x̂) ) + Σ_levels β · ‖sg[z_q] − z‖²
//! ```
//! with ℓ elementwise squared error (`lpips_l2`, both L-Verse configs; `mse` without the LPIPS
//! term) or absolute error (`lpips_l1`, `l1`), or smooth L1 (`smooth_l1`). No discriminator and no
//! codebook term: the EMA moves the codebook.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};

use crate::perceptual::{Backbone, Lpips};

/// `loss_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecLoss {
    Mse,
    L1,
    SmoothL1,
    /// Squared error + `perceptual_weight` · LPIPS (both L-Verse configs).
    #[default]
    LpipsL2,
    LpipsL1,
}

impl RecLoss {
    pub fn uses_lpips(self) -> bool {
        matches!(self, RecLoss::LpipsL2 | RecLoss::LpipsL1)
    }
}

/// `[loss]` of an AugVAE run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugVaeLossConfig {
    pub loss_type: RecLoss,
    /// `p_loss_weight` (0.1).
    pub perceptual_weight: f64,
    pub perceptual_backbone: Backbone,
    /// The LPIPS network's weights (user-supplied VGG16, or `tessera train perceptual`).
    pub perceptual_weights: Option<PathBuf>,
    pub perceptual_heads: Option<PathBuf>,
}

impl Default for AugVaeLossConfig {
    fn default() -> Self {
        AugVaeLossConfig {
            loss_type: RecLoss::LpipsL2,
            perceptual_weight: 0.1,
            perceptual_backbone: Backbone::Vgg16,
            perceptual_weights: None,
            perceptual_heads: None,
        }
    }
}

impl tessera_core::Validate for AugVaeLossConfig {
    fn check(&self, c: &mut tessera_core::Check) {
        c.weight("perceptual_weight", self.perceptual_weight);
        c.rule(
            !self.loss_type.uses_lpips() || self.perceptual_weights.is_some(),
            "perceptual_weights",
            "loss_type lpips_l2 / lpips_l1 needs the LPIPS network's weights (user-supplied VGG16, or \
             `tessera train perceptual`), or use loss_type = \"mse\"",
        );
    }
}

/// The terms of one loss, for logging.
#[derive(Debug)]
pub struct AugVaeLossParts {
    pub total: Tensor,
    /// ℓ(x̂, x) alone (upstream's `rec_loss`).
    pub rec: Tensor,
    pub perceptual: Option<Tensor>,
}

/// The loss with its (optional) perceptual network.
#[derive(Debug)]
pub struct AugVaeLoss {
    pub config: AugVaeLossConfig,
    lpips: Option<Lpips>,
}

impl AugVaeLoss {
    /// `lpips` must be given for the `lpips_*` loss types.
    pub fn new(config: AugVaeLossConfig, lpips: Option<Lpips>) -> Self {
        AugVaeLoss { config, lpips }
    }

    /// # Shapes
    /// `x`, `xrec`: (B, 3, H, W); `qloss`: () → scalars
    pub fn forward(&self, x: &Tensor, xrec: &Tensor, qloss: &Tensor) -> AugVaeLossParts {
        let rec = match self.config.loss_type {
            RecLoss::Mse | RecLoss::LpipsL2 => xrec.mse_loss(x, Reduction::Mean),
            RecLoss::L1 | RecLoss::LpipsL1 => xrec.l1_loss(x, Reduction::Mean),
            RecLoss::SmoothL1 => xrec.smooth_l1_loss(x, Reduction::Mean, 1.0),
        };
        let perceptual = match (&self.lpips, self.config.loss_type.uses_lpips()) {
            (Some(l), true) => Some(l.forward_t(x, xrec, false).mean(tch::Kind::Float)),
            _ => None,
        };
        let total = match &perceptual {
            Some(p) => &rec + qloss + p * self.config.perceptual_weight,
            None => &rec + qloss,
        };
        AugVaeLossParts { total, rec, perceptual }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn reconstruction_terms_are_torchs_losses_and_add_the_commitment() {
        let x = Tensor::from_slice(&[0.0f32, 1.0, -1.0, 0.5]).view([1, 1, 2, 2]);
        let y = Tensor::from_slice(&[0.5f32, -1.0, -1.0, 0.0]).view([1, 1, 2, 2]);
        let q = Tensor::from(0.25f32);
        let cases = [
            (RecLoss::Mse, (0.25 + 4.0 + 0.0 + 0.25) / 4.0),
            (RecLoss::L1, (0.5 + 2.0 + 0.0 + 0.5) / 4.0),
            // smooth L1 (β 1): 0.5·d² below 1, |d| − 0.5 above.
            (RecLoss::SmoothL1, (0.125 + 1.5 + 0.0 + 0.125) / 4.0),
        ];
        for (kind, want) in cases {
            let l = AugVaeLoss::new(AugVaeLossConfig { loss_type: kind, ..Default::default() }, None);
            let p = l.forward(&x, &y, &q);
            assert!((p.rec.double_value(&[]) - want).abs() < 1e-6, "{kind:?}");
            assert!((p.total.double_value(&[]) - want - 0.25).abs() < 1e-6, "{kind:?}");
            assert!(p.perceptual.is_none());
        }
    }

    #[test]
    fn lpips_types_add_the_weighted_mean_distance() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let lpips = Lpips::new(&vs.root(), Backbone::Tiny, false);
        let x = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let y = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let d = lpips.forward_t(&x, &y, false).mean(Kind::Float).double_value(&[]);
        assert!(d > 0.0);
        let cfg =
            AugVaeLossConfig { loss_type: RecLoss::LpipsL1, perceptual_weight: 0.3, ..Default::default() };
        let p = AugVaeLoss::new(cfg, Some(lpips)).forward(&x, &y, &Tensor::from(0.0f32));
        let l1 = y.l1_loss(&x, Reduction::Mean).double_value(&[]);
        assert!((p.rec.double_value(&[]) - l1).abs() < 1e-6);
        assert!((p.total.double_value(&[]) - l1 - 0.3 * d).abs() < 1e-5);
    }

    #[test]
    fn lpips_types_need_the_networks_weights() {
        use tessera_core::Validate;
        assert!(AugVaeLossConfig::default().validate().unwrap_err().contains("perceptual_weights"));
        assert!(AugVaeLossConfig { loss_type: RecLoss::Mse, ..Default::default() }.validate().is_ok());
    }
}
